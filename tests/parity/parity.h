// Helpers of the parity suite (docs/contract.md section 9): FAISS's own objects,
// instrumented, and bit-level comparisons. Everything is deterministic.
#pragma once

#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <gtest/gtest.h>

#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "fixtures.h"
#include "flashkm.h"
#include "flashkm_faiss.h"

namespace parity {

// A context for the whole suite: AUTO, so that on a GPU machine the CUDA
// engine is held to FAISS's bits too.
class Ctx {
 public:
  Ctx() {
    if (fkm_ctx_create(FKM_BACKEND_AUTO, 0, &ctx_) != FKM_OK) ctx_ = nullptr;
  }
  ~Ctx() { fkm_ctx_destroy(ctx_); }
  Ctx(const Ctx&) = delete;
  Ctx& operator=(const Ctx&) = delete;
  fkm_ctx* get() const { return ctx_; }

 private:
  fkm_ctx* ctx_ = nullptr;
};

// The suite's one context, created on first use.
inline Ctx& ctx() {
  static Ctx c;
  return c;
}

// Parameters whose BLAS path calls the BLAS FAISS links (fkm_faiss_blas), as
// every door to FAISS's bits does.
inline fkm_params faiss_blas_params() {
  fkm_params p;
  fkm_params_init(&p);
  fkm_faiss_blas(&p);
  return p;
}

// A report struct R filled by a caller whose header ends before field
// offset `old` (R's struct_size set so): the bytes from `old` on must still
// be `fill`, the byte the caller set them to.
template <class R>
::testing::AssertionResult tail_untouched(const R& r, size_t old, unsigned char fill) {
  const unsigned char* b = reinterpret_cast<const unsigned char*>(&r);
  for (size_t i = old; i < sizeof r; i++)
    if (b[i] != fill)
      return ::testing::AssertionFailure() << "byte " << i << " of " << sizeof r
                                           << " was written (the caller's struct ends at "
                                           << old << ")";
  if (r.struct_size != old)
    return ::testing::AssertionFailure() << "struct_size became " << r.struct_size;
  return ::testing::AssertionSuccess();
}

// The engines that call that BLAS give FAISS's labels, near-ties included:
// the CPU engine. (The CUDA engine sums in its own order; there a label may
// still differ at a near-tie within FAISS's rounding, which check_labels
// verifies.)
inline bool labels_exact() { return fkm_ctx_backend(ctx().get()) == FKM_BACKEND_CPU; }

// An IndexFlat that records what faiss::Clustering::train does with it:
// every centroid table added (FAISS's centroids after init and after each
// iteration), every k=1 search's labels and distances, and the first search's
// queries (FAISS's training set, after its subsampling).
struct RecordingIndex : faiss::IndexFlat {
  RecordingIndex(int64_t d, faiss::MetricType m) : faiss::IndexFlat(d, m) {}

  void add(idx_t n, const float* x) override {
    adds.emplace_back(x, x + n * d);
    faiss::IndexFlat::add(n, x);
  }
  void search(idx_t n, const float* x, idx_t k, float* distances, idx_t* labels,
              const faiss::SearchParameters* params = nullptr) const override {
    faiss::IndexFlat::search(n, x, k, distances, labels, params);
    if (train_set.empty()) train_set.assign(x, x + n * d);
    this->labels.emplace_back(labels, labels + n * k);
    this->distances.emplace_back(distances, distances + n * k);
    searched_table.push_back(adds.size() - 1);
  }

  std::vector<std::vector<float>> adds;
  mutable std::vector<size_t> searched_table;  // per search: the centroids it ran on
  mutable std::vector<std::vector<int64_t>> labels;
  mutable std::vector<std::vector<float>> distances;
  mutable std::vector<float> train_set;
};

inline bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// Bitwise comparison of two float arrays.
struct BitDiff {
  size_t n = 0, ndiff = 0, first = 0;
  double max_abs = 0;
  float first_a = 0, first_b = 0;
};

inline BitDiff compare(const float* a, const float* b, size_t n) {
  BitDiff r;
  r.n = n;
  for (size_t i = 0; i < n; i++) {
    if (same_bits(a[i], b[i])) continue;
    if (r.ndiff++ == 0) {
      r.first = i;
      r.first_a = a[i];
      r.first_b = b[i];
    }
    double diff = std::fabs(double(a[i]) - double(b[i]));
    if (!(diff <= r.max_abs)) r.max_abs = diff;
  }
  return r;
}

inline BitDiff compare(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  return compare(a.data(), b.data(), std::min(a.size(), b.size()));
}

inline std::string describe(const BitDiff& r) {
  char buf[256];
  if (r.ndiff == 0) {
    std::snprintf(buf, sizeof buf, "%zu floats, 0 differing bits", r.n);
  } else {
    std::snprintf(buf, sizeof buf,
                  "%zu floats, %zu differ, first at %zu (%.9g vs %.9g), max |diff| %.3g",
                  r.n, r.ndiff, r.first, double(r.first_a), double(r.first_b), r.max_abs);
  }
  return buf;
}

// How far apart, in exact arithmetic, two candidate centroids of a point can
// be when two float evaluations of FAISS's distance formula disagree on which
// is nearer. Derivation (u = 2^-24 for float, v = 2^-53 for double,
// gamma_m = m u / (1 - m u), A_j = sum_t |x_t c_jt|):
//  - a dot product of length d summed in any order, with or without fused
//    multiply-add (OpenBLAS's sgemm, flashkm's fmaf chain) is off by at most
//    gamma_d * A_j from the exact one;
//  - a norm (float squares summed in double, rounded once to float; FAISS's
//    fvec_norms_L2sqr) is off by at most c_n * norm, c_n = (1+u)^2 (1+g2) - 1
//    with g2 = gamma_d in double;
//  - L2: dis = fl(fl(xn + cn) - 2 ip): before the last rounding the error is
//    e0 = c_n (xn + cn) + u (1 + c_n)(xn + cn) + 2 gamma_d A_j, and the last
//    rounding adds u (D_j + e0); the clamp at 0 cannot increase it. So
//    |dis_j - D_j| <= E_j = e0 + u (D_j + e0). Inner product: E_j = gamma_d A_j.
//  - If evaluation F picks a and evaluation R picks b, then D_a <= D_b + E_a
//    + E_b (F's choice) and D_b <= D_a + E_a + E_b (R's choice), so the
//    exact gap |D_a - D_b| <= E_a + E_b whichever one is right.
//  - The test evaluates D_j in double from the float inputs; its own error,
//    at most 2 d v (xn + cn + 2 A_j), is added to the bound.
struct TieCheck {
  double gap;    // |D_a - D_b| in exact arithmetic (up to the double error)
  double bound;  // E_a + E_b + the double evaluation's error
};

// The exact distance D of x to c, and E: the bound above on how far a float
// evaluation of FAISS's formula (any summation order) can be from it, plus
// the double evaluation's own error.
struct FormulaError {
  double D, E;
};

inline FormulaError formula_error(const float* x, const float* c, int64_t d,
                                  bool inner_product) {
  const double u = std::ldexp(1.0, -24), v = std::ldexp(1.0, -53);
  const double gd = d * u / (1 - d * u), g2 = d * v / (1 - d * v);
  const double cn_rel = (1 + u) * (1 + u) * (1 + g2) - 1;
  double xn = 0, cn = 0, A = 0, ip = 0, l2 = 0;
  for (int64_t t = 0; t < d; t++) {
    xn += double(x[t]) * x[t];
    cn += double(c[t]) * c[t];
    A += std::fabs(double(x[t]) * c[t]);
    ip += double(x[t]) * c[t];
    double diff = double(x[t]) - double(c[t]);
    l2 += diff * diff;
  }
  const double slack = 2 * d * v * (xn + cn + 2 * A);
  if (inner_product) return {ip, gd * A + slack};
  double e0 = cn_rel * (xn + cn) + u * (1 + cn_rel) * (xn + cn) + 2 * gd * A;
  return {l2, e0 + u * (l2 + e0) + slack};
}

inline TieCheck tie_check(const float* x, const float* ca, const float* cb, int64_t d,
                          bool inner_product) {
  FormulaError a = formula_error(x, ca, d, inner_product);
  FormulaError b = formula_error(x, cb, d, inner_product);
  return {std::fabs(a.D - b.D), a.E + b.E};
}

// Labels of FAISS (faiss_labels) against flashkm's (ours) on the points x
// (n, d) and centroids (k, d): none may differ where labels_exact(), else
// every difference must be a near-tie within the bound above. Prints each
// one. Returns the number of differences.
inline int64_t check_labels(const char* what, const float* x, int64_t n, int64_t d,
                            const float* centroids, const int64_t* faiss_labels,
                            const int64_t* ours, bool inner_product, int64_t max_print = 20) {
  int64_t ndiff = 0;
  for (int64_t i = 0; i < n; i++) {
    if (faiss_labels[i] == ours[i]) continue;
    const float* xi = x + i * d;
    TieCheck t = tie_check(xi, centroids + faiss_labels[i] * d, centroids + ours[i] * d, d,
                           inner_product);
    if (ndiff < max_print)
      std::printf("  [%s] point %" PRId64 ": FAISS %" PRId64 ", flashkm %" PRId64
                  ", exact gap %.3e, bound %.3e\n",
                  what, i, faiss_labels[i], ours[i], t.gap, t.bound);
    EXPECT_LE(t.gap, t.bound) << what << ": point " << i << " FAISS label " << faiss_labels[i]
                              << " flashkm label " << ours[i]
                              << " is not a near-tie within FAISS's rounding";
    EXPECT_FALSE(labels_exact()) << what << ": point " << i << " FAISS label "
                                 << faiss_labels[i] << " flashkm label " << ours[i]
                                 << ": the CPU engine with FAISS's BLAS must give FAISS's label";
    ndiff++;
  }
  return ndiff;
}

// P3's premise on a recorded FAISS run: on every centroid table FAISS
// searched, fkm_assign gives FAISS's labels. Returns the number of labels
// that differ (each checked to be a near-tie within bound).
inline int64_t label_differences_along(fkm_ctx* ctx, const RecordingIndex& rec, const char* what) {
  const int64_t d = rec.d, n = int64_t(rec.train_set.size()) / d;
  const bool ip = rec.metric_type == faiss::METRIC_INNER_PRODUCT;
  fkm_params p = faiss_blas_params();
  p.metric = ip ? FKM_METRIC_INNER_PRODUCT : FKM_METRIC_L2;
  int64_t total = 0;
  std::vector<int64_t> ours(static_cast<size_t>(n));
  for (size_t s = 0; s < rec.labels.size(); s++) {
    const std::vector<float>& c = rec.adds[rec.searched_table[s]];
    const int64_t k = int64_t(c.size()) / d;
    EXPECT_EQ(fkm_assign(ctx, &p, n, d, k, FKM_DTYPE_F32, rec.train_set.data(), c.data(),
                         ours.data(), nullptr),
              FKM_OK)
        << fkm_ctx_last_error(ctx);
    std::string label = std::string(what) + " search " + std::to_string(s);
    total += check_labels(label.c_str(), rec.train_set.data(), n, d, c.data(),
                          rec.labels[s].data(), ours.data(), ip);
  }
  return total;
}

// Deterministic data.
inline std::vector<float> blobs(int64_t n, int64_t d, int nblobs, uint32_t seed,
                                float spread = 0.3f, float scale = 1.0f, float offset = 0.0f) {
  std::vector<float> x = fixtures::blobs(n, d, nblobs, seed, spread, offset);
  if (scale != 1.0f)
    for (float& v : x) v *= scale;
  return x;
}

// The first rows of Fashion-MNIST's training images as floats in [0, 255]
// (unpacked at configure time); empty when the data set is not installed.
std::vector<float> fashion_mnist(int64_t rows);

}  // namespace parity
