// P1, lockstep with FAISS (docs/contract.md section 9). Stock faiss::Clustering::train
// runs on a RecordingIndex, which keeps FAISS's training set (after its
// subsampling), its centroids after init and after every iteration, and its
// labels. Then, for every redo and iteration:
//  - init: fkm_train with niter = 0 returns the post-processed initial
//    centroids; they must equal FAISS's bit for bit (subsampling, rand_perm,
//    user rows, post-processing);
//  - labels: fkm_assign on FAISS's centroids against FAISS's search; every
//    difference must be a near-tie within FAISS's float rounding (P2);
//  - one iteration: fkm_train with niter = 1 starting from FAISS's centroids
//    of that iteration (n_init = k: no random init) on FAISS's training set.
//    Given the same labels, its centroids, nsplit and imbalance factor must
//    equal FAISS's next ones bit for bit (the objective too where every
//    distance bit agrees). With frozen centroids n_init = k would freeze all
//    rows, so there the run restarts from the start for t = 1..niter
//    iterations instead, which is the same test while labels agree.
// Where labels differ, that iteration's centroids cannot be compared; the
// test reports it.
#include "configs.h"

namespace parity {
namespace {

struct Totals {
  int64_t labels = 0, label_diff = 0, floats = 0, float_diff = 0, nsplit = 0;
  int64_t dis = 0, dis_same = 0, skipped_iters = 0;
};

// fkm_train on (n, d) rows into centroids; returns its stats.
std::vector<fkm_iteration_stats> run_fkm(const fkm_params& p, int64_t n, int64_t d, int64_t k,
                                         const float* x, const float* w, const float* init,
                                         int64_t n_init, std::vector<float>* centroids) {
  centroids->assign(size_t(k * d), 0.0f);
  if (n_init) std::memcpy(centroids->data(), init, sizeof(float) * n_init * d);
  std::vector<fkm_iteration_stats> st(static_cast<size_t>(std::max(1, p.niter * p.nredo)));
  int64_t ns = 0;
  fkm_status s = fkm_train(ctx().get(), &p, n, d, k, FKM_DTYPE_F32, x, w, centroids->data(),
                           n_init, nullptr, nullptr, st.data(), int64_t(st.size()), &ns);
  EXPECT_EQ(s, FKM_OK) << fkm_ctx_last_error(ctx().get());
  st.resize(size_t(std::min<int64_t>(ns, int64_t(st.size()))));
  return st;
}

void lockstep(const Config& c) {
  ASSERT_NE(ctx().get(), nullptr);
  Problem pb = make_problem(c);
  ASSERT_TRUE(pb.ok) << c.name << ": Fashion-MNIST not found: install Debian's dataset-fashion-mnist";
  const int64_t d = c.d, k = c.k;
  const float* w = c.weights ? pb.weights.data() : nullptr;

  RecordingIndex rec(d, metric_of(c));
  faiss::Clustering fc(int(d), int(k), faiss_params(c));
  fc.centroids = pb.init;
  fc.train(c.n, pb.x.data(), rec, w);

  // FAISS's training set and its weights (rows perm[0..] when subsampled).
  const std::vector<float>& T = rec.train_set;
  const int64_t nT = int64_t(T.size()) / d;
  std::vector<float> wT;
  if (w) {
    if (c.n > k * c.max_points) {
      std::vector<int> perm(static_cast<size_t>(c.n));
      faiss::rand_perm(perm.data(), size_t(c.n), c.seed);
      for (int64_t i = 0; i < nT; i++) wT.push_back(w[perm[size_t(i)]]);
    } else {
      wT = pb.weights;
    }
  }
  const float* wTp = w ? wT.data() : nullptr;
  const size_t per_redo = size_t(c.niter) + 1;
  ASSERT_EQ(rec.adds.size(), per_redo * c.nredo + (c.nredo > 1 ? 1 : 0));
  ASSERT_EQ(rec.labels.size(), size_t(c.niter) * c.nredo);

  Totals tot;
  fkm_params base = fkm_params_of(c);
  fkm_params assign_p = base;
  for (int r = 0; r < c.nredo; r++) {
    // Init of redo r: seed + 1 + r * 15486557, FAISS's formula. Redo 0 runs
    // on the user's x (checks the subsampling); later redos on FAISS's
    // training set, since flashkm subsamples with the unshifted seed.
    fkm_params p0 = base;
    p0.niter = 0;
    p0.nredo = 1;
    p0.seed = c.seed + int64_t(r) * 15486557;
    std::vector<float> init;
    if (r == 0)
      run_fkm(p0, c.n, d, k, pb.x.data(), w, pb.init.data(), c.n_init, &init);
    else
      run_fkm(p0, nT, d, k, T.data(), wTp, pb.init.data(), c.n_init, &init);
    BitDiff di = compare(init, rec.adds[r * per_redo]);
    EXPECT_EQ(di.ndiff, 0u) << c.name << " redo " << r << " init: " << describe(di);
    tot.floats += int64_t(di.n);
    tot.float_diff += int64_t(di.ndiff);

    bool labels_agree_so_far = true;
    for (int t = 0; t < c.niter; t++) {
      const std::vector<float>& Ct = rec.adds[r * per_redo + t];
      const std::vector<float>& Cn = rec.adds[r * per_redo + t + 1];
      const std::vector<int64_t>& lf = rec.labels[size_t(r) * c.niter + t];
      const std::vector<float>& df = rec.distances[size_t(r) * c.niter + t];
      std::vector<int64_t> lo(static_cast<size_t>(nT));
      std::vector<float> dout(static_cast<size_t>(nT));
      ASSERT_EQ(fkm_assign(ctx().get(), &assign_p, nT, d, k, FKM_DTYPE_F32, T.data(), Ct.data(),
                           lo.data(), dout.data()),
                FKM_OK)
          << fkm_ctx_last_error(ctx().get());
      std::string what = std::string(c.name) + " redo " + std::to_string(r) + " iter " +
                         std::to_string(t);
      int64_t nd = check_labels(what.c_str(), T.data(), nT, d, Ct.data(), lf.data(), lo.data(),
                                c.inner_product);
      tot.labels += nT;
      tot.label_diff += nd;
      BitDiff dd = compare(df.data(), dout.data(), size_t(nT));
      tot.dis += nT;
      tot.dis_same += int64_t(dd.n - dd.ndiff);
      labels_agree_so_far = labels_agree_so_far && nd == 0;

      std::vector<float> next;
      std::vector<fkm_iteration_stats> st;
      bool comparable;
      if (c.frozen) {
        fkm_params pt = base;
        pt.niter = t + 1;
        st = run_fkm(pt, c.n, d, k, pb.x.data(), w, pb.init.data(), c.n_init, &next);
        if (!st.empty()) st.erase(st.begin(), st.end() - 1);
        comparable = labels_agree_so_far;
      } else {
        fkm_params pt = base;
        pt.niter = 1;
        pt.nredo = 1;
        st = run_fkm(pt, nT, d, k, T.data(), wTp, Ct.data(), k, &next);
        comparable = nd == 0;
      }
      if (!comparable) {
        tot.skipped_iters++;
        std::printf("  [%s] labels differ: centroids not compared\n", what.c_str());
        continue;
      }
      BitDiff dc = compare(next, Cn);
      EXPECT_EQ(dc.ndiff, 0u) << what << " centroids: " << describe(dc);
      tot.floats += int64_t(dc.n);
      tot.float_diff += int64_t(dc.ndiff);
      ASSERT_EQ(st.size(), 1u);
      const size_t si = size_t(r) * c.niter + t;
      if (si < fc.iteration_stats.size()) {  // FAISS keeps stats up to its best redo
        const faiss::ClusteringIterationStats& fs = fc.iteration_stats[si];
        EXPECT_EQ(st[0].nsplit, fs.nsplit) << what;
        EXPECT_EQ(std::memcmp(&st[0].imbalance_factor, &fs.imbalance_factor, sizeof(double)), 0)
            << what << " imbalance " << st[0].imbalance_factor << " vs " << fs.imbalance_factor;
        if (dd.ndiff == 0) {
          // FAISS's objective: its distances summed in float, in row order
          float obj = 0.0f;
          for (float v : dout) obj += v;
          EXPECT_TRUE(same_bits(obj, fs.obj)) << what << " objective of the distances";
          // flashkm's run from FAISS's centroids reports the same, unless
          // spherical: its start renormalises them once more (as FAISS does
          // with input centroids), which may move a bit
          if (!c.spherical) {
            EXPECT_TRUE(same_bits(st[0].obj, fs.obj)) << what << " objective";
          }
        }
        tot.nsplit += fs.nsplit;
      }
    }
  }
  std::printf("P1 %-24s n_train %" PRId64 " d %" PRId64 " k %" PRId64
              " redo x iter %d x %d: labels %" PRId64 " compared, %" PRId64
              " differ; centroid floats %" PRId64 " compared, %" PRId64
              " differ; nsplit %" PRId64 "; distance bits equal %.2f%%; iterations skipped %" PRId64
              "\n",
              c.name, nT, d, k, c.nredo, c.niter, tot.labels, tot.label_diff, tot.floats,
              tot.float_diff, tot.nsplit, tot.dis ? 100.0 * tot.dis_same / tot.dis : 100.0,
              tot.skipped_iters);
}

class ParityLockstep : public ::testing::TestWithParam<Config> {};

TEST_P(ParityLockstep, CentroidsNsplitImbalanceEqualFaissEachIteration) { lockstep(GetParam()); }

INSTANTIATE_TEST_SUITE_P(Synthetic, ParityLockstep, ::testing::ValuesIn(synthetic_configs()),
                         [](const ::testing::TestParamInfo<Config>& i) { return i.param.name; });

TEST(ParityLockstepLarge, N200kK1024TwoIterationsEqualFaiss) {
  Config c{"n200k_k1024", 200000, 32, 1024};
  c.niter = 2;
  c.nblobs = 300;
  c.spread = 2.5f;
  lockstep(c);
}

TEST(ParityLockstepFashionMnist, CentroidsEqualFaissEachIteration) {
  lockstep(fashion_config());
}

}  // namespace
}  // namespace parity
