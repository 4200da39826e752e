// fkm_train_batched against separate fkm_train runs: the cases and the
// check, shared by the CPU suite (batched CPU vs separate CPU runs) and the
// GPU suite (batched CUDA vs separate CPU runs). Problems differ in their
// data so that each problem takes its own path (its own best redo, its own
// splits).
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <ostream>
#include <string>
#include <vector>

#include "fixtures.h"
#include "flashkm.h"

namespace batched {

struct Case {
  const char *name;
  int64_t batch, n, d, k;
  int niter = 4, nredo = 1;
  bool weighted = false;
  int64_t n_init = 0;
  bool frozen = false, spherical = false, int_centroids = false;
  fkm_metric metric = FKM_METRIC_L2;
  fkm_dtype dtype = FKM_DTYPE_F32;
  int max_points_per_centroid = 256;
  bool few_distinct = false; /* odd problems: 3 distinct points, so clusters empty */
};

inline void PrintTo(const Case &c, std::ostream *os) { *os << c.name; }

inline std::vector<Case> cases() {
  std::vector<Case> v;
  v.push_back({"plain", 3, 700, 5, 9});
  {
    Case c{"weights_nredo3", 4, 600, 6, 8};
    c.weighted = true;
    c.nredo = 3;
    v.push_back(c);
  }
  {
    Case c{"frozen_initial_rows", 3, 500, 4, 7};
    c.n_init = 2;
    c.frozen = true;
    v.push_back(c);
  }
  {
    Case c{"initial_rows_inner_product_spherical", 2, 500, 8, 6};
    c.n_init = 3;
    c.metric = FKM_METRIC_INNER_PRODUCT;
    c.spherical = true;
    v.push_back(c);
  }
  {
    Case c{"subsampled", 3, 450, 3, 10};
    c.max_points_per_centroid = 20;
    v.push_back(c);
  }
  {
    Case c{"subsample_to_k_copies_rows", 2, 60, 3, 10};
    c.max_points_per_centroid = 1;
    v.push_back(c);
  }
  {
    Case c{"empty_clusters_split_in_some_problems", 4, 400, 4, 8};
    c.few_distinct = true;
    c.niter = 6;
    v.push_back(c);
  }
  {
    Case c{"float16_int_centroids", 3, 500, 7, 5};
    c.dtype = FKM_DTYPE_F16;
    c.int_centroids = true;
    v.push_back(c);
  }
  {
    Case c{"tensor_core_shape", 3, 3000, 64, 96};
    c.niter = 3;
    v.push_back(c);
  }
  { /* k = 64: on the CUDA engine a batch's reference kernel in one launch */
    Case c{"sixty_four_centroids", 4, 2000, 32, 64};
    c.niter = 3;
    v.push_back(c);
  }
  { /* the CUDA engine's one-launch tiles: 17..32 centroids, a dimension tail */
    Case c{"thirty_centroids_d40", 3, 1100, 40, 30};
    c.niter = 3;
    v.push_back(c);
  }
  { /* d < 16: one launch whatever k; several centroid tiles, the last partial */
    Case c{"many_centroids_few_dims_inner_product", 2, 900, 5, 150};
    c.niter = 3;
    c.metric = FKM_METRIC_INNER_PRODUCT;
    v.push_back(c);
  }
  return v;
}

inline fkm_params params(const Case &c) {
  fkm_params p;
  fkm_params_init(&p);
  p.niter = c.niter;
  p.nredo = c.nredo;
  p.frozen_centroids = c.frozen;
  p.spherical = c.spherical;
  p.int_centroids = c.int_centroids;
  p.metric = c.metric;
  p.max_points_per_centroid = c.max_points_per_centroid;
  p.min_points_per_centroid = 1;
  return p;
}

/* One batched call's inputs and outputs, all host memory. */
struct Data {
  std::vector<float> x;          // (batch, n, d) float values
  std::vector<uint16_t> x16;     // the same as fp16 bits when dtype is f16
  std::vector<float> w;          // (batch, n) or empty
  std::vector<float> centroids;  // (batch, k, d): n_init initial rows each
};

inline uint16_t half_bits(float v) {
  // v is a small integer-valued float here: exact in fp16
  uint32_t b = fixtures::bits(v);
  const uint32_t sign = (b >> 16) & 0x8000u;
  if ((b & 0x7fffffffu) == 0) return (uint16_t)sign;
  const int e = (int)((b >> 23) & 0xff) - 127 + 15;
  return (uint16_t)(sign | ((uint32_t)e << 10) | ((b >> 13) & 0x3ffu));
}

inline Data make(const Case &c) {
  Data s;
  for (int64_t b = 0; b < c.batch; b++) {
    std::vector<float> xb;
    if (c.few_distinct && b % 2 == 1) {
      xb.resize(c.n * c.d);
      for (int64_t i = 0; i < c.n; i++)
        for (int64_t j = 0; j < c.d; j++) xb[i * c.d + j] = (float)((i % 3) * 4 + j);
    } else {
      xb = fixtures::blobs(c.n, c.d, 4 + (int)b, (uint32_t)(500 + 17 * b));
    }
    if (c.dtype == FKM_DTYPE_F16)
      for (float &v : xb) v = (float)(int)(v * 8.0f); /* exact in fp16 */
    s.x.insert(s.x.end(), xb.begin(), xb.end());
    if (c.weighted)
      for (int64_t i = 0; i < c.n; i++) s.w.push_back((float)(1 + (i * 7 + b) % 5) * 0.25f);
  }
  if (c.dtype == FKM_DTYPE_F16)
    for (float v : s.x) s.x16.push_back(half_bits(v));
  s.centroids.assign(c.batch * c.k * c.d, -9.0f);
  for (int64_t b = 0; b < c.batch; b++)
    for (int64_t i = 0; i < c.n_init; i++)
      std::memcpy(&s.centroids[(b * c.k + i) * c.d], &s.x[(b * c.n + 11 * i + b) * c.d],
                  sizeof(float) * c.d);
  return s;
}

struct Out {
  fkm_status status = FKM_OK;
  std::string error;
  std::vector<float> centroids, distances;
  std::vector<int64_t> labels, n_stats;
  std::vector<fkm_iteration_stats> stats;  // (batch, cap)
  int64_t cap = 0;
};

inline const void *xptr(const Case &c, const Data &s, int64_t b) {
  if (c.dtype == FKM_DTYPE_F16) return s.x16.data() + b * c.n * c.d;
  return s.x.data() + b * c.n * c.d;
}

/* Outputs filled with markers, the centroids with the initial rows. */
inline Out fresh(const Case &c, const Data &s) {
  Out o;
  o.cap = (int64_t)c.niter * c.nredo + 1;
  o.centroids = s.centroids;
  o.labels.assign(c.batch * c.n, -3);
  o.distances.assign(c.batch * c.n, -5.0f);
  o.stats.resize(c.batch * o.cap);
  o.n_stats.assign(c.batch, -1);
  return o;
}

/* One batched call of c's problems with the parameters p. */
inline Out run_batched_with(fkm_ctx *ctx, const Case &c, const Data &s, const fkm_params &p) {
  Out o = fresh(c, s);
  o.status = fkm_train_batched(ctx, &p, c.batch, c.n, c.d, c.k, c.dtype, xptr(c, s, 0),
                               s.w.empty() ? nullptr : s.w.data(), o.centroids.data(),
                               c.n_init, o.labels.data(), o.distances.data(), o.stats.data(),
                               o.cap, o.n_stats.data());
  o.error = fkm_ctx_last_error(ctx);
  return o;
}

/* log (or NULL): the run's verbose lines go to it */
inline Out run_batched(fkm_ctx *ctx, const Case &c, const Data &s, fkm_log_fn log = nullptr,
                       void *log_user = nullptr) {
  fkm_params p = params(c);
  if (log) {
    p.verbose = 1;
    p.log = log;
    p.log_user = log_user;
  }
  return run_batched_with(ctx, c, s, p);
}

inline Out run_separately(fkm_ctx *ctx, const Case &c, const Data &s) {
  Out o = fresh(c, s);
  const fkm_params p = params(c);
  for (int64_t b = 0; b < c.batch && o.status == FKM_OK; b++) {
    o.status = fkm_train(ctx, &p, c.n, c.d, c.k, c.dtype, xptr(c, s, b),
                         s.w.empty() ? nullptr : s.w.data() + b * c.n,
                         o.centroids.data() + b * c.k * c.d, c.n_init,
                         o.labels.data() + b * c.n, o.distances.data() + b * c.n,
                         o.stats.data() + b * o.cap, o.cap, o.n_stats.data() + b);
    o.error = fkm_ctx_last_error(ctx);
  }
  return o;
}

template <typename T>
bool same_bits(const std::vector<T> &a, const std::vector<T> &b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

inline void expect_equal(const Case &c, const Out &got, const Out &want) {
  ASSERT_EQ(want.status, FKM_OK) << want.error;
  ASSERT_EQ(got.status, FKM_OK) << got.error;
  for (int64_t b = 0; b < c.batch; b++) {
    const size_t kd = c.k * c.d, n = c.n;
    EXPECT_EQ(std::memcmp(got.centroids.data() + b * kd, want.centroids.data() + b * kd,
                          sizeof(float) * kd),
              0)
        << "centroids of problem " << b;
    if (n > 0) { /* a rank of a distributed run may hold no rows */
      EXPECT_EQ(std::memcmp(got.labels.data() + b * n, want.labels.data() + b * n,
                            sizeof(int64_t) * n),
                0)
          << "labels of problem " << b;
      EXPECT_EQ(std::memcmp(got.distances.data() + b * n, want.distances.data() + b * n,
                            sizeof(float) * n),
                0)
          << "distances of problem " << b;
    }
    ASSERT_EQ(got.n_stats[b], want.n_stats[b]) << "problem " << b;
    for (int64_t i = 0; i < want.n_stats[b] && i < want.cap; i++) {
      const fkm_iteration_stats &g = got.stats[b * got.cap + i], &r = want.stats[b * want.cap + i];
      EXPECT_EQ(fixtures::bits(g.obj), fixtures::bits(r.obj)) << "problem " << b << " it " << i;
      EXPECT_EQ(fixtures::bits(g.obj_double), fixtures::bits(r.obj_double))
          << "problem " << b << " it " << i;
      EXPECT_EQ(g.imbalance_factor, r.imbalance_factor) << "problem " << b << " it " << i;
      EXPECT_EQ(g.nsplit, r.nsplit) << "problem " << b << " it " << i;
    }
  }
}

}  // namespace batched
