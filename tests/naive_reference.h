// A second, deliberately naive transcription of docs/contract.md sections 1-8 (and of
// faiss::Clustering::train in FAISS 1.7.3), written for clarity, not speed.
// The optimised engines are tested against it bit for bit. It shares no code
// with the library.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "flashkm.h"

namespace naive {

inline std::vector<int64_t> rand_perm(int64_t n, int64_t seed) {
  std::vector<int64_t> perm(n);
  for (int64_t i = 0; i < n; i++) perm[i] = i;
  std::mt19937 mt((unsigned int)seed);
  for (int64_t i = 0; i + 1 < n; i++) {
    int64_t j = i + (int64_t)(mt() % (uint32_t)(n - i));
    std::swap(perm[i], perm[j]);
  }
  return perm;
}

inline float norm2(const float* x, int64_t d) {
  double s = 0;
  for (int64_t j = 0; j < d; j++) {
    float sq = x[j] * x[j];
    s += sq;
  }
  return (float)s;
}

// FAISS's k=1 search in its float formula; returns the label (-1 if none).
inline int64_t nearest(const float* x, const float* c, int64_t d, int64_t k,
                       fkm_metric metric, float* dist) {
  float xn = norm2(x, d);
  int64_t best = -1;
  float bv = metric == FKM_METRIC_L2 ? INFINITY : -INFINITY;
  for (int64_t ci = 0; ci < k; ci++) {
    float ip = 0;
    for (int64_t j = 0; j < d; j++) ip = std::fma(x[j], c[ci * d + j], ip);
    float dis;
    if (metric == FKM_METRIC_L2) {
      float s = xn + norm2(c + ci * d, d);
      float twice = 2 * ip;
      dis = s - twice;
      if (dis < 0) dis = 0;
      if (dis < bv) { bv = dis; best = ci; }
    } else {
      dis = ip;
      if (dis > bv) { bv = dis; best = ci; }
    }
  }
  *dist = bv;
  return best;
}

inline void post_process(std::vector<float>& c, int64_t d, const fkm_params& p) {
  int64_t k = (int64_t)c.size() / d;
  if (p.spherical) {
    for (int64_t i = 0; i < k; i++) {
      float nr = norm2(&c[i * d], d);
      if (nr > 0) {
        float inv = (float)(1.0 / (double)std::sqrt(nr));
        for (int64_t j = 0; j < d; j++) c[i * d + j] *= inv;
      }
    }
  }
  if (p.int_centroids) {
    for (auto& v : c) v = std::round(v);
  }
}

struct Result {
  std::vector<float> centroids;
  std::vector<fkm_iteration_stats> stats;
};

// x: (n, d) float; weights may be null; init: n_init rows.
inline Result train(const fkm_params& p, int64_t n, int64_t d, int64_t k,
                    const float* x_in, const float* w_in, const float* init,
                    int64_t n_init) {
  Result res;
  std::vector<float> x(x_in, x_in + n * d), w;
  if (w_in) w.assign(w_in, w_in + n);
  int64_t nx = n;
  if (nx > k * p.max_points_per_centroid) {
    auto perm = rand_perm(nx, p.seed);
    nx = k * p.max_points_per_centroid;
    std::vector<float> xs(nx * d), ws;
    for (int64_t i = 0; i < nx; i++)
      std::memcpy(&xs[i * d], x_in + perm[i] * d, sizeof(float) * d);
    if (w_in) {
      ws.resize(nx);
      for (int64_t i = 0; i < nx; i++) ws[i] = w_in[perm[i]];
    }
    x.swap(xs);
    w.swap(ws);
  }
  if (nx == k) {
    res.centroids.assign(x_in, x_in + k * d);
    res.stats.push_back({0, 0, 0, 1, 0, 0});
    return res;
  }
  std::vector<float> cent(k * d, 0.f), best_cent;
  if (n_init) std::memcpy(cent.data(), init, sizeof(float) * n_init * d);
  std::vector<fkm_iteration_stats> stats, best_stats;
  bool l2 = p.metric == FKM_METRIC_L2;
  float best_obj = l2 ? HUGE_VALF : -HUGE_VALF;
  int64_t kf = p.frozen_centroids ? n_init : 0;
  std::vector<int64_t> assign(nx);
  std::vector<float> dis(nx);
  for (int redo = 0; redo < p.nredo; redo++) {
    auto perm = rand_perm(nx, p.seed + 1 + (int64_t)redo * 15486557);
    for (int64_t i = n_init; i < k; i++)
      std::memcpy(&cent[i * d], &x[perm[i] * d], sizeof(float) * d);
    post_process(cent, d, p);
    float obj = 0;
    for (int it = 0; it < p.niter; it++) {
      for (int64_t i = 0; i < nx; i++)
        assign[i] = nearest(&x[i * d], cent.data(), d, k, p.metric, &dis[i]);
      obj = 0;
      double objd = 0;
      for (int64_t i = 0; i < nx; i++) { obj += dis[i]; objd += dis[i]; }
      // update, FAISS's compute_centroids
      std::vector<float> hassign(k, 0.f);
      int64_t kk = k - kf;
      for (int64_t ci = kf; ci < k; ci++)
        for (int64_t j = 0; j < d; j++) cent[ci * d + j] = 0;
      for (int64_t i = 0; i < nx; i++) {
        int64_t ci = assign[i];
        if (ci < kf) continue;
        float* c = &cent[ci * d];
        if (!w.empty()) {
          hassign[ci - kf] += w[i];
          for (int64_t j = 0; j < d; j++) {
            float prod = x[i * d + j] * w[i];
            c[j] += prod;
          }
        } else {
          hassign[ci - kf] += 1.0f;
          for (int64_t j = 0; j < d; j++) c[j] += x[i * d + j];
        }
      }
      for (int64_t ci = 0; ci < kk; ci++) {
        if (hassign[ci] == 0) continue;
        float norm = 1 / hassign[ci];
        for (int64_t j = 0; j < d; j++) cent[(ci + kf) * d + j] *= norm;
      }
      // split, FAISS 1.15's split_clusters
      int nsplit = 0;
      std::mt19937 rng(1234);
      for (int64_t ci = 0; ci < kk; ci++) {
        if (hassign[ci] != 0) continue;
        int64_t cj = 0, tries = 0;
        bool found = false;
        for (; tries < 10 * kk; cj = (cj + 1) % kk) {
          float pr = (hassign[cj] - 1.0) / (float)(nx - kk);
          float r = rng() / float(rng.max());
          if (r < pr) { found = true; break; }
          tries++;
        }
        if (!found) {
          cj = 0;
          for (int64_t j = 1; j < kk; j++)
            if (hassign[j] > hassign[cj]) cj = j;
        }
        float* a = &cent[(ci + kf) * d];
        float* b = &cent[(cj + kf) * d];
        std::memmove(a, b, sizeof(float) * d);
        for (int64_t j = 0; j < d; j++) {
          if (j % 2 == 0) { a[j] *= 1 + 1 / 1024.; b[j] *= 1 - 1 / 1024.; }
          else { a[j] *= 1 - 1 / 1024.; b[j] *= 1 + 1 / 1024.; }
        }
        hassign[ci] = hassign[cj] / 2;
        hassign[cj] -= hassign[ci];
        nsplit++;
      }
      std::vector<int> hist(k, 0);
      for (int64_t i = 0; i < nx; i++) hist[assign[i]]++;
      double tot = 0, uf = 0;
      for (int64_t i = 0; i < k; i++) { tot += hist[i]; uf += hist[i] * (double)hist[i]; }
      uf = uf * k / (tot * tot);
      stats.push_back({obj, 0, 0, uf, nsplit, objd});
      post_process(cent, d, p);
    }
    if (p.nredo > 1 && (l2 ? obj < best_obj : obj > best_obj)) {
      best_cent = cent;
      best_stats = stats;
      best_obj = obj;
    }
  }
  if (p.nredo > 1) { cent = best_cent; stats = best_stats; }
  res.centroids = cent;
  res.stats = stats;
  return res;
}

}  // namespace naive
