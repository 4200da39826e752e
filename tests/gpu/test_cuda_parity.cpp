// P0 parity of the CUDA engine (docs/contract.md section 9): every output bit of
// fkm_train / fkm_assign on the CUDA backend equals the CPU reference's
// (centroids, labels, distances, stats except times, statuses), over a
// matrix of shapes and adversarial inputs. Every test skips when no CUDA
// device is present (CI has nvcc but no GPU).
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "assign.cuh"
#include "batched_cases.h"
#include "source_cases.h"
#include "compare.h"
#include "fixtures.h"
#include "flashkm.h"

namespace {

fkm_params defaults() {
  fkm_params p;
  fkm_params_init(&p);
  return p;
}

struct Problem {
  int64_t n = 0, d = 0, k = 0;
  fkm_dtype dtype = FKM_DTYPE_F32;
  std::vector<float> x;        // f32 data
  std::vector<uint16_t> x16;   // f16 / bf16 data
  std::vector<float> w;        // empty: no weights
  std::vector<float> init;     // n_init * d
  int64_t n_init = 0;
  const void *data() const { return dtype == FKM_DTYPE_F32 ? (const void *)x.data() : x16.data(); }
};

struct Result {
  fkm_status status = FKM_OK;
  std::vector<float> centroids, distances;
  std::vector<int64_t> labels;
  std::vector<fkm_iteration_stats> stats;
};

// Runs fkm_train with host buffers, or with device copies of every input and
// output when on_device (CUDA backend only).
Result train(fkm_ctx *ctx, const fkm_params &p, const Problem &pb, bool on_device = false) {
  Result r;
  const int64_t n = pb.n, d = pb.d, k = pb.k;
  r.centroids.assign(k * d, -7.f);
  if (pb.n_init) std::memcpy(r.centroids.data(), pb.init.data(), sizeof(float) * pb.n_init * d);
  r.labels.assign(n, -3);
  r.distances.assign(n, -5.f);
  r.stats.resize((size_t)p.niter * p.nredo + 1);
  int64_t ns = -1;
  const size_t xbytes = (size_t)(n * d) * (pb.dtype == FKM_DTYPE_F32 ? 4 : 2);
  if (!on_device) {
    r.status = fkm_train(ctx, &p, n, d, k, pb.dtype, pb.data(), pb.w.empty() ? nullptr : pb.w.data(),
                         r.centroids.data(), pb.n_init, r.labels.data(), r.distances.data(),
                         r.stats.data(), (int64_t)r.stats.size(), &ns);
  } else {
    void *dx = nullptr;
    float *dw = nullptr, *dc = nullptr, *dd = nullptr;
    int64_t *dl = nullptr;
    EXPECT_EQ(cudaMalloc(&dx, xbytes), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(dx, pb.data(), xbytes, cudaMemcpyHostToDevice), cudaSuccess);
    if (!pb.w.empty()) {
      EXPECT_EQ(cudaMalloc((void **)&dw, sizeof(float) * n), cudaSuccess);
      EXPECT_EQ(cudaMemcpy(dw, pb.w.data(), sizeof(float) * n, cudaMemcpyHostToDevice), cudaSuccess);
    }
    EXPECT_EQ(cudaMalloc((void **)&dc, sizeof(float) * k * d), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(dc, r.centroids.data(), sizeof(float) * k * d, cudaMemcpyHostToDevice),
              cudaSuccess);
    // the outputs start as the host's (-3, -5): a failed call must leave them
    EXPECT_EQ(cudaMalloc((void **)&dl, sizeof(int64_t) * n), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(dl, r.labels.data(), sizeof(int64_t) * n, cudaMemcpyHostToDevice),
              cudaSuccess);
    EXPECT_EQ(cudaMalloc((void **)&dd, sizeof(float) * n), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(dd, r.distances.data(), sizeof(float) * n, cudaMemcpyHostToDevice),
              cudaSuccess);
    r.status = fkm_train(ctx, &p, n, d, k, pb.dtype, dx, dw, dc, pb.n_init, dl, dd, r.stats.data(),
                         (int64_t)r.stats.size(), &ns);
    EXPECT_EQ(cudaMemcpy(r.centroids.data(), dc, sizeof(float) * k * d, cudaMemcpyDeviceToHost),
              cudaSuccess);
    EXPECT_EQ(cudaMemcpy(r.labels.data(), dl, sizeof(int64_t) * n, cudaMemcpyDeviceToHost),
              cudaSuccess);
    EXPECT_EQ(cudaMemcpy(r.distances.data(), dd, sizeof(float) * n, cudaMemcpyDeviceToHost),
              cudaSuccess);
    cudaFree(dx);
    cudaFree(dw);
    cudaFree(dc);
    cudaFree(dl);
    cudaFree(dd);
  }
  r.stats.resize(ns < 0 ? 0 : (size_t)ns);
  return r;
}

void expect_same(const Result &gpu, const Result &cpu) {
  ASSERT_EQ(gpu.status, cpu.status);
  if (cpu.status != FKM_OK) return;
  EXPECT_TRUE(same_bits(gpu.centroids, cpu.centroids)) << "centroids " << first_diff(gpu.centroids, cpu.centroids);
  EXPECT_TRUE(same_bits(gpu.labels, cpu.labels)) << "labels " << first_diff(gpu.labels, cpu.labels);
  EXPECT_TRUE(same_bits(gpu.distances, cpu.distances)) << "distances " << first_diff(gpu.distances, cpu.distances);
  ASSERT_EQ(gpu.stats.size(), cpu.stats.size());
  for (size_t i = 0; i < cpu.stats.size(); i++) {
    EXPECT_EQ(std::memcmp(&gpu.stats[i].obj, &cpu.stats[i].obj, sizeof(float)), 0)
        << "obj, iteration " << i << ": " << gpu.stats[i].obj << " vs " << cpu.stats[i].obj;
    EXPECT_EQ(std::memcmp(&gpu.stats[i].obj_double, &cpu.stats[i].obj_double, sizeof(double)), 0)
        << "obj_double, iteration " << i;
    EXPECT_EQ(std::memcmp(&gpu.stats[i].imbalance_factor, &cpu.stats[i].imbalance_factor,
                          sizeof(double)), 0)
        << "imbalance, iteration " << i;
    EXPECT_EQ(gpu.stats[i].nsplit, cpu.stats[i].nsplit) << "nsplit, iteration " << i;
  }
}

class Cuda : public GpuCpuTest {
 protected:
  // fkm_assign on both backends, both metrics: the same label and distance bits.
  void check_assign(int64_t n, int64_t d, int64_t k, const std::vector<float> &x,
                    const std::vector<float> &c) {
    for (fkm_metric m : {FKM_METRIC_L2, FKM_METRIC_INNER_PRODUCT}) {
      fkm_params p = defaults();
      p.metric = m;
      std::vector<int64_t> lc(n), lg(n, -9);
      std::vector<float> dc(n), dg(n, -9.f);
      ASSERT_EQ(fkm_assign(cpu->c, &p, n, d, k, FKM_DTYPE_F32, x.data(), c.data(), lc.data(), dc.data()), FKM_OK);
      ASSERT_EQ(fkm_assign(gpu->c, &p, n, d, k, FKM_DTYPE_F32, x.data(), c.data(), lg.data(), dg.data()), FKM_OK)
          << fkm_ctx_last_error(gpu->c);
      EXPECT_TRUE(same_bits(lg, lc)) << "n " << n << " k " << k << " d " << d << " metric " << m << " " << first_diff(lg, lc);
      EXPECT_TRUE(same_bits(dg, dc)) << "n " << n << " k " << k << " d " << d << " metric " << m << " " << first_diff(dg, dc);
    }
  }
  void check(const fkm_params &p, const Problem &pb, bool on_device = false) {
    Result c = train(cpu->c, p, pb);
    Result g = train(gpu->c, p, pb, on_device);
    expect_same(g, c);
    if (c.status == FKM_OK) {
      ASSERT_GT(c.stats.size(), 0u);
    }
  }
};

Problem blobs(int64_t n, int64_t d, int64_t k, uint32_t seed, int nblobs = 0) {
  Problem pb;
  pb.n = n;
  pb.d = d;
  pb.k = k;
  pb.x = fixtures::blobs(n, d, nblobs > 0 ? nblobs : (int)std::max<int64_t>(1, k / 2), seed);
  return pb;
}

fkm_params quick(int niter) {
  fkm_params p = defaults();
  p.niter = niter;
  p.min_points_per_centroid = 1;
  return p;
}

// --------------------------------------------------------------- the matrix

struct Shape {
  int64_t d, k, n;
  int niter;
};

void PrintTo(const Shape &s, std::ostream *os) {
  *os << "d=" << s.d << " k=" << s.k << " n=" << s.n << " niter=" << s.niter;
}

std::vector<Shape> matrix() {
  // N*K*d is capped so that the CPU reference (the oracle) stays fast; large
  // K runs with few points per centroid, which also exercises splits.
  const int64_t ds[] = {1, 3, 64, 100, 128, 129, 384, 768, 1536};
  const int64_t ks[] = {1, 2, 7, 256, 1024, 8192, 65536};
  const double cap = 1.2e10;
  std::vector<Shape> out;
  for (int64_t d : ds)
    for (int64_t k : ks) {
      int64_t n = std::max<int64_t>(3 * k, 1500);
      if ((double)n * k * d > cap) n = k + k / 2;
      if ((double)n * k * d > cap) continue;
      const int niter = (double)n * k * d > 5e8 ? 2 : 5;
      out.push_back({d, k, n, niter});
    }
  return out;
}

class CudaMatrix : public Cuda, public ::testing::WithParamInterface<Shape> {};

TEST_P(CudaMatrix, TrainBitIdenticalToCpu) {
  const Shape s = GetParam();
  check(quick(s.niter), blobs(s.n, s.d, s.k, (uint32_t)(s.d * 7919 + s.k)));
}

TEST_P(CudaMatrix, InnerProductSphericalBitIdenticalToCpu) {
  const Shape s = GetParam();
  if ((double)s.n * s.k * s.d > 5e8) GTEST_SKIP() << "covered at smaller sizes";
  fkm_params p = quick(s.niter);
  p.metric = FKM_METRIC_INNER_PRODUCT;
  p.spherical = 1;
  check(p, blobs(s.n, s.d, s.k, (uint32_t)(s.d * 31 + s.k)));
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaMatrix, ::testing::ValuesIn(matrix()),
                         [](const ::testing::TestParamInfo<Shape> &i) {
                           return "d" + std::to_string(i.param.d) + "_k" +
                                  std::to_string(i.param.k) + "_n" + std::to_string(i.param.n);
                         });

// ------------------------------------------------------------ options

TEST_F(Cuda, SmallTinyCaseBitIdentical) {  // also the sanitizer's case
  fkm_params p = quick(4);
  Problem pb = blobs(300, 5, 6, 11);
  pb.w = fixtures::uniform(300, 5, 0.0f, 2.0f);
  check(p, pb);
}

TEST_F(Cuda, WeightsBitIdentical) {
  fkm_params p = quick(6);
  Problem pb = blobs(5000, 64, 100, 3);
  pb.w = fixtures::uniform(pb.n, 4, 0.0f, 3.0f);
  for (int64_t i = 0; i < pb.n; i += 7) pb.w[i] = 0.0f;
  check(p, pb);
}

TEST_F(Cuda, FrozenInitialCentroidsBitIdentical) {
  fkm_params p = quick(6);
  p.frozen_centroids = 1;
  Problem pb = blobs(4000, 32, 64, 5);
  pb.n_init = 20;
  pb.init.assign(pb.x.begin() + 100 * 32, pb.x.begin() + 120 * 32);
  check(p, pb);
}

TEST_F(Cuda, NonFrozenInitialCentroidsBitIdentical) {
  fkm_params p = quick(5);
  Problem pb = blobs(4000, 32, 64, 6);
  pb.n_init = 10;
  pb.init.assign(pb.x.begin(), pb.x.begin() + 10 * 32);
  check(p, pb);
}

TEST_F(Cuda, NredoKeepsSameRunAsCpu) {
  fkm_params p = quick(4);
  p.nredo = 3;
  check(p, blobs(3000, 16, 50, 7));
}

TEST_F(Cuda, SubsamplingGathersSameRows) {
  fkm_params p = quick(5);
  p.max_points_per_centroid = 20;
  check(p, blobs(20000, 24, 64, 8));
}

TEST_F(Cuda, IntCentroidsBitIdentical) {
  fkm_params p = quick(5);
  p.int_centroids = 1;
  Problem pb = blobs(3000, 8, 20, 9);
  for (auto &v : pb.x) v *= 40.0f;
  check(p, pb);
}

TEST_F(Cuda, InnerProductWithoutSphericalBitIdentical) {
  fkm_params p = quick(5);
  p.metric = FKM_METRIC_INNER_PRODUCT;
  check(p, blobs(3000, 40, 30, 10));
}

TEST_F(Cuda, DevicePointersGiveSameBitsAsHost) {
  fkm_params p = quick(5);
  Problem pb = blobs(6000, 48, 80, 12);
  pb.w = fixtures::uniform(pb.n, 13, 0.5f, 1.5f);
  check(p, pb, true);
  p.max_points_per_centroid = 30;  // the device gather path
  check(p, pb, true);
}

// Subsampled runs on device data one after the other on one context: a run
// whose subsample is the last one's (the same n, seed and size) gathers its
// rows through the device copy of the row list kept from that run. Every run
// equals the CPU's, whatever the order of seeds, weights and a release of
// the context's memory between them.
TEST_F(Cuda, RepeatedSubsampledRunsOnDeviceDataEqualCpu) {
  Problem pb = blobs(6000, 48, 80, 12);
  const std::vector<float> w = fixtures::uniform(pb.n, 17, 0.5f, 1.5f);
  struct Step {
    int64_t seed;
    bool weights, release;
  };
  const Step steps[] = {{3, false, false}, {3, false, false}, {4, false, false},
                        {3, true, false},  {3, true, false},  {3, false, true},
                        {3, false, false}};
  for (const Step &s : steps) {
    fkm_params p = quick(5);
    p.max_points_per_centroid = 30;
    p.seed = s.seed;
    pb.w = s.weights ? w : std::vector<float>();
    if (s.release) {
      ASSERT_EQ(fkm_ctx_release_memory(gpu->c), FKM_OK);
      ASSERT_EQ(fkm_ctx_release_memory(cpu->c), FKM_OK);
    }
    SCOPED_TRACE("seed " + std::to_string(s.seed) + (s.weights ? ", weights" : ""));
    check(p, pb, true);
  }
}

// f16 / bf16: random bit patterns of moderate exponent, exact in float.
Problem half_problem(fkm_dtype t, int64_t n, int64_t d, int64_t k, uint32_t seed) {
  Problem pb;
  pb.n = n;
  pb.d = d;
  pb.k = k;
  pb.dtype = t;
  std::mt19937 g(seed);
  pb.x16.resize(n * d);
  for (auto &h : pb.x16) {
    const uint32_t sign = g() & 1u, man = g();
    if (t == FKM_DTYPE_F16)
      h = (uint16_t)((sign << 15) | ((12u + g() % 6u) << 10) | (man & 0x3ffu));
    else
      h = (uint16_t)((sign << 15) | ((124u + g() % 6u) << 7) | (man & 0x7fu));
  }
  return pb;
}

TEST_F(Cuda, Float16InputBitIdentical) {
  fkm_params p = quick(5);
  Problem pb = half_problem(FKM_DTYPE_F16, 4000, 64, 50, 14);
  check(p, pb);
  check(p, pb, true);
}

TEST_F(Cuda, BFloat16InputBitIdentical) {
  fkm_params p = quick(5);
  Problem pb = half_problem(FKM_DTYPE_BF16, 4000, 96, 50, 15);
  check(p, pb);
  p.max_points_per_centroid = 40;
  check(p, pb, true);
  // on the parity cascade (k >= 64), device rows trained whole: its scaled
  // packed copy is made from the bf16 rows themselves
  check(quick(5), half_problem(FKM_DTYPE_BF16, 4000, 96, 100, 16), true);
}

// fp16 rows on the certified cascade (k >= 64, d >= 16): certify reads the
// rows from the packed copy where its scale 2^sx is at least 1 (max |x| <
// 2^15: the packing is exact), else from the float rows, and reads a
// stage tail (d = 200 = 6 x 32 + 8) from the float rows; each gives the
// CPU's bits. The wide problems span fp16's exponents, subnormals to past
// 2^15 (sx < 0), host and device rows.
TEST_F(Cuda, Float16InputOnTheCascadeBitIdentical) {
  fkm_params p = quick(4);
  for (const int64_t d : {64, 200}) {
    SCOPED_TRACE("d " + std::to_string(d));
    const Problem narrow = half_problem(FKM_DTYPE_F16, 3000, d, 100, 16 + (uint32_t)d);
    check(p, narrow);
    check(p, narrow, true);
    Problem wide = narrow;
    std::mt19937 g(17 + (uint32_t)d);
    for (auto &h : wide.x16) /* exponent fields 0 (subnormal) to 30 (2^15 and beyond) */
      h = (uint16_t)((h & 0x83ffu) | ((g() % 31u) << 10));
    check(p, wide);
    check(p, wide, true);
  }
}

// ------------------------------------------------------------ adversarial

TEST_F(Cuda, ExactTiesFromDuplicatePointsAndCentroidsPickLowestIndex) {
  // Small-integer points: many exact distance ties; duplicated initial
  // centroids tie exactly on every point.
  fkm_params p = quick(6);
  Problem pb;
  pb.n = 4000;
  pb.d = 3;
  pb.k = 40;
  std::mt19937 g(16);
  pb.x.resize(pb.n * pb.d);
  for (auto &v : pb.x) v = (float)(g() % 5);
  pb.n_init = 10;
  pb.init.resize(10 * 3);
  for (int i = 0; i < 10; i++)
    for (int j = 0; j < 3; j++) pb.init[i * 3 + j] = (float)((i / 2) % 5);
  check(p, pb);
}

TEST_F(Cuda, NearTiesUnderCancellationMatch) {
  // Pixel-like colours (0..255, d = 3): |x|^2 dwarfs the gaps, FAISS's
  // formula cancels; labels must still be the reference's.
  fkm_params p = quick(8);
  Problem pb;
  pb.n = 30000;
  pb.d = 3;
  pb.k = 64;
  std::mt19937 g(17);
  pb.x.resize(pb.n * pb.d);
  for (auto &v : pb.x) v = (float)(200 + g() % 56);
  check(p, pb);
}

TEST_F(Cuda, OneUlpNearTiesInAssignMatch) {
  // Centroids 1 ulp apart around every point: distances differ in the last
  // bits, through the fmaf chain.
  fkm_params p = defaults();
  const int64_t n = 2000, d = 16, k = 8;
  std::vector<float> x = fixtures::uniform(n * d, 18, 1.0f, 2.0f), c(k * d);
  for (int64_t i = 0; i < k; i++)
    for (int64_t j = 0; j < d; j++)
      c[i * d + j] = std::nextafter(1.5f, i % 2 ? 2.0f : 1.0f) + (float)(i / 2) * 1e-7f;
  std::vector<int64_t> lc(n), lg(n);
  std::vector<float> dc(n), dg(n);
  ASSERT_EQ(fkm_assign(cpu->c, &p, n, d, k, FKM_DTYPE_F32, x.data(), c.data(), lc.data(), dc.data()), FKM_OK);
  ASSERT_EQ(fkm_assign(gpu->c, &p, n, d, k, FKM_DTYPE_F32, x.data(), c.data(), lg.data(), dg.data()), FKM_OK);
  EXPECT_TRUE(same_bits(lg, lc)) << first_diff(lg, lc);
  EXPECT_TRUE(same_bits(dg, dc)) << first_diff(dg, dc);
}

TEST_F(Cuda, HugeAndTinyMagnitudesMatch) {
  fkm_params p = quick(4);
  Problem big = blobs(3000, 16, 20, 19);
  for (auto &v : big.x) v *= 1e17f;  // squares near 1e36, below FLT_MAX
  check(p, big);
  Problem tiny = blobs(3000, 16, 20, 20);
  for (auto &v : tiny.x) v *= 1e-21f;  // squares underflow to subnormals and 0
  check(p, tiny);
}

TEST_F(Cuda, FloatOverflowGivesSameNumericError) {
  fkm_params p = quick(3);
  Problem pb = blobs(2000, 8, 10, 21);
  for (auto &v : pb.x) v *= 1e22f;  // |x|^2 overflows to inf
  Result c = train(cpu->c, p, pb), g = train(gpu->c, p, pb);
  EXPECT_EQ(c.status, FKM_ERR_NUMERIC);
  EXPECT_EQ(g.status, c.status) << fkm_ctx_last_error(gpu->c);
}

TEST_F(Cuda, HalfThePointsInOneClusterMatch) {
  fkm_params p = quick(5);
  Problem pb = blobs(40000, 64, 128, 22);
  for (int64_t i = 0; i < pb.n; i += 2)
    for (int64_t j = 0; j < pb.d; j++) pb.x[i * pb.d + j] = 0.01f * (float)((i * 13 + j) % 7);
  check(p, pb);
}

TEST_F(Cuda, LongUnweightedSegmentsMatch) {
  // unweighted clusters of thousands of rows: the 16-byte cp.async update
  // where d % 4 == 0 (d = 100: a last slice of 4 dimensions; frozen initial
  // rows), the 4-byte one at d = 30
  fkm_params p = quick(4);
  p.frozen_centroids = 1;
  Problem pb = blobs(30000, 100, 8, 24, 6);
  pb.n_init = 2;
  pb.init.assign(pb.x.begin() + 70 * pb.d, pb.x.begin() + 72 * pb.d);
  check(p, pb);
  check(quick(3), blobs(30000, 30, 8, 25, 6));
}

TEST_F(Cuda, LongSegmentsWithSeveralItemsPerWarpMatch) {
  // d = 2048, 20 clusters of about 2200 rows: more (centroid, 32-dimension
  // slice) items than the long-segment kernel's warps, so warps take several
  // in turn (each item drains the copies of the one before)
  check(quick(3), blobs(44000, 2048, 20, 26));
}

TEST_F(Cuda, LongWeightedSegmentsWithFrozenRowsMatch) {
  // clusters of thousands of rows take the staged update (segments longer
  // than 1024 rows), weighted, d = 100 (a partial warp of dimensions), with
  // frozen initial rows before the moving ones
  fkm_params p = quick(4);
  p.frozen_centroids = 1;
  Problem pb = blobs(30000, 100, 8, 23, 6);
  pb.w = fixtures::uniform(pb.n, 5, 0.0f, 2.0f);
  pb.n_init = 2;
  pb.init.assign(pb.x.begin() + 50 * pb.d, pb.x.begin() + 52 * pb.d);
  check(p, pb);
}

// 12 blobs into 256 centroids, a third of the rows one point: clusters
// empty in several iterations.
Problem many_empty() {
  Problem pb = blobs(3000, 10, 256, 23, 12);
  for (int64_t i = 0; i < pb.n; i += 3)
    std::memcpy(&pb.x[i * pb.d], &pb.x[0], sizeof(float) * pb.d);
  return pb;
}

TEST_F(Cuda, ManyEmptyClustersSplitLikeCpu) {
  fkm_params p = quick(8);
  check(p, many_empty());
}

// The Lloyd loop on the device (docs/cuda-engine.md, "The loop on the
// device"): with nothing for the host to decide between iterations (no
// progress callback, no early stop), the engine runs them all, the splits of
// empty clusters and the post-processing on the device, and reports every
// iteration's statistics after the last. Where clusters empty in several
// iterations, its results equal the CPU's and the host loop's
// (FLASHKM_CUDA_LOOP=0), statistics included: plain, spherical, integer
// centroids, frozen rows, a batch whose problems split differently, three
// redos; its times grow with the iterations. The log says which loop ran.
TEST_F(Cuda, TheLoopOnTheDeviceEqualsTheHostLoop) {
  Ctx host(FKM_BACKEND_CUDA, "FLASHKM_CUDA_LOOP", "0");
  Ctx looped(FKM_BACKEND_CUDA, {{"FLASHKM_CUDA_LOOP", nullptr}});  // whatever the environment says
  ASSERT_EQ(host.status, FKM_OK);
  ASSERT_EQ(looped.status, FKM_OK);
  const char *on_device = "iterations on the device with no host sync between them";
  const Problem pb = many_empty();
  int splits_seen = 0;
  for (int variant = 0; variant < 5; variant++) {
    SCOPED_TRACE(variant);
    fkm_params p = quick(8);
    Problem v = pb;
    if (variant == 1) p.spherical = 1;
    if (variant == 2) p.int_centroids = 1;
    if (variant == 3) {
      p.frozen_centroids = 1;
      v.n_init = 7;
      v.init.assign(v.x.begin() + 40 * v.d, v.x.begin() + 47 * v.d);
    }
    if (variant == 4) p.nredo = 3;
    LogLines log;
    const Result c = train(cpu->c, p, v), g = train(looped.c, log.logged(p), v),
                 h = train(host.c, p, v);
    expect_same(g, c);
    expect_same(h, c);
    EXPECT_TRUE(log.said(on_device)) << log.all();
    for (size_t i = 0; i < g.stats.size(); i++) {
      splits_seen += g.stats[i].nsplit > 0;
      EXPECT_GE(g.stats[i].time_search, 0.0);
      if (i % p.niter) {
        EXPECT_GE(g.stats[i].time, g.stats[i - 1].time) << "iteration " << i;
        EXPECT_GE(g.stats[i].time_search, g.stats[i - 1].time_search) << "iteration " << i;
      }
    }
  }
  EXPECT_GE(splits_seen, 5);  // the case splits (else it proves nothing)
  // a batch: problems split in different iterations; a logged run with a
  // progress callback stays on the host
  const int64_t B = 4, n = 1500, d = 12, k = 96;
  std::vector<float> x = fixtures::blobs(B * n, d, 10, 91);
  for (int64_t b = 1; b < B; b++)  // problem b: every (b + 1)-th row one point
    for (int64_t i = 0; i < n; i += b + 1)
      std::memcpy(&x[(b * n + i) * d], &x[b * n * d], sizeof(float) * d);
  const fkm_params p = quick(7);
  std::vector<float> cc((size_t)(B * k * d)), cg(cc.size()), ch(cc.size());
  std::vector<int64_t> lc((size_t)(B * n)), lg(lc.size()), lh(lc.size());
  std::vector<fkm_iteration_stats> sc(B * p.niter), sg(sc.size()), sh(sc.size());
  std::vector<int64_t> nc(B), ng(B), nh(B);  // stats (B, niter), n_stats (B)
  LogLines log;
  ASSERT_EQ(fkm_train_batched(cpu->c, &p, B, n, d, k, FKM_DTYPE_F32, x.data(), nullptr,
                              cc.data(), 0, lc.data(), nullptr, sc.data(), p.niter,
                              nc.data()),
            FKM_OK);
  ASSERT_EQ(fkm_train_batched(looped.c, &p, B, n, d, k, FKM_DTYPE_F32, x.data(), nullptr,
                              cg.data(), 0, lg.data(), nullptr, sg.data(), p.niter,
                              ng.data()),
            FKM_OK)
      << fkm_ctx_last_error(looped.c);
  fkm_params ph = log.logged(p);
  ph.progress = [](void *, int, int, const fkm_iteration_stats *) { return 0; };
  ASSERT_EQ(fkm_train_batched(looped.c, &ph, B, n, d, k, FKM_DTYPE_F32, x.data(), nullptr,
                              ch.data(), 0, lh.data(), nullptr, sh.data(), p.niter,
                              nh.data()),
            FKM_OK)
      << fkm_ctx_last_error(looped.c);
  EXPECT_FALSE(log.said(on_device)) << log.all();
  EXPECT_TRUE(same_bits(cc, cg)) << "batched centroids " << first_diff(cc, cg);
  EXPECT_TRUE(same_bits(lc, lg)) << "batched labels " << first_diff(lc, lg);
  EXPECT_TRUE(same_bits(cc, ch)) << "host loop centroids " << first_diff(cc, ch);
  ASSERT_EQ(ng, nc);
  ASSERT_EQ(nh, nc);
  ASSERT_EQ(nc[0], p.niter);
  std::vector<int> split_at;
  for (int64_t i = 0; i < B * p.niter; i++) {
    EXPECT_EQ(std::memcmp(&sg[i].obj, &sc[i].obj, sizeof(float)), 0) << i;
    EXPECT_EQ(std::memcmp(&sg[i].obj_double, &sc[i].obj_double, sizeof(double)), 0) << i;
    EXPECT_EQ(std::memcmp(&sg[i].imbalance_factor, &sc[i].imbalance_factor, sizeof(double)),
              0)
        << i;
    EXPECT_EQ(sg[i].nsplit, sc[i].nsplit) << i;
    EXPECT_EQ(sh[i].nsplit, sc[i].nsplit) << i;
    if (sc[i].nsplit > 0) split_at.push_back((int)i);
  }
  EXPECT_GE(split_at.size(), 2u);
}

TEST_F(Cuda, RepeatedRunsGiveIdenticalBits) {
  fkm_params p = quick(6);
  Problem pb = blobs(20000, 100, 300, 24);
  Result a = train(gpu->c, p, pb), b = train(gpu->c, p, pb);
  ASSERT_EQ(a.status, FKM_OK);
  expect_same(a, b);
}

TEST_F(Cuda, ChunkedAssignmentOfLargeTrainingSetsBitIdentical) {
  // >= 2 x 2^20 training rows: assigned in row chunks, the objective's
  // chains continued across chunks on the side stream.
  fkm_params p = quick(3);
  check(p, blobs(2 * (1 << 20) + 1, 8, 20, 30)); // SIMT path (k < 64)
  // chunks of >= 2^18 rows (FLASHKM_CUDA_CHUNK_LOG2), tensor-core path
  Ctx small(FKM_BACKEND_CUDA, "FLASHKM_CUDA_CHUNK_LOG2", "18");
  ASSERT_EQ(small.status, FKM_OK);
  Problem pb = blobs(600001, 32, 100, 31);
  Result c = train(cpu->c, p, pb), g = train(small.c, p, pb);
  expect_same(g, c);
}

TEST_F(Cuda, NumberOfTrainingPointsEqualsKCopiesRows) {
  fkm_params p = quick(4);
  check(p, blobs(64, 9, 64, 25));
}

TEST_F(Cuda, SimtOnlyPathBitIdentical) {
  // FLASHKM_CUDA_ASSIGN=simt: the reference kernel alone, no tensor cores.
  Ctx simt(FKM_BACKEND_CUDA, "FLASHKM_CUDA_ASSIGN", "simt");
  ASSERT_EQ(simt.status, FKM_OK);
  for (int64_t k : {100, 1024}) {
    fkm_params p = quick(4);
    Problem pb = blobs(8000, 96, k, (uint32_t)(27 + k));
    Result c = train(cpu->c, p, pb), g = train(simt.c, p, pb);
    expect_same(g, c);
  }
}

// By default (FLASHKM_CUDA_GRAPH=0, read when a context is created, turns
// it off) from a run's second iteration on, the in-core iteration is one
// CUDA graph, replayed. The log says so; the results equal the CPU's and the
// eager launches', single and batched (the problems on lanes forked from the
// stream), on the context's own stream, on a caller's and on the legacy
// default stream (PyTorch's default: the graph, captured on the context's
// own stream, is launched there); a run with the last run's topology
// updates its graph instead of instantiating one; in runs of fewer than four
// iterations and with the switch off the launches stay eager.
TEST_F(Cuda, IterationsReplayedAsAGraphEqualEagerOnes) {
  Ctx eager(FKM_BACKEND_CUDA, "FLASHKM_CUDA_GRAPH", "0");
  ASSERT_EQ(eager.status, FKM_OK);
  Ctx graphs(FKM_BACKEND_CUDA);
  ASSERT_EQ(graphs.status, FKM_OK);
  const char *replayed = "on replay one CUDA graph";
  const Problem pb = blobs(6000, 40, 50, 81);
  const fkm_params p = quick(6);
  LogLines log;
  const fkm_params pg = log.logged(p);
  const Result c = train(cpu->c, p, pb), e = train(eager.c, pg, pb);
  expect_same(e, c);
  EXPECT_FALSE(log.said(replayed)) << log.all();
  log.lines.clear();
  expect_same(train(graphs.c, pg, pb), c);
  EXPECT_TRUE(log.said(replayed)) << log.all();
  // batched: three problems
  {
    const int64_t B = 3, n = 2000, d = 24, k = 40;
    const std::vector<float> x = fixtures::blobs(B * n, d, 20, 82);
    std::vector<float> cc((size_t)(B * k * d)), cg((size_t)(B * k * d));
    std::vector<int64_t> lc((size_t)(B * n)), lg((size_t)(B * n));
    log.lines.clear();
    ASSERT_EQ(fkm_train_batched(cpu->c, &p, B, n, d, k, FKM_DTYPE_F32, x.data(), nullptr,
                                cc.data(), 0, lc.data(), nullptr, nullptr, 0, nullptr),
              FKM_OK);
    ASSERT_EQ(fkm_train_batched(graphs.c, &pg, B, n, d, k, FKM_DTYPE_F32, x.data(), nullptr,
                                cg.data(), 0, lg.data(), nullptr, nullptr, 0, nullptr),
              FKM_OK)
        << fkm_ctx_last_error(graphs.c);
    EXPECT_TRUE(same_bits(cc, cg)) << "batched centroids " << first_diff(cc, cg);
    EXPECT_TRUE(same_bits(lc, lg)) << "batched labels " << first_diff(lc, lg);
    EXPECT_TRUE(log.said(replayed)) << log.all();
  }
  // a caller's stream
  cudaStream_t st = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(fkm_ctx_set_stream(graphs.c, st), FKM_OK);
  log.lines.clear();
  expect_same(train(graphs.c, pg, pb), c);
  EXPECT_TRUE(log.said(replayed)) << log.all();
  // the legacy default stream; the run before had this run's graph: it is
  // updated with this run's parameters, not instantiated again
  ASSERT_EQ(fkm_ctx_set_stream(graphs.c, cudaStreamLegacy), FKM_OK);
  log.lines.clear();
  expect_same(train(graphs.c, pg, pb), c);
  EXPECT_TRUE(log.said(replayed)) << log.all();
  EXPECT_TRUE(log.said("the last run's updated")) << log.all();
  ASSERT_EQ(fkm_ctx_set_stream(graphs.c, nullptr), FKM_OK);
  EXPECT_EQ(cudaStreamDestroy(st), cudaSuccess);
  // three iterations: not worth a capture
  fkm_params p3 = pg;
  p3.niter = 3;
  log.lines.clear();
  expect_same(train(graphs.c, p3, pb), train(cpu->c, quick(3), pb));
  EXPECT_FALSE(log.said(replayed)) << log.all();
}

TEST_F(Cuda, UncertainPointsAreRefinedToReferenceLabels) {
  // Every point equidistant (up to rounding) from two centroid groups: the
  // tensor-core pass cannot certify them, the refine pass must decide.
  fkm_params p = defaults();
  const int64_t n = 4096, d = 64, k = 128;
  std::vector<float> x = fixtures::uniform(n * d, 28, -1.0f, 1.0f), c(k * d);
  std::mt19937 g(29);
  std::normal_distribution<float> N(0.f, 1.f);
  for (int64_t i = 0; i < k / 2; i++)
    for (int64_t j = 0; j < d; j++) {
      c[i * d + j] = N(g);
      c[(i + k / 2) * d + j] = std::nextafter(c[i * d + j], 10.0f);  // 1-ulp twins
    }
  std::vector<int64_t> lc(n), lg(n);
  std::vector<float> dc(n), dg(n);
  for (fkm_metric m : {FKM_METRIC_L2, FKM_METRIC_INNER_PRODUCT}) {
    p.metric = m;
    ASSERT_EQ(fkm_assign(cpu->c, &p, n, d, k, FKM_DTYPE_F32, x.data(), c.data(), lc.data(), dc.data()), FKM_OK);
    ASSERT_EQ(fkm_assign(gpu->c, &p, n, d, k, FKM_DTYPE_F32, x.data(), c.data(), lg.data(), dg.data()), FKM_OK);
    EXPECT_TRUE(same_bits(lg, lc)) << first_diff(lg, lc);
    EXPECT_TRUE(same_bits(dg, dc)) << first_diff(dg, dc);
  }
}

TEST_F(Cuda, AssignWithOneCentroidRangeMatchesCpu) {
  // Enough rows (>= 256 per multiprocessor) that the wgmma screen runs with
  // one centroid range (the other tests' shapes split the centroids). Every
  // eighth centroid is a 1-ulp twin of the one before, so that the rows near
  // those are left to the Cert pass and the refine pass. d = 99: scalar
  // loads in certify.
  const int64_t n = 50000, k = 1024;
  for (const int64_t d : {64, 99, 128}) {
    std::vector<float> x = fixtures::blobs(n, d, 200, (uint32_t)(60 + d)), c(k * d);
    for (int64_t i = 0; i < k; i++)
      for (int64_t j = 0; j < d; j++)
        c[i * d + j] = i % 8 == 7 ? std::nextafter(c[(i - 1) * d + j], 10.0f)
                                  : x[(i * 41 % n) * d + j];
    check_assign(n, d, k, x, c);
  }
}

// ------------------------------------------------------------ fkm_assign

TEST_F(Cuda, AssignMatchesCpuForBothMetricsAndSplitGrids) {
  // small n with large k uses the split-k grid (ranges combined in order)
  const int64_t shapes[][3] = {{100, 5000, 33}, {5000, 3, 1}, {3000, 700, 130}, {257, 65536, 4}};
  for (auto &s : shapes) {
    const int64_t n = s[0], k = s[1], d = s[2];
    std::vector<float> x = fixtures::blobs(n, d, 5, (uint32_t)(n + k));
    std::vector<float> c = fixtures::blobs(k, d, 5, (uint32_t)(n * k));
    check_assign(n, d, k, x, c);
  }
}

// ------------------------------------------------------------ FKM_ASSIGN_FAST

// Exact fp16 / bf16 encodings of floats that are multiples of 1/4 below 32
// in magnitude (7 significant bits: exact in both types).
uint16_t exact_half_bits(float v, fkm_dtype t) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  if (t == FKM_DTYPE_BF16) return (uint16_t)(b >> 16);
  if (v == 0.0f) return (uint16_t)((b >> 16) & 0x8000u);
  const uint32_t sign = (b >> 31) & 1u;
  const int e = (int)((b >> 23) & 0xffu) - 127;
  const uint32_t man = (b & 0x7fffffu) >> 13;
  return (uint16_t)((sign << 15) | ((uint32_t)(e + 15) << 10) | man);
}

// The value of fp16 bits h.
float half_value(uint16_t h) {
  const int e = (h >> 10) & 31, m = h & 1023;
  const float v = e == 0 ? std::ldexp((float)m, -24) : std::ldexp((float)(1024 + m), e - 25);
  return (h & 0x8000u) ? -v : v;
}

Problem quantized_blobs(fkm_dtype t, int64_t n, int64_t d, int nb, uint32_t seed) {
  Problem pb;
  pb.n = n;
  pb.d = d;
  pb.dtype = t;
  std::mt19937 g(seed);
  std::normal_distribution<float> N(0.f, 1.f);
  std::vector<float> centres(nb * d);
  for (auto &v : centres) v = (float)((int)(g() % 25) - 12);
  pb.x16.resize(n * d);
  for (int64_t i = 0; i < n; i++) {
    const int b = (int)(g() % (uint32_t)nb);
    for (int64_t j = 0; j < d; j++) {
      float v = centres[b * d + j] + std::round(N(g) * 2.0f) / 4.0f;
      v = std::min(std::max(v, -31.75f), 31.75f);
      pb.x16[i * d + j] = exact_half_bits(v, t);
    }
  }
  return pb;
}

TEST_F(Cuda, FastModeIsDeterministicAndAgreesWithParityOnClusteredData) {
  // d = 64: x resident in the wgmma pass; d = 200: streamed beside the
  // centroid chunks
  for (const int64_t d : {64, 200})
  for (fkm_dtype t : {FKM_DTYPE_F16, FKM_DTYPE_BF16}) {
    const int64_t n = 20000, k = 256;
    Problem pb = quantized_blobs(t, n, d, 40, (t == FKM_DTYPE_F16 ? 41u : 42u) + (uint32_t)d);
    // centroids: data rows (exactly representable), so rounding is exact
    std::vector<float> c(k * d);
    for (int64_t i = 0; i < k; i++)
      for (int64_t j = 0; j < d; j++) {
        const uint16_t h = pb.x16[(i * 37 % n) * d + j];
        uint32_t bits;
        if (t == FKM_DTYPE_BF16) {
          bits = (uint32_t)h << 16;
        } else {
          const uint32_t sign = (uint32_t)(h >> 15), e = (h >> 10) & 0x1fu, man = h & 0x3ffu;
          bits = e == 0 ? sign << 31 : (sign << 31) | ((e + 112u) << 23) | (man << 13);
        }
        std::memcpy(&c[i * d + j], &bits, 4);
      }
    fkm_params fast = defaults(), parity = defaults();
    fast.assign_mode = FKM_ASSIGN_FAST;
    std::vector<int64_t> l1(n), l2(n, -9), lp(n);
    std::vector<float> d1(n), d2(n, -9.f), dp(n);
    ASSERT_EQ(fkm_assign(gpu->c, &fast, n, d, k, t, pb.data(), c.data(), l1.data(), d1.data()), FKM_OK)
        << fkm_ctx_last_error(gpu->c);
    ASSERT_EQ(fkm_assign(gpu->c, &fast, n, d, k, t, pb.data(), c.data(), l2.data(), d2.data()), FKM_OK);
    EXPECT_TRUE(same_bits(l1, l2)) << "fast labels are not deterministic";
    EXPECT_TRUE(same_bits(d1, d2)) << "fast distances are not deterministic";
    ASSERT_EQ(fkm_assign(cpu->c, &parity, n, d, k, t, pb.data(), c.data(), lp.data(), dp.data()), FKM_OK);
    int64_t agree = 0, valid = 0;
    for (int64_t i = 0; i < n; i++) {
      valid += l1[i] >= 0 && l1[i] < k;
      if (l1[i] == lp[i]) {
        agree++;
        EXPECT_NEAR(d1[i], dp[i], 1e-3 * (1.0 + std::fabs(dp[i]))) << "point " << i;
      }
    }
    EXPECT_EQ(valid, n);
    EXPECT_GE(agree, n * 99 / 100) << "dtype " << t;
    // training runs and is repeatable
    fkm_params tp = quick(4);
    tp.assign_mode = FKM_ASSIGN_FAST;
    pb.k = 64;
    Result a = train(gpu->c, tp, pb), b = train(gpu->c, tp, pb);
    ASSERT_EQ(a.status, FKM_OK) << fkm_ctx_last_error(gpu->c);
    expect_same(a, b);
  }
}

// ------------------------------------------------------------ errors

TEST_F(Cuda, FastTrainingUpdateFromPackedCopyEqualsReferenceUpdate) {
  // FKM_ASSIGN_FAST's update reads the 16-bit packed copy of x. On blobs far
  // apart, with one initial centroid in each blob, FAST's labels are the
  // exact ones at every iteration, so its centroids must be the reference's
  // bits. Batched (two problems: the packed matrices' stride) and d = 100
  // (padded dimensions); k = 64 (FAST's tensor-core pass: below 64 centroids
  // FAST takes the reference kernel, next test); clusters of about 250 rows,
  // then of 750 and 3750 (the staged 16-byte copies of packed rows for
  // segments over 256 and over 1024 rows; problems of 64 s + 40 rows, not
  // multiples of the 128-row blocks).
  for (const int64_t n : {64 * 250 + 40, 64 * 750 + 40, 64 * 3750 + 40})
  for (fkm_dtype t : {FKM_DTYPE_F16, FKM_DTYPE_BF16}) {
    const int64_t B = 2, d = 100, k = 64;
    std::mt19937 g(t == FKM_DTYPE_F16 ? 51u : 52u);
    std::normal_distribution<float> N(0.f, 1.f);
    std::vector<uint16_t> x16(B * n * d);
    std::vector<float> init(B * k * d);
    for (int64_t b = 0; b < B; b++) {
      std::vector<float> centres(k * d);
      for (auto &v : centres) v = (float)((int)(g() % 25) - 12);
      for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) {
          float v = centres[(i % k) * d + j] + std::round(N(g) * 2.0f) / 4.0f;
          v = std::min(std::max(v, -31.75f), 31.75f);
          x16[(b * n + i) * d + j] = exact_half_bits(v, t);
          if (i < k) init[(b * k + i) * d + j] = v;  // row i is in blob i
        }
    }
    fkm_params fast = quick(4), parity = quick(4);
    fast.assign_mode = FKM_ASSIGN_FAST;
    std::vector<float> cg(init), cc(init);
    std::vector<int64_t> lg(B * n), lc(B * n);
    ASSERT_EQ(fkm_train_batched(gpu->c, &fast, B, n, d, k, t, x16.data(), nullptr, cg.data(), k,
                                lg.data(), nullptr, nullptr, 0, nullptr),
              FKM_OK)
        << fkm_ctx_last_error(gpu->c);
    for (int64_t b = 0; b < B; b++)
      ASSERT_EQ(fkm_train(cpu->c, &parity, n, d, k, t, x16.data() + b * n * d, nullptr,
                          cc.data() + b * k * d, k, lc.data() + b * n, nullptr, nullptr, 0,
                          nullptr),
                FKM_OK);
    EXPECT_EQ(lg, lc) << "dtype " << t << ": FAST labels differ on separated blobs";
    EXPECT_TRUE(same_bits(cg, cc)) << "dtype " << t << " " << first_diff(cg, cc);
  }
}

// Below 64 centroids (or 16 dimensions) FKM_ASSIGN_FAST takes the reference
// kernel: its labels, distances and centroids are the exact ones, a batch's
// problems assigned in one launch.
TEST_F(Cuda, FastBelowSixtyFourCentroidsGivesTheExactBits) {
  const int64_t B = 3, n = 3000, d = 32, k = 16;
  for (fkm_dtype t : {FKM_DTYPE_F16, FKM_DTYPE_BF16}) {
    std::vector<uint16_t> x16;
    for (int64_t b = 0; b < B; b++) {
      const Problem pb = quantized_blobs(t, n, d, 20, 61u + (uint32_t)b);
      x16.insert(x16.end(), pb.x16.begin(), pb.x16.end());
    }
    fkm_params fast = quick(5), parity = quick(5);
    fast.assign_mode = FKM_ASSIGN_FAST;
    LogLines log;
    fast = log.logged(fast);
    std::vector<float> cg(B * k * d), cc(B * k * d), dg(B * n), dc(B * n);
    std::vector<int64_t> lg(B * n), lc(B * n);
    ASSERT_EQ(fkm_train_batched(gpu->c, &fast, B, n, d, k, t, x16.data(), nullptr, cg.data(), 0,
                                lg.data(), dg.data(), nullptr, 0, nullptr),
              FKM_OK)
        << fkm_ctx_last_error(gpu->c);
    for (int64_t b = 0; b < B; b++)
      ASSERT_EQ(fkm_train(cpu->c, &parity, n, d, k, t, x16.data() + b * n * d, nullptr,
                          cc.data() + b * k * d, 0, lc.data() + b * n, dc.data() + b * n,
                          nullptr, 0, nullptr),
                FKM_OK);
    EXPECT_TRUE(same_bits(cg, cc)) << "dtype " << t << " " << first_diff(cg, cc);
    EXPECT_TRUE(same_bits(lg, lc)) << "dtype " << t << " " << first_diff(lg, lc);
    EXPECT_TRUE(same_bits(dg, dc)) << "dtype " << t << " " << first_diff(dg, dc);
    EXPECT_TRUE(log.said("assignment in one launch")) << log.all();
  }
}

// By default a FAST batch's tensor-core pass runs every problem in one
// launch sequence (a grid layer per problem, the scratch side by side);
// FLASHKM_CUDA_FAST_BATCHED=0 (read when a context is created) gives each
// problem its own. The centroids, labels and distances are equal bit for
// bit: x resident (d = 64) and streamed beside the centroids (d = 200), one
// centroid range (k = 64) and two (k = 256), rows not a multiple of the
// 128-row blocks; the verbose logs say which was taken. (The mma pass: gpu-check runs the suite
// again with FLASHKM_CUDA_ASSIGN=mma.)
// FAST on B problems of n quantized blobs (nb centres, seeds from seed):
// one batched call on ctx against one on each (FLASHKM_CUDA_FAST_BATCHED=0:
// a launch sequence a problem), bit for bit; ctx's log says the one launch
// sequence.
void expect_fast_batch_equals_each(fkm_ctx *ctx, fkm_ctx *each, int64_t B, int64_t n, int64_t d,
                                   int64_t k, fkm_dtype t, int nb, uint32_t seed) {
  std::vector<uint16_t> x16;
  for (int64_t b = 0; b < B; b++) {
    const Problem pb = quantized_blobs(t, n, d, nb, seed + (uint32_t)b);
    x16.insert(x16.end(), pb.x16.begin(), pb.x16.end());
  }
  fkm_params fast = quick(5);
  fast.assign_mode = FKM_ASSIGN_FAST;
  LogLines log1, log2;
  const fkm_params logged1 = log1.logged(fast), logged2 = log2.logged(fast);
  std::vector<float> c1(B * k * d), c2(B * k * d), d1(B * n), d2(B * n);
  std::vector<int64_t> l1(B * n), l2(B * n);
  ASSERT_EQ(fkm_train_batched(ctx, &logged1, B, n, d, k, t, x16.data(), nullptr, c1.data(), 0,
                              l1.data(), d1.data(), nullptr, 0, nullptr),
            FKM_OK)
      << fkm_ctx_last_error(ctx);
  ASSERT_EQ(fkm_train_batched(each, &logged2, B, n, d, k, t, x16.data(), nullptr, c2.data(), 0,
                              l2.data(), d2.data(), nullptr, 0, nullptr),
            FKM_OK)
      << fkm_ctx_last_error(each);
  EXPECT_TRUE(same_bits(c1, c2)) << "centroids " << first_diff(c1, c2);
  EXPECT_TRUE(same_bits(l1, l2)) << "labels " << first_diff(l1, l2);
  EXPECT_TRUE(same_bits(d1, d2)) << "distances " << first_diff(d1, d2);
  EXPECT_TRUE(log1.said("FAST assignment in one launch sequence")) << log1.all();
  EXPECT_FALSE(log2.said("FAST assignment in one launch sequence")) << log2.all();
}

TEST_F(Cuda, FastBatchInOneLaunchEqualsPerProblemLaunches) {
  Ctx each(FKM_BACKEND_CUDA, "FLASHKM_CUDA_FAST_BATCHED", "0");
  ASSERT_EQ(each.status, FKM_OK);
  for (const int64_t d : {64, 200})
  for (const int64_t k : {64, 256})
  for (fkm_dtype t : {FKM_DTYPE_F16, FKM_DTYPE_BF16}) {
    SCOPED_TRACE("d " + std::to_string(d) + ", k " + std::to_string(k) + ", dtype " +
                 std::to_string((int)t));
    expect_fast_batch_equals_each(gpu->c, each.c, 3, 3000, d, k, t, 30, 71u + (uint32_t)(d + k));
  }
}

// A FAST batch whose blocks would fill several waves takes a few persistent
// blocks a problem (each walking items, the next one's rows loading while
// one computes; with d = 200 the rows stream with the centroid chunks): the
// bits of one launch sequence a problem (a block per item).
TEST_F(Cuda, FastBatchOnPersistentBlocksEqualsPerProblemLaunches) {
  Ctx each(FKM_BACKEND_CUDA, "FLASHKM_CUDA_FAST_BATCHED", "0");
  ASSERT_EQ(each.status, FKM_OK);
  /* 40 problems of 2000 rows: 8 items a problem, 320 in all */
  for (const int64_t d : {64, 200}) {
    SCOPED_TRACE("d " + std::to_string(d));
    expect_fast_batch_equals_each(gpu->c, each.c, 40, 2000, d, 64,
                                  d == 64 ? FKM_DTYPE_F16 : FKM_DTYPE_BF16, 20,
                                  131u + (uint32_t)d);
  }
}

// FAST on 16-bit device rows whose packed copy is their own bits (k >= 64,
// d % 8 == 0) makes the float copy, the packed copy and x's check in one
// pass: the same bits as the same rows from host memory (staged, converted,
// then packed from the float copy), one problem and a batch, a dimension
// count with a partial packed chunk; a NaN among them is the CPU's message
// and writes nothing.
TEST_F(Cuda, FastHalfDeviceRowsPackedInOnePassEqualHostRows) {
  const int64_t n = 3000, k = 64;
  for (const int64_t B : {1, 3})
  for (const int64_t d : {32, 200})
  for (fkm_dtype t : {FKM_DTYPE_F16, FKM_DTYPE_BF16}) {
    SCOPED_TRACE("B " + std::to_string(B) + ", d " + std::to_string(d) + ", dtype " +
                 std::to_string((int)t));
    std::vector<uint16_t> x16;
    for (int64_t b = 0; b < B; b++) {
      const Problem pb = quantized_blobs(t, n, d, 30, 91u + (uint32_t)(b + d));
      x16.insert(x16.end(), pb.x16.begin(), pb.x16.end());
    }
    fkm_params fast = quick(4);
    fast.assign_mode = FKM_ASSIGN_FAST;
    std::vector<float> c1(B * k * d), c2(B * k * d, 4.f), d1(B * n), d2(B * n);
    std::vector<int64_t> l1(B * n), l2(B * n);
    ASSERT_EQ(fkm_train_batched(gpu->c, &fast, B, n, d, k, t, x16.data(), nullptr, c1.data(), 0,
                                l1.data(), d1.data(), nullptr, 0, nullptr),
              FKM_OK)
        << fkm_ctx_last_error(gpu->c);
    void *dx = nullptr;
    ASSERT_EQ(cudaMalloc(&dx, x16.size() * 2), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(dx, x16.data(), x16.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
    EXPECT_EQ(fkm_train_batched(gpu->c, &fast, B, n, d, k, t, dx, nullptr, c2.data(), 0,
                                l2.data(), d2.data(), nullptr, 0, nullptr),
              FKM_OK)
        << fkm_ctx_last_error(gpu->c);
    EXPECT_TRUE(same_bits(c1, c2)) << "centroids " << first_diff(c1, c2);
    EXPECT_TRUE(same_bits(l1, l2)) << "labels " << first_diff(l1, l2);
    EXPECT_TRUE(same_bits(d1, d2)) << "distances " << first_diff(d1, d2);
    // a NaN in the last problem's rows: the CPU's message, nothing written
    std::vector<uint16_t> bad = x16;
    bad[((B - 1) * n + 1234) * d + 5] = t == FKM_DTYPE_F16 ? 0x7e00u : 0x7fc0u;
    fkm_params pc = quick(4);
    ASSERT_EQ(fkm_train_batched(cpu->c, &pc, B, n, d, k, t, bad.data(), nullptr, c2.data(), 0,
                                nullptr, nullptr, nullptr, 0, nullptr),
              FKM_ERR_NOT_FINITE);
    const std::string want = fkm_ctx_last_error(cpu->c);
    ASSERT_EQ(cudaMemcpy(dx, bad.data(), bad.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
    std::vector<float> c3(B * k * d, 4.f);
    EXPECT_EQ(fkm_train_batched(gpu->c, &fast, B, n, d, k, t, dx, nullptr, c3.data(), 0,
                                nullptr, nullptr, nullptr, 0, nullptr),
              FKM_ERR_NOT_FINITE);
    EXPECT_EQ(std::string(fkm_ctx_last_error(gpu->c)), want);
    for (float v : c3) ASSERT_EQ(v, 4.f);
    cudaFree(dx);
  }
}

TEST_F(Cuda, NonFiniteAndNegativeWeightInputsGiveCpuStatuses) {
  fkm_params p = quick(3);
  Problem pb = blobs(1000, 8, 10, 26);
  pb.x[517] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(train(gpu->c, p, pb).status, FKM_ERR_NOT_FINITE);
  EXPECT_EQ(train(gpu->c, p, pb, true).status, FKM_ERR_NOT_FINITE);
  pb.x[517] = 1.0f;
  pb.w.assign(pb.n, 1.0f);
  pb.w[40] = -1.0f;
  pb.w[90] = std::numeric_limits<float>::infinity();
  EXPECT_EQ(train(cpu->c, p, pb).status, FKM_ERR_INVALID_ARG);
  EXPECT_EQ(train(gpu->c, p, pb).status, FKM_ERR_INVALID_ARG);
  EXPECT_EQ(train(gpu->c, p, pb, true).status, FKM_ERR_INVALID_ARG);
  pb.w[30] = std::numeric_limits<float>::infinity();
  EXPECT_EQ(train(gpu->c, p, pb, true).status, FKM_ERR_NOT_FINITE);
  // the context stays usable after errors
  pb.w.clear();
  check(p, pb);
}

// 16-bit device x is converted whole into the workspace and its check rides
// on that pass: the first non-finite element of all of x is reported as the
// CPU reports it (one problem and a batch, both modes); a failure that
// comes before the conversion (a negative weight) still reports x's values
// first; nothing is written. k = 20: the reference kernel; k = 100: the
// parity cascade, whose scaled packed copy is made beside that pass.
TEST_F(Cuda, NonFiniteHalfDeviceDataGivesCpuMessages) {
  const int64_t n = 3000, d = 24, B = 3;
  for (const int64_t k : {20, 100})
  for (fkm_dtype dt : {FKM_DTYPE_F16, FKM_DTYPE_BF16}) {
    const uint16_t nan = dt == FKM_DTYPE_F16 ? 0x7e00u : 0x7fc0u;
    const uint16_t ninf = dt == FKM_DTYPE_F16 ? 0xfc00u : 0xff80u;
    Problem pb = half_problem(dt, n, d, k, 31);
    pb.x16[2100 * d + 7] = nan;
    pb.x16[1500 * d + 3] = ninf;
    // the batch: problem 1 holds the first bad value (row 700, column 5)
    Problem all = half_problem(dt, B * n, d, k, 32);
    all.x16[(2 * n + 10) * d + 1] = nan;
    all.x16[(n + 700) * d + 5] = ninf;
    for (fkm_assign_mode mode : {FKM_ASSIGN_FAISS, FKM_ASSIGN_FAST}) {
      SCOPED_TRACE(std::string(dt == FKM_DTYPE_F16 ? "f16" : "bf16") +
                   (mode == FKM_ASSIGN_FAST ? " FAST" : " parity") + " k " + std::to_string(k));
      fkm_params p = quick(3);
      fkm_params pc = p; /* the CPU's message (FAST runs on CUDA only) */
      ASSERT_EQ(train(cpu->c, pc, pb).status, FKM_ERR_NOT_FINITE);
      const std::string want = fkm_ctx_last_error(cpu->c);
      p.assign_mode = mode;
      for (bool weights : {false, true}) {
        pb.w.clear();
        if (weights) {
          pb.w.assign(n, 1.0f);
          pb.w[10] = -1.0f;
        }
        const Result r = train(gpu->c, p, pb, true);
        EXPECT_EQ(r.status, FKM_ERR_NOT_FINITE) << (weights ? "weights" : "");
        EXPECT_EQ(std::string(fkm_ctx_last_error(gpu->c)), want) << (weights ? "weights" : "");
        for (float v : r.centroids) ASSERT_EQ(v, -7.f);
        for (int64_t l : r.labels) ASSERT_EQ(l, -3);
        for (float v : r.distances) ASSERT_EQ(v, -5.f);
      }
      pb.w.clear();
      // batched: the CPU's message names the problem, row and column
      std::vector<float> cent(B * k * d, 4.f);
      std::vector<int64_t> lab(B * n, -3);
      std::vector<fkm_iteration_stats> st(B * 8);
      int64_t ns = 0;
      ASSERT_EQ(fkm_train_batched(cpu->c, &pc, B, n, d, k, dt, all.x16.data(), nullptr,
                                  cent.data(), 0, lab.data(), nullptr, st.data(), 8, &ns),
                FKM_ERR_NOT_FINITE);
      const std::string want_b = fkm_ctx_last_error(cpu->c);
      void *dx = nullptr;
      float *dc = nullptr;
      ASSERT_EQ(cudaMalloc(&dx, all.x16.size() * 2), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(dx, all.x16.data(), all.x16.size() * 2, cudaMemcpyHostToDevice),
                cudaSuccess);
      ASSERT_EQ(cudaMalloc((void **)&dc, sizeof(float) * cent.size()), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(dc, cent.data(), sizeof(float) * cent.size(), cudaMemcpyHostToDevice),
                cudaSuccess);
      EXPECT_EQ(fkm_train_batched(gpu->c, &p, B, n, d, k, dt, dx, nullptr, dc, 0, nullptr,
                                  nullptr, st.data(), 8, &ns),
                FKM_ERR_NOT_FINITE);
      EXPECT_EQ(std::string(fkm_ctx_last_error(gpu->c)), want_b);
      std::vector<float> back(cent.size());
      ASSERT_EQ(cudaMemcpy(back.data(), dc, sizeof(float) * back.size(), cudaMemcpyDeviceToHost),
                cudaSuccess);
      for (float v : back) ASSERT_EQ(v, 4.f);
      cudaFree(dx);
      cudaFree(dc);
    }
  }
  // the context stays usable, and a clean 16-bit device run equals the CPU's
  fkm_params p = quick(3);
  check(p, half_problem(FKM_DTYPE_F16, n, d, 100, 33), true);
}

// Host x of a subsampled run: the training rows are checked as they are
// staged, the other rows on a host thread beside the iterations; either
// way the status and message are the CPU's (the first bad value of all of
// x), and nothing is written. float32 and float16 rows.
TEST_F(Cuda, NonFiniteHostRowsInAndOutOfTheSubsampleGiveCpuMessages) {
  const int64_t n = 6000, d = 8, k = 10;
  fkm_params p = quick(3);
  p.max_points_per_centroid = 100; /* 1000 training rows of 6000 */
  std::vector<int64_t> rows(k * 100);
  int64_t nt = 0;
  ASSERT_EQ(fkm_train_rows(cpu->c, &p, n, k, rows.data(), &nt), FKM_OK);
  std::vector<bool> sampled(n);
  for (int64_t i = 0; i < nt; i++) sampled[rows[i]] = true;
  int64_t in = -1, out = -1;
  for (int64_t i = n - 1; i >= 0; i--) (sampled[i] ? in : out) = i;
  for (fkm_dtype dt : {FKM_DTYPE_F32, FKM_DTYPE_F16}) {
    for (std::vector<int64_t> bad_rows :
         {std::vector<int64_t>{in}, {out}, {in, out}, {n - 1}, {0, in}}) {
      std::vector<float> x = fixtures::blobs(n, d, 5, 3);
      for (float &v : x) v = (float)(int)(v * 8.0f); /* exact in fp16 */
      for (int64_t r : bad_rows) x[r * d + 3] = std::numeric_limits<float>::infinity();
      std::vector<uint16_t> h;
      for (float v : x) h.push_back(std::isinf(v) ? (uint16_t)0x7c00u : batched::half_bits(v));
      const void *xp = dt == FKM_DTYPE_F32 ? (const void *)x.data() : (const void *)h.data();
      std::vector<float> cc(k * d, 5.0f), cg(k * d, 5.0f);
      const fkm_status sc = fkm_train(cpu->c, &p, n, d, k, dt, xp, nullptr, cc.data(), 0,
                                      nullptr, nullptr, nullptr, 0, nullptr);
      const std::string mc = fkm_ctx_last_error(cpu->c);
      const fkm_status sg = fkm_train(gpu->c, &p, n, d, k, dt, xp, nullptr, cg.data(), 0,
                                      nullptr, nullptr, nullptr, 0, nullptr);
      EXPECT_EQ(sc, FKM_ERR_NOT_FINITE);
      EXPECT_EQ(sg, sc) << fkm_ctx_last_error(gpu->c);
      EXPECT_EQ(std::string(fkm_ctx_last_error(gpu->c)), mc);
      for (float v : cg) ASSERT_EQ(v, 5.0f);
    }
  }
}

// The context keeps its workspace and pinned buffers from call to call
// (grow-only); calls of other shapes and a release in between change no
// bit.
TEST_F(Cuda, RepeatedCallsOfOtherShapesAndReleasesEqualCpu) {
  fkm_params p = quick(3);
  const Problem a = blobs(20000, 32, 64, 7), b = blobs(3000, 8, 12, 8);
  check(p, a);
  check(p, b);
  check(p, a);
  ASSERT_EQ(fkm_ctx_release_memory(gpu->c), FKM_OK);
  check(p, b);
  check(p, a, true);
  ASSERT_EQ(fkm_ctx_release_memory(cpu->c), FKM_OK);
}

// ------------------------------------------------------------ batched

TEST_F(Cuda, BatchedEqualsSeparateCpuRuns) {
  fkm_params p = quick(4);
  const int64_t B = 3, n = 2000, d = 16, k = 20;
  std::vector<float> x;
  for (int64_t b = 0; b < B; b++) {
    auto xb = fixtures::blobs(n, d, 8, (uint32_t)(100 + b));
    x.insert(x.end(), xb.begin(), xb.end());
  }
  std::vector<float> cg(B * k * d), cc(k * d);
  std::vector<int64_t> lg(B * n), lc(n);
  ASSERT_EQ(fkm_train_batched(gpu->c, &p, B, n, d, k, FKM_DTYPE_F32, x.data(), nullptr, cg.data(), 0,
                              lg.data(), nullptr, nullptr, 0, nullptr),
            FKM_OK)
      << fkm_ctx_last_error(gpu->c);
  for (int64_t b = 0; b < B; b++) {
    ASSERT_EQ(fkm_train(cpu->c, &p, n, d, k, FKM_DTYPE_F32, x.data() + b * n * d, nullptr, cc.data(), 0,
                        lc.data(), nullptr, nullptr, 0, nullptr),
              FKM_OK);
    EXPECT_EQ(std::memcmp(cc.data(), cg.data() + b * k * d, sizeof(float) * k * d), 0) << "batch " << b;
    EXPECT_EQ(std::memcmp(lc.data(), lg.data() + b * n, sizeof(int64_t) * n), 0) << "batch " << b;
  }
}

TEST_F(Cuda, BatchedWithDevicePointersEqualsHostPointers) {
  // x, centroids (with initial rows), labels and distances all in device
  // memory: same bits as the host-pointer call.
  fkm_params p = quick(3);
  const int64_t B = 2, n = 1500, d = 8, k = 12, n_init = 2;
  std::vector<float> x;
  for (int64_t b = 0; b < B; b++) {
    auto xb = fixtures::blobs(n, d, 6, (uint32_t)(300 + b));
    x.insert(x.end(), xb.begin(), xb.end());
  }
  std::vector<float> ch(B * k * d, 0.0f), dh(B * n);
  for (int64_t b = 0; b < B; b++)
    std::memcpy(&ch[b * k * d], &x[b * n * d + 7 * d], sizeof(float) * n_init * d);
  std::vector<float> cd_host(ch);
  std::vector<int64_t> lh(B * n);
  ASSERT_EQ(fkm_train_batched(gpu->c, &p, B, n, d, k, FKM_DTYPE_F32, x.data(), nullptr, ch.data(),
                              n_init, lh.data(), dh.data(), nullptr, 0, nullptr),
            FKM_OK)
      << fkm_ctx_last_error(gpu->c);
  float *dx = nullptr, *dc = nullptr, *dd = nullptr;
  int64_t *dl = nullptr;
  ASSERT_EQ(cudaMalloc((void **)&dx, sizeof(float) * x.size()), cudaSuccess);
  ASSERT_EQ(cudaMalloc((void **)&dc, sizeof(float) * cd_host.size()), cudaSuccess);
  ASSERT_EQ(cudaMalloc((void **)&dd, sizeof(float) * B * n), cudaSuccess);
  ASSERT_EQ(cudaMalloc((void **)&dl, sizeof(int64_t) * B * n), cudaSuccess);
  cudaMemcpy(dx, x.data(), sizeof(float) * x.size(), cudaMemcpyHostToDevice);
  cudaMemcpy(dc, cd_host.data(), sizeof(float) * cd_host.size(), cudaMemcpyHostToDevice);
  fkm_status s = fkm_train_batched(gpu->c, &p, B, n, d, k, FKM_DTYPE_F32, dx, nullptr, dc, n_init,
                                   dl, dd, nullptr, 0, nullptr);
  std::vector<float> cg(B * k * d), dg(B * n);
  std::vector<int64_t> lg(B * n);
  cudaMemcpy(cg.data(), dc, sizeof(float) * cg.size(), cudaMemcpyDeviceToHost);
  cudaMemcpy(dg.data(), dd, sizeof(float) * dg.size(), cudaMemcpyDeviceToHost);
  cudaMemcpy(lg.data(), dl, sizeof(int64_t) * lg.size(), cudaMemcpyDeviceToHost);
  cudaFree(dx);
  cudaFree(dc);
  cudaFree(dd);
  cudaFree(dl);
  ASSERT_EQ(s, FKM_OK) << fkm_ctx_last_error(gpu->c);
  EXPECT_TRUE(same_bits(ch, cg)) << first_diff(ch, cg);
  EXPECT_TRUE(same_bits(dh, dg)) << first_diff(dh, dg);
  EXPECT_EQ(lh, lg);
}

// The shared batched table (tests/batched_cases.h): the CUDA engine's
// lockstep batched run against separate CPU runs of each problem.
class CudaBatched : public Cuda, public ::testing::WithParamInterface<batched::Case> {};

// With FLASHKM_CUDA_BATCHED=0 (read when a context is created) every
// problem has its own launches: the table's cases equal separate CPU runs.
TEST_P(CudaBatched, EqualsSeparateCpuRuns) {
  const batched::Case &c = GetParam();
  Ctx each(FKM_BACKEND_CUDA, "FLASHKM_CUDA_BATCHED", "0");
  ASSERT_EQ(each.status, FKM_OK);
  const batched::Data s = batched::make(c);
  LogLines log;
  batched::expect_equal(c, batched::run_batched(each.c, c, s, LogLines::collect, &log),
                        batched::run_separately(cpu->c, c, s));
  EXPECT_FALSE(log.said("assignment in one launch")) << log.all();
}

// By default a batch with the plain scan assigns every problem in one
// launch where its plan is the reference SIMT kernel (k < 64 or d < 16, and
// a parity batch of k <= 64), and in one launch sequence where it is the
// certified cascade with rows of 16 bytes (d % 4 == 0); its verbose log says
// so; every case of the table still equals separate CPU runs.
TEST_P(CudaBatched, OneLaunchEqualsSeparateCpuRuns) {
  const batched::Case &c = GetParam();
  const batched::Data s = batched::make(c);
  LogLines log;
  batched::expect_equal(c, batched::run_batched(gpu->c, c, s, LogLines::collect, &log),
                        batched::run_separately(cpu->c, c, s));
  const bool simt = c.k <= 64 || c.d < 16;
  EXPECT_EQ(log.said("assignment in one launch"), simt || c.d % 4 == 0)
      << "k " << c.k << ", d " << c.d;
  EXPECT_EQ(log.said("parity assignment in one launch sequence"), !simt && c.d % 4 == 0)
      << "k " << c.k << ", d " << c.d;
  // the final labels: one pass over the resident rows unless subsampled
  EXPECT_EQ(log.said("final labels from the resident training rows"),
            c.n <= c.k * c.max_points_per_centroid)
      << log.all();
}

// Each case run as a batch on the GPU equals separate CPU runs, and the
// batch's verbose log says `said`.
static void expect_batches_equal_cpu(fkm_ctx *gpu_c, fkm_ctx *cpu_c,
                                     std::vector<batched::Case> cases, int niter,
                                     const char *said) {
  for (batched::Case &c : cases) {
    SCOPED_TRACE(c.name);
    c.niter = niter;
    const batched::Data s = batched::make(c);
    LogLines log;
    batched::expect_equal(c, batched::run_batched(gpu_c, c, s, LogLines::collect, &log),
                          batched::run_separately(cpu_c, c, s));
    EXPECT_TRUE(log.said(said)) << log.all();
  }
}

// A parity batch whose screen fills several waves takes a few persistent
// blocks a problem (each walking items, the next one's rows loading while
// one computes; d = 200: the rows stream with the centroid chunks): the
// bits of separate CPU runs, both metrics, float32 and float16 rows.
TEST_F(Cuda, ParityBatchOnPersistentBlocksEqualsSeparateCpuRuns) {
  /* 40 problems of 2000 rows: 8 items a problem, 320 in all */
  std::vector<batched::Case> cases = {{"d64_l2", 40, 2000, 64, 96},
                                      {"d200_ip_f16", 40, 2000, 200, 130}};
  cases[1].metric = FKM_METRIC_INNER_PRODUCT;
  cases[1].dtype = FKM_DTYPE_F16;
  expect_batches_equal_cpu(gpu->c, cpu->c, cases, 3, "parity assignment in one launch sequence");
}

// More problems than the device holds blocks of at once: the batch's
// one-launch reference kernel; the three tile shapes (k <= 8, <= 16, <= 64),
// a dimension tail, rows neither 4-aligned nor a whole tile, both metrics.
TEST_F(Cuda, ManyProblemsInOneLaunchEqualSeparateCpuRuns) {
  // 140 problems: more than two blocks a problem of the 2 x 132 an H100 or
  // H200 holds at once
  std::vector<batched::Case> cases = {{"k8_d21", 140, 260, 21, 8},
                                      {"k16_d7", 140, 300, 7, 13},
                                      {"k40_d40", 140, 390, 40, 40},
                                      {"k64_d36_ip", 140, 270, 36, 64}};
  cases[3].metric = FKM_METRIC_INNER_PRODUCT;
  expect_batches_equal_cpu(gpu->c, cpu->c, cases, 2, "assignment in one launch");
}

// A parity batch on the certified cascade (k > 64, d >= 16) runs each of
// its steps once for every problem (fkm_launch_assign_tc_batched): equal to
// separate CPU runs bit for bit with x resident in the screen (d <= 128) and
// streamed beside the centroids (d = 200), both metrics, weights, 16-bit
// rows subsampled, empty clusters split (few distinct points: many rows the
// screen cannot certify, so the second pass and the reference kernel run),
// more problems than the device has multiprocessors (one persistent block a
// problem); rows of d % 4 != 0 keep a launch sequence a problem.
TEST_F(Cuda, ParityBatchInOneLaunchSequenceEqualsSeparateCpuRuns) {
  std::vector<batched::Case> cases = {{"d128", 5, 2500, 128, 100},
                                      {"d64_ip_weights", 3, 2000, 64, 80},
                                      {"d200_x_streamed", 3, 1500, 200, 130},
                                      {"d32_few_distinct", 4, 1200, 32, 70},
                                      {"d48_f16_subsampled", 3, 3000, 48, 72},
                                      {"d32_140_problems", 140, 300, 32, 65},
                                      {"d30_launches_a_problem", 3, 900, 30, 70}};
  cases[1].metric = FKM_METRIC_INNER_PRODUCT;
  cases[1].weighted = true;
  cases[3].few_distinct = true;
  cases[3].niter = 6;
  cases[4].dtype = FKM_DTYPE_F16;
  cases[4].max_points_per_centroid = 20;
  for (batched::Case &c : cases) {
    SCOPED_TRACE(c.name);
    if (c.niter == 4) c.niter = 3;
    const batched::Data s = batched::make(c);
    LogLines log;
    batched::expect_equal(c, batched::run_batched(gpu->c, c, s, LogLines::collect, &log),
                          batched::run_separately(cpu->c, c, s));
    EXPECT_EQ(log.said("parity assignment in one launch sequence"), c.d % 4 == 0) << log.all();
  }
}

// fp16 rows with segments of 64 rows or more on average: the update reads
// the parity cascade's packed copy times 2^-sx where that is exact (sx >= 0)
// and x's float rows for a problem whose max|x| >= 2^15 (problem 1 here, one
// value 40000, sx = -1); both the CPU's bits, batched and a problem at a
// time, at d = 64 and at d = 200 (a partial 64-column slice).
TEST_F(Cuda, ParityUpdateFromThePackedCopyEqualsCpu) {
  for (const int64_t d : {64, 200}) {
    SCOPED_TRACE("d " + std::to_string(d));
    batched::Case c{"packed_update", 3, 8192, d, 100}; /* 82 rows a segment */
    c.dtype = FKM_DTYPE_F16;
    c.niter = 3;
    batched::Data s = batched::make(c);
    const int64_t at = (1 * c.n + 77) * c.d + 5; /* problem 1's row 77 */
    s.x[at] = 40000.0f;                          /* exact in fp16 */
    s.x16[at] = batched::half_bits(40000.0f);
    const batched::Out want = batched::run_separately(cpu->c, c, s);
    LogLines log;
    batched::expect_equal(c, batched::run_batched(gpu->c, c, s, LogLines::collect, &log), want);
    EXPECT_TRUE(log.said("parity assignment in one launch sequence")) << log.all();
    Ctx each(FKM_BACKEND_CUDA, "FLASHKM_CUDA_BATCHED", "0");
    ASSERT_EQ(each.status, FKM_OK);
    batched::expect_equal(c, batched::run_batched(each.c, c, s), want);
  }
}

// A parity batch whose scratch, one a problem, would not fit the budget takes
// the lanes' scratch (a launch sequence a problem) and still gives the CPU's
// bits; fkm_train_memory plans what the run takes: under a budget of the
// lanes' plan, the lanes' bytes.
TEST_F(Cuda, ParityBatchOverItsBudgetTakesTheLanes) {
  batched::Case c{"over_budget", 12, 3000, 64, 100}; /* 12 problems' scratch, 8 lanes' */
  c.niter = 3;
  const batched::Data s = batched::make(c);
  fkm_params p = batched::params(c);
  Ctx each(FKM_BACKEND_CUDA, "FLASHKM_CUDA_BATCHED", "0");
  ASSERT_EQ(each.status, FKM_OK);
  fkm_memory_plan batch{}, lanes{}, capped{};
  ASSERT_EQ(fkm_train_memory(gpu->c, &p, c.batch, c.n, c.d, c.k, c.dtype, &batch), FKM_OK);
  ASSERT_EQ(fkm_train_memory(each.c, &p, c.batch, c.n, c.d, c.k, c.dtype, &lanes), FKM_OK);
  ASSERT_GT(batch.bytes, lanes.bytes);
  p.memory_budget = lanes.bytes;
  ASSERT_EQ(fkm_train_memory(gpu->c, &p, c.batch, c.n, c.d, c.k, c.dtype, &capped), FKM_OK)
      << fkm_ctx_last_error(gpu->c);
  EXPECT_EQ(capped.bytes, lanes.bytes);
  LogLines log;
  batched::expect_equal(c, batched::run_batched_with(gpu->c, c, s, log.logged(p)),
                        batched::run_separately(cpu->c, c, s));
  EXPECT_FALSE(log.said("parity assignment in one launch sequence")) << log.all();
}

INSTANTIATE_TEST_SUITE_P(Table, CudaBatched, ::testing::ValuesIn(batched::cases()),
                         [](const ::testing::TestParamInfo<batched::Case> &i) {
                           return std::string(i.param.name);
                         });

// The data path (tests/source_cases.h): rows through a host source at a
// stride and through a read callback, and the training set streamed under
// the least budget a streamed run takes (chunks of 128 rows), on the CUDA
// engine, against the array in core on the CPU.
class CudaDataPath : public Cuda, public ::testing::WithParamInterface<source_cases::Case> {};

TEST_P(CudaDataPath, EqualsTheCpuArrayInCore) {
  const source_cases::Case &k = GetParam();
  const batched::Data s = batched::make(k.c);
  batched::expect_equal(k.c, source_cases::run(gpu->c, k, s),
                        source_cases::run_in_core(cpu->c, k, s));
}

INSTANTIATE_TEST_SUITE_P(Table, CudaDataPath, ::testing::ValuesIn(source_cases::cases()),
                         [](const ::testing::TestParamInfo<source_cases::Case> &i) {
                           return source_cases::case_name(i.param);
                         });

// Host x in pinned memory crosses without staging, in core and streamed
// (the least budget: chunks of 128 rows): the CPU's bits either way, for
// float32 rows and for 16-bit rows (streamed, they cross as they are and
// the work's stream widens them), and with the streamed path's measurement
// switches (FLASHKM_CUDA_STREAM: copy-widen, no-prefetch).
TEST_F(Cuda, PinnedHostRowsInCoreAndStreamedEqualCpu) {
  const int64_t n = 9000, d = 16, k = 40;
  for (const fkm_dtype t : {FKM_DTYPE_F32, FKM_DTYPE_F16, FKM_DTYPE_BF16}) {
    SCOPED_TRACE(t == FKM_DTYPE_F32 ? "float32" : t == FKM_DTYPE_F16 ? "float16" : "bfloat16");
    const std::vector<float> x32 =
        t == FKM_DTYPE_F32 ? fixtures::blobs(n, d, 12, 23) : std::vector<float>();
    const std::vector<uint16_t> x16 =
        t == FKM_DTYPE_F32 ? std::vector<uint16_t>() : quantized_blobs(t, n, d, 12, 23).x16;
    const void *host = t == FKM_DTYPE_F32 ? (const void *)x32.data() : (const void *)x16.data();
    const size_t bytes = (t == FKM_DTYPE_F32 ? 4 : 2) * (size_t)(n * d);
    void *pinned = nullptr;
    ASSERT_EQ(cudaMallocHost(&pinned, bytes), cudaSuccess);
    std::memcpy(pinned, host, bytes);
    fkm_params p = quick(4);
    p.max_points_per_centroid = 1000; /* every row trained on: contiguous chunks */
    std::vector<float> cc(k * d), cg(k * d), cs(k * d);
    std::vector<int64_t> lc(n), lg(n), ls(n);
    ASSERT_EQ(fkm_train(cpu->c, &p, n, d, k, t, host, nullptr, cc.data(), 0, lc.data(), nullptr,
                        nullptr, 0, nullptr),
              FKM_OK);
    ASSERT_EQ(fkm_train(gpu->c, &p, n, d, k, t, pinned, nullptr, cg.data(), 0, lg.data(),
                        nullptr, nullptr, 0, nullptr),
              FKM_OK)
        << fkm_ctx_last_error(gpu->c);
    fkm_memory_plan plan;
    ASSERT_EQ(fkm_train_memory(gpu->c, &p, 1, n, d, k, t, &plan), FKM_OK);
    p.memory_budget = plan.streamed_bytes;
    ASSERT_EQ(fkm_train_memory(gpu->c, &p, 1, n, d, k, t, &plan), FKM_OK);
    EXPECT_EQ(plan.streamed, 1);
    EXPECT_GT((n + plan.chunk_rows - 1) / plan.chunk_rows, 10);
    ASSERT_EQ(fkm_train(gpu->c, &p, n, d, k, t, pinned, nullptr, cs.data(), 0, ls.data(),
                        nullptr, nullptr, 0, nullptr),
              FKM_OK)
        << fkm_ctx_last_error(gpu->c);
    EXPECT_TRUE(same_bits(cg, cc)) << first_diff(cg, cc);
    EXPECT_TRUE(same_bits(cs, cc)) << first_diff(cs, cc);
    EXPECT_EQ(lg, lc);
    EXPECT_EQ(ls, lc);
    for (const char *mode : {"copy-widen", "no-prefetch"}) {
      SCOPED_TRACE(mode);
      Ctx other(FKM_BACKEND_CUDA, "FLASHKM_CUDA_STREAM", mode);
      ASSERT_EQ(other.status, FKM_OK);
      std::vector<float> co(k * d);
      std::vector<int64_t> lo(n);
      ASSERT_EQ(fkm_train(other.c, &p, n, d, k, t, pinned, nullptr, co.data(), 0, lo.data(),
                          nullptr, nullptr, 0, nullptr),
                FKM_OK)
          << fkm_ctx_last_error(other.c);
      EXPECT_TRUE(same_bits(co, cc)) << first_diff(co, cc);
      EXPECT_EQ(lo, lc);
    }
    cudaFreeHost(pinned);
  }
}

// A training set larger than the device's free memory streams with that
// memory less its reserve as its budget (no memory_budget set: the device
// is filled here, all but three quarters of what the run needs in core;
// the workspace planned to the last free byte did not allocate); the final
// search's scratch then takes the workspace's place: centroids, labels and
// distances the CPU's.
TEST_F(Cuda, StreamedOnAFullDeviceStillReturnsLabels) {
  const int64_t n = 6 << 20, d = 32, k = 64;
  const std::vector<float> x = fixtures::blobs(n, d, 16, 41);
  fkm_params p = quick(2);
  p.max_points_per_centroid = (int)(n / k + 1); /* every row trained on */
  std::vector<float> cc(k * d), cg(k * d), dc(n), dg(n);
  std::vector<int64_t> lc(n), lg(n);
  ASSERT_EQ(fkm_train(cpu->c, &p, n, d, k, FKM_DTYPE_F32, x.data(), nullptr, cc.data(), 0,
                      lc.data(), dc.data(), nullptr, 0, nullptr),
            FKM_OK);
  fkm_memory_plan plan;
  ASSERT_EQ(fkm_train_memory(gpu->c, &p, 1, n, d, k, FKM_DTYPE_F32, &plan), FKM_OK);
  size_t free_b = 0, total = 0;
  ASSERT_EQ(cudaMemGetInfo(&free_b, &total), cudaSuccess);
  const size_t leave = plan.in_core_bytes / 4 * 3;
  ASSERT_GT(free_b, leave + ((size_t)256 << 20));
  void *blob = nullptr;
  ASSERT_EQ(cudaMalloc(&blob, free_b - leave), cudaSuccess);
  fkm_memory_plan full;
  const fkm_status sp = fkm_train_memory(gpu->c, &p, 1, n, d, k, FKM_DTYPE_F32, &full);
  const fkm_status st = fkm_train(gpu->c, &p, n, d, k, FKM_DTYPE_F32, x.data(), nullptr,
                                  cg.data(), 0, lg.data(), dg.data(), nullptr, 0, nullptr);
  const std::string msg = fkm_ctx_last_error(gpu->c);
  cudaFree(blob);
  ASSERT_EQ(sp, FKM_OK);
  EXPECT_EQ(full.streamed, 1) << "in core " << full.in_core_bytes << ", available "
                              << full.available;
  ASSERT_EQ(st, FKM_OK) << msg;
  EXPECT_TRUE(same_bits(cg, cc)) << first_diff(cg, cc);
  EXPECT_EQ(lg, lc);
  EXPECT_TRUE(same_bits(dg, dc)) << first_diff(dg, dc);
}

// A source with two bad training rows, the lesser row index late in
// training order (another chunk when streamed): the CPU's status and
// message (the lesser row), in core and streamed, host rows and a
// callback, float32 and float16; nothing written.
TEST_F(Cuda, BadRowsOfASourceGiveCpuMessages) {
  const int64_t n = 4000, d = 8, k = 10;
  fkm_params p = quick(3);
  p.max_points_per_centroid = 100; /* 1000 training rows of 4000 */
  std::vector<int64_t> rows(n);
  int64_t nt = 0;
  ASSERT_EQ(fkm_train_rows(cpu->c, &p, n, k, rows.data(), &nt), FKM_OK);
  const int64_t late = *std::min_element(rows.begin() + 800, rows.begin() + nt);
  const int64_t early = *std::max_element(rows.begin(), rows.begin() + 100);
  ASSERT_LT(late, early);
  std::vector<float> x = fixtures::blobs(n, d, 5, 3);
  for (float &v : x) v = (float)(int)(v * 8.0f); /* exact in fp16 */
  x[early * d + 2] = std::numeric_limits<float>::quiet_NaN();
  x[late * d + 5] = -std::numeric_limits<float>::infinity();
  std::vector<uint16_t> h;
  for (float v : x)
    h.push_back(std::isnan(v) ? (uint16_t)0x7e00u
                              : std::isinf(v) ? (uint16_t)0xfc00u : batched::half_bits(v));
  const std::string want = "x contains NaN or Inf at row " + std::to_string(late) + ", column 5";
  for (fkm_dtype dt : {FKM_DTYPE_F32, FKM_DTYPE_F16}) {
    const void *base = dt == FKM_DTYPE_F32 ? (const void *)x.data() : (const void *)h.data();
    source_cases::Rows served{static_cast<const char *>(base), (size_t)d * (dt ? 2 : 4)};
    for (bool callback : {false, true})
      for (bool streamed : {false, true}) {
        fkm_source src;
        ASSERT_EQ(callback ? fkm_source_callback(&src, n, d, dt, source_cases::read_rows, &served)
                           : fkm_source_host(&src, base, n, d, dt, 0),
                  FKM_OK);
        for (Ctx *ctx : {cpu, gpu}) {
          fkm_memory_plan plan;
          p.memory_budget = 0;
          ASSERT_EQ(fkm_train_memory(ctx->c, &p, 1, n, d, k, dt, &plan), FKM_OK);
          p.memory_budget = streamed ? plan.streamed_bytes : 0;
          std::vector<float> cent(k * d, 5.0f);
          EXPECT_EQ(fkm_train_source(ctx->c, &p, &src, k, nullptr, cent.data(), 0, nullptr,
                                     nullptr, nullptr, 0, nullptr),
                    FKM_ERR_NOT_FINITE);
          EXPECT_EQ(std::string(fkm_ctx_last_error(ctx->c)), want)
              << (ctx == cpu ? "cpu" : "gpu") << " dtype " << dt
              << (callback ? " callback" : " host") << (streamed ? " streamed" : "");
          for (float v : cent) ASSERT_EQ(v, 5.0f);
        }
      }
  }
}

// fkm_assign_source on the GPU (rows staged chunk by chunk, results back
// to host chunk by chunk) against fkm_assign on the CPU.
TEST_F(Cuda, AssignSourceEqualsCpuAssign) {
  const int64_t n = 70000, d = 24, k = 300;
  const std::vector<float> x = fixtures::blobs(n, d, 40, 17);
  const std::vector<float> c(x.begin() + 5 * d, x.begin() + (5 + k) * d);
  fkm_params p = defaults();
  std::vector<int64_t> lc(n), lg(n, -9);
  std::vector<float> dc(n), dg(n, -9.f);
  ASSERT_EQ(fkm_assign(cpu->c, &p, n, d, k, FKM_DTYPE_F32, x.data(), c.data(), lc.data(),
                       dc.data()),
            FKM_OK);
  source_cases::Rows rows{reinterpret_cast<const char *>(x.data()), sizeof(float) * d};
  fkm_source src;
  ASSERT_EQ(fkm_source_callback(&src, n, d, FKM_DTYPE_F32, source_cases::read_rows, &rows),
            FKM_OK);
  ASSERT_EQ(fkm_assign_source(gpu->c, &p, &src, k, c.data(), lg.data(), dg.data()), FKM_OK)
      << fkm_ctx_last_error(gpu->c);
  EXPECT_TRUE(same_bits(lg, lc)) << first_diff(lg, lc);
  EXPECT_TRUE(same_bits(dg, dc)) << first_diff(dg, dc);
}

// fkm_assign of host rows in chunks of 6000 (FLASHKM_CUDA_ASSIGN_CHUNK; 12
// chunks, each crossing beside the last one's search): float32 and float16
// rows, pageable, pinned and through a callback source, against fkm_assign
// on the CPU; also with FLASHKM_CUDA_STREAM=copy-widen (one buffer, chunk
// after chunk). A non-finite value in a late chunk of a source: the CPU's
// status and message, nothing written.
TEST_F(Cuda, AssignOfHostRowsInChunksEqualsCpuAssign) {
  const int64_t n = 70000, d = 24, k = 300;
  for (const char *stream : {"default", "copy-widen"}) {
    SCOPED_TRACE(stream);
    Ctx g(FKM_BACKEND_CUDA,
          {{"FLASHKM_CUDA_STREAM", std::string(stream) == "default" ? nullptr : stream},
           {"FLASHKM_CUDA_ASSIGN_CHUNK", "6000"}});
    ASSERT_EQ(g.status, FKM_OK);
    for (const fkm_dtype t : {FKM_DTYPE_F32, FKM_DTYPE_F16}) {
      SCOPED_TRACE(t == FKM_DTYPE_F32 ? "float32" : "float16");
      const std::vector<float> x32 =
          t == FKM_DTYPE_F32 ? fixtures::blobs(n, d, 40, 17) : std::vector<float>();
      const std::vector<uint16_t> x16 =
          t == FKM_DTYPE_F32 ? std::vector<uint16_t>() : quantized_blobs(t, n, d, 40, 17).x16;
      const size_t es = t == FKM_DTYPE_F32 ? 4 : 2, bytes = es * (size_t)(n * d);
      const char *host = t == FKM_DTYPE_F32 ? reinterpret_cast<const char *>(x32.data())
                                            : reinterpret_cast<const char *>(x16.data());
      std::vector<float> c(k * d); /* rows 5 .. 5 + k, as floats */
      for (int64_t i = 0; i < k * d; i++)
        c[i] = t == FKM_DTYPE_F32 ? x32[5 * d + i] : half_value(x16[5 * d + i]);
      fkm_params p = defaults();
      std::vector<int64_t> lc(n);
      std::vector<float> dc(n);
      ASSERT_EQ(fkm_assign(cpu->c, &p, n, d, k, t, host, c.data(), lc.data(), dc.data()), FKM_OK);
      void *pinned = nullptr;
      ASSERT_EQ(cudaMallocHost(&pinned, bytes), cudaSuccess);
      std::memcpy(pinned, host, bytes);
      source_cases::Rows rows{host, es * (size_t)d};
      fkm_source src;
      ASSERT_EQ(fkm_source_callback(&src, n, d, t, source_cases::read_rows, &rows), FKM_OK);
      for (int how = 0; how < 3; how++) {
        SCOPED_TRACE(how == 0 ? "pageable" : how == 1 ? "pinned" : "callback");
        std::vector<int64_t> lg(n, -9);
        std::vector<float> dg(n, -9.f);
        const fkm_status st =
            how == 2 ? fkm_assign_source(g.c, &p, &src, k, c.data(), lg.data(), dg.data())
                     : fkm_assign(g.c, &p, n, d, k, t, how == 0 ? (const void *)host : pinned,
                                  c.data(), lg.data(), dg.data());
        ASSERT_EQ(st, FKM_OK) << fkm_ctx_last_error(g.c);
        EXPECT_TRUE(same_bits(lg, lc)) << first_diff(lg, lc);
        EXPECT_TRUE(same_bits(dg, dc)) << first_diff(dg, dc);
      }
      cudaFreeHost(pinned);
    }
    // a NaN in chunk 9 of a callback source: the CPU's status and message
    std::vector<float> xb = fixtures::blobs(n, d, 40, 17);
    const std::vector<float> c(xb.begin() + 5 * d, xb.begin() + (5 + k) * d);
    xb[(9 * 6000 + 17) * d + 3] = std::numeric_limits<float>::quiet_NaN();
    source_cases::Rows rows{reinterpret_cast<const char *>(xb.data()), sizeof(float) * d};
    fkm_source src;
    ASSERT_EQ(fkm_source_callback(&src, n, d, FKM_DTYPE_F32, source_cases::read_rows, &rows),
              FKM_OK);
    fkm_params p = defaults();
    std::vector<int64_t> lc(n, -7), lg(n, -7);
    const fkm_status sc = fkm_assign_source(cpu->c, &p, &src, k, c.data(), lc.data(), nullptr);
    const std::string mc = fkm_ctx_last_error(cpu->c);
    const fkm_status sg = fkm_assign_source(g.c, &p, &src, k, c.data(), lg.data(), nullptr);
    EXPECT_EQ(sc, FKM_ERR_NOT_FINITE);
    EXPECT_EQ(sg, sc);
    EXPECT_EQ(std::string(fkm_ctx_last_error(g.c)), mc);
    for (int64_t v : lg) ASSERT_EQ(v, -7);
  }
}

TEST_F(Cuda, BatchedChunkedRowsEqualSeparateCpuRuns) {
  // 2^19 rows per problem: each problem's assignment runs in two row chunks
  batched::Case c{"chunked", 2, 1 << 19, 16, 70};
  c.niter = 2;
  const batched::Data s = batched::make(c);
  batched::expect_equal(c, batched::run_batched(gpu->c, c, s),
                        batched::run_separately(cpu->c, c, s));
}

TEST_F(Cuda, BatchedFastModeEqualsSeparateFastRuns) {
  // FKM_ASSIGN_FAST is deterministic per GPU and path: a batched run gives
  // each problem the bits of its own run.
  batched::Case c{"fast", 3, 4000, 128, 256};
  c.dtype = FKM_DTYPE_F16;
  c.niter = 3;
  const batched::Data s = batched::make(c);
  fkm_params p = batched::params(c);
  p.assign_mode = FKM_ASSIGN_FAST;
  std::vector<float> cb(s.centroids), cs(s.centroids);
  std::vector<int64_t> lb(c.batch * c.n), ls(c.batch * c.n);
  ASSERT_EQ(fkm_train_batched(gpu->c, &p, c.batch, c.n, c.d, c.k, c.dtype, s.x16.data(), nullptr,
                              cb.data(), 0, lb.data(), nullptr, nullptr, 0, nullptr),
            FKM_OK)
      << fkm_ctx_last_error(gpu->c);
  for (int64_t b = 0; b < c.batch; b++)
    ASSERT_EQ(fkm_train(gpu->c, &p, c.n, c.d, c.k, c.dtype, s.x16.data() + b * c.n * c.d, nullptr,
                        cs.data() + b * c.k * c.d, 0, ls.data() + b * c.n, nullptr, nullptr, 0,
                        nullptr),
              FKM_OK);
  EXPECT_TRUE(same_bits(cb, cs)) << first_diff(cb, cs);
  EXPECT_EQ(lb, ls);
}

// ------------------------------------------------------------ host-only

TEST(AssignPlan, SplitRangesCoverEveryCentroidOnceInOrder) {
  // Runs without a GPU: the grid plan is a pure function.
  const int64_t ns[] = {1, 63, 64, 1000, 100000, 4000000};
  const int64_t ks[] = {1, 2, 64, 65, 1000, 65536, 4194304};
  for (int tc : {0, 1})
    for (int64_t n : ns)
      for (int64_t k : ks) {
        const int64_t d = 128;
        const fkm_assign_plan p = fkm_assign_make_plan(n, k, d, 1056, tc);
        EXPECT_EQ(p.tc, tc && fkm_assign_use_tc(k, d));
        const int64_t bm = p.tc ? FKM_MMA_BM : FKM_ASSIGN_BM, bn = p.tc ? FKM_MMA_BN : FKM_ASSIGN_BN;
        ASSERT_GE(p.ksplit, 1);
        EXPECT_EQ(p.k_per_split % bn, 0);
        EXPECT_GE(p.ksplit * p.k_per_split, k) << "n " << n << " k " << k;
        EXPECT_LT((p.ksplit - 1) * p.k_per_split, k) << "no empty range, n " << n << " k " << k;
        EXPECT_EQ(p.row_blocks, (n + bm - 1) / bm);
        if (p.tc) {
          // the scratch regions follow each other, 256-byte aligned, each large enough
          const fkm_mma_work w = fkm_mma_work_layout(n, k, d, &p);
          EXPECT_EQ(p.work_bytes, w.end);
          EXPECT_GE(w.rows, 256u);
          EXPECT_GE(w.rows1, w.rows + (size_t)n * 4u);
          EXPECT_GE(w.cb, w.rows1 + (size_t)n * 4u);
          EXPECT_GE(w.cpack, w.cb + (size_t)k * 8u);
          EXPECT_GE(w.cconst, w.cpack + fkm_pack_x_bytes(k, d));
          EXPECT_GE(w.states, w.cconst + (size_t)fkm_round_up(k, FKM_MMA_BN) * 16u);
          EXPECT_GE(w.gath, w.states + (size_t)(p.ksplit * n) * 12u);
          EXPECT_GE(w.partials, w.gath + fkm_pack_x_bytes(n, d));
          EXPECT_GE(w.end, w.partials + (size_t)(p.refine_split * n) * 8u);
          EXPECT_GE(w.end, w.partials + (size_t)(p.cert_split * n) * 28u);
          for (size_t o : {w.rows, w.rows1, w.cb, w.cpack, w.cconst, w.states, w.gath, w.partials})
            EXPECT_EQ(o % 256u, 0u);
          EXPECT_LE(p.refine_split, 16);
          EXPECT_GE(p.refine_split * p.refine_k_per_split, k);
          EXPECT_LT((p.refine_split - 1) * p.refine_k_per_split, k);
          EXPECT_LE(p.cert_split, 4);
          EXPECT_EQ(p.cert_k_per_split % FKM_MMA_BN, 0);
          EXPECT_GE(p.cert_split * p.cert_k_per_split, k);
          EXPECT_LT((p.cert_split - 1) * p.cert_k_per_split, k);
        } else if (p.ksplit == 1) {
          EXPECT_EQ(p.work_bytes, 0u);
        } else {
          EXPECT_EQ(p.work_bytes, (size_t)(p.ksplit * n) * 8u);
        }
      }
  // many rows: no split at all; tiny k or d: the SIMT path
  EXPECT_EQ(fkm_assign_make_plan(1 << 20, 1024, 128, 1056, 1).ksplit, 1);
  EXPECT_EQ(fkm_assign_make_plan(1000, 7, 128, 1056, 1).tc, 0);
  EXPECT_EQ(fkm_assign_make_plan(1000, 1024, 3, 1056, 1).tc, 0);
  // grids over device-side row lists: two blocks per multiprocessor (the
  // constant 264 they replaced on a 132-multiprocessor H100 / H200)
  EXPECT_EQ(fkm_assign_make_plan(1000, 1024, 128, FKM_BLOCKS_PER_SM * 132, 1).list_blocks, 264);
  EXPECT_EQ(fkm_assign_make_plan(1000, 1024, 128, FKM_BLOCKS_PER_SM * 108, 1).list_blocks, 216);
  EXPECT_EQ(fkm_assign_make_fast_plan(1000, 1024, 128, FKM_BLOCKS_PER_SM * 16, 1).list_blocks,
            32);
}

TEST(AssignPlan, WgmmaRangesKeepStreamedRowsInL2) {
  // 1M rows, d <= 128 (x resident): no ranges; beyond, enough centroid
  // ranges that sms / ksplit row groups of 256 x dp fp16 fit the L2 budget,
  // valid ranges and a workspace that holds the partials
  const fkm_assign_plan a = fkm_assign_make_fast_plan(1 << 20, 1024, 128, 1056, FKM_DTYPE_F16);
  fkm_assign_plan b = a;
  fkm_assign_plan_wgmma(&b, 1 << 20, 1024, 128, 132);
  EXPECT_EQ(b.wgmma, 132);
  EXPECT_EQ(b.ksplit, a.ksplit);
  // at least one row group of 256 per multiprocessor: no ranges (the
  // mma.sync split gives this batched problem of 64k rows 3); fewer: enough
  // ranges for one item per multiprocessor
  fkm_assign_plan c64 = fkm_assign_make_fast_plan(65536, 1024, 128, 1056, FKM_DTYPE_F16);
  EXPECT_EQ(c64.ksplit, 3);
  fkm_assign_plan_wgmma(&c64, 65536, 1024, 128, 132);
  EXPECT_EQ(c64.ksplit, 1);
  EXPECT_EQ(c64.work_bytes, fkm_mma_work_layout(65536, 1024, 128, &c64).end);
  fkm_assign_plan c20 = fkm_assign_make_plan(20000, 1024, 128, 1056, 1);
  fkm_assign_plan_wgmma(&c20, 20000, 1024, 128, 132);
  EXPECT_GE(c20.ksplit * ((20000 + 255) / 256), 132);
  EXPECT_EQ(c20.work_bytes, fkm_mma_work_layout(20000, 1024, 128, &c20).end);
  for (int64_t d : {129, 768, 1536, 4096})
    for (int64_t k : {64, 1024, 65536})
      for (int tc : {0, 1}) {
        const int64_t n = 1 << 20, dp = fkm_pack_dims(d), tiles = (k + 127) / 128;
        fkm_assign_plan p = tc ? fkm_assign_make_plan(n, k, d, 1056, 1)
                               : fkm_assign_make_fast_plan(n, k, d, 1056, FKM_DTYPE_F16);
        fkm_assign_plan_wgmma(&p, n, k, d, 132);
        const int64_t need = (132 * 256 * dp * 2 + FKM_STREAM_L2_BYTES - 1) / FKM_STREAM_L2_BYTES;
        EXPECT_GE(p.ksplit, need < tiles ? need : tiles) << "d " << d << " k " << k;
        EXPECT_EQ(p.k_per_split % FKM_MMA_BN, 0);
        EXPECT_GE(p.ksplit * p.k_per_split, k);
        EXPECT_LT((p.ksplit - 1) * p.k_per_split, k);
        EXPECT_EQ(p.work_bytes, fkm_mma_work_layout(n, k, d, &p).end);
      }
  // no wgmma: nothing changes
  fkm_assign_plan c = fkm_assign_make_fast_plan(1 << 20, 1024, 768, 1056, FKM_DTYPE_F16);
  fkm_assign_plan_wgmma(&c, 1 << 20, 1024, 768, 0);
  EXPECT_EQ(c.wgmma, 0);
  EXPECT_EQ(c.ksplit, fkm_assign_make_fast_plan(1 << 20, 1024, 768, 1056, FKM_DTYPE_F16).ksplit);
}

}  // namespace
