/* The NCCL device data plane (comm_nccl.h, docs/distributed.md): bootstrap
 * over the ranks' fkm_comm (MPI), then NCCL calls on device buffers queued
 * on the caller's stream. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>
#include <nccl.h>

#include "comm_nccl.h"

struct fkm_nccl {
  ncclComm_t comm;
  int rank, size;
};

static fkm_status nccl_fail(fkm_errbuf *err, ncclResult_t r, const char *what) {
  return fkm_fail(err, FKM_ERR_INTERNAL, "NCCL: %s failed: %s", what, ncclGetErrorString(r));
}

#define NCCL_CHECK(call, what)                                \
  do {                                                        \
    const ncclResult_t r_ = (call);                           \
    if (r_ != ncclSuccess) return nccl_fail(err, r_, what);   \
  } while (0)

/* The device's PCI location as a nonzero key (two ranks with one key share
 * a device), or -1 where the device plane is switched off or unknown. */
static int64_t device_key(int device) {
  const char *env = getenv("FLASHKM_NCCL");
  if (env && strcmp(env, "0") == 0) return -1;
  char bus[64];
  unsigned dom = 0, b = 0, dev = 0, fn = 0;
  if (cudaDeviceGetPCIBusId(bus, (int)sizeof bus, device) != cudaSuccess) return -1;
  if (sscanf(bus, "%x:%x:%x.%x", &dom, &b, &dev, &fn) != 4) return -1;
  return 1 + (((int64_t)dom << 24) | ((int64_t)b << 8) | ((int64_t)dev << 3) | (int64_t)fn);
}

fkm_status fkm_nccl_create(fkm_comm *comm, int device, fkm_errbuf *err, fkm_nccl **out) {
  const int P = comm->size, me = comm->rank;
  *out = NULL;
  /* every rank's device key, by a sum (each rank fills its own slot) */
  int64_t *keys = calloc((size_t)P, sizeof *keys);
  FKM_RETURN_IF(!keys, err, FKM_ERR_OUT_OF_MEMORY, "NCCL: cannot allocate %d device keys", P);
  keys[me] = device_key(device);
  fkm_status st = comm->ops->sum_i64(comm, keys, P, err);
  int usable = st == FKM_OK;
  for (int i = 0; usable && i < P; i++) {
    usable = keys[i] > 0;
    for (int j = 0; usable && j < i; j++) usable = keys[j] != keys[i];
  }
  free(keys);
  FKM_FORWARD(st);
  if (!usable) return FKM_OK; /* the same decision on every rank */
  ncclUniqueId id;
  memset(&id, 0, sizeof id);
  ncclResult_t r = ncclSuccess;
  st = FKM_OK;
  if (me == 0 && (r = ncclGetUniqueId(&id)) != ncclSuccess)
    st = nccl_fail(err, r, "ncclGetUniqueId");
  FKM_FORWARD(comm->ops->agree(comm, st, err));
  FKM_FORWARD(comm->ops->bcast(comm, &id, sizeof id, 0, err));
  fkm_nccl *n = calloc(1, sizeof *n);
  FKM_RETURN_IF(!n, err, FKM_ERR_OUT_OF_MEMORY, "NCCL: cannot allocate a communicator");
  n->rank = me;
  n->size = P;
  r = ncclCommInitRank(&n->comm, P, id, me);
  if (r != ncclSuccess) {
    st = fkm_fail(err, FKM_ERR_INTERNAL, "NCCL: ncclCommInitRank on device %d failed: %s",
                  device, ncclGetErrorString(r));
    n->comm = NULL;
  }
  st = comm->ops->agree(comm, st, err);
  if (st != FKM_OK) {
    fkm_nccl_destroy(n);
    return st;
  }
  *out = n;
  return FKM_OK;
}

void fkm_nccl_destroy(fkm_nccl *n) {
  if (!n) return;
  if (n->comm) (void)ncclCommDestroy(n->comm);
  free(n);
}

fkm_status fkm_nccl_sum_i64(fkm_nccl *n, int64_t *v, int64_t count, void *stream,
                            fkm_errbuf *err) {
  NCCL_CHECK(ncclAllReduce(v, v, (size_t)count, ncclInt64, ncclSum, n->comm,
                           (cudaStream_t)stream),
             "summing the label counts");
  return FKM_OK;
}

fkm_status fkm_nccl_send_next(fkm_nccl *n, const void *buf, size_t bytes, void *stream,
                              fkm_errbuf *err) {
  NCCL_CHECK(ncclSend(buf, bytes, ncclUint8, n->rank + 1, n->comm, (cudaStream_t)stream),
             "sending chains to the next rank");
  return FKM_OK;
}

fkm_status fkm_nccl_recv_prev(fkm_nccl *n, void *buf, size_t bytes, void *stream,
                              fkm_errbuf *err) {
  NCCL_CHECK(ncclRecv(buf, bytes, ncclUint8, n->rank - 1, n->comm, (cudaStream_t)stream),
             "receiving chains from the previous rank");
  return FKM_OK;
}

fkm_status fkm_nccl_bcast(fkm_nccl *n, void *buf, size_t bytes, int root, void *stream,
                          fkm_errbuf *err) {
  NCCL_CHECK(ncclBroadcast(buf, buf, bytes, ncclUint8, root, n->comm, (cudaStream_t)stream),
             "broadcasting the chains");
  return FKM_OK;
}
