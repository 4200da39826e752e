// Fashion-MNIST training images (idx3: big-endian magic 0x803, count, rows,
// cols, then one byte per pixel), as floats.
#include <cstdio>
#include <memory>

#include "parity.h"

namespace parity {

static uint32_t read_be32(const unsigned char* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}

std::vector<float> fashion_mnist(int64_t rows) {
  const char* path = FKM_FASHION_MNIST_IMAGES;
  if (!path[0]) return {};
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path, "rb"), std::fclose);
  if (!f) return {};
  unsigned char head[16];
  if (std::fread(head, 1, 16, f.get()) != 16 || read_be32(head) != 0x803) return {};
  const int64_t count = read_be32(head + 4);
  const int64_t d = int64_t(read_be32(head + 8)) * read_be32(head + 12);
  if (rows > count || d != 784) return {};
  std::vector<unsigned char> bytes(static_cast<size_t>(rows * d));
  if (std::fread(bytes.data(), 1, bytes.size(), f.get()) != bytes.size()) return {};
  return std::vector<float>(bytes.begin(), bytes.end());
}

}  // namespace parity
