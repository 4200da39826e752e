/* The communicator of a distributed run (docs/distributed.md): the few
 * collective steps the Lloyd loop and the engines take together with the
 * other ranks. One transport today, MPI (comm_mpi.c); the library calls
 * only these ops, so the loop never names MPI and callers who do not use a
 * communicator need no MPI header.
 *
 * Every op is called by every rank in the same order (the ones with "next"
 * or "prev" by the ranks they name); each returns a status and records a
 * transport failure in err. Sizes are in bytes or rows and may exceed what
 * one MPI message counts: the transport splits them. */
#ifndef FKM_COMM_H
#define FKM_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fkm_comm fkm_comm;

typedef struct fkm_comm_ops {
  void (*destroy)(fkm_comm *c);
  /** Collective: every rank passes its status (its message in err); every
   *  rank returns the status and message of the least rank that failed, or
   *  FKM_OK. The one way a local failure becomes every rank's, so that no
   *  rank waits for one that has left. */
  fkm_status (*agree)(fkm_comm *c, fkm_status mine, fkm_errbuf *err);
  /** Collective, in place: v[i] := the sum over ranks of v[i]. */
  fkm_status (*sum_i64)(fkm_comm *c, int64_t *v, int64_t count, fkm_errbuf *err);
  /** Collective, in place: v[i] := the bitwise or over ranks (a row that
   *  one rank fills and the others leave zero crosses bit for bit). */
  fkm_status (*or_u32)(fkm_comm *c, uint32_t *v, int64_t count, fkm_errbuf *err);
  /** Collective: root's bytes to every rank. */
  fkm_status (*bcast)(fkm_comm *c, void *buf, size_t bytes, int root, fkm_errbuf *err);
  /** Collective: rank r sends send_rows[s] rows of row_bytes to rank s
   *  (packed in rank order in send) and receives recv_rows[s] rows from
   *  rank s (packed in rank order in recv). */
  fkm_status (*alltoallv)(fkm_comm *c, const void *send, const int64_t *send_rows, void *recv,
                          const int64_t *recv_rows, size_t row_bytes, fkm_errbuf *err);
  /** Rank r's bytes to rank r + 1, without waiting for the receiver: buf
   *  must stay as it is until wait_sends. tag tells messages apart. */
  fkm_status (*send_next)(fkm_comm *c, const void *buf, size_t bytes, int tag, fkm_errbuf *err);
  /** Rank r - 1's bytes of the matching send_next. */
  fkm_status (*recv_prev)(fkm_comm *c, void *buf, size_t bytes, int tag, fkm_errbuf *err);
  /** Waits until every send_next of this rank is done with its buffer. */
  fkm_status (*wait_sends)(fkm_comm *c, fkm_errbuf *err);
} fkm_comm_ops;

typedef struct fkm_nccl fkm_nccl;

struct fkm_comm {
  const fkm_comm_ops *ops;
  int rank, size;
  /* the device data plane of CUDA ranks (comm_nccl.h): made by the first
   * run (nccl_tried), on that run's device nccl_device, NULL where it does
   * not apply to these ranks; released by destroy */
  fkm_nccl *nccl;
  int nccl_tried, nccl_device;
};

/** A communicator over the MPI communicator whose Fortran handle is f_handle
 *  (MPI_Comm_c2f; mpi4py's Comm.py2f()), duplicated so that the library's
 *  messages never meet the caller's. Collective over that communicator.
 *  FKM_ERR_UNSUPPORTED in a build without MPI, FKM_ERR_INVALID_ARG before
 *  MPI_Init or after MPI_Finalize. */
fkm_status fkm_comm_mpi_create(int64_t f_handle, fkm_errbuf *err, fkm_comm **out);

#ifdef __cplusplus
}
#endif

#endif
