// fkm_launch_objective (kernels/update.cu, compiled into this test: the
// launchers are internal to libflashkm) against the sequential float and
// double chains on the host, bit for bit, on adversarial distance arrays,
// in one call and in chunks carrying the running sums. Skips without a GPU.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "have_gpu.h"
#include "fixtures.h"

#include "update.cuh"

namespace {

using fixtures::bits;
using fixtures::from_bits;

// Runs fkm_launch_objective over the problems vs (all of one length n) in
// one call per chunk, chunks ending at splits (and at n). The problems lie
// n + 3 values apart, the 3 between them NaN (never read). forked: the
// double chain on a second stream (the engine's way).
// bad: per problem, the first of two rows given label -1 (the other 7
// rows later), or -1 for none.
std::vector<fkm_objective> device_objectives(const std::vector<std::vector<float>>& vs,
                                             std::vector<int64_t> splits, bool forked = true,
                                             const std::vector<int64_t>& bad = {}) {
  const int64_t P = (int64_t)vs.size(), n = (int64_t)vs[0].size(), stride = n + 3;
  std::vector<float> all((size_t)(P * stride), std::nanf(""));
  for (int64_t p = 0; p < P; p++) std::copy(vs[p].begin(), vs[p].end(), all.begin() + p * stride);
  splits.push_back(n);
  size_t scratch_bytes = 0;
  int64_t r0 = 0;
  for (int64_t r1 : splits) {
    scratch_bytes = std::max(scratch_bytes, fkm_objective_scratch_bytes(r1 - r0, P));
    r0 = r1;
  }
  float* dist = nullptr;
  int32_t* labels = nullptr;
  fkm_objective* out = nullptr;
  void* scratch = nullptr;
  cudaStream_t s = nullptr, aux = nullptr;
  cudaEvent_t fork = nullptr, join = nullptr;
  std::vector<fkm_objective> h((size_t)P);
  EXPECT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  if (forked) {
    EXPECT_EQ(cudaStreamCreateWithFlags(&aux, cudaStreamNonBlocking), cudaSuccess);
    EXPECT_EQ(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming), cudaSuccess);
    EXPECT_EQ(cudaEventCreateWithFlags(&join, cudaEventDisableTiming), cudaSuccess);
  }
  EXPECT_EQ(cudaMalloc((void**)&dist, sizeof(float) * all.size()), cudaSuccess);
  EXPECT_EQ(cudaMalloc((void**)&labels, sizeof(int32_t) * all.size()), cudaSuccess);
  EXPECT_EQ(cudaMalloc((void**)&out, sizeof(fkm_objective) * (size_t)P), cudaSuccess);
  EXPECT_EQ(cudaMalloc(&scratch, scratch_bytes), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(dist, all.data(), sizeof(float) * all.size(), cudaMemcpyHostToDevice),
            cudaSuccess);
  std::vector<int32_t> lab(all.size(), 0);
  for (size_t p = 0; p < bad.size(); p++)
    for (const int64_t i : {bad[p], bad[p] + 7})
      if (bad[p] >= 0 && i < n) lab[(size_t)((int64_t)p * stride + i)] = -1;
  EXPECT_EQ(cudaMemcpy(labels, lab.data(), sizeof(int32_t) * lab.size(), cudaMemcpyHostToDevice),
            cudaSuccess);
  r0 = 0;
  for (int64_t r1 : splits) {
    EXPECT_EQ(fkm_launch_objective(dist, labels, r0, r1, P, stride, out, scratch, s, aux, fork,
                                   join),
              cudaSuccess);
    r0 = r1;
  }
  EXPECT_EQ(cudaMemcpyAsync(h.data(), out, sizeof(fkm_objective) * (size_t)P,
                            cudaMemcpyDeviceToHost, s),
            cudaSuccess);
  EXPECT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  cudaFree(dist);
  cudaFree(labels);
  cudaFree(out);
  cudaFree(scratch);
  cudaStreamDestroy(s);
  if (forked) {
    cudaStreamDestroy(aux);
    cudaEventDestroy(fork);
    cudaEventDestroy(join);
  }
  return h;
}

fkm_objective device_objective(const std::vector<float>& v, std::vector<int64_t> splits,
                               bool forked) {
  return device_objectives({v}, std::move(splits), forked)[0];
}

// Both chains' bits equal the host's (NaN: both NaN, the payloads differ
// between the GPU's canonical NaN and x86's).
void expect_host_chain(const std::vector<float>& v, const fkm_objective& o) {
  float f = 0.0f;
  double d = 0.0;
  for (float x : v) {
    f = f + x;
    d = d + (double)x;
  }
  if (std::isnan(f)) {
    EXPECT_TRUE(std::isnan(o.obj));
  } else {
    EXPECT_EQ(bits(f), bits(o.obj)) << "host " << f << " device " << o.obj;
  }
  if (std::isnan(d)) {
    EXPECT_TRUE(std::isnan(o.obj_double));
  } else {
    EXPECT_EQ(bits(d), bits(o.obj_double)) << "host " << d << " device " << o.obj_double;
  }
  EXPECT_EQ(o.bad_label, -1);
}

// Chunks of at most kSmall values go through the one-block kernel of a
// problem (OBJ_SMALL_MAX, kernels/objective.cuh), longer ones through the
// grid kernels.
constexpr int64_t kSmall = 32768;

// Every way: the double chain on the call's stream and forked, and in
// chunks of 20000 values, each call on the one-block kernel continuing
// the chains.
void check(const std::vector<float>& v, std::vector<int64_t> splits = {}) {
  expect_host_chain(v, device_objective(v, splits, false));
  expect_host_chain(v, device_objective(v, splits, true));
  std::vector<int64_t> small;
  for (int64_t r = 20000; r < (int64_t)v.size(); r += 20000) small.push_back(r);
  expect_host_chain(v, device_objective(v, small, true));
}

TEST(GpuObjectiveChain, BatchedProblemsEachMatchTheirHostChain) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  // one call computes several problems' objectives: each its own chain
  std::mt19937 rng(4);
  std::normal_distribution<float> nd(1000.0f, 300.0f), sd(0.0f, 50.0f);
  const int64_t n = 70001;
  std::vector<std::vector<float>> vs(5, std::vector<float>(n));
  for (auto& x : vs[0]) x = std::fabs(nd(rng));
  for (auto& x : vs[1]) x = sd(rng);
  for (int64_t i = 0; i < n; i++) vs[2][i] = (float)(i % 97);
  for (auto& x : vs[3]) x = std::fabs(nd(rng)) * 1e30f;
  vs[4].assign(n, -0.0f);
  for (const std::vector<int64_t>& splits : {std::vector<int64_t>{}, {30000}}) {
    const std::vector<fkm_objective> o = device_objectives(vs, splits);
    for (size_t p = 0; p < vs.size(); p++) {
      SCOPED_TRACE("problem " + std::to_string(p));
      expect_host_chain(vs[p], o[p]);
    }
  }
}

TEST(GpuObjectiveChain, ManySmallProblemsInOneBlockEachMatchTheirHostChain) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  // issue 17's batch: 64 problems of 8192 distances, each a thread block;
  // then problems of exactly kSmall values and of one value
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(1000.0f, 300.0f);
  std::uniform_int_distribution<int> kind(0, 3);
  for (const int64_t n : {int64_t{8192}, kSmall, int64_t{1}}) {
    SCOPED_TRACE("n " + std::to_string(n));
    std::vector<std::vector<float>> vs(n == 8192 ? 64 : 3, std::vector<float>((size_t)n));
    for (auto& v : vs) {
      const int c = kind(rng);
      for (int64_t i = 0; i < n; i++)
        v[(size_t)i] = c == 0   ? std::fabs(nd(rng))
                       : c == 1 ? (float)(i % 89)
                       : c == 2 ? nd(rng) - 1000.0f
                                : std::fabs(nd(rng)) * 1e-40f;  // subnormal sums
    }
    for (const std::vector<int64_t>& splits : {std::vector<int64_t>{}, {n / 3 + 1}}) {
      if (!splits.empty() && splits[0] >= n) continue;
      const std::vector<fkm_objective> o = device_objectives(vs, splits);
      for (size_t p = 0; p < vs.size(); p++) {
        SCOPED_TRACE("problem " + std::to_string(p));
        expect_host_chain(vs[p], o[p]);
      }
      // rows without a label: the first of each problem's, across chunks
      std::vector<int64_t> bad(vs.size());
      for (size_t p = 0; p < bad.size(); p++) bad[p] = p % 3 == 0 ? -1 : (int64_t)(p * 131) % n;
      const std::vector<fkm_objective> ob = device_objectives(vs, splits, true, bad);
      for (size_t p = 0; p < vs.size(); p++) EXPECT_EQ(ob[p].bad_label, bad[p]) << "problem " << p;
    }
  }
}

TEST(GpuObjectiveChain, TypicalAndIntegerDistancesMatchTheHostChain) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(1000.0f, 300.0f);
  std::uniform_int_distribution<int> ud(0, 1 << 17);
  std::vector<float> v(1 << 20), w(1 << 20);
  for (auto& x : v) x = std::fabs(nd(rng));
  for (auto& x : w) x = (float)ud(rng);
  check(v);
  check(v, {333333, 700001});
  check(w);
  check(w, {8192, 8192 * 3 + 5});
  // one call of more than OBJ_PIECE (2^22) values: the chains in two pieces
  std::vector<float> p((1 << 22) + 12345);
  for (auto& x : p) x = std::fabs(nd(rng));
  check(p);
}

TEST(GpuObjectiveChain, MixedSignsZerosSubnormalsMatchTheHostChain) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  std::mt19937 rng(2);
  std::normal_distribution<float> nd(0.0f, 100.0f);
  std::uniform_int_distribution<uint32_t> m(0, 0x7fffff), sg(0, 1);
  std::vector<float> ip(300000), z(100000), sub(100000), canc;
  for (auto& x : ip) x = nd(rng);
  for (size_t i = 0; i < z.size(); i++) z[i] = i % 5 ? -0.0f : 0.0f;
  for (auto& x : sub) x = from_bits((sg(rng) << 31) | (m(rng) >> 8));
  for (int i = 0; i < 50000; i++) {
    const float a = std::fabs(nd(rng));
    canc.push_back(a);
    canc.push_back(-a);
  }
  check(ip);
  check(ip, {100000, 200000});
  check(z);
  check(std::vector<float>(70000, -0.0f));
  check(sub);
  check(canc, {12345});
}

TEST(GpuObjectiveChain, TiesSaturationOverflowAndNaNMatchTheHostChain) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> k(0, 5), coin(0, 3);
  std::vector<float> ties{1000.0f};
  float s = 1000.0f;
  for (int i = 0; i < 300000; i++) {
    const float u = from_bits(bits(s) & 0x7f800000u) * 0x1p-23f;
    const int c = coin(rng);  // exact, below half an ulp, or a tie (odd or even s)
    const float a = c == 0 ? u * (float)k(rng) : c == 1 ? u * 0.25f : u * ((float)k(rng) + 0.5f);
    ties.push_back(a);
    s = s + a;
  }
  check(ties);
  check(ties, {4097, 150000});
  // saturated on a power of two (the binade's edge; docs/certification.md
  // section 3): values that move it away from zero, then one toward zero
  std::uniform_real_distribution<float> below(0.0f, 0.999f);
  std::vector<float> edge{0x1p24f};
  for (int i = 0; i < 300000; i++) edge.push_back(below(rng));
  check(edge);
  check(edge, {1, 100001});
  edge[200000] = -0.75f;
  check(edge, {1});
  std::vector<float> big(40000);
  for (size_t i = 0; i < big.size(); i++) big[i] = i % 2 ? FLT_MAX / 64.0f : 1.0e30f;
  check(big);
  big[30000] = -INFINITY;
  check(big);
  std::vector<float> nan(20000, 2.0f);
  nan[5000] = NAN;
  check(nan);
  check(nan, {5000});
}

}  // namespace
