// Deterministic test fixtures (seeded): gaussian blobs, duplicates, weights.
#pragma once

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace fixtures {

// The bit patterns of floats and doubles, and back.
inline uint32_t bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}
inline uint64_t bits(double f) {
  uint64_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}
inline float from_bits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}

// n points in d dims around `blobs` centres spread with `spread`.
inline std::vector<float> blobs(int64_t n, int64_t d, int blobs, uint32_t seed,
                                float spread = 0.3f, float offset = 0.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> N(0.f, 1.f);
  std::vector<float> centres(blobs * d), x(n * d);
  for (auto& v : centres) v = 3.0f * N(g) + offset;
  for (int64_t i = 0; i < n; i++) {
    int b = (int)(g() % (uint32_t)blobs);
    for (int64_t j = 0; j < d; j++) x[i * d + j] = centres[b * d + j] + spread * N(g);
  }
  return x;
}

inline std::vector<float> uniform(int64_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> U(lo, hi);
  std::vector<float> v(n);
  for (auto& e : v) e = U(g);
  return v;
}

}  // namespace fixtures
