// The data path (docs/data-path.md): a run whose rows arrive through a data
// source, or are streamed in chunks under a memory budget, against the same
// run on the array in core. Shared by the CPU suite (CI: every delivery on
// the CPU engine) and the GPU suite (CUDA deliveries against the CPU in
// core). The cases are batched.h's, one problem each, plus seeding paths.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "batched_cases.h"

namespace source_cases {

/* How the rows reach the run. */
enum class Delivery {
  Budget,          // fkm_train on the array with a memory budget that forces streaming
  HostStride,      // fkm_train_source over rows 24 bytes apart from each other's ends
  Callback,        // fkm_train_source over a read callback
  CallbackBudget,  // the callback, streamed under the budget
};

inline const char *name(Delivery d) {
  switch (d) {
    case Delivery::Budget: return "budget";
    case Delivery::HostStride: return "host_stride";
    case Delivery::Callback: return "callback";
    case Delivery::CallbackBudget: return "callback_budget";
  }
  return "?";
}

struct Case {
  batched::Case c;
  Delivery delivery;
  fkm_init_method init = FKM_INIT_RANDOM;
  const char *profile = "flashkm";
};

inline std::string case_name(const Case &k) {
  std::string s = k.c.name;
  s += "_";
  s += name(k.delivery);
  if (k.init != FKM_INIT_RANDOM) s += k.init == FKM_INIT_KMEANS_PLUS_PLUS ? "_kmpp" : "_afkmc2";
  if (std::strcmp(k.profile, "flashkm") != 0) {
    s += "_";
    for (const char *p = k.profile; *p; p++) s += (*p == '-' || *p == '.') ? '_' : *p;
  }
  return s;
}

inline std::vector<Case> cases() {
  std::vector<Case> v;
  const Delivery all[] = {Delivery::Budget, Delivery::HostStride, Delivery::Callback,
                          Delivery::CallbackBudget};
  for (batched::Case c : batched::cases()) {
    c.batch = 1;
    const int64_t max_train = c.k * (int64_t)c.max_points_per_centroid;
    const bool one_block = (c.n < max_train ? c.n : max_train) <= 64;
    for (Delivery d : all) /* a training set of one query block has nothing to stream */
      if (!(one_block && (d == Delivery::Budget || d == Delivery::CallbackBudget)))
        v.push_back({c, d});
  }
  batched::Case big{"several_chunks_subsampled", 1, 5000, 12, 16};
  big.max_points_per_centroid = 200;
  big.weighted = true;
  for (Delivery d : all) v.push_back({big, d});
  batched::Case seed{"seeded_on_the_host", 1, 900, 6, 12};
  v.push_back({seed, Delivery::Budget, FKM_INIT_KMEANS_PLUS_PLUS});
  v.push_back({seed, Delivery::CallbackBudget, FKM_INIT_AFK_MC2});
  v.push_back({seed, Delivery::Callback, FKM_INIT_KMEANS_PLUS_PLUS});
  batched::Case seed16{"seeded_on_the_host_f16", 1, 900, 6, 12};
  seed16.dtype = FKM_DTYPE_F16; /* the host's copy of 16-bit rows streamed from the source */
  v.push_back({seed16, Delivery::Budget, FKM_INIT_KMEANS_PLUS_PLUS});
  v.push_back({seed16, Delivery::CallbackBudget, FKM_INIT_AFK_MC2});
  batched::Case prof{"profile_paths", 1, 3000, 20, 10};
  v.push_back({prof, Delivery::Budget, FKM_INIT_RANDOM, "faiss-1.15.1-avx2"});
  v.push_back({prof, Delivery::CallbackBudget, FKM_INIT_RANDOM, "faiss-1.11.0-avx512"});
  v.push_back({prof, Delivery::HostStride, FKM_INIT_RANDOM, "faiss-1.7.3"});
  return v;
}

inline void PrintTo(const Case &k, std::ostream *os) { *os << case_name(k); }

inline fkm_params params(const Case &k) {
  fkm_params p = batched::params(k.c);
  p.blas_query_bs = 64; /* chunks are whole query blocks: small blocks, many chunks */
  p.init_method = k.init;
  EXPECT_EQ(fkm_profile_parse(k.profile, &p.profile), FKM_OK) << k.profile;
  return p;
}

/* The rows as a callback serves them: copies from the case's array. */
struct Rows {
  const char *base;
  size_t row;
  int64_t reads = 0;
};

inline int read_rows(void *user, const int64_t *rows, int64_t count, void *dst) {
  Rows *r = static_cast<Rows *>(user);
  for (int64_t i = 0; i < count; i++)
    std::memcpy(static_cast<char *>(dst) + r->row * i, r->base + r->row * rows[i], r->row);
  r->reads++;
  return 0;
}

/* The run through the case's delivery (problem 0 of batched's data). */
inline batched::Out run(fkm_ctx *ctx, const Case &k, const batched::Data &s) {
  const batched::Case &c = k.c;
  batched::Out o = batched::fresh(c, s);
  fkm_params p = params(k);
  const void *x = batched::xptr(c, s, 0);
  const size_t es = c.dtype == FKM_DTYPE_F32 ? 4 : 2, row = es * c.d;
  const bool budget = k.delivery == Delivery::Budget || k.delivery == Delivery::CallbackBudget;
  if (budget) { /* the least a streamed run needs: chunks of one query block */
    fkm_memory_plan plan;
    EXPECT_EQ(fkm_train_memory(ctx, &p, 1, c.n, c.d, c.k, c.dtype, &plan), FKM_OK);
    EXPECT_GT(plan.streamed_bytes, 0u) << "this engine cannot stream";
    EXPECT_LT(plan.streamed_bytes, plan.in_core_bytes) << "the budget would not stream";
    p.memory_budget = plan.streamed_bytes;
  }
  const float *w = s.w.empty() ? nullptr : s.w.data();
  if (k.delivery == Delivery::Budget) {
    o.status = fkm_train(ctx, &p, c.n, c.d, c.k, c.dtype, x, w, o.centroids.data(), c.n_init,
                         o.labels.data(), o.distances.data(), o.stats.data(), o.cap,
                         o.n_stats.data());
    o.error = fkm_ctx_last_error(ctx);
    return o;
  }
  fkm_source src;
  std::vector<char> padded;
  Rows rows{static_cast<const char *>(x), row};
  if (k.delivery == Delivery::HostStride) {
    const size_t stride = row + 24;
    padded.assign(stride * c.n + 24, '\x7f'); /* NaN bytes between the rows */
    for (int64_t i = 0; i < c.n; i++)
      std::memcpy(padded.data() + 24 + stride * i, static_cast<const char *>(x) + row * i, row);
    EXPECT_EQ(fkm_source_host(&src, padded.data() + 24, c.n, c.d, c.dtype, (int64_t)stride),
              FKM_OK);
  } else {
    EXPECT_EQ(fkm_source_callback(&src, c.n, c.d, c.dtype, read_rows, &rows), FKM_OK);
  }
  o.status = fkm_train_source(ctx, &p, &src, c.k, w, o.centroids.data(), c.n_init,
                              o.labels.data(), o.distances.data(), o.stats.data(), o.cap,
                              o.n_stats.data());
  o.error = fkm_ctx_last_error(ctx);
  return o;
}

/* The reference: the same parameters, the array in core on ctx. */
inline batched::Out run_in_core(fkm_ctx *ctx, const Case &k, const batched::Data &s) {
  const batched::Case &c = k.c;
  batched::Out o = batched::fresh(c, s);
  const fkm_params p = params(k);
  o.status = fkm_train(ctx, &p, c.n, c.d, c.k, c.dtype, batched::xptr(c, s, 0),
                       s.w.empty() ? nullptr : s.w.data(), o.centroids.data(), c.n_init,
                       o.labels.data(), o.distances.data(), o.stats.data(), o.cap,
                       o.n_stats.data());
  o.error = fkm_ctx_last_error(ctx);
  return o;
}

}  // namespace source_cases
