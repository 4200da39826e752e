// Distributed runs (docs/distributed.md), run under mpiexec with 1 to 4
// ranks: every rank passes its own rows of x and must get the centroids and
// statistics of the one-process run on the whole x, bit for bit, and the
// labels and distances of its rows; a failure on one rank is every rank's.
// Every rank runs every test (the runs are collective); a test fails on
// rank 0 when it failed on any rank.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "source_cases.h"

namespace {

int g_rank = 0, g_size = 1;
/* FKM_TEST_BACKEND=cuda: the distributed runs on CUDA contexts (one GPU
 * shared by the ranks), against one process on the CPU engine; without a
 * usable device every test skips. */
bool g_cuda = false, g_no_device = false;

struct Ctx {
  fkm_ctx *c = nullptr;
  explicit Ctx(bool distributed) {
    EXPECT_EQ(fkm_ctx_create(distributed && g_cuda ? FKM_BACKEND_CUDA : FKM_BACKEND_CPU, 0, &c),
              FKM_OK);
    if (distributed) {
      EXPECT_EQ(fkm_ctx_set_mpi_comm(c, MPI_Comm_c2f(MPI_COMM_WORLD)), FKM_OK)
          << fkm_ctx_last_error(c);
    }
  }
  ~Ctx() { fkm_ctx_destroy(c); }
};

// Every test ends by asking every rank whether it failed.
class Ranks : public ::testing::Test {
 protected:
  void SetUp() override {
    if (g_no_device) GTEST_SKIP() << "FKM_TEST_BACKEND=cuda and no usable CUDA device";
  }
  void TearDown() override {
    int mine = HasFailure() ? 1 : 0, any = 0;
    MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (any && !mine) ADD_FAILURE() << "another rank failed this test (its output above)";
  }
};

// How the ranks split x's n rows: [lo, hi) of this rank.
enum class Split { Even, Uneven, OneRankHoldsAll, Blocks64 };

const char *name(Split s) {
  switch (s) {
    case Split::Even: return "even";
    case Split::Uneven: return "uneven";
    case Split::OneRankHoldsAll: return "one_rank_holds_all";
    case Split::Blocks64: return "blocks_of_64";
  }
  return "?";
}

void shard(Split s, int64_t n, int rank, int size, int64_t *lo, int64_t *hi) {
  auto cut = [&](int r) -> int64_t {
    switch (s) {
      case Split::Even: return n * r / size;
      case Split::Uneven: {  // rank 1 empty, the others 1 : 3 : 2 ...
        if (r == 0) return 0;
        if (r >= size) return n;
        const int64_t w[] = {1, 0, 3, 2};
        int64_t tot = 0, upto = 0;
        for (int i = 0; i < size; i++) tot += w[i % 4];
        for (int i = 0; i < r; i++) upto += w[i % 4];
        return n * upto / tot;
      }
      case Split::OneRankHoldsAll: return r == size ? n : 0;  // the last rank
      case Split::Blocks64: {  // whole query blocks of 64 rows
        const int64_t blocks = (n + 63) / 64, at = blocks * r / size * 64;
        return at < n ? at : n;
      }
    }
    return 0;
  };
  *lo = cut(rank);
  *hi = cut(rank + 1);
}

// A BLAS whose sums depend on the block (OpenBLAS's can: they depend on the
// block's row count there too): each dot product starts at term
// n mod 37 of its d terms (n the query block's rows: FAISS passes the
// centroids as m) and wraps around. FAISS's
// search with it gives distances that depend on where its query blocks
// start; a distributed run must cut the training order at the same block
// boundaries, and ranks whose rows are whole blocks give one process's
// labels.
int block_sgemm(const char *, const char *, int *m, int *n, int *k, const float *,
                const float *a, int *lda, const float *b, int *ldb, float *, float *c,
                int *ldc) {
  const int start = *n % 37 % *k;
  for (int j = 0; j < *n; j++)
    for (int i = 0; i < *m; i++) {
      const float *x = a + (size_t)i * *lda, *y = b + (size_t)j * *ldb;
      float acc = 0.0f;
      for (int u = 0; u < *k; u++) {
        const int t = (start + u) % *k;
        acc = std::fmaf(x[t], y[t], acc);
      }
      c[(size_t)j * *ldc + i] = acc;
    }
  return 0;
}

struct Case {
  source_cases::Case k;
  Split split;
  bool caller_blas = false;
  bool faster_subsampling = false; /* SplitMix64 rows: a row may be drawn twice */
  double early_stop = -1.0;
};

std::string case_name(const Case &c) {
  std::string s = source_cases::case_name(c.k) + "_" + name(c.split);
  if (c.faster_subsampling) s += "_faster_subsampling";
  if (c.early_stop >= 0) s += "_early_stop";
  return c.caller_blas ? s + "_caller_blas" : s;
}

void PrintTo(const Case &c, std::ostream *os) { *os << case_name(c); }

// The data-path table (tests/source_cases.h: weights, redo, frozen and
// initial rows, inner product, subsampling, splits, float16, seeding on the
// host, FAISS profiles) delivered as a matrix, a source at a stride and a
// callback, over each split.
std::vector<Case> cases() {
  std::vector<Case> v;
  for (const source_cases::Case &k : source_cases::cases()) {
    if (k.delivery == source_cases::Delivery::CallbackBudget) continue;
    for (Split s : {Split::Even, Split::Uneven}) v.push_back({k, s});
    if (k.delivery == source_cases::Delivery::Budget)
      v.push_back({k, Split::OneRankHoldsAll});
  }
  /* d = 40: the BLAS path (above the fused kernels' d) */
  source_cases::Case blas{{"subsampled_blocks", 1, 3000, 40, 12}, source_cases::Delivery::Budget};
  blas.c.max_points_per_centroid = 150;
  source_cases::Case all{{"every_row_blocks", 1, 1000, 40, 6}, source_cases::Delivery::Callback};
  all.c.metric = FKM_METRIC_INNER_PRODUCT;
  /* ranks of whole blocks, and ranks that cut blocks (whose rows are then
   * searched by the rank where their block starts) */
  for (Split s : {Split::Blocks64, Split::Even, Split::Uneven}) {
    v.push_back({blas, s, true});
    v.push_back({all, s, true});
  }
  /* rows drawn with replacement: a row that is twice in the training set
   * travels twice */
  source_cases::Case dup{{"duplicate_draws", 1, 900, 6, 10}, source_cases::Delivery::Callback};
  dup.c.max_points_per_centroid = 60;
  dup.c.niter = 6;
  for (Split s : {Split::Even, Split::Uneven}) v.push_back({dup, s, false, true});
  /* every rank stops at the same iteration */
  source_cases::Case early{{"early_stop", 1, 2000, 5, 7}, source_cases::Delivery::Budget};
  early.c.niter = 60;
  early.c.nredo = 2;
  for (Split s : {Split::Even, Split::Uneven}) v.push_back({early, s, false, false, 1e-3});
  return v;
}

fkm_params params_of(const Case &c) {
  fkm_params p = source_cases::params(c.k);
  if (c.caller_blas) p.blas_sgemm = block_sgemm;
  p.use_faster_subsampling = c.faster_subsampling;
  p.early_stop_threshold = c.early_stop;
  return p;
}

// The rows [lo, hi) through the case's delivery ("budget" is the matrix in
// core here: a distributed run holds its rows). Labels and distances are
// this rank's.
batched::Out run_rows(fkm_ctx *ctx, const Case &cs, const batched::Data &s, int64_t lo,
                      int64_t hi) {
  const batched::Case &c = cs.k.c;
  batched::Out o = batched::fresh(c, s);
  o.labels.assign(hi - lo, -3);
  o.distances.assign(hi - lo, -5.0f);
  const fkm_params p = params_of(cs);
  const size_t es = c.dtype == FKM_DTYPE_F32 ? 4 : 2, row = es * c.d;
  const char *x = static_cast<const char *>(batched::xptr(c, s, 0)) + row * lo;
  const float *w = s.w.empty() ? nullptr : s.w.data() + lo;
  const int64_t n = hi - lo;
  if (cs.k.delivery == source_cases::Delivery::Budget) {
    o.status = fkm_train(ctx, &p, n, c.d, c.k, c.dtype, x, w, o.centroids.data(), c.n_init,
                         o.labels.data(), o.distances.data(), o.stats.data(), o.cap,
                         o.n_stats.data());
  } else {
    fkm_source src;
    std::vector<char> padded;
    source_cases::Rows rows{x, row};
    if (cs.k.delivery == source_cases::Delivery::HostStride) {
      const size_t stride = row + 24;
      padded.assign(stride * n + 24, '\x7f');
      for (int64_t i = 0; i < n; i++) std::memcpy(padded.data() + 24 + stride * i, x + row * i, row);
      EXPECT_EQ(fkm_source_host(&src, padded.data() + 24, n, c.d, c.dtype, (int64_t)stride),
                FKM_OK);
    } else {
      EXPECT_EQ(fkm_source_callback(&src, n, c.d, c.dtype, source_cases::read_rows, &rows),
                FKM_OK);
    }
    o.status = fkm_train_source(ctx, &p, &src, c.k, w, o.centroids.data(), c.n_init,
                                o.labels.data(), o.distances.data(), o.stats.data(), o.cap,
                                o.n_stats.data());
  }
  o.error = fkm_ctx_last_error(ctx);
  return o;
}

class Distributed : public Ranks, public ::testing::WithParamInterface<Case> {};

TEST_P(Distributed, EqualsOneProcess) {
  const Case &cs = GetParam();
  if (g_cuda && cs.caller_blas) /* the CUDA engine keeps its own order (fkm_params.blas_sgemm) */
    GTEST_SKIP() << "the caller's BLAS is the CPU engine's";
  const batched::Case &c = cs.k.c;
  const batched::Data s = batched::make(c);
  int64_t lo, hi;
  shard(cs.split, c.n, g_rank, g_size, &lo, &hi);
  batched::Out want, got;
  {
    Ctx one(false);
    want = run_rows(one.c, cs, s, 0, c.n);
  }
  {
    Ctx ranks(true);
    got = run_rows(ranks.c, cs, s, lo, hi);
  }
  // this rank's rows of the one-process labels and distances
  want.labels = std::vector<int64_t>(want.labels.begin() + lo, want.labels.begin() + hi);
  want.distances = std::vector<float>(want.distances.begin() + lo, want.distances.begin() + hi);
  batched::Case mine = c;
  mine.n = hi - lo;
  batched::expect_equal(mine, got, want);
  if (cs.early_stop >= 0) { /* the case stops early, or it tests nothing */
    EXPECT_LT(want.n_stats[0], (int64_t)c.niter * c.nredo) << "no early stop";
  }
}

INSTANTIATE_TEST_SUITE_P(Cpu, Distributed, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case> &i) { return case_name(i.param); });

// ---------------------------------------------------------------- failures

struct Plain {
  batched::Case c{"plain", 1, 700, 5, 9};
  batched::Data s = batched::make(c);
  int64_t lo = 0, hi = 0;
  Plain() { shard(Split::Even, c.n, g_rank, g_size, &lo, &hi); }
  /* this rank's rows */
  fkm_status train(fkm_ctx *ctx, const fkm_params &p, const float *x, std::string *msg) {
    return train_rows(ctx, p, x, msg, lo, hi);
  }
  fkm_status train_rows(fkm_ctx *ctx, const fkm_params &p, const float *x, std::string *msg,
                        int64_t from, int64_t to) {
    std::vector<float> cent(c.k * c.d);
    std::vector<int64_t> lab(to - from, -3);
    const fkm_status st = fkm_train(ctx, &p, to - from, c.d, c.k, FKM_DTYPE_F32, x + from * c.d,
                                    nullptr, cent.data(), 0, lab.data(), nullptr, nullptr, 0,
                                    nullptr);
    *msg = fkm_ctx_last_error(ctx);
    return st;
  }
};

using DistributedErrors = Ranks;

// A NaN in one rank's rows: every rank fails with the message of one
// process on the whole x (the row's index in the whole x).
TEST_F(DistributedErrors, ABadRowOnOneRankFailsEveryRankWithItsGlobalIndex) {
  Plain t;
  std::vector<float> x = t.s.x;
  x[(t.c.n - 3) * t.c.d + 2] = NAN; /* the last rank's */
  x[(t.c.n - 2) * t.c.d + 1] = INFINITY;
  fkm_params p = batched::params(t.c);
  std::string one, dist;
  {
    Ctx ctx(false);
    EXPECT_EQ(t.train_rows(ctx.c, p, x.data(), &one, 0, t.c.n), FKM_ERR_NOT_FINITE);
  }
  Ctx ctx(true);
  EXPECT_EQ(t.train(ctx.c, p, x.data(), &dist), FKM_ERR_NOT_FINITE);
  EXPECT_EQ(dist, one);
  EXPECT_NE(dist.find("row 697, column 2"), std::string::npos) << dist;
}

int fail_on_last_rank(void *user, const int64_t *rows, int64_t count, void *dst) {
  if (g_size > 1 && g_rank == g_size - 1) return 5;
  return source_cases::read_rows(user, rows, count, dst);
}

// A source whose callback fails on one rank: every rank returns
// FKM_ERR_SOURCE with that rank's message.
TEST_F(DistributedErrors, ASourceThatFailsOnOneRankFailsEveryRank) {
  Plain t;
  const fkm_params p = batched::params(t.c);
  source_cases::Rows rows{reinterpret_cast<const char *>(t.s.x.data() + t.lo * t.c.d),
                          sizeof(float) * t.c.d};
  fkm_source src;
  ASSERT_EQ(fkm_source_callback(&src, t.hi - t.lo, t.c.d, FKM_DTYPE_F32, fail_on_last_rank,
                                &rows),
            FKM_OK);
  std::vector<float> cent(t.c.k * t.c.d, 42.0f);
  Ctx ctx(true);
  const fkm_status st = fkm_train_source(ctx.c, &p, &src, t.c.k, nullptr, cent.data(), 0,
                                         nullptr, nullptr, nullptr, 0, nullptr);
  if (g_size == 1) {
    EXPECT_EQ(st, FKM_OK) << fkm_ctx_last_error(ctx.c);
  } else {
    EXPECT_EQ(st, FKM_ERR_SOURCE) << fkm_ctx_last_error(ctx.c);
    EXPECT_NE(std::string(fkm_ctx_last_error(ctx.c)).find("5"), std::string::npos)
        << fkm_ctx_last_error(ctx.c);
    for (float v : cent) ASSERT_EQ(v, 42.0f) << "an output was written";
  }
}

// A rank whose run of the training set does not fit params.memory_budget
// (a distributed run holds each rank's rows): every rank fails, nothing is
// written. One rank only sets the budget: a per-rank limit, not a parameter
// every rank must share.
TEST_F(DistributedErrors, ARankWhoseRowsDoNotFitItsBudgetFailsEveryRank) {
  Plain t;
  fkm_params p = batched::params(t.c);
  if (g_rank == g_size - 1) p.memory_budget = 4096;
  std::vector<float> cent(t.c.k * t.c.d, 42.0f);
  Ctx ctx(true);
  const fkm_status st =
      fkm_train(ctx.c, &p, t.hi - t.lo, t.c.d, t.c.k, FKM_DTYPE_F32, t.s.x.data() + t.lo * t.c.d,
                nullptr, cent.data(), 0, nullptr, nullptr, nullptr, 0, nullptr);
  EXPECT_EQ(st, FKM_ERR_OUT_OF_MEMORY) << fkm_ctx_last_error(ctx.c);
  const std::string msg = fkm_ctx_last_error(ctx.c);
  EXPECT_NE(msg.find("rank " + std::to_string(g_size - 1)), std::string::npos) << msg;
  for (float v : cent) ASSERT_EQ(v, 42.0f) << "an output was written";
}

// A NaN in the initial rows: every rank fails with one process's message.
TEST_F(DistributedErrors, ABadInitialRowFailsEveryRankAsOneProcess) {
  Plain t;
  const fkm_params p = batched::params(t.c);
  std::vector<float> init(t.c.k * t.c.d, 1.0f);
  init[1 * t.c.d + 3] = NAN;
  std::string one, dist;
  for (int distributed = 0; distributed < 2; distributed++) {
    Ctx ctx(distributed == 1);
    std::vector<float> cent = init;
    const int64_t lo = distributed ? t.lo : 0, hi = distributed ? t.hi : t.c.n;
    EXPECT_EQ(fkm_train(ctx.c, &p, hi - lo, t.c.d, t.c.k, FKM_DTYPE_F32,
                        t.s.x.data() + lo * t.c.d, nullptr, cent.data(), 2, nullptr, nullptr,
                        nullptr, 0, nullptr),
              FKM_ERR_NOT_FINITE);
    (distributed ? dist : one) = fkm_ctx_last_error(ctx.c);
  }
  EXPECT_EQ(dist, one);
  EXPECT_NE(dist.find("initial centroids"), std::string::npos) << dist;
}

TEST_F(DistributedErrors, ParametersThatDifferAcrossRanksAreRefusedOnEveryRank) {
  Plain t;
  fkm_params p = batched::params(t.c);
  if (g_rank == g_size - 1) p.niter = 7;
  std::string msg;
  Ctx ctx(true);
  const fkm_status st = t.train(ctx.c, p, t.s.x.data(), &msg);
  if (g_size == 1) {
    EXPECT_EQ(st, FKM_OK) << msg;
  } else {
    EXPECT_EQ(st, FKM_ERR_INVALID_ARG);
    EXPECT_NE(msg.find("params->niter is 7 and rank 0's is 4"), std::string::npos) << msg;
  }
}

int stop_on_last_rank(void *, int, int iteration, const fkm_iteration_stats *) {
  return g_rank == g_size - 1 && iteration == 1;
}

TEST_F(DistributedErrors, AProgressCallbackThatStopsOneRankStopsEveryRank) {
  Plain t;
  fkm_params p = batched::params(t.c);
  p.progress = stop_on_last_rank;
  std::string msg;
  Ctx ctx(true);
  EXPECT_EQ(t.train(ctx.c, p, t.s.x.data(), &msg), FKM_ERR_INTERRUPTED);
  EXPECT_NE(msg.find("after iteration 1 of redo 0"), std::string::npos) << msg;
}

TEST_F(DistributedErrors, HandlesThatAreNoCommunicatorAreRefused) {
  Ctx ctx(false);
  EXPECT_EQ(fkm_ctx_set_mpi_comm(ctx.c, MPI_Comm_c2f(MPI_COMM_NULL)), FKM_ERR_INVALID_ARG);
  EXPECT_NE(std::string(fkm_ctx_last_error(ctx.c)).find("MPI_COMM_NULL"), std::string::npos)
      << fkm_ctx_last_error(ctx.c);
  EXPECT_EQ(fkm_ctx_set_mpi_comm(ctx.c, (int64_t)1 << 40), FKM_ERR_INVALID_ARG);
  EXPECT_NE(std::string(fkm_ctx_last_error(ctx.c)).find("is not an MPI Fortran handle"),
            std::string::npos)
      << fkm_ctx_last_error(ctx.c);
  EXPECT_EQ(fkm_ctx_set_mpi_comm(ctx.c, 1000000), FKM_ERR_INVALID_ARG); /* no such handle */
  EXPECT_NE(std::string(fkm_ctx_last_error(ctx.c)).find("is not the Fortran handle"),
            std::string::npos)
      << fkm_ctx_last_error(ctx.c);
  int rank = -1, size = -1;
  EXPECT_EQ(fkm_ctx_comm_rank(ctx.c, &rank, &size), FKM_OK);
  EXPECT_EQ(size, 1);
}

TEST_F(DistributedErrors, TooFewRowsOverAllRanksAndBatchedRunsAreRefused) {
  Plain t;
  const fkm_params p = batched::params(t.c);
  Ctx ctx(true);
  int rank = -1, size = -1;
  EXPECT_EQ(fkm_ctx_comm_rank(ctx.c, &rank, &size), FKM_OK);
  EXPECT_EQ(rank, g_rank);
  EXPECT_EQ(size, g_size);
  std::vector<float> cent(t.c.k * t.c.d);
  const int64_t n = g_rank == 0 ? t.c.k - 1 : 0; /* k - 1 rows in all */
  EXPECT_EQ(fkm_train(ctx.c, &p, n, t.c.d, t.c.k, FKM_DTYPE_F32, t.s.x.data(), nullptr,
                      cent.data(), 0, nullptr, nullptr, nullptr, 0, nullptr),
            FKM_ERR_INVALID_ARG);
  EXPECT_NE(std::string(fkm_ctx_last_error(ctx.c)).find("over " + std::to_string(g_size) +
                                                        " ranks must be >= k"),
            std::string::npos)
      << fkm_ctx_last_error(ctx.c);
  EXPECT_EQ(fkm_train_batched(ctx.c, &p, 2, t.c.n, t.c.d, t.c.k, FKM_DTYPE_F32, t.s.x.data(),
                              nullptr, cent.data(), 0, nullptr, nullptr, nullptr, 0, nullptr),
            FKM_ERR_UNSUPPORTED);
  /* back to one process */
  EXPECT_EQ(fkm_ctx_set_mpi_comm(ctx.c, FKM_NO_COMM), FKM_OK);
  EXPECT_EQ(fkm_ctx_comm_rank(ctx.c, &rank, &size), FKM_OK);
  EXPECT_EQ(size, 1);
}

// Run alone (ctest's mpi_killed_rank): the last rank dies in the middle of
// a run; every other rank must not hang (mpiexec ends the job, non-zero).
int die_on_last_rank(void *, int, int iteration, const fkm_iteration_stats *) {
  if (g_rank == g_size - 1 && iteration == 1) std::raise(SIGKILL);
  return 0;
}

TEST_F(DistributedErrors, DISABLED_ARankKilledInTheMiddleOfARun) {
  Plain t;
  fkm_params p = batched::params(t.c);
  p.niter = 1000000; /* the others would iterate on: only the job's end stops them */
  p.progress = die_on_last_rank;
  std::string msg;
  Ctx ctx(true);
  t.train(ctx.c, p, t.s.x.data(), &msg);
}

// ---------------------------------------------------------------- the plane

// Which way CUDA ranks pass their chains (docs/distributed.md): the ctest
// entries that set FKM_TEST_EXPECT_PLANE (nccl: a build with NCCL, one rank
// a device; host: FLASHKM_NCCL=0 or ranks sharing a device) check that the
// run said so, and that its centroids are one process's.
TEST_F(Ranks, TheChainsPassTheWayTheRanksAllow) {
  const char *want = std::getenv("FKM_TEST_EXPECT_PLANE");
  if (!want || !g_cuda) GTEST_SKIP() << "only where ctest names the plane (FKM_TEST_EXPECT_PLANE)";
  Plain t;
  fkm_params p = batched::params(t.c);
  std::string log;
  p.verbose = 1;
  p.log_user = &log;
  p.log = [](void *user, fkm_log_level, const char *msg) {
    *static_cast<std::string *>(user) += std::string(msg) + "\n";
  };
  std::string msg;
  std::vector<float> got(t.c.k * t.c.d), one(t.c.k * t.c.d);
  {
    Ctx ranks(true);
    ASSERT_EQ(fkm_train(ranks.c, &p, t.hi - t.lo, t.c.d, t.c.k, FKM_DTYPE_F32,
                        t.s.x.data() + t.lo * t.c.d, nullptr, got.data(), 0, nullptr, nullptr,
                        nullptr, 0, nullptr),
              FKM_OK)
        << fkm_ctx_last_error(ranks.c);
  }
  {
    Ctx single(false);
    p.verbose = 0;
    ASSERT_EQ(fkm_train(single.c, &p, t.c.n, t.c.d, t.c.k, FKM_DTYPE_F32, t.s.x.data(), nullptr,
                        one.data(), 0, nullptr, nullptr, nullptr, 0, nullptr),
              FKM_OK);
  }
  EXPECT_EQ(0, std::memcmp(got.data(), one.data(), sizeof(float) * got.size()));
  if (g_rank == 0) {
    const std::string line = std::string(want) == "nccl" ? "between the devices (NCCL)"
                                                          : "through the hosts (MPI)";
    EXPECT_NE(log.find(line), std::string::npos) << "the log:\n" << log;
  }
}

}  // namespace

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  const char *backend = std::getenv("FKM_TEST_BACKEND");
  g_cuda = backend && std::string(backend) == "cuda";
  if (g_cuda) {
    fkm_ctx *probe = nullptr;
    g_no_device = fkm_ctx_create(FKM_BACKEND_CUDA, 0, &probe) != FKM_OK;
    fkm_ctx_destroy(probe);
  }
  ::testing::InitGoogleTest(&argc, argv);
  if (g_rank != 0) GTEST_FLAG_SET(brief, true); /* other ranks print their failures only */
  const int rc = RUN_ALL_TESTS();
  int any = 0;
  MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return any;
}
