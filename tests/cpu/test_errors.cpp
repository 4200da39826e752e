// docs/contract.md sections 2.1 and 10: every validation rule returns its status with a
// message naming the argument, writes no output, and leaves the context
// usable. The interrupt callback stops a run cleanly.
#include <gtest/gtest.h>

#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "fixtures.h"
#include "flashkm.h"

namespace {

const int64_t N = 300, D = 4, K = 5;

struct Fixture {
  fkm_ctx* ctx = nullptr;
  fkm_params p;
  std::vector<float> x = fixtures::blobs(N, D, 3, 4);
  std::vector<float> w = std::vector<float>(N, 1.0f);
  std::vector<float> cent = std::vector<float>(K * D, 42.0f);
  std::vector<int64_t> lab = std::vector<int64_t>(N, 42);
  std::vector<float> dis = std::vector<float>(N, 42.0f);
  std::vector<fkm_iteration_stats> st = std::vector<fkm_iteration_stats>(64);
  int64_t nst = 42;
  Fixture() {
    EXPECT_EQ(fkm_ctx_create(FKM_BACKEND_CPU, 0, &ctx), FKM_OK);
    fkm_params_init(&p);
    p.niter = 3;
    std::memset(st.data(), 0x5a, st.size() * sizeof(st[0]));
  }
  ~Fixture() { fkm_ctx_destroy(ctx); }
  fkm_status train(int64_t n = N, int64_t d = D, int64_t k = K, int64_t n_init = 0,
                   const float* wp = nullptr) {
    return fkm_train(ctx, &p, n, d, k, FKM_DTYPE_F32, x.data(), wp, cent.data(), n_init,
                     lab.data(), dis.data(), st.data(), (int64_t)st.size(), &nst);
  }
  void expect_untouched(size_t init_rows_floats = 0) {
    for (size_t i = init_rows_floats; i < cent.size(); i++) ASSERT_EQ(cent[i], 42.0f);
    for (auto v : lab) ASSERT_EQ(v, 42);
    for (auto v : dis) ASSERT_EQ(v, 42.0f);
    EXPECT_EQ(nst, 42);
    unsigned char* b = reinterpret_cast<unsigned char*>(st.data());
    for (size_t i = 0; i < st.size() * sizeof(st[0]); i++) ASSERT_EQ(b[i], 0x5a);
  }
  void expect_still_works() {
    fkm_params ok;
    fkm_params_init(&ok);
    ok.niter = 2;
    std::vector<float> c(K * D), clean = fixtures::blobs(N, D, 3, 4);
    ASSERT_EQ(fkm_train(ctx, &ok, N, D, K, FKM_DTYPE_F32, clean.data(), nullptr, c.data(), 0,
                        nullptr, nullptr, nullptr, 0, nullptr), FKM_OK);
    EXPECT_STREQ(fkm_ctx_last_error(ctx), "");
  }
};

void expect_error(Fixture& f, fkm_status got, fkm_status want, const char* needle,
                  size_t init_rows_floats = 0) {
  EXPECT_EQ(got, want) << fkm_status_string(got);
  std::string msg = fkm_ctx_last_error(f.ctx);
  EXPECT_NE(msg.find(needle), std::string::npos) << "message: " << msg;
  std::printf("[ rejected ] %-22s -> %s: %s\n", needle, fkm_status_string(got), msg.c_str());
  f.expect_untouched(init_rows_floats);
  f.expect_still_works();
}

// A communicator while MPI is not running (this test never calls MPI_Init),
// or in a build without MPI, is refused with a message; the context stays a
// one-process context.
TEST(BadInput, ACommunicatorWithoutMpiRunningIsRefused) {
  Fixture f;
  const fkm_status s = fkm_ctx_set_mpi_comm(f.ctx, 0);
  const std::string msg = fkm_ctx_last_error(f.ctx);
#ifdef FKM_TEST_HAVE_MPI
  EXPECT_EQ(s, FKM_ERR_INVALID_ARG);
  EXPECT_NE(msg.find("MPI is not initialised"), std::string::npos) << msg;
#else
  EXPECT_EQ(s, FKM_ERR_UNSUPPORTED);
  EXPECT_NE(msg.find("built without MPI"), std::string::npos) << msg;
#endif
  int rank = -1, size = -1;
  EXPECT_EQ(fkm_ctx_comm_rank(f.ctx, &rank, &size), FKM_OK);
  EXPECT_EQ(rank, 0);
  EXPECT_EQ(size, 1);
  EXPECT_EQ(fkm_ctx_set_mpi_comm(nullptr, 0), FKM_ERR_INVALID_ARG);
  EXPECT_EQ(fkm_ctx_comm_rank(f.ctx, nullptr, &size), FKM_ERR_INVALID_ARG);
  EXPECT_EQ(fkm_ctx_set_mpi_comm(f.ctx, FKM_NO_COMM), FKM_OK); /* none: always fine */
  f.expect_untouched();
  f.expect_still_works();
}

TEST(BadInput, KMustBePositive) { Fixture f; expect_error(f, f.train(N, D, 0), FKM_ERR_INVALID_ARG, "k = 0"); }
TEST(BadInput, NMustBeAtLeastK) { Fixture f; expect_error(f, f.train(3, D, K), FKM_ERR_INVALID_ARG, "n = 3"); }
TEST(BadInput, DMustBePositive) { Fixture f; expect_error(f, f.train(N, 0, K), FKM_ERR_INVALID_ARG, "d = 0"); }

TEST(BadInput, NullX) {
  Fixture f;
  fkm_status s = fkm_train(f.ctx, &f.p, N, D, K, FKM_DTYPE_F32, nullptr, nullptr, f.cent.data(), 0,
                           f.lab.data(), f.dis.data(), f.st.data(), 64, &f.nst);
  expect_error(f, s, FKM_ERR_INVALID_ARG, "x is NULL");
}

TEST(BadInput, NullCentroids) {
  Fixture f;
  fkm_status s = fkm_train(f.ctx, &f.p, N, D, K, FKM_DTYPE_F32, f.x.data(), nullptr, nullptr, 0,
                           f.lab.data(), f.dis.data(), f.st.data(), 64, &f.nst);
  expect_error(f, s, FKM_ERR_INVALID_ARG, "centroids is NULL");
}

TEST(BadInput, NullParams) {
  Fixture f;
  fkm_status s = fkm_train(f.ctx, nullptr, N, D, K, FKM_DTYPE_F32, f.x.data(), nullptr,
                           f.cent.data(), 0, f.lab.data(), f.dis.data(), f.st.data(), 64, &f.nst);
  expect_error(f, s, FKM_ERR_INVALID_ARG, "params is NULL");
}

TEST(BadInput, NullContextIsRejected) {
  Fixture f;
  EXPECT_EQ(fkm_train(nullptr, &f.p, N, D, K, FKM_DTYPE_F32, f.x.data(), nullptr, f.cent.data(),
                      0, nullptr, nullptr, nullptr, 0, nullptr), FKM_ERR_INVALID_ARG);
  f.expect_untouched();
}

TEST(BadInput, UninitialisedParamsStructSize) {
  Fixture f;
  f.p.struct_size = 3;
  expect_error(f, f.train(), FKM_ERR_INVALID_ARG, "struct_size");
}

TEST(BadInput, NaNInX) {
  Fixture f;
  f.x[17 * D + 2] = NAN;
  expect_error(f, f.train(), FKM_ERR_NOT_FINITE, "x contains NaN or Inf at row 17, column 2");
}

TEST(BadInput, InfInXIsAcceptedWhenFiniteCheckIsOff) {
  Fixture f;
  f.x[5] = INFINITY;
  f.p.check_finite = 0;
  // Inf makes |x|^2 infinite: that row has no finite distance at all.
  expect_error(f, f.train(), FKM_ERR_NUMERIC, "training set row 1 has no finite distance");
}

TEST(BadInput, BatchedRowWithoutFiniteDistanceNamesItsProblem) {
  Fixture f;
  f.p.check_finite = 0;
  f.x[(N / 2 + 7) * D] = INFINITY;  // problem 1, row 7
  std::vector<float> cent(2 * K * D);
  fkm_status s = fkm_train_batched(f.ctx, &f.p, 2, N / 2, D, K, FKM_DTYPE_F32, f.x.data(), nullptr,
                                   cent.data(), 0, f.lab.data(), f.dis.data(), f.st.data(), 64,
                                   &f.nst);
  expect_error(f, s, FKM_ERR_NUMERIC, "training set of problem 1, row 7 has no finite distance");
}

TEST(BadInput, NegativeWeight) {
  Fixture f;
  f.w[9] = -1.0f;
  expect_error(f, f.train(N, D, K, 0, f.w.data()), FKM_ERR_INVALID_ARG, "weights[9]");
}

TEST(BadInput, NonFiniteWeight) {
  Fixture f;
  f.w[11] = NAN;
  expect_error(f, f.train(N, D, K, 0, f.w.data()), FKM_ERR_NOT_FINITE, "weights[11]");
}

TEST(BadInput, TooManyInitialCentroids) {
  Fixture f;
  expect_error(f, f.train(N, D, K, K + 1), FKM_ERR_INVALID_ARG, "n_init = 6");
}

TEST(BadInput, NonFiniteInitialCentroid) {
  Fixture f;
  f.cent[D + 1] = INFINITY;  // row 1 of the 2 initial rows
  for (size_t i = 0; i < 2 * D; i++) if (i != D + 1) f.cent[i] = 42.0f;
  fkm_status s = f.train(N, D, K, 2);
  EXPECT_EQ(f.cent[D + 1], INFINITY);
  f.cent[D + 1] = 42.0f;  // restore so that "untouched" compares the rest
  expect_error(f, s, FKM_ERR_NOT_FINITE, "initial centroids contains NaN or Inf at row 1");
}

TEST(BadInput, NegativeNiter) { Fixture f; f.p.niter = -1; expect_error(f, f.train(), FKM_ERR_INVALID_ARG, "niter"); }
TEST(BadInput, ZeroNredo) { Fixture f; f.p.nredo = 0; expect_error(f, f.train(), FKM_ERR_INVALID_ARG, "nredo"); }
TEST(BadInput, ZeroMaxPointsPerCentroid) {
  Fixture f;
  f.p.max_points_per_centroid = 0;
  expect_error(f, f.train(), FKM_ERR_INVALID_ARG, "max_points_per_centroid");
}
TEST(BadInput, UnknownMetric) {
  Fixture f;
  f.p.metric = (fkm_metric)7;
  expect_error(f, f.train(), FKM_ERR_INVALID_ARG, "metric");
}
TEST(BadInput, UnknownDtype) {
  Fixture f;
  fkm_status s = fkm_train(f.ctx, &f.p, N, D, K, (fkm_dtype)9, f.x.data(), nullptr, f.cent.data(),
                           0, f.lab.data(), f.dis.data(), f.st.data(), 64, &f.nst);
  expect_error(f, s, FKM_ERR_INVALID_ARG, "dtype");
}
TEST(BadInput, FastModeNeedsHalfData) {
  Fixture f;
  f.p.assign_mode = FKM_ASSIGN_FAST;
  expect_error(f, f.train(), FKM_ERR_INVALID_ARG, "FKM_ASSIGN_FAST");
}
TEST(BadInput, FastModeIsNotOnTheCpu) {
  Fixture f;
  f.p.assign_mode = FKM_ASSIGN_FAST;
  std::vector<uint16_t> h(N * D, 0x3c00);
  fkm_status s = fkm_train(f.ctx, &f.p, N, D, K, FKM_DTYPE_F16, h.data(), nullptr, f.cent.data(),
                           0, f.lab.data(), f.dis.data(), f.st.data(), 64, &f.nst);
  expect_error(f, s, FKM_ERR_UNSUPPORTED, "CUDA backend only");
}
TEST(BadInput, StatsNullWithCapacity) {
  Fixture f;
  fkm_status s = fkm_train(f.ctx, &f.p, N, D, K, FKM_DTYPE_F32, f.x.data(), nullptr,
                           f.cent.data(), 0, f.lab.data(), f.dis.data(), nullptr, 4, &f.nst);
  expect_error(f, s, FKM_ERR_INVALID_ARG, "stats is NULL");
}
TEST(BadInput, AssignWithoutOutputs) {
  Fixture f;
  fkm_status s = fkm_assign(f.ctx, &f.p, N, D, K, FKM_DTYPE_F32, f.x.data(), f.cent.data(),
                            nullptr, nullptr);
  expect_error(f, s, FKM_ERR_INVALID_ARG, "both NULL");
}
TEST(BadInput, AssignNaNCentroid) {
  Fixture f;
  std::vector<float> c(K * D, 1.0f);
  c[3] = NAN;
  fkm_status s = fkm_assign(f.ctx, &f.p, N, D, K, FKM_DTYPE_F32, f.x.data(), c.data(),
                            f.lab.data(), f.dis.data());
  expect_error(f, s, FKM_ERR_NOT_FINITE, "centroids contains NaN");
}
TEST(BadInput, BatchedNegativeBatch) {
  Fixture f;
  fkm_status s = fkm_train_batched(f.ctx, &f.p, -1, N, D, K, FKM_DTYPE_F32, f.x.data(), nullptr,
                                   f.cent.data(), 0, f.lab.data(), f.dis.data(), f.st.data(), 64,
                                   &f.nst);
  expect_error(f, s, FKM_ERR_INVALID_ARG, "batch = -1");
}

TEST(BadInput, CudaBackendWithoutDeviceIsAStatus) {
  fkm_ctx* ctx = reinterpret_cast<fkm_ctx*>(0x1);
  fkm_status s = fkm_ctx_create(FKM_BACKEND_CUDA, 0, &ctx);
  if (s == FKM_OK) {
    fkm_ctx_destroy(ctx);
    GTEST_SKIP() << "a CUDA device is present";
  }
  EXPECT_TRUE(s == FKM_ERR_UNSUPPORTED || s == FKM_ERR_NO_DEVICE) << fkm_status_string(s);
  EXPECT_EQ(ctx, nullptr);
}

TEST(Errors, ProgressCallbackInterruptsCleanly) {
  Fixture f;
  int calls = 0;
  f.p.niter = 10;
  f.p.progress = [](void* u, int, int it, const fkm_iteration_stats*) {
    ++*static_cast<int*>(u);
    return it == 2 ? 1 : 0;
  };
  f.p.progress_user = &calls;
  expect_error(f, f.train(), FKM_ERR_INTERRUPTED, "after iteration 2");
  EXPECT_EQ(calls, 3);
}

// Issue 19, finding 3: a thread count the machine cannot run was accepted,
// and libgomp ended the process at the next train; it is refused when set.
TEST(BadInput, ThreadCountAboveWhatTheMachineRuns) {
  Fixture f;
  for (int n : {100000, 1 << 30, INT32_MAX}) {
    EXPECT_EQ(fkm_ctx_set_num_threads(f.ctx, n), FKM_ERR_INVALID_ARG) << n;
    std::string msg = fkm_ctx_last_error(f.ctx);
    EXPECT_NE(msg.find("more threads than this machine runs"), std::string::npos) << msg;
    f.expect_untouched();
    f.expect_still_works();
  }
  // the largest count allowed is named, and runs
  ASSERT_EQ(fkm_ctx_set_num_threads(f.ctx, 100000), FKM_ERR_INVALID_ARG);
  std::string msg = fkm_ctx_last_error(f.ctx);
  size_t at = msg.find("at most ");
  ASSERT_NE(at, std::string::npos) << msg;
  int limit = std::atoi(msg.c_str() + at + 8);
  ASSERT_GE(limit, 1) << msg;
  EXPECT_EQ(fkm_ctx_set_num_threads(f.ctx, limit + 1), FKM_ERR_INVALID_ARG);
  ASSERT_EQ(fkm_ctx_set_num_threads(f.ctx, limit), FKM_OK);
  f.expect_still_works();
  EXPECT_EQ(fkm_ctx_set_num_threads(f.ctx, -1), FKM_ERR_INVALID_ARG);
}

// Issue 19, finding 8: niter = 2^31 - 1 (with early stopping: "until it
// converges") asked for statistics of every possible iteration up front
// and failed for memory; they now grow with the iterations run.
TEST(Errors, HugeNiterStopsEarlyWithTheStatisticsOfTheIterationsRun) {
  Fixture f;
  ASSERT_EQ(fkm_profile_parse("faiss-1.15.1-avx2", &f.p.profile), FKM_OK);
  f.p.early_stop_threshold = 0.0;
  f.p.niter = INT32_MAX;
  ASSERT_EQ(f.train(), FKM_OK) << fkm_ctx_last_error(f.ctx);
  ASSERT_GE(f.nst, 2);
  ASSERT_LT(f.nst, (int64_t)f.st.size());
  EXPECT_EQ(f.st[f.nst - 1].obj, f.st[f.nst - 2].obj);  // stopped: unchanged objective
  // more iterations than the first statistics block (64), recorded whole
  std::vector<fkm_iteration_stats> many(1000);
  std::vector<float> c(K * D);
  fkm_params p;
  fkm_params_init(&p);
  p.niter = 300;
  p.nredo = 2;
  int64_t got = 0;
  ASSERT_EQ(fkm_train(f.ctx, &p, N, D, K, FKM_DTYPE_F32, f.x.data(), nullptr, c.data(), 0,
                      nullptr, nullptr, many.data(), (int64_t)many.size(), &got),
            FKM_OK);
  EXPECT_GE(got, 300);  // the best redo's statistics include the redos before it
  EXPECT_LE(got, 600);
  for (int64_t i = 0; i < got; i++) ASSERT_GT(many[i].obj, 0.0f) << i;
}

// Issue 19, finding 7: the seed's arithmetic at the int64 extremes (a
// signed overflow before; the sanitizer build runs this test).
TEST(Errors, SeedsAtTheIntegerExtremesTrain) {
  for (int64_t seed : {INT64_MAX, INT64_MIN, (int64_t)-1, (int64_t)0, (int64_t)INT32_MAX}) {
    Fixture f;
    f.p.seed = seed;
    f.p.nredo = 3;
    ASSERT_EQ(f.train(), FKM_OK) << seed << ": " << fkm_ctx_last_error(f.ctx);
    ASSERT_EQ(fkm_profile_parse("faiss-1.15.1-avx2", &f.p.profile), FKM_OK);
    f.p.seed = seed & 0x7fffffff;  // negative seeds take the clock from FAISS 1.9 on
    f.p.init_method = FKM_INIT_KMEANS_PLUS_PLUS;
    f.p.use_faster_subsampling = 1;
    f.p.max_points_per_centroid = 20;  // subsample
    ASSERT_EQ(f.train(), FKM_OK) << seed << ": " << fkm_ctx_last_error(f.ctx);
  }
}

// Found by the api fuzzer: fkm_profile_init (and fkm_profile_parse through
// it) zeroed its output before refusing an unknown release.
TEST(BadInput, UnknownProfileLeavesTheOutputUntouched) {
  fkm_profile p;
  std::memset(&p, 0x5a, sizeof p);
  EXPECT_EQ(fkm_profile_init(&p, 10804, FKM_SIMD_AVX2), FKM_ERR_UNSUPPORTED);
  EXPECT_EQ(fkm_profile_parse("faiss-1.16.0-avx2", &p), FKM_ERR_UNSUPPORTED);
  EXPECT_EQ(fkm_profile_init(&p, 11501, (fkm_simd)7), FKM_ERR_INVALID_ARG);
  const unsigned char* b = reinterpret_cast<const unsigned char*>(&p);
  for (size_t i = 0; i < sizeof p; i++) ASSERT_EQ(b[i], 0x5a) << i;
}

TEST(Errors, StatusStringsAreStaticAndDistinct) {
  std::vector<std::string> seen;
  for (int s = 0; s <= FKM_ERR_INTERNAL; s++) {
    const char* t = fkm_status_string((fkm_status)s);
    ASSERT_NE(t, nullptr);
    for (auto& o : seen) EXPECT_NE(o, t);
    seen.push_back(t);
  }
  EXPECT_STREQ(fkm_status_string(FKM_OK), "success");
  EXPECT_EQ((int)FKM_ERR_INVALID_ARG, 1);
  EXPECT_EQ((int)FKM_ERR_INTERNAL, 10);
}

TEST(Errors, VersionMatchesHeader) {
  EXPECT_EQ(fkm_version(), (unsigned)FKM_VERSION_NUMBER);
  EXPECT_STREQ(fkm_version_string(), "0.3.0");
  fkm_ctx_destroy(nullptr);  // accepted
}

}  // namespace

// fkm_pq_encode's refusals: a status naming the argument, no code written.
namespace {

struct PqInput {
  int64_t n = 20, d = 8, M = 2, nlist = 3;
  int nbits = 4;
  std::vector<float> x = fixtures::blobs(20, 8, 2, 9);
  std::vector<float> pq = std::vector<float>(size_t(2 * 16 * 4), 0.5f);
  std::vector<float> coarse = std::vector<float>(size_t(3 * 8), 0.25f);
  std::vector<int64_t> lists = std::vector<int64_t>(20, 1);
  std::vector<uint8_t> codes = std::vector<uint8_t>(size_t(20 * 1), 0xAB);
};

void expect_pq_refused(PqInput& in, fkm_status want, const char* needle,
                       std::function<fkm_status(fkm_ctx*, fkm_params*, PqInput&)> call) {
  Fixture f;
  EXPECT_EQ(call(f.ctx, &f.p, in), want);
  const std::string msg = fkm_ctx_last_error(f.ctx);
  EXPECT_NE(msg.find(needle), std::string::npos) << "message: " << msg;
  for (uint8_t b : in.codes) ASSERT_EQ(b, 0xAB);
  f.expect_still_works();
}

fkm_status pq_call(fkm_ctx* ctx, fkm_params* p, PqInput& in) {
  return fkm_pq_encode(ctx, p, in.n, in.d, in.M, in.nbits, in.x.data(), in.pq.data(), in.nlist,
                       in.coarse.data(), in.lists.data(), in.codes.data());
}

}  // namespace

TEST(BadInput, PqEncodeArguments) {
  {
    PqInput in;
    in.M = 3;
    expect_pq_refused(in, FKM_ERR_INVALID_ARG, "M must be >= 1 and divide d", pq_call);
  }
  {
    PqInput in;
    in.d = 32;
    in.M = 2;
    in.x.resize(size_t(20 * 32));
    expect_pq_refused(in, FKM_ERR_UNSUPPORTED, "d / M = 16", pq_call);
  }
  for (int nbits : {0, 17}) {
    PqInput in;
    in.nbits = nbits;
    expect_pq_refused(in, FKM_ERR_INVALID_ARG, "nbits", pq_call);
  }
  {
    PqInput in;
    expect_pq_refused(in, FKM_ERR_INVALID_ARG, "coarse and lists go together",
                      [](fkm_ctx* c, fkm_params* p, PqInput& i) {
                        return fkm_pq_encode(c, p, i.n, i.d, i.M, i.nbits, i.x.data(),
                                             i.pq.data(), i.nlist, i.coarse.data(), nullptr,
                                             i.codes.data());
                      });
  }
  {
    PqInput in;
    in.nlist = 0;
    expect_pq_refused(in, FKM_ERR_INVALID_ARG, "nlist = 0", pq_call);
  }
  {
    PqInput in;
    in.x[size_t(5 * 8 + 6)] = NAN;
    expect_pq_refused(in, FKM_ERR_NOT_FINITE, "x contains NaN or Inf at row 5, column 6",
                      pq_call);
  }
  {
    PqInput in;
    in.pq[size_t(17 * 4 + 1)] = INFINITY;
    expect_pq_refused(in, FKM_ERR_NOT_FINITE, "pq_centroids contains NaN or Inf at row 17",
                      pq_call);
  }
  {
    PqInput in;
    in.lists[12] = 3;
    expect_pq_refused(in, FKM_ERR_INVALID_ARG, "lists[12] = 3 is outside [0, nlist = 3)",
                      pq_call);
  }
}
