// fkm_faiss_add (docs/contract.md section 9): the coarse assignment of added
// vectors on flashkm (an IndexIVFPQ's codes too: fkm_pq_encode), then
// FAISS's add_core / add_sa_codes, against stock add / add_with_ids of the
// same trained index: the written indexes are equal byte for byte. Also
// fkm_pq_encode against ProductQuantizer::compute_codes on tie fixtures,
// what is left to FAISS, and the bridge's errors.
#include <faiss/IndexIVF.h>
#include <faiss/impl/ProductQuantizer.h>
#include <faiss/impl/io.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>

#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <memory>

#include "flashkm_faiss.h"
#include "parity.h"
#include "pq_cases.h"

namespace parity {
namespace {

std::vector<uint8_t> bytes_of(const faiss::Index* index) {
  faiss::VectorIOWriter w;
  faiss::write_index(index, &w);
  return w.data;
}

std::unique_ptr<faiss::Index> copy_of(const faiss::Index* index) {
  faiss::VectorIOReader r;
  r.data = bytes_of(index);
  return std::unique_ptr<faiss::Index>(faiss::read_index(&r));
}

struct AddCase {
  const char* factory;
  bool inner_product;
  bool flashkm_assigns;
  bool flashkm_encodes;
};

void PrintTo(const AddCase& c, std::ostream* os) {
  *os << c.factory << (c.inner_product ? " IP" : " L2");
}

class ParityAdd : public ::testing::TestWithParam<AddCase> {};

TEST_P(ParityAdd, AddedIndexEqualsStockAddBytes) {
  const AddCase& c = GetParam();
  const int64_t d = 32, nt = 6000, nb = 30000;
  const std::vector<float> x = blobs(nt, d, 40, 31, 2.5f), xb = blobs(nb, d, 40, 32, 2.5f);
  std::unique_ptr<faiss::Index> ours(faiss::index_factory(
      int(d), c.factory, c.inner_product ? faiss::METRIC_INNER_PRODUCT : faiss::METRIC_L2));
  ours->train(nt, x.data());
  std::unique_ptr<faiss::Index> stock = copy_of(ours.get());
  fkm_faiss_add_stats st;
  st.struct_size = sizeof st;
  ASSERT_EQ(fkm_faiss_add_report(ctx().get(), ours.get(), nb, xb.data(), nullptr, &st), FKM_OK)
      << fkm_ctx_last_error(ctx().get());
  stock->add(nb, xb.data());
  EXPECT_EQ(st.assign_by_flashkm, c.flashkm_assigns ? 1 : 0);
  EXPECT_EQ(st.encode_by_flashkm, c.flashkm_encodes ? 1 : 0);
  std::vector<int64_t> ids(700);
  std::vector<faiss::Index::idx_t> fids(700);
  for (int i = 0; i < 700; i++) ids[i] = fids[i] = 1000000 + 7 * i;
  ASSERT_EQ(fkm_faiss_add(ctx().get(), ours.get(), 700, xb.data(), ids.data()), FKM_OK)
      << fkm_ctx_last_error(ctx().get());
  stock->add_with_ids(700, xb.data(), fids.data());
  EXPECT_EQ(ours->ntotal, nb + 700);
  EXPECT_TRUE(bytes_of(ours.get()) == bytes_of(stock.get()));
}

INSTANTIATE_TEST_SUITE_P(
    Factories, ParityAdd,
    ::testing::Values(AddCase{"IVF64,Flat", false, true, false},
                      AddCase{"IVF64,Flat", true, true, false},
                      AddCase{"IVF64,PQ8x4np", false, true, true},   /* dsub 4, 4 bits */
                      AddCase{"IVF64,PQ16np", true, true, true},     /* dsub 2, 8 bits */
                      AddCase{"IVF32,PQ2np", false, true, false},    /* dsub 16: FAISS's BLAS */
                      AddCase{"PCA16,IVF32,PQ8x4np", false, true, true}, /* dsub 2 after PCA */
                      AddCase{"IVF64,SQ8", true, true, false},
                      AddCase{"PCA16,IVF32,Flat", false, true, false},
                      AddCase{"IVF64,PQ8x4fs", false, false, false},
                      AddCase{"IVF16_HNSW8,Flat", false, false, false}));

// fkm_pq_encode in the linked FAISS's profile against its
// ProductQuantizer::compute_codes, on sub-vectors decided by rounding and
// ties alone (tests/pq_cases.h), every width below 16, packed and byte
// codes, with residuals against coarse centroids as IndexIVFPQ encodes.
TEST(ParityPq, CodesEqualComputeCodesOnTieFixtures) {
  fkm_params p;
  fkm_params_init(&p);
  ASSERT_EQ(fkm_faiss_profile(&p.profile), FKM_OK);
  for (int64_t dsub = 1; dsub <= 15; dsub++)
    for (int nbits : {1, 2, 3, 4, 8})
      for (bool residual : {false, true}) {
        const PqCase c = make_pq_case(150, dsub, 3, nbits, residual,
                                      uint32_t(dsub * 17 + nbits * 3 + residual));
        faiss::ProductQuantizer pq(size_t(c.d), size_t(c.M), size_t(nbits));
        pq.centroids = c.pq;
        std::vector<float> r = c.x;
        if (residual)
          for (int64_t i = 0; i < c.n; i++)
            for (int64_t j = 0; j < c.d; j++)
              r[size_t(i * c.d + j)] -= c.coarse[size_t(c.lists[size_t(i)] * c.d + j)];
        std::vector<uint8_t> want(size_t(c.n * c.code_size())), got(want.size());
        pq.compute_codes(r.data(), want.data(), size_t(c.n));
        ASSERT_EQ(fkm_pq_encode(ctx().get(), &p, c.n, c.d, c.M, nbits, c.x.data(), c.pq.data(),
                                c.nlist, residual ? c.coarse.data() : nullptr,
                                residual ? c.lists.data() : nullptr, got.data()),
                  FKM_OK)
            << fkm_ctx_last_error(ctx().get());
        ASSERT_TRUE(got == want) << "dsub " << dsub << " nbits " << nbits << " residual "
                                 << residual;
      }
}

// A NaN or Inf row: a status naming it, nothing added (FAISS's own add
// aborts on an assertion for such a row), on both routes.
TEST(ParityAddEdges, NonFiniteRowsAreRefusedAndNothingIsAdded) {
  const int64_t d = 16;
  const std::vector<float> x = blobs(3000, d, 20, 41, 2.0f);
  std::vector<float> xb = blobs(2000, d, 20, 42, 2.0f);
  xb[17 * d + 3] = std::numeric_limits<float>::quiet_NaN();
  for (const char* factory : {"IVF16,Flat", "IVF16,PQ4x4fs"}) {
    std::unique_ptr<faiss::Index> index(faiss::index_factory(int(d), factory));
    index->train(3000, x.data());
    const std::vector<uint8_t> before = bytes_of(index.get());
    EXPECT_EQ(fkm_faiss_add(ctx().get(), index.get(), 2000, xb.data(), nullptr),
              FKM_ERR_NOT_FINITE);
    EXPECT_NE(std::string(fkm_ctx_last_error(ctx().get())).find("row 17, column 3"),
              std::string::npos)
        << fkm_ctx_last_error(ctx().get());
    EXPECT_EQ(index->ntotal, 0);
    EXPECT_TRUE(bytes_of(index.get()) == before);
  }
}

TEST(ParityAddEdges, BadArgumentsAndFaissErrors) {
  std::unique_ptr<faiss::Index> index(faiss::index_factory(8, "IVF4,Flat"));
  float x[8] = {0};
  EXPECT_EQ(fkm_faiss_add(nullptr, index.get(), 1, x, nullptr), FKM_ERR_INVALID_ARG);
  EXPECT_EQ(fkm_faiss_add(ctx().get(), nullptr, 1, x, nullptr), FKM_ERR_INVALID_ARG);
  EXPECT_EQ(fkm_faiss_add(ctx().get(), index.get(), -1, x, nullptr), FKM_ERR_INVALID_ARG);
  EXPECT_EQ(fkm_faiss_add(ctx().get(), index.get(), 1, nullptr, nullptr), FKM_ERR_INVALID_ARG);
  fkm_faiss_add_stats st;
  st.struct_size = 3;
  EXPECT_EQ(fkm_faiss_add_report(ctx().get(), index.get(), 1, x, nullptr, &st),
            FKM_ERR_INVALID_ARG);
  st.struct_size = sizeof st + 8;
  EXPECT_EQ(fkm_faiss_add_report(ctx().get(), index.get(), 1, x, nullptr, &st),
            FKM_ERR_INVALID_ARG);
  // untrained: FAISS's own add raises, as a status with FAISS's message
  EXPECT_EQ(fkm_faiss_add(ctx().get(), index.get(), 1, x, nullptr), FKM_ERR_FAISS);
  EXPECT_NE(std::string(fkm_ctx_last_error(ctx().get())), "");
}

// A caller built with the header before the encoding fields passes the
// smaller struct_size: those fields are filled, the rest left alone.
TEST(ParityAddEdges, AReportOfTheFirstHeaderGetsItsFieldsOnly) {
  const int64_t d = 16;
  const std::vector<float> x = blobs(2000, d, 20, 43, 2.0f);
  std::unique_ptr<faiss::Index> index(faiss::index_factory(int(d), "IVF16,PQ4np"));
  index->train(2000, x.data());
  fkm_faiss_add_stats st;
  std::memset(&st, 0x5A, sizeof st);
  st.struct_size = offsetof(fkm_faiss_add_stats, encode_seconds);
  ASSERT_EQ(fkm_faiss_add_report(ctx().get(), index.get(), 2000, x.data(), nullptr, &st),
            FKM_OK)
      << fkm_ctx_last_error(ctx().get());
  EXPECT_EQ(st.assign_by_flashkm, 1);
  EXPECT_TRUE(tail_untouched(st, offsetof(fkm_faiss_add_stats, encode_seconds), 0x5A));
}

}  // namespace
}  // namespace parity
