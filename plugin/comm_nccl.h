/* The device data plane of a distributed run on CUDA ranks
 * (docs/distributed.md, "The device data plane"): an NCCL communicator
 * over the ranks of an fkm_comm, one GPU a rank, carrying the relay's
 * slices, the label counts' sum and the final broadcast between device
 * buffers on the context's stream. NCCL only moves bytes and sums
 * integers here: no float is reduced by it, so the chains and the bits
 * are the host relay's.
 *
 * Made on first use by a run and kept with the fkm_comm (comm.h), released
 * with it. Every function is called by every rank in the same order
 * (send_next / recv_prev by the ranks they name); the work is queued on
 * stream (a cudaStream_t), nothing synchronises. */
#ifndef FKM_COMM_NCCL_H
#define FKM_COMM_NCCL_H

#include <stddef.h>
#include <stdint.h>

#include "comm.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Collective over comm: *out = an NCCL communicator of comm's ranks, each
 *  on its CUDA device `device` (current on the calling thread), or *out =
 *  NULL where the device plane does not apply, on every rank alike: a
 *  build without NCCL, FLASHKM_NCCL=0 in any rank's environment, or two
 *  ranks on one device (NCCL refuses those; the host relay serves them).
 *  An NCCL failure is every rank's status (agreed), with NCCL's message. */
fkm_status fkm_nccl_create(fkm_comm *comm, int device, fkm_errbuf *err, fkm_nccl **out);
void fkm_nccl_destroy(fkm_nccl *n);
/** In place on the device: v[i] := the sum over ranks (int64: exact in any order). */
fkm_status fkm_nccl_sum_i64(fkm_nccl *n, int64_t *v, int64_t count, void *stream,
                            fkm_errbuf *err);
/** Rank r's device bytes to rank r + 1 / from rank r - 1. */
fkm_status fkm_nccl_send_next(fkm_nccl *n, const void *buf, size_t bytes, void *stream,
                              fkm_errbuf *err);
fkm_status fkm_nccl_recv_prev(fkm_nccl *n, void *buf, size_t bytes, void *stream,
                              fkm_errbuf *err);
/** root's device bytes to every rank, in place. */
fkm_status fkm_nccl_bcast(fkm_nccl *n, void *buf, size_t bytes, int root, void *stream,
                          fkm_errbuf *err);

#ifdef __cplusplus
}
#endif

#endif
