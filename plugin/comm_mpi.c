/* The MPI transport of fkm_comm (comm.h, docs/distributed.md). The
 * library's own duplicate of the caller's communicator, with errors
 * returned (MPI_ERRORS_RETURN) rather than ending the process: every MPI
 * failure becomes a status and a message. Messages larger than one MPI
 * count are sent in pieces of at most 1 GiB. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "comm.h"
#include "comm_nccl.h"

typedef struct mpi_comm {
  fkm_comm base;
  MPI_Comm comm;
  MPI_Request *reqs; /* send_next's pending sends */
  int nreq, capreq;
} mpi_comm;

static mpi_comm *mc(fkm_comm *c) { return (mpi_comm *)c; }

#define PIECE ((size_t)1 << 30)

static fkm_status mpi_fail(fkm_errbuf *err, int code, const char *what) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) len = 0;
  text[len] = '\0';
  return fkm_fail(err, FKM_ERR_INTERNAL, "MPI: %s failed: %s", what, len ? text : "(no text)");
}

#define MPI_CHECK(call, what)                           \
  do {                                                  \
    const int rc_ = (call);                             \
    if (rc_ != MPI_SUCCESS) return mpi_fail(err, rc_, what); \
  } while (0)

static void comm_destroy(fkm_comm *c) {
  mpi_comm *m = mc(c);
  int finalized = 1;
  if (c->nccl) fkm_nccl_destroy(c->nccl);
  MPI_Finalized(&finalized);
  if (!finalized) {
    if (m->nreq > 0) MPI_Waitall(m->nreq, m->reqs, MPI_STATUSES_IGNORE);
    MPI_Comm_free(&m->comm);
  }
  free(m->reqs);
  free(m);
}

/* The failing status and its message, as they cross from the least failing
 * rank to every other. */
typedef struct verdict {
  int status;
  char msg[sizeof(((fkm_errbuf *)0)->msg)];
} verdict;

static fkm_status comm_agree(fkm_comm *c, fkm_status mine, fkm_errbuf *err) {
  mpi_comm *m = mc(c);
  int who = mine == FKM_OK ? c->size : c->rank, least = c->size;
  MPI_CHECK(MPI_Allreduce(&who, &least, 1, MPI_INT, MPI_MIN, m->comm), "agreeing on a status");
  if (least == c->size) return FKM_OK;
  verdict v;
  memset(&v, 0, sizeof v);
  if (c->rank == least) {
    v.status = (int)mine;
    memcpy(v.msg, err->msg, sizeof v.msg);
  }
  MPI_CHECK(MPI_Bcast(&v, (int)sizeof v, MPI_BYTE, least, m->comm), "sharing a failure");
  v.msg[sizeof v.msg - 1] = '\0';
  if (c->rank != least) memcpy(err->msg, v.msg, sizeof v.msg);
  return (fkm_status)v.status;
}

/* In-place allreduce of count elements of size bytes, in pieces. */
static fkm_status allreduce(fkm_comm *c, void *v, int64_t count, size_t size, MPI_Datatype type,
                            MPI_Op op, const char *what, fkm_errbuf *err) {
  const int64_t piece = (int64_t)(PIECE / size);
  for (int64_t i = 0; i < count; i += piece) {
    const int64_t m = count - i < piece ? count - i : piece;
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, (char *)v + size * (size_t)i, (int)m, type, op,
                            mc(c)->comm),
              what);
  }
  return FKM_OK;
}

static fkm_status comm_sum_i64(fkm_comm *c, int64_t *v, int64_t count, fkm_errbuf *err) {
  return allreduce(c, v, count, sizeof *v, MPI_INT64_T, MPI_SUM, "summing counts", err);
}

static fkm_status comm_or_u32(fkm_comm *c, uint32_t *v, int64_t count, fkm_errbuf *err) {
  return allreduce(c, v, count, sizeof *v, MPI_UINT32_T, MPI_BOR, "gathering rows", err);
}

static fkm_status comm_bcast(fkm_comm *c, void *buf, size_t bytes, int root, fkm_errbuf *err) {
  for (size_t i = 0; i < bytes; i += PIECE) {
    const size_t m = bytes - i < PIECE ? bytes - i : PIECE;
    MPI_CHECK(MPI_Bcast((char *)buf + i, (int)m, MPI_BYTE, root, mc(c)->comm), "broadcasting");
  }
  return FKM_OK;
}

static fkm_status comm_alltoallv(fkm_comm *c, const void *send, const int64_t *send_rows,
                                 void *recv, const int64_t *recv_rows, size_t row_bytes,
                                 fkm_errbuf *err) {
  const int P = c->size;
  FKM_RETURN_IF(row_bytes == 0 || row_bytes > INT_MAX, err, FKM_ERR_UNSUPPORTED,
                "MPI: rows of %zu bytes cannot cross as one datatype", row_bytes);
  int *sc = malloc(sizeof(int) * 4 * (size_t)P);
  FKM_RETURN_IF(!sc, err, FKM_ERR_OUT_OF_MEMORY, "MPI: cannot allocate %d counts", 4 * P);
  int *sd = sc + P, *rc = sc + 2 * P, *rd = sc + 3 * P;
  int64_t so = 0, ro = 0;
  for (int r = 0; r < P; r++) {
    sc[r] = (int)send_rows[r];
    rc[r] = (int)recv_rows[r];
    sd[r] = (int)so;
    rd[r] = (int)ro;
    so += send_rows[r];
    ro += recv_rows[r];
  }
  if (so > INT_MAX || ro > INT_MAX) {
    free(sc);
    return fkm_fail(err, FKM_ERR_UNSUPPORTED,
                    "MPI: %lld rows to send and %lld to receive: one exchange moves at most "
                    "2^31 - 1 rows per rank (use more ranks)",
                    (long long)so, (long long)ro);
  }
  MPI_Datatype row;
  int rcode = MPI_Type_contiguous((int)row_bytes, MPI_BYTE, &row);
  if (rcode == MPI_SUCCESS) rcode = MPI_Type_commit(&row);
  if (rcode == MPI_SUCCESS) {
    rcode = MPI_Alltoallv(send, sc, sd, row, recv, rc, rd, row, mc(c)->comm);
    MPI_Type_free(&row);
  }
  free(sc);
  return rcode == MPI_SUCCESS ? FKM_OK : mpi_fail(err, rcode, "redistributing rows");
}

static fkm_status comm_send_next(fkm_comm *c, const void *buf, size_t bytes, int tag,
                                 fkm_errbuf *err) {
  mpi_comm *m = mc(c);
  for (size_t i = 0; i == 0 || i < bytes; i += PIECE) {
    const size_t n = bytes - i < PIECE ? bytes - i : PIECE;
    if (m->nreq == m->capreq) {
      const int cap = m->capreq ? 2 * m->capreq : 64;
      MPI_Request *grown = realloc(m->reqs, sizeof *grown * (size_t)cap);
      FKM_RETURN_IF(!grown, err, FKM_ERR_OUT_OF_MEMORY, "MPI: cannot allocate %d requests", cap);
      m->reqs = grown;
      m->capreq = cap;
    }
    MPI_CHECK(MPI_Isend((const char *)buf + i, (int)n, MPI_BYTE, c->rank + 1, tag, m->comm,
                        &m->reqs[m->nreq]),
              "sending to the next rank");
    m->nreq++;
  }
  return FKM_OK;
}

static fkm_status comm_recv_prev(fkm_comm *c, void *buf, size_t bytes, int tag,
                                 fkm_errbuf *err) {
  for (size_t i = 0; i == 0 || i < bytes; i += PIECE) {
    const size_t n = bytes - i < PIECE ? bytes - i : PIECE;
    MPI_CHECK(MPI_Recv((char *)buf + i, (int)n, MPI_BYTE, c->rank - 1, tag, mc(c)->comm,
                       MPI_STATUS_IGNORE),
              "receiving from the previous rank");
  }
  return FKM_OK;
}

static fkm_status comm_wait_sends(fkm_comm *c, fkm_errbuf *err) {
  mpi_comm *m = mc(c);
  const int n = m->nreq;
  m->nreq = 0;
  if (n > 0) MPI_CHECK(MPI_Waitall(n, m->reqs, MPI_STATUSES_IGNORE), "waiting for sends");
  return FKM_OK;
}

static const fkm_comm_ops mpi_ops = {
    .destroy = comm_destroy,
    .agree = comm_agree,
    .sum_i64 = comm_sum_i64,
    .or_u32 = comm_or_u32,
    .bcast = comm_bcast,
    .alltoallv = comm_alltoallv,
    .send_next = comm_send_next,
    .recv_prev = comm_recv_prev,
    .wait_sends = comm_wait_sends,
};

fkm_status fkm_comm_mpi_create(int64_t f_handle, fkm_errbuf *err, fkm_comm **out) {
  int up = 0, down = 0;
  *out = NULL;
  MPI_Initialized(&up);
  MPI_Finalized(&down);
  FKM_RETURN_IF(!up || down, err, FKM_ERR_INVALID_ARG,
                "MPI is %s: set a communicator between MPI_Init and MPI_Finalize",
                down ? "finalized" : "not initialised");
  FKM_RETURN_IF(f_handle < INT_MIN || f_handle > INT_MAX, err, FKM_ERR_INVALID_ARG,
                "%lld is not an MPI Fortran handle (MPI_Comm_c2f)", (long long)f_handle);
  MPI_Comm user = MPI_Comm_f2c((MPI_Fint)f_handle);
  FKM_RETURN_IF(user == MPI_COMM_NULL, err, FKM_ERR_INVALID_ARG,
                "the communicator is MPI_COMM_NULL");
  mpi_comm *m = calloc(1, sizeof *m);
  FKM_RETURN_IF(!m, err, FKM_ERR_OUT_OF_MEMORY, "cannot allocate a communicator");
  /* A handle that names no communicator is an error raised on the world's
   * (or self's) handler, by default fatal: they return while the handle is
   * checked and duplicated, then get their handlers back. */
  MPI_Errhandler world = MPI_ERRHANDLER_NULL, self = MPI_ERRHANDLER_NULL;
  MPI_Comm_get_errhandler(MPI_COMM_WORLD, &world);
  MPI_Comm_get_errhandler(MPI_COMM_SELF, &self);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN);
  int size = 0, rc = MPI_Comm_size(user, &size);
  const int named = rc == MPI_SUCCESS;
  if (named) rc = MPI_Comm_dup(user, &m->comm);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, world);
  MPI_Comm_set_errhandler(MPI_COMM_SELF, self);
  MPI_Errhandler_free(&world);
  MPI_Errhandler_free(&self);
  if (rc != MPI_SUCCESS) {
    free(m);
    if (!named)
      return fkm_fail(err, FKM_ERR_INVALID_ARG,
                      "%lld is not the Fortran handle of a communicator (MPI_Comm_c2f)",
                      (long long)f_handle);
    return mpi_fail(err, rc, "duplicating the communicator");
  }
  MPI_Comm_set_errhandler(m->comm, MPI_ERRORS_RETURN);
  MPI_Comm_rank(m->comm, &m->base.rank);
  MPI_Comm_size(m->comm, &m->base.size);
  m->base.ops = &mpi_ops;
  *out = &m->base;
  return FKM_OK;
}
