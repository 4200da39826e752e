// Compiled as C++17 with -pedantic -Werror: the public header is clean C++.
#include "flashkm.h"
#include "flashkm.h"  // include guard works

int fkm_header_cxx_probe();
int fkm_header_cxx_probe() {
  fkm_params p{};
  return fkm_params_init(&p) == FKM_OK ? 0 : 1;
}
