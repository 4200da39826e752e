// fkm_pq_encode on the CUDA engine: the CPU engine's code bytes (which the
// CPU and parity suites hold to FAISS's) for the PQ rule of every kind of
// FAISS build (the reference scan in each loop order, the D12 kernel, the
// AVX2 and AVX-512 lanes and their leftovers), every sub-vector width of the
// kernel path, packed and byte codes, with and without IndexIVFPQ's
// residual, host and device arrays, and the same statuses for bad input.
// Skips when no CUDA device is present.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "compare.h"
#include "flashkm.h"
#include "pq_cases.h"

namespace {

const char *const PQ_PROFILES[] = {
    "flashkm",           "faiss-1.7.3",       "faiss-1.7.4-avx2",   "faiss-1.8.0-avx512",
    "faiss-1.9.0-avx512", "faiss-1.11.0-avx2", "faiss-1.13.2-none",  "faiss-1.15.1-none",
    "faiss-1.15.1-avx2", "faiss-1.15.1-avx512"};

fkm_params pq_params(const char *profile) {
  fkm_params p;
  fkm_params_init(&p);
  EXPECT_EQ(fkm_profile_parse(profile, &p.profile), FKM_OK) << profile;
  return p;
}

std::vector<uint8_t> encode(fkm_ctx *ctx, const fkm_params &p, const PqCase &c,
                            fkm_status *st) {
  std::vector<uint8_t> codes(size_t(c.n * c.code_size()), 0xAB);
  *st = fkm_pq_encode(ctx, &p, c.n, c.d, c.M, c.nbits, c.x.data(), c.pq.data(), c.nlist,
                      c.nlist ? c.coarse.data() : nullptr,
                      c.nlist ? c.lists.data() : nullptr, codes.data());
  return codes;
}

template <typename T>
T *to_device(const std::vector<T> &v) {
  T *p = nullptr;
  if (v.empty()) return nullptr;
  EXPECT_EQ(cudaMalloc((void **)&p, v.size() * sizeof(T)), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice),
            cudaSuccess);
  return p;
}

class CudaPq : public GpuCpuTest {};

TEST_F(CudaPq, EveryProfileWidthAndCodeSizeEqualsCpu) {
  for (const char *prof : PQ_PROFILES)
    for (int64_t dsub = 1; dsub <= 15; dsub++)
      for (int nbits : {1, 2, 3, 4, 5, 8})
        for (bool residual : {false, true}) {
          const PqCase c = make_pq_case(97, dsub, 3, nbits, residual,
                                        uint32_t(dsub * 131 + nbits * 7 + residual));
          const fkm_params p = pq_params(prof);
          fkm_status sg, sc;
          const auto g = encode(gpu->c, p, c, &sg), want = encode(cpu->c, p, c, &sc);
          ASSERT_EQ(sc, FKM_OK) << fkm_ctx_last_error(cpu->c);
          ASSERT_EQ(sg, FKM_OK) << fkm_ctx_last_error(gpu->c);
          ASSERT_TRUE(same_bits(g, want))
              << prof << " dsub " << dsub << " nbits " << nbits << " residual " << residual
              << ": " << first_diff(g, want);
        }
}

TEST_F(CudaPq, SixteenBitCodesAndManyRowsEqualCpu) {
  /* ksub 65536 (PQEncoder16) and a call longer than one chunk of rows */
  for (const char *prof : {"faiss-1.15.1-avx2", "faiss-1.15.1-avx512"}) {
    const PqCase a = make_pq_case(301, 4, 2, 16, true, 5);
    const PqCase b = make_pq_case(300000, 4, 8, 8, true, 6);
    const fkm_params p = pq_params(prof);
    for (const PqCase *c : {&a, &b}) {
      fkm_status sg, sc;
      const auto g = encode(gpu->c, p, *c, &sg), want = encode(cpu->c, p, *c, &sc);
      ASSERT_EQ(sc, FKM_OK) << fkm_ctx_last_error(cpu->c);
      ASSERT_EQ(sg, FKM_OK) << fkm_ctx_last_error(gpu->c);
      ASSERT_TRUE(same_bits(g, want)) << prof << " n " << c->n << ": " << first_diff(g, want);
    }
  }
}

TEST_F(CudaPq, DeviceArraysEqualHostArrays) {
  const PqCase c = make_pq_case(1000, 4, 8, 8, true, 11);
  const fkm_params p = pq_params("faiss-1.15.1-avx2");
  fkm_status st;
  const auto want = encode(cpu->c, p, c, &st);
  ASSERT_EQ(st, FKM_OK);
  float *x = to_device(c.x), *pq = to_device(c.pq), *coarse = to_device(c.coarse);
  int64_t *lists = to_device(c.lists);
  std::vector<uint8_t> got(want.size());
  uint8_t *codes = to_device(got);
  ASSERT_EQ(fkm_pq_encode(gpu->c, &p, c.n, c.d, c.M, c.nbits, x, pq, c.nlist, coarse, lists,
                          codes),
            FKM_OK)
      << fkm_ctx_last_error(gpu->c);
  ASSERT_EQ(cudaMemcpy(got.data(), codes, got.size(), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_TRUE(same_bits(got, want)) << first_diff(got, want);
  for (void *q : {(void *)x, (void *)pq, (void *)coarse, (void *)lists, (void *)codes})
    cudaFree(q);
}

TEST_F(CudaPq, BadInputGivesCpuStatusesAndWritesNothing) {
  const fkm_params p = pq_params("faiss-1.15.1-avx2");
  for (int which = 0; which < 4; which++) {
    PqCase c = make_pq_case(50, 4, 2, 8, true, 3);
    if (which == 0) c.x[size_t(7 * c.d + 3)] = NAN;
    if (which == 1) c.pq[11] = INFINITY;
    if (which == 2) c.lists[9] = c.nlist;
    if (which == 3) c.lists[4] = -1;
    for (bool device_lists : {false, true}) {
      fkm_status sg, sc;
      std::vector<uint8_t> g;
      if (device_lists) {
        int64_t *lists = to_device(c.lists);
        g.assign(size_t(c.n * c.code_size()), 0xAB);
        sg = fkm_pq_encode(gpu->c, &p, c.n, c.d, c.M, c.nbits, c.x.data(), c.pq.data(),
                           c.nlist, c.coarse.data(), lists, g.data());
        cudaFree(lists);
      } else {
        g = encode(gpu->c, p, c, &sg);
      }
      encode(cpu->c, p, c, &sc);
      EXPECT_NE(sc, FKM_OK);
      EXPECT_EQ(sg, sc) << which;
      EXPECT_EQ(std::string(fkm_ctx_last_error(gpu->c)), fkm_ctx_last_error(cpu->c)) << which;
      EXPECT_EQ(g, std::vector<uint8_t>(g.size(), 0xAB)) << which;
    }
  }
}

// Host rows in many chunks (FLASHKM_CUDA_ASSIGN_CHUNK), pageable and pinned,
// crossing on the copy stream beside the last chunk's encoding and, with
// FLASHKM_CUDA_STREAM=copy-widen, one chunk after the other on the work's
// stream: the CPU's bytes. Without check_finite a NaN row in chunk 9 is not
// an error, and every other row's code is still the CPU's.
TEST_F(CudaPq, HostRowsInChunksEqualCpu) {
  const int64_t chunk = 1000;
  const PqCase c = make_pq_case(13 * chunk - 37, 4, 8, 8, true, 29);
  const fkm_params p = pq_params("faiss-1.15.1-avx2");
  fkm_status sc;
  const auto want = encode(cpu->c, p, c, &sc);
  ASSERT_EQ(sc, FKM_OK) << fkm_ctx_last_error(cpu->c);
  PqCase bad = c;
  const int64_t bad_row = 9 * chunk + 17;
  bad.x[size_t(bad_row * c.d + 5)] = NAN;
  for (const char *stream : {"default", "copy-widen"}) {
    SCOPED_TRACE(stream);
    const std::string rows = std::to_string(chunk);
    Ctx g(FKM_BACKEND_CUDA,
          {{"FLASHKM_CUDA_STREAM", std::string(stream) == "default" ? nullptr : stream},
           {"FLASHKM_CUDA_ASSIGN_CHUNK", rows.c_str()}});
    ASSERT_EQ(g.status, FKM_OK);
    float *pinned = nullptr;
    ASSERT_EQ(cudaMallocHost((void **)&pinned, c.x.size() * sizeof(float)), cudaSuccess);
    for (int how = 0; how < 2; how++) {
      SCOPED_TRACE(how == 0 ? "pageable" : "pinned");
      std::memcpy(pinned, c.x.data(), c.x.size() * sizeof(float));
      std::vector<uint8_t> got(want.size(), 0xAB);
      ASSERT_EQ(fkm_pq_encode(g.c, &p, c.n, c.d, c.M, c.nbits, how ? pinned : c.x.data(),
                              c.pq.data(), c.nlist, c.coarse.data(), c.lists.data(),
                              got.data()),
                FKM_OK)
          << fkm_ctx_last_error(g.c);
      EXPECT_TRUE(same_bits(got, want)) << first_diff(got, want);
      /* the NaN row: checked, the CPU's status and message, nothing written */
      std::memcpy(pinned, bad.x.data(), bad.x.size() * sizeof(float));
      const float *xb = how ? pinned : bad.x.data();
      std::vector<uint8_t> g2(want.size(), 0xAB), c2(want.size(), 0xAB);
      const fkm_status sg2 = fkm_pq_encode(g.c, &p, c.n, c.d, c.M, c.nbits, xb, c.pq.data(),
                                           c.nlist, c.coarse.data(), c.lists.data(), g2.data());
      const fkm_status sc2 = fkm_pq_encode(cpu->c, &p, c.n, c.d, c.M, c.nbits, bad.x.data(),
                                           c.pq.data(), c.nlist, c.coarse.data(),
                                           c.lists.data(), c2.data());
      EXPECT_EQ(sc2, FKM_ERR_NOT_FINITE);
      EXPECT_EQ(sg2, sc2);
      EXPECT_EQ(std::string(fkm_ctx_last_error(g.c)), fkm_ctx_last_error(cpu->c));
      EXPECT_EQ(g2, std::vector<uint8_t>(g2.size(), 0xAB));
      /* unchecked: codes for every row, the CPU's outside the NaN row */
      fkm_params q = p;
      q.check_finite = 0;
      ASSERT_EQ(fkm_pq_encode(g.c, &q, c.n, c.d, c.M, c.nbits, xb, c.pq.data(), c.nlist,
                              c.coarse.data(), c.lists.data(), g2.data()),
                FKM_OK)
          << fkm_ctx_last_error(g.c);
      const size_t cs = size_t(c.code_size()), at = size_t(bad_row) * cs;
      EXPECT_EQ(std::memcmp(g2.data(), want.data(), at), 0);
      EXPECT_EQ(std::memcmp(g2.data() + at + cs, want.data() + at + cs, want.size() - at - cs),
                0);
    }
    cudaFreeHost(pinned);
  }
}

// The reference scan under every valid summation order of fvec_L2sqr (a
// door may measure any of them), at every sub-vector width: the kernels
// specialised for the releases' orders and the run-time scan for the rest
// (the default), and the run-time scan for all (FLASHKM_CUDA_PQ=generic),
// give the CPU's bytes.
TEST_F(CudaPq, EveryLoopOrderOfTheReferenceEqualsCpu) {
  for (const char *mode : {static_cast<const char *>(nullptr), "generic"}) {
    Ctx g(FKM_BACKEND_CUDA, "FLASHKM_CUDA_PQ", mode);
    ASSERT_EQ(g.status, FKM_OK);
    fkm_params p = pq_params("faiss-1.15.1-none");
    int orders = 0;
    for (int w : {0, 1, 2, 4, 8, 16, 32})
      for (int tail = 0; tail < (w > 1 ? w : 1); tail = tail ? tail * 2 : 1)
        for (int flags = 0; flags < 16; flags++) {
          p.profile.l2 = fkm_loop_order{w, flags & 1, tail, (flags >> 1) & 1, (flags >> 2) & 1,
                                        (flags >> 3) & 1};
          orders++;
          for (int64_t dsub = 1; dsub <= 15; dsub++) {
            const PqCase c = make_pq_case(97, dsub, 3, 8, dsub % 2 == 1,
                                          uint32_t(orders * 31 + dsub));
            fkm_status sg, sc;
            const auto got = encode(g.c, p, c, &sg), want = encode(cpu->c, p, c, &sc);
            ASSERT_EQ(sc, FKM_OK) << fkm_ctx_last_error(cpu->c);
            ASSERT_EQ(sg, FKM_OK) << fkm_ctx_last_error(g.c);
            ASSERT_TRUE(same_bits(got, want))
                << (mode ? mode : "default") << ": width " << w << " tail " << tail
                << " flags " << flags << " dsub " << dsub << ": " << first_diff(got, want);
          }
        }
    EXPECT_EQ(orders, 352);
  }
}

// Every release's rule (lanes, the D12 kernel, the reference in each
// release's order), every width, the specialised scans (the default) and the
// run-time scan (FLASHKM_CUDA_PQ=generic): the CPU's bytes, packed codes and
// residuals included.
TEST_F(CudaPq, SpecialisedAndGenericScansEqualCpu) {
  for (const char *mode : {static_cast<const char *>(nullptr), "generic"}) {
    Ctx g(FKM_BACKEND_CUDA, "FLASHKM_CUDA_PQ", mode);
    ASSERT_EQ(g.status, FKM_OK);
    for (const char *prof : PQ_PROFILES)
      for (int64_t dsub = 1; dsub <= 15; dsub++) {
        const PqCase c = make_pq_case(97, dsub, 3, dsub % 3 == 0 ? 5 : 8, dsub % 2 == 0,
                                      uint32_t(dsub * 17 + 3));
        const fkm_params p = pq_params(prof);
        fkm_status sg, sc;
        const auto got = encode(g.c, p, c, &sg), want = encode(cpu->c, p, c, &sc);
        ASSERT_EQ(sc, FKM_OK) << fkm_ctx_last_error(cpu->c);
        ASSERT_EQ(sg, FKM_OK) << fkm_ctx_last_error(g.c);
        ASSERT_TRUE(same_bits(got, want)) << (mode ? mode : "default") << " " << prof
                                          << " dsub " << dsub << ": " << first_diff(got, want);
      }
  }
}

}  // namespace
