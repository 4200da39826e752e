// Shared by the GPU suites: contexts on both backends, bit comparison of
// output vectors with the first difference for the failure message, and a
// run's log lines.
#ifndef FKM_TESTS_GPU_COMPARE_H
#define FKM_TESTS_GPU_COMPARE_H

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "flashkm.h"

struct Ctx {
  fkm_ctx *c = nullptr;
  fkm_status status;
  explicit Ctx(fkm_backend b) { status = fkm_ctx_create(b, 0, &c); }
  /** A context created with the environment variable `name` set to
   *  `value` (the CUDA engine reads its switches at creation); the
   *  variable's earlier value, or its absence, is restored after. */
  Ctx(fkm_backend b, const char *name, const char *value) : Ctx(b, {{name, value}}) {}
  /** The same for several variables; a null value unsets its variable. */
  Ctx(fkm_backend b, std::initializer_list<std::pair<const char *, const char *>> env) {
    struct Saved {
      const char *name;
      bool set;
      std::string value;
    };
    std::vector<Saved> saved;
    for (const auto &e : env) {
      const char *v = std::getenv(e.first);
      saved.push_back({e.first, v != nullptr, v ? v : ""});
      set(e.first, e.second);
    }
    status = fkm_ctx_create(b, 0, &c);
    for (const Saved &w : saved) set(w.name, w.set ? w.value.c_str() : nullptr);
  }
  ~Ctx() { fkm_ctx_destroy(c); }

 private:
  static void set(const char *name, const char *value) {
    if (value)
      setenv(name, value, 1);
    else
      unsetenv(name);
  }
};

template <typename T>
bool same_bits(const std::vector<T> &a, const std::vector<T> &b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

template <typename T>
std::string first_diff(const std::vector<T> &a, const std::vector<T> &b) {
  if (a.size() != b.size()) return "sizes differ";
  for (size_t i = 0; i < a.size(); i++)
    if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0)
      return "first difference at " + std::to_string(i) + ": " + std::to_string(a[i]) +
             " vs " + std::to_string(b[i]);
  return "";
}

/** The lines of a run's log (fkm_params.log = LogLines::collect,
 *  log_user = the LogLines). */
struct LogLines {
  std::vector<std::string> lines;
  static void collect(void *user, fkm_log_level, const char *msg) {
    static_cast<LogLines *>(user)->lines.push_back(msg);
  }
  /** p, verbose, its log lines collected here. */
  fkm_params logged(fkm_params p) {
    p.verbose = 1;
    p.log = collect;
    p.log_user = this;
    return p;
  }
  bool said(const char *what) const {
    for (const auto &l : lines)
      if (l.find(what) != std::string::npos) return true;
    return false;
  }
  /** Every line, one per line (for a failure's message). */
  std::string all() const {
    std::string out;
    for (const auto &l : lines) out += l + "\n";
    return out;
  }
  /** The sum of the numbers that follow `key` in every line. */
  long long sum_after(const char *key) const {
    long long total = 0;
    for (const auto &l : lines)
      for (size_t at = l.find(key); at != std::string::npos; at = l.find(key, at + 1))
        total += std::atoll(l.c_str() + at + std::strlen(key));
    return total;
  }
};

/** A CUDA context and a CPU context (the oracle); skips without a device. */
class GpuCpuTest : public ::testing::Test {
 protected:
  Ctx *gpu = nullptr, *cpu = nullptr;
  void SetUp() override {
    gpu = new Ctx(FKM_BACKEND_CUDA);
    if (gpu->status == FKM_ERR_NO_DEVICE || gpu->status == FKM_ERR_UNSUPPORTED)
      GTEST_SKIP() << "no CUDA device: " << fkm_status_string(gpu->status);
    ASSERT_EQ(gpu->status, FKM_OK);
    ASSERT_EQ(fkm_ctx_backend(gpu->c), FKM_BACKEND_CUDA);
    cpu = new Ctx(FKM_BACKEND_CPU);
    ASSERT_EQ(cpu->status, FKM_OK);
  }
  void TearDown() override {
    delete gpu;
    delete cpu;
  }
};

#endif
