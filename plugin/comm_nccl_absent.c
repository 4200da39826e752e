/* A build without NCCL: the device data plane never applies, and CUDA
 * ranks take the host relay (docs/distributed.md). */
#include "comm_nccl.h"

fkm_status fkm_nccl_create(fkm_comm *comm, int device, fkm_errbuf *err, fkm_nccl **out) {
  (void)comm, (void)device, (void)err;
  *out = NULL;
  return FKM_OK;
}

void fkm_nccl_destroy(fkm_nccl *n) { (void)n; }

static fkm_status absent(fkm_errbuf *err) {
  return fkm_fail(err, FKM_ERR_INTERNAL, "NCCL: this flashkm was built without it");
}

fkm_status fkm_nccl_sum_i64(fkm_nccl *n, int64_t *v, int64_t count, void *stream,
                            fkm_errbuf *err) {
  (void)n, (void)v, (void)count, (void)stream;
  return absent(err);
}

fkm_status fkm_nccl_send_next(fkm_nccl *n, const void *buf, size_t bytes, void *stream,
                              fkm_errbuf *err) {
  (void)n, (void)buf, (void)bytes, (void)stream;
  return absent(err);
}

fkm_status fkm_nccl_recv_prev(fkm_nccl *n, void *buf, size_t bytes, void *stream,
                              fkm_errbuf *err) {
  (void)n, (void)buf, (void)bytes, (void)stream;
  return absent(err);
}

fkm_status fkm_nccl_bcast(fkm_nccl *n, void *buf, size_t bytes, int root, void *stream,
                          fkm_errbuf *err) {
  (void)n, (void)buf, (void)bytes, (void)root, (void)stream;
  return absent(err);
}
