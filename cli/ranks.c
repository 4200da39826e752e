/* `mpiexec -np P flashkm train ...` (docs/distributed.md): when an MPI
 * launcher started this process, the command joins MPI_COMM_WORLD, each
 * rank trains on its own rows of the input through a distributed context,
 * and rank 0 alone reports and writes. Built without MPI, a launch of
 * more than one process is refused. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#ifdef FLASHKM_CLI_MPI
#include <mpi.h>
#endif

/* The launcher's world size, or 0 when no launcher started this process
 * (OpenMPI, MPICH's and PMIx's variables). */
static int launched_size(void) {
  static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
    const char *v = getenv(vars[i]);
    if (v && *v) return atoi(v) > 0 ? atoi(v) : 1;
  }
  return getenv("PMIX_RANK") ? 1 : 0;
}

int fkm_cli_ranks_begin(fkm_cli_ranks *r) {
  memset(r, 0, sizeof *r);
  r->size = 1;
  const int launched = launched_size();
  if (!launched) return 0;
#ifdef FLASHKM_CLI_MPI
  if (MPI_Init(NULL, NULL) != MPI_SUCCESS) {
    fkm_cli_error("started by an MPI launcher, but MPI_Init failed");
    return -1;
  }
  r->mpi = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &r->rank);
  MPI_Comm_size(MPI_COMM_WORLD, &r->size);
  return 0;
#else
  if (launched == 1) return 0;
  fkm_cli_error("started as one of %d MPI processes, but this flashkm was built without MPI "
                "(install libopenmpi-dev and rebuild)", launched);
  return -1;
#endif
}

void fkm_cli_ranks_end(fkm_cli_ranks *r) {
#ifdef FLASHKM_CLI_MPI
  if (r->mpi) MPI_Finalize();
#endif
  r->mpi = 0;
}

int fkm_cli_ranks_attach(const fkm_cli_ranks *r, fkm_ctx *ctx) {
#ifdef FLASHKM_CLI_MPI
  if (!r->mpi) return 0;
  const fkm_status s = fkm_ctx_set_mpi_comm(ctx, MPI_Comm_c2f(MPI_COMM_WORLD));
  if (s == FKM_OK) return 0;
  fkm_cli_error("cannot train across the MPI processes: %s", fkm_ctx_last_error(ctx));
  return -1;
#else
  (void)r;
  (void)ctx;
  return 0;
#endif
}

int fkm_cli_ranks_all(const fkm_cli_ranks *r, int ok) {
#ifdef FLASHKM_CLI_MPI
  if (r->mpi) {
    int all = ok ? 1 : 0;
    MPI_Allreduce(MPI_IN_PLACE, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return all;
  }
#else
  (void)r;
#endif
  return ok;
}

int fkm_cli_ranks_root_code(const fkm_cli_ranks *r, int code) {
#ifdef FLASHKM_CLI_MPI
  if (r->mpi) MPI_Bcast(&code, 1, MPI_INT, 0, MPI_COMM_WORLD);
#else
  (void)r;
#endif
  return code;
}

int fkm_cli_ranks_count(const fkm_cli_ranks *r, int64_t n_mine, int64_t *n_all, int64_t *first) {
  *n_all = n_mine;
  *first = 0;
#ifdef FLASHKM_CLI_MPI
  if (r->mpi) {
    int64_t *all = malloc(sizeof(int64_t) * (size_t)r->size);
    if (!all) return -1;
    MPI_Allgather(&n_mine, 1, MPI_INT64_T, all, 1, MPI_INT64_T, MPI_COMM_WORLD);
    *n_all = 0;
    for (int i = 0; i < r->size; i++) {
      if (i == r->rank) *first = *n_all;
      *n_all += all[i];
    }
    free(all);
  }
#else
  (void)r;
#endif
  return 0;
}

int fkm_cli_ranks_gather(const fkm_cli_ranks *r, const int64_t *mine, int64_t n_mine,
                         int64_t *all) {
#ifdef FLASHKM_CLI_MPI
  if (r->mpi) {
    /* rank by rank, in pieces an int counts: the labels are n int64s */
    enum { PIECE = 1 << 26 };
    int64_t n = n_mine;
    for (int src = 1; src < r->size; src++) {
      if (r->rank == src) {
        MPI_Send(&n, 1, MPI_INT64_T, 0, 0, MPI_COMM_WORLD);
        for (int64_t i = 0; i < n; i += PIECE)
          MPI_Send(mine + i, (int)(n - i < PIECE ? n - i : PIECE), MPI_INT64_T, 0, 1,
                   MPI_COMM_WORLD);
      } else if (r->rank == 0) {
        int64_t m = 0;
        MPI_Recv(&m, 1, MPI_INT64_T, src, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        for (int64_t i = 0; i < m; i += PIECE)
          MPI_Recv(all + n + i, (int)(m - i < PIECE ? m - i : PIECE), MPI_INT64_T, src, 1,
                   MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        n += m;
      }
    }
    if (r->rank == 0 && all != mine) memcpy(all, mine, sizeof(int64_t) * (size_t)n_mine);
    return 0;
  }
#else
  (void)r;
#endif
  if (all != mine) memcpy(all, mine, sizeof(int64_t) * (size_t)n_mine);
  return 0;
}
