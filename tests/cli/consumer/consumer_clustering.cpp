// Uses the installed C++ drop-in: flashkm::Clustering in place of
// faiss::Clustering gives stock FAISS's centroids, bit for bit.
#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <flashkm/clustering.h>

#include <cstdio>
#include <cstring>
#include <vector>

int main() {
  const int n = 2000, d = 4, k = 8;
  std::vector<float> x(n * d);
  unsigned s = 12345;
  for (auto& v : x) {  // a fixed pseudo-random data set
    s = s * 1103515245u + 12345u;
    v = float((s >> 8) & 0xffff) / 65536.0f + float((s >> 28) & 3);
  }
  faiss::ClusteringParameters cp;
  cp.niter = 10;
  faiss::IndexFlatL2 a(d), b(d);
  flashkm::Clustering ours(d, k, cp);
  ours.train(n, x.data(), a);
  faiss::Clustering stock(d, k, cp);
  stock.train(n, x.data(), b);
  bool same = ours.centroids.size() == stock.centroids.size() &&
              std::memcmp(ours.centroids.data(), stock.centroids.data(),
                          sizeof(float) * ours.centroids.size()) == 0;
  std::printf("consumer_clustering: %zu centroids %s stock FAISS's, %zu iterations\n",
              ours.centroids.size() / d, same ? "equal" : "DIFFER from",
              ours.iteration_stats.size());
  return same && a.ntotal == k ? 0 : 1;
}
