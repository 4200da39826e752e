// Fashion-MNIST training images as floats, read by the flashkm command's
// own idx3 reader (cli/mnist.c: gzip'd or raw, header and size checked).
#include <cstdio>

#include "matrix_io.h"
#include "parity.h"

namespace parity {

std::vector<float> fashion_mnist(int64_t rows) {
  fkm_cli_matrix m;
  char msg[FKM_CLI_MSG_LEN];
  if (fkm_cli_read_idx_images(FKM_FASHION_MNIST_GZ, &m, msg) != 0) {
    std::fprintf(stderr, "fashion_mnist: %s\n", msg);
    return {};
  }
  std::vector<float> x;
  if (rows <= m.n && m.d == 784) {
    const float* px = static_cast<const float*>(m.data);
    x.assign(px, px + rows * m.d);
  }
  fkm_cli_matrix_free(&m);
  return x;
}

}  // namespace parity
