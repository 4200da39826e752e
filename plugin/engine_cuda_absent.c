/* Builds without CUDA: the CUDA engine is reported as unsupported. */
#include "engine.h"

fkm_status fkm_engine_cuda_create(fkm_errbuf *err, int device,
                                  fkm_engine **out) {
  *out = NULL;
  return fkm_fail(err, FKM_ERR_UNSUPPORTED,
                  "backend cuda (device %d): this flashkm was built without CUDA",
                  device);
}
