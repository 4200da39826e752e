/* A build without MPI: fkm_ctx_set_mpi_comm says so. */
#include "comm.h"

fkm_status fkm_comm_mpi_create(int64_t f_handle, fkm_errbuf *err, fkm_comm **out) {
  (void)f_handle;
  *out = NULL;
  return fkm_fail(err, FKM_ERR_UNSUPPORTED,
                  "this flashkm was built without MPI (install libopenmpi-dev and rebuild; "
                  "docs/distributed.md)");
}
