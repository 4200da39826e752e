/* Product quantizers and OPQ rotations trained with flashkm's k-means,
 * following FAISS 1.7.3 step by step.
 *
 *  - ProductQuantizer::train (Train_default and Train_hot_start): M
 *    Clustering(dsub, ksub, pq.cp) runs on the M column slices, each on an
 *    IndexFlatL2, hot start seeding each with the slice's current
 *    centroids: one batched run (fkm_train_batched: M problems of one shape,
 *    the bits of M separate runs, n_init = ksub for hot start).
 *  - OPQMatrix::train: FAISS's own loop (subsample, centring, the random
 *    rotation from float_randn and matrix_qr, projections and the SVD
 *    through the BLAS and LAPACK FAISS links, the PQ decoded by FAISS), with
 *    the PQ trainings inside it run as above and its encoding by
 *    fkm_pq_encode (FAISS's compute_codes bytes; FAISS's own for
 *    sub-vectors of 16 dimensions or more).
 * Only FAISS 1.7 (whose code this is) and the exact classes: anything else
 * is trained by FAISS. */
#include <faiss/VectorTransform.h>
#include <faiss/impl/ProductQuantizer.h>
#include <faiss/utils/random.h>
#include <faiss/utils/utils.h>

#include <cstring>
#include <memory>
#include <typeinfo>
#include <vector>

#include "shim.h"

/* The BLAS and LAPACK FAISS links, as FAISS declares them
 * (faiss/VectorTransform.cpp, FINTEGER int). */
extern "C" int sgemm_(const char* transa, const char* transb, int* m, int* n, int* k,
                      const float* alpha, const float* a, int* lda, const float* b, int* ldb,
                      float* beta, float* c, int* ldc);
extern "C" int sgesvd_(const char* jobu, const char* jobvt, int* m, int* n, float* a, int* lda,
                       float* s, float* u, int* ldu, float* vt, int* ldvt, float* work,
                       int* lwork, int* info);

namespace flashkm {
namespace detail {

bool pq_trainable(const faiss::ProductQuantizer& pq, int64_t n) {
#if FAISS_VERSION_MAJOR == 1 && FAISS_VERSION_MINOR == 7
  return (pq.train_type == faiss::ProductQuantizer::Train_default ||
          pq.train_type == faiss::ProductQuantizer::Train_hot_start) &&
         !pq.assign_index && n >= int64_t(pq.ksub);
#else
  (void)pq, (void)n;
  return false;
#endif
}

void train_pq(fkm_ctx* ctx, faiss::ProductQuantizer& pq, int64_t n, const float* x) {
  const size_t M = pq.M, dsub = pq.dsub, ksub = pq.ksub, nt = size_t(n);
  /* every value is written by the cut: no zero-filling of the training set's copy */
  const std::unique_ptr<float[]> slices(new float[M * nt * dsub]);
  std::vector<float> cent(M * ksub * dsub);
  const fkm_status cut = fkm_pq_slices(n, int64_t(pq.d), int64_t(M), x, slices.get());
  if (cut != FKM_OK)
    throw Error(cut, std::string("flashkm: the PQ's column slices: ") + fkm_status_string(cut));
  const bool hot = pq.train_type == faiss::ProductQuantizer::Train_hot_start;
  if (hot) std::memcpy(cent.data(), pq.centroids.data(), sizeof(float) * cent.size());
  const fkm_params p = params_of(pq.cp, FKM_METRIC_L2, nullptr, nullptr);
  check(ctx, fkm_train_batched(ctx, &p, int64_t(M), n, int64_t(dsub), int64_t(ksub),
                               FKM_DTYPE_F32, slices.get(), nullptr, cent.data(),
                               hot ? int64_t(ksub) : 0, nullptr, nullptr, nullptr, 0, nullptr));
  for (size_t m = 0; m < M; m++) pq.set_params(cent.data() + m * ksub * dsub, int(m));
}

bool pq_encodable(const faiss::ProductQuantizer& pq) {
  return pq.dsub < 16 && pq.nbits <= 16 && pq.transposed_centroids.empty();
}

void encode(fkm_ctx* ctx, const faiss::ProductQuantizer& pq, int64_t n, const float* x,
            uint8_t* codes) {
  if (!pq_encodable(pq)) { /* FAISS's BLAS distances (dsub >= 16), another kernel */
    pq.compute_codes(x, codes, size_t(n));
    return;
  }
  const fkm_params p = params_of(pq.cp, FKM_METRIC_L2, nullptr, nullptr);
  check(ctx, fkm_pq_encode(ctx, &p, n, int64_t(pq.d), int64_t(pq.M), int(pq.nbits), x,
                           pq.centroids.data(), 0, nullptr, nullptr, codes));
}

bool train_opq(fkm_ctx* ctx, faiss::OPQMatrix& opq, int64_t n_in, const float* x_in) {
#if FAISS_VERSION_MAJOR == 1 && FAISS_VERSION_MINOR == 7
  if (typeid(opq) != typeid(faiss::OPQMatrix)) return false;
  if (opq.pq && (opq.pq->train_type != faiss::ProductQuantizer::Train_default ||
                 opq.pq->assign_index))
    return false;
  size_t nt = size_t(n_in);
  const float* x = faiss::fvecs_maybe_subsample(size_t(opq.d_in), &nt, opq.max_train_points,
                                                x_in, opq.verbose);
  std::unique_ptr<const float[]> own_x(x == x_in ? nullptr : x);
  const int64_t n = int64_t(nt);
  const int d_in = opq.d_in, d_out = opq.d_out;
  const size_t d = d_out <= d_in ? d_in : d_out, d2 = d_out;
  faiss::ProductQuantizer pq_default(d2, opq.M, 8);
  faiss::ProductQuantizer& pq = opq.pq ? *opq.pq : pq_default;
  if (opq.niter > 0 && !pq_trainable(pq, n)) return false;

  std::vector<float> xtrain(nt * d);
  { /* centre x, FAISS's loops and types */
    std::vector<float> sum(d);
    const float* xi = x;
    for (size_t i = 0; i < nt; i++)
      for (int j = 0; j < d_in; j++) sum[j] += *xi++;
    for (size_t i = 0; i < d; i++) sum[i] /= n; /* float /= idx_t, as FAISS */
    float* yi = xtrain.data();
    xi = x;
    for (size_t i = 0; i < nt; i++) {
      for (int j = 0; j < d_in; j++) *yi++ = *xi++ - sum[j];
      yi += d - d_in;
    }
  }
  float* rotation;
  if (opq.A.size() == 0) {
    opq.A.resize(d * d);
    rotation = opq.A.data();
    faiss::float_randn(rotation, d * d, 1234);
    faiss::matrix_qr(int(d), int(d), rotation);
    opq.A.resize(d * d2); /* the d * d2 upper part */
  } else {
    if (opq.A.size() != d * d2)
      throw Error(FKM_ERR_FAISS, "OPQMatrix::A has " + std::to_string(opq.A.size()) +
                                     " entries, not d * d2 = " + std::to_string(d * d2));
    rotation = opq.A.data();
  }
  std::vector<float> xproj(d2 * nt), pq_recons(d2 * nt), xxr(d * nt), tmp(d * d * 4);
  std::vector<uint8_t> codes(pq.code_size * nt);
  for (int iter = 0; iter < opq.niter; iter++) {
    int di = int(d), d2i = int(d2), ni = int(n);
    float zero = 0, one = 1;
    sgemm_("Transposed", "Not transposed", &d2i, &ni, &di, &one, rotation, &di, xtrain.data(),
           &di, &zero, xproj.data(), &d2i);
    pq.cp.max_points_per_centroid = 1000;
    pq.cp.niter = iter == 0 ? opq.niter_pq_0 : opq.niter_pq;
    pq.verbose = opq.verbose;
    train_pq(ctx, pq, n, xproj.data());
    encode(ctx, pq, n, xproj.data(), codes.data());
    pq.decode(codes.data(), pq_recons.data(), nt);
    float *u = tmp.data(), *vt = &tmp[d * d], *sing_val = &tmp[2 * d * d];
    sgemm_("Not", "Transposed", &d2i, &di, &ni, &one, pq_recons.data(), &d2i, xtrain.data(),
           &di, &zero, xxr.data(), &d2i);
    int lwork = -1, info = -1;
    float worksz;
    sgesvd_("All", "All", &d2i, &di, xxr.data(), &d2i, sing_val, vt, &d2i, u, &di, &worksz,
            &lwork, &info);
    lwork = int(worksz);
    std::vector<float> work(size_t(lwork > 0 ? lwork : 1));
    sgesvd_("All", "All", &d2i, &di, xxr.data(), &d2i, sing_val, vt, &d2i, u, &di, work.data(),
            &lwork, &info);
    sgemm_("Transposed", "Transposed", &di, &d2i, &d2i, &one, u, &di, vt, &d2i, &zero,
           rotation, &di);
    pq.train_type = faiss::ProductQuantizer::Train_hot_start;
  }
  if (d > size_t(d_in)) { /* revert A to d_in columns */
    for (long i = 0; i < d_out; i++)
      std::memmove(&opq.A[i * d_in], &opq.A[i * d], sizeof(opq.A[0]) * d_in);
    opq.A.resize(size_t(d_in) * d_out);
  }
  opq.is_trained = true;
  opq.is_orthonormal = true;
  return true;
#else
  (void)ctx, (void)opq, (void)n_in, (void)x_in;
  return false;
#endif
}

}  // namespace detail
}  // namespace flashkm
