// P2, assignment (docs/contract.md section 9): fkm_assign against FAISS's IndexFlat k=1
// search. On the CPU engine, with the BLAS FAISS links, labels and distances
// are FAISS's bit for bit, near-ties included. On the CUDA engine a label may
// differ at a near-tie: it is printed with the exact distance gap between
// the two candidates, which must be within the bound on FAISS's float
// rounding derived in parity.h (tie_check); every other distance must lie
// within twice that rounding bound of FAISS's (formula_error).
#include <faiss/utils/random.h>

#include "parity.h"

namespace parity {
namespace {

struct AssignCase {
  const char* name;
  std::vector<float> x;
  int64_t n, d, k;
  bool inner_product;
};

void check_assign(const AssignCase& a) {
  ASSERT_NE(ctx().get(), nullptr);
  // Centroids: k distinct data rows (rand_perm, as a k-means init), moved a
  // little so that no point sits exactly on one.
  std::vector<int> perm(static_cast<size_t>(a.n));
  faiss::rand_perm(perm.data(), size_t(a.n), 4321);
  std::vector<float> c(static_cast<size_t>(a.k * a.d));
  for (int64_t i = 0; i < a.k; i++)
    for (int64_t j = 0; j < a.d; j++)
      c[size_t(i * a.d + j)] = a.x[size_t(perm[size_t(i)] * a.d + j)] * 0.999f + 0.001f;

  faiss::IndexFlat index(a.d, a.inner_product ? faiss::METRIC_INNER_PRODUCT : faiss::METRIC_L2);
  index.add(a.k, c.data());
  std::vector<int64_t> lf(static_cast<size_t>(a.n)), lo(size_t(a.n));
  std::vector<float> df(static_cast<size_t>(a.n)), dout(size_t(a.n));
  index.search(a.n, a.x.data(), 1, df.data(), lf.data());

  fkm_params p = faiss_blas_params();
  p.metric = a.inner_product ? FKM_METRIC_INNER_PRODUCT : FKM_METRIC_L2;
  ASSERT_EQ(fkm_assign(ctx().get(), &p, a.n, a.d, a.k, FKM_DTYPE_F32, a.x.data(), c.data(),
                       lo.data(), dout.data()),
            FKM_OK)
      << fkm_ctx_last_error(ctx().get());
  int64_t nd = check_labels(a.name, a.x.data(), a.n, a.d, c.data(), lf.data(), lo.data(),
                            a.inner_product, 1000);
  BitDiff dd = compare(df.data(), dout.data(), size_t(a.n));
  if (labels_exact()) {  // FAISS's BLAS, FAISS's formula: the same distance bits
    EXPECT_EQ(dd.ndiff, 0u) << a.name << " distances: " << describe(dd);
  } else {  // two evaluations of the formula, each within E of the exact distance
    int64_t far = 0;
    for (int64_t i = 0; i < a.n; i++) {
      if (lf[size_t(i)] != lo[size_t(i)]) continue;
      FormulaError e = formula_error(a.x.data() + i * a.d, c.data() + lf[size_t(i)] * a.d, a.d,
                                     a.inner_product);
      if (std::fabs(double(df[size_t(i)]) - double(dout[size_t(i)])) > 2 * e.E && far++ < 10)
        ADD_FAILURE() << a.name << ": point " << i << " distance FAISS " << df[size_t(i)]
                      << " flashkm " << dout[size_t(i)] << " apart by more than twice the "
                      << "formula's rounding bound " << e.E;
    }
    EXPECT_EQ(far, 0) << a.name << ": distances outside the rounding bound";
  }
  std::printf("P2 %-22s n %" PRId64 " d %" PRId64 " k %" PRId64 " (%s on %s): labels %" PRId64
              " compared, %" PRId64 " differ (each a near-tie within bound); distance bits "
              "equal on %zu of %zu\n",
              a.name, a.n, a.d, a.k, a.inner_product ? "IP" : "L2",
              fkm_ctx_device_name(ctx().get()), a.n, nd, dd.n - dd.ndiff, dd.n);
}

TEST(ParityAssign, N200kK1024D128LabelsEqualFaissExceptProvenNearTies) {
  AssignCase a{"blobs_200k_1024_128", blobs(200000, 128, 2000, 11, 0.6f), 200000, 128, 1024,
               false};
  check_assign(a);
}

TEST(ParityAssign, InnerProductLabelsEqualFaissExceptProvenNearTies) {
  AssignCase a{"blobs_ip_50k_256_64", blobs(50000, 64, 500, 12, 0.6f), 50000, 64, 256, true};
  check_assign(a);
}

TEST(ParityAssign, LowDimensionLabelsEqualFaissExceptProvenNearTies) {
  // d = 3 with large norms: FAISS's formula cancels; flashkm reproduces it.
  AssignCase a{"blobs_d3_offset", blobs(100000, 3, 50, 13, 2.0f, 40.0f), 100000, 3, 64, false};
  check_assign(a);
}

TEST(ParityAssign, NearTiesAreListedAndWithinFaissRoundingBound) {
  // Tight blobs far from the origin: FAISS's |x|^2 + |c|^2 - 2 <x, c>
  // cancels, so BLAS's summation order decides some labels.
  AssignCase a{"tight_blobs_offset_100", blobs(100000, 32, 400, 14, 0.3f, 1.0f, 100.0f), 100000,
               32, 1024, false};
  check_assign(a);
}

TEST(ParityAssign, FashionMnistLabelsEqualFaissExceptProvenNearTies) {
  std::vector<float> x = fashion_mnist(30000);
  ASSERT_FALSE(x.empty()) << "Fashion-MNIST not found: install Debian's dataset-fashion-mnist";
  AssignCase a{"fashion_mnist_30k_256", std::move(x), 30000, 784, 256, false};
  check_assign(a);
}

}  // namespace
}  // namespace parity
