// The objective's block-parallel float chain (kernels/fchain.h) against the
// plain sequential float chain, bit for bit. The walker below mirrors the
// CUDA kernels of kernels/update.cu step for step: candidate exponents from a
// double prefix estimate, block summaries (FKM_FC_BLOCK values) and group
// summaries (FKM_FC_GROUP blocks), then groups applied in O(1), descending to
// blocks and to single additions where a summary is refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "fixtures.h"

extern "C" {
#include "fchain.h"
}

namespace {

using fixtures::bits;
using fixtures::from_bits;

float sequential(const float* v, int64_t n, float s) {
  for (int64_t i = 0; i < n; i++) s = s + v[i];
  return s;
}

struct Stats {
  int64_t blocks = 0;         // blocks walked over
  int64_t group_blocks = 0;   // blocks covered by an applied group summary
  int64_t block_applied = 0;  // blocks applied by their own summary
  int64_t added = 0;          // blocks added value by value
};

bool same_run(const fkm_fc_run& a, const fkm_fc_run& b) {
  for (int p = 0; p < 2; p++)
    if (a.d[p] != b.d[p] || a.lo[p] != b.lo[p] || a.hi[p] != b.hi[p]) return false;
  return a.bad == b.bad;
}

bool same_sum(const fkm_fc_sum& a, const fkm_fc_sum& b) {
  for (int c = 0; c < 3; c++)
    if (!same_run(a.run[c], b.run[c])) return false;
  return a.base == b.base && a.flags == b.flags;
}

// The device's warp reduction: 32 lane values joined by a shfl_down tree.
fkm_fc_sum tree_join(std::vector<fkm_fc_sum> lanes) {
  for (int off = 1; off < 32; off <<= 1)
    for (int l = 0; l + off < 32; l += 2 * off) {
      for (int c = 0; c < 3; c++)
        lanes[l].run[c] = fkm_fc_run_join(&lanes[l].run[c], &lanes[l + off].run[c]);
      lanes[l].flags &= lanes[l + off].flags;
    }
  return lanes[0];
}

// Block summary as the kernel builds it: lane l pushes values l*8 .. l*8+7,
// then the lanes are joined by the tree.
fkm_fc_sum block_summary_tree(const float* v, int64_t m, int base) {
  std::vector<fkm_fc_sum> lanes(32);
  for (int l = 0; l < 32; l++) {
    fkm_fc_sum_init(&lanes[l], base);
    for (int t = 0; t < FKM_FC_BLOCK / 32; t++) {
      const int64_t i = (int64_t)l * (FKM_FC_BLOCK / 32) + t;
      if (i < m) fkm_fc_sum_push(&lanes[l], bits(v[i]));
    }
  }
  return tree_join(lanes);
}

fkm_fc_sum block_summary_seq(const float* v, int64_t m, int base) {
  fkm_fc_sum x;
  fkm_fc_sum_init(&x, base);
  for (int64_t i = 0; i < m; i++) fkm_fc_sum_push(&x, bits(v[i]));
  return x;
}

// Group summary as the kernel builds it: the candidates of the first block,
// each block's run at them (bad where it is not a candidate of that block).
fkm_fc_sum group_summary(const std::vector<fkm_fc_sum>& blk, int64_t b0, int64_t bn) {
  std::vector<fkm_fc_sum> lanes(32);
  const int gbase = blk[b0].base;
  for (int l = 0; l < 32; l++) {
    fkm_fc_sum_init(&lanes[l], gbase);
    if (l < bn) {
      for (int c = 0; c < 3; c++) lanes[l].run[c] = fkm_fc_run_at(&blk[b0 + l], gbase + c);
      lanes[l].flags = blk[b0 + l].flags;
    }
  }
  return tree_join(lanes);
}

// One call of fkm_launch_objective over v[0..n) from the carried s. bases,
// when given, replaces the estimate's candidates (one per block).
float walk(const float* v, int64_t n, float s0, Stats* st, const std::vector<int>* bases = nullptr) {
  const int64_t nb = (n + FKM_FC_BLOCK - 1) / FKM_FC_BLOCK;
  const int64_t ng = (nb + FKM_FC_GROUP - 1) / FKM_FC_GROUP;
  std::vector<fkm_fc_sum> blk(nb), grp(ng);
  double pre = (double)s0;
  for (int64_t b = 0; b < nb; b++) {
    const int64_t i0 = b * FKM_FC_BLOCK, m = std::min<int64_t>(FKM_FC_BLOCK, n - i0);
    const int base = bases ? (*bases)[b] : fkm_fc_base(bits((float)pre));
    blk[b] = block_summary_tree(v + i0, m, base);
    double bs = 0.0;
    for (int64_t i = 0; i < m; i++)
      if (std::isfinite(v[i0 + i])) bs += (double)v[i0 + i];
    pre += bs;
  }
  for (int64_t g = 0; g < ng; g++) {
    const int64_t b0 = g * FKM_FC_GROUP;
    grp[g] = group_summary(blk, b0, std::min<int64_t>(FKM_FC_GROUP, nb - b0));
  }
  // as the CUDA walker: tiles of 32 group summaries applied by prefix steps
  // (fkm_fc_apply_prefix for a finite s, one fkm_fc_apply otherwise), a
  // group that does not apply by its blocks the same way, a block that does
  // not apply value by value
  auto advance = [](const fkm_fc_sum* x, int m, uint32_t* s) {
    if (((*s >> 23) & 0xffu) != 255u) return fkm_fc_apply_prefix(x, m, s);
    return fkm_fc_apply(x, s);
  };
  uint32_t s = bits(s0);
  for (int64_t g0 = 0; g0 < ng; g0 += 32) {
    const int gn = (int)std::min<int64_t>(32, ng - g0);
    for (int gi = 0; gi < gn;) {
      const int a = advance(&grp[g0 + gi], gn - gi, &s);
      for (int j = 0; j < a; j++)
        st->group_blocks += std::min<int64_t>(FKM_FC_GROUP, nb - (g0 + gi + j) * FKM_FC_GROUP);
      gi += a;
      if (gi == gn) break;
      const int64_t b0 = (g0 + gi) * FKM_FC_GROUP;
      const int bn = (int)std::min<int64_t>(FKM_FC_GROUP, nb - b0);
      for (int bi = 0; bi < bn;) {
        const int ab = advance(&blk[b0 + bi], bn - bi, &s);
        st->block_applied += ab;
        bi += ab;
        if (bi == bn) break;
        st->added++;
        const int64_t i0 = (b0 + bi) * FKM_FC_BLOCK, m = std::min<int64_t>(FKM_FC_BLOCK, n - i0);
        s = bits(sequential(v + i0, m, from_bits(s)));
        bi++;
      }
      gi++;
    }
  }
  st->blocks += nb;
  return from_bits(s);
}

// fkm_launch_objective's pieces (OBJ_PIECE, kernels/update.cu).
constexpr int64_t kPiece = int64_t{1} << 22;

// Walks v in chunks (split points given), carrying s, and checks the bits.
Stats check(const std::vector<float>& v, float s0 = 0.0f, std::vector<int64_t> splits = {}) {
  Stats st;
  const float ref = sequential(v.data(), (int64_t)v.size(), s0);
  float s = s0;
  int64_t r0 = 0;
  splits.push_back((int64_t)v.size());
  for (int64_t r1 : splits) {
    // as fkm_launch_objective: the chains in pieces of at most 2^22 values
    for (int64_t q0 = r0; q0 < r1; q0 += kPiece) {
      const int64_t q1 = std::min<int64_t>(r1, q0 + kPiece);
      s = walk(v.data() + q0, q1 - q0, s, &st);
    }
    r0 = r1;
  }
  EXPECT_EQ(bits(ref), bits(s)) << "ref " << ref << " got " << s << " n " << v.size();
  return st;
}

// ulp of a positive normal float
float ulp(float s) { return from_bits(bits(s) & 0x7f800000u) * 0x1p-23f; }

TEST(FloatChain, HandComputedTiesRoundToEven) {
  // s = 2^24 + 2 (S = 2^23 + 1 odd, u = 2): + 1 is a tie -> 2^24 + 4, then
  // every further + 1 ties back to the even 2^24 + 4.
  std::vector<float> ones(FKM_FC_BLOCK, 1.0f);
  fkm_fc_sum x = block_summary_seq(ones.data(), (int64_t)ones.size(), 150);
  uint32_t s = bits(16777218.0f);
  ASSERT_TRUE(fkm_fc_apply(&x, &s));
  EXPECT_EQ(from_bits(s), 16777220.0f);
  s = bits(16777220.0f);  // even: saturates at once
  ASSERT_TRUE(fkm_fc_apply(&x, &s));
  EXPECT_EQ(from_bits(s), 16777220.0f);
  s = bits(16777216.0f);  // 2^24 on the binade's lower edge, values >= 0: each + 1 ties
  ASSERT_TRUE(fkm_fc_apply(&x, &s));  // back to the even 2^24
  EXPECT_EQ(from_bits(s), 16777216.0f);
  std::vector<float> mixed(ones);
  mixed[7] = -0.75f;  // toward zero on the edge: the finer grid below, refused
  fkm_fc_sum y = block_summary_seq(mixed.data(), (int64_t)mixed.size(), 150);
  s = bits(16777216.0f);
  EXPECT_FALSE(fkm_fc_apply(&y, &s));
  s = bits(-16777216.0f);  // -2^24 with values >= 0: toward zero, refused
  EXPECT_FALSE(fkm_fc_apply(&x, &s));
  s = bits(4.0f);  // not a candidate exponent: refused
  EXPECT_FALSE(fkm_fc_apply(&x, &s));
}

TEST(FloatChain, TreeJoinEqualsSequentialSummary) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::uniform_int_distribution<int> ex(-30, 30);
  for (int rep = 0; rep < 200; rep++) {
    std::vector<float> v(FKM_FC_BLOCK);
    for (auto& x : v) x = std::ldexp(u(rng), ex(rng));
    if (rep % 3 == 0)
      for (auto& x : v) x = std::nearbyint(x * 64.0f);  // integers: many ties
    const int base = 100 + rep % 60;
    const int m = rep % 2 ? FKM_FC_BLOCK : 1 + rep % FKM_FC_BLOCK;
    EXPECT_TRUE(same_sum(block_summary_tree(v.data(), m, base), block_summary_seq(v.data(), m, base)));
  }
}

TEST(FloatChain, TypicalPositiveDistancesMostlyApplyInOneStep) {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(1000.0f, 300.0f);
  std::vector<float> v(1 << 20);
  for (auto& x : v) x = std::fabs(nd(rng));
  Stats st = check(v);
  EXPECT_GE(st.group_blocks + st.block_applied, st.blocks * 97 / 100);
  EXPECT_GE(st.group_blocks, st.blocks * 80 / 100);
  EXPECT_LE(st.added, 40);
}

TEST(FloatChain, IntegerDistancesWithManyTiesApply) {
  std::mt19937 rng(2);
  std::uniform_int_distribution<int> ud(0, 1 << 17);
  std::vector<float> v(1 << 20);
  for (auto& x : v) x = (float)ud(rng);
  Stats st = check(v);
  EXPECT_GE(st.group_blocks + st.block_applied, st.blocks * 97 / 100);
}

TEST(FloatChain, MixedMagnitudePositives) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::uniform_int_distribution<int> ex(-40, 40);
  for (int rep = 0; rep < 5; rep++) {
    std::vector<float> v(100000 + rep * 7919);
    for (auto& x : v) x = std::ldexp(u(rng), ex(rng));
    check(v);
    check(v, 0.0f, {1, 4096, 50000, 50001});
  }
}

TEST(FloatChain, GrowthThroughManyBinades) {
  std::vector<float> v(200000);
  for (size_t i = 0; i < v.size(); i++) v[i] = std::ldexp(1.0f + (float)(i % 7) / 8.0f, (int)(i / 2000) - 40);
  Stats st = check(v);
  EXPECT_GT(st.group_blocks + st.block_applied, st.blocks / 2);
}

TEST(FloatChain, ExactHalfUlpTiesBothParities) {
  std::mt19937 rng(4);
  std::uniform_int_distribution<int> k(0, 5), coin(0, 3);
  std::vector<float> v;
  float s = 1000.0f;
  v.push_back(s);
  for (int i = 0; i < 300000; i++) {
    float a;
    switch (coin(rng)) {
      case 0: a = ulp(s) * ((float)k(rng) + 0.5f); break;   // a tie
      case 1: a = ulp(s) * 0.5f; break;                     // tie, t = 0
      case 2: a = ulp(s) * (float)k(rng); break;            // exact
      default: a = ulp(s) * 0.25f; break;                   // below half: saturates
    }
    v.push_back(a);
    s = s + a;
  }
  Stats st = check(v);
  EXPECT_GT(st.group_blocks + st.block_applied, st.blocks / 2);
  check(v, 0.0f, {77, 5000, 123457});
}

TEST(FloatChain, SaturationBelowHalfUlp) {
  // s odd and even in units of its ulp, near FLT_MAX, negative (the ties move
  // it towards zero, across -2^20 into the finer binade), and exactly a power
  // of two (the binade's edge: values >= 0 move it away from zero, so the
  // summaries apply there too)
  for (float s0 : {0x1p30f + 128.0f, 0x1p30f + 256.0f, 3.0e38f, -0x1p20f - 0.125f, 0x1p30f,
                   -0x1p20f}) {
    std::vector<float> v(70000);
    for (size_t i = 0; i < v.size(); i++) v[i] = (i % 3 ? 0.49f : 0.5f) * ulp(std::fabs(s0));
    Stats st = check(v, s0);
    if (s0 > 0.0f) {
      EXPECT_EQ(st.group_blocks, st.blocks) << s0;
    }
  }
}

TEST(FloatChain, SaturatedOnAPowerOfTwo) {
  // A long chain of distances stops growing where half its ulp exceeds them,
  // often exactly at 2^e (k-means on 256M rows: 2^32). Summaries of values
  // that move s away from zero apply on that edge; a value toward zero (an
  // inner product's negative distance) makes its block go value by value,
  // with the same bits.
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(0.0f, 0.999f);
  std::vector<float> v(1 << 20);
  for (auto& x : v) x = u(rng);
  Stats st = check(v, 0x1p24f);
  EXPECT_EQ(st.group_blocks, st.blocks);
  std::vector<float> w(v);
  for (auto& x : w) x = -x;
  st = check(w, -0x1p24f);
  EXPECT_EQ(st.group_blocks, st.blocks);
  for (size_t i = 0; i < v.size(); i += 4099) v[i] = -0.75f;  // 2^24 - 1 on the grid below
  check(v, 0x1p24f);
  check(v, 0x1p24f, {5000, 5001, 700000});
  // stuck on 2^31 from the start (every value below half its ulp) for two
  // pieces of fkm_launch_objective: the estimate restarts from s
  std::uniform_real_distribution<float> stuck(64.0f, 127.0f);
  std::vector<float> y((size_t)kPiece + 4097);
  for (auto& x : y) x = stuck(rng);
  st = check(y, 0x1p31f);
  EXPECT_EQ(st.group_blocks, st.blocks);
  // approaching 2^31 (values rounded to 128s below it) and crossing it
  // (256s above: those under 128 vanish, the others add 256)
  std::uniform_real_distribution<float> d(96.0f, 160.0f);
  std::vector<float> z(1 << 21);
  for (auto& x : z) x = d(rng);
  check(z, 0x1p31f - 0x1p20f);
}

TEST(FloatChain, ZerosAndNegativeZeros) {
  std::vector<float> z(50000, 0.0f), nz(50000, -0.0f), mix(50000);
  for (size_t i = 0; i < mix.size(); i++) mix[i] = i % 5 ? -0.0f : 0.0f;
  for (float s0 : {0.0f, -0.0f}) {
    Stats st = check(z, s0);
    EXPECT_EQ(st.added, 0);
    check(nz, s0);
    check(mix, s0);
    check(nz, s0, {1000, 30000});
  }
  Stats st;
  EXPECT_EQ(bits(walk(nz.data(), (int64_t)nz.size(), -0.0f, &st)), 0x80000000u);
  EXPECT_EQ(st.added, 0);
}

TEST(FloatChain, Subnormals) {
  std::mt19937 rng(5);
  std::uniform_int_distribution<uint32_t> m(0, 0x7fffff), sg(0, 1);
  std::vector<float> v(100000);
  for (auto& x : v) x = from_bits((sg(rng) << 31) | (m(rng) >> 8));
  Stats st = check(v);
  EXPECT_GT(st.group_blocks + st.block_applied, st.blocks / 2);
  for (auto& x : v) x = from_bits(m(rng));  // positives: into the normal range
  check(v);
  check(v, -0x1p-120f, {3, 9999});
}

TEST(FloatChain, MixedSignsInnerProduct) {
  std::mt19937 rng(6);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (float bias : {0.0f, -0.3f, 0.01f}) {
    std::vector<float> v(300000);
    for (auto& x : v) x = 100.0f * (nd(rng) + bias);
    check(v);
    check(v, 5.0f, {100000, 200000});
  }
}

TEST(FloatChain, CancellationThroughZero) {
  std::mt19937 rng(8);
  std::uniform_real_distribution<float> u(0.0f, 1000.0f);
  std::vector<float> v;
  for (int i = 0; i < 100000; i++) {
    const float a = u(rng);
    v.push_back(a);
    v.push_back(-a);  // back to exactly +0 every other step
  }
  check(v);
  check(v, -0.0f);
  std::vector<float> w;
  for (int i = 0; i < 60000; i++) w.push_back(i < 30000 ? 1.5f : -1.25f);  // through zero, down
  check(w);
  check(w, 0.0f, {30000});
}

TEST(FloatChain, HugeValuesOverflowInfAndNaN) {
  std::vector<float> v(40000);
  for (size_t i = 0; i < v.size(); i++) v[i] = i % 2 ? FLT_MAX / 64.0f : 1.0e30f;
  check(v);  // overflows to +inf within the first block, then inf + finite
  v[30000] = -INFINITY;  // inf + -inf = NaN, then NaN on
  check(v);
  std::vector<float> w(20000, FLT_MAX / 4096.0f);
  for (size_t i = 0; i < w.size(); i += 2) w[i] = -w[i] * 1.5f;  // near FLT_MAX, negative drift
  check(w, 0.0f, {7777});
  std::vector<float> n(10000, 2.0f);
  n[5000] = NAN;
  check(n);
  n[5000] = INFINITY;
  check(n);
  n[5000] = -INFINITY;
  check(n, 0.0f, {5000});
}

TEST(FloatChain, WrongCandidateExponentsFallBackExactly) {
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> u(0.0f, 100.0f);
  std::uniform_int_distribution<int> eb(1, 252);
  std::vector<float> v(200000);
  for (auto& x : v) x = u(rng);
  const float ref = sequential(v.data(), (int64_t)v.size(), 0.0f);
  const int64_t nb = ((int64_t)v.size() + FKM_FC_BLOCK - 1) / FKM_FC_BLOCK;
  std::vector<int> random_bases(nb), low_bases(nb, 1);
  for (auto& b : random_bases) b = eb(rng);
  Stats sr, sl;
  EXPECT_EQ(bits(ref), bits(walk(v.data(), (int64_t)v.size(), 0.0f, &sr, &random_bases)));
  EXPECT_EQ(bits(ref), bits(walk(v.data(), (int64_t)v.size(), 0.0f, &sl, &low_bases)));
  EXPECT_GT(sr.added, nb / 2);
  EXPECT_EQ(sl.added, nb);
}

TEST(FloatChain, RandomChunkedCallsCarryTheSum) {
  std::mt19937 rng(10);
  std::lognormal_distribution<float> ln(3.0f, 2.0f);
  std::vector<float> v(400000);
  for (auto& x : v) x = ln(rng);
  std::uniform_int_distribution<int64_t> cut(1, (int64_t)v.size() - 1);
  for (int rep = 0; rep < 4; rep++) {
    std::vector<int64_t> sp;
    for (int j = 0; j < 6; j++) sp.push_back(cut(rng));
    std::sort(sp.begin(), sp.end());
    sp.erase(std::unique(sp.begin(), sp.end()), sp.end());
    check(v, 0.0f, sp);
  }
}

}  // namespace
