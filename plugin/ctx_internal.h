/* The context, as the library and the FAISS bridge see it. Not public. */
#ifndef FKM_CTX_INTERNAL_H
#define FKM_CTX_INTERNAL_H

#include "engine.h"
#include "flashkm.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

struct fkm_ctx {
  fkm_backend backend; /* resolved, never AUTO */
  int device;
  fkm_engine *engine;
  fkm_errbuf err;
  fkm_comm *comm; /* a distributed context's communicator, or NULL */
};

/** Record a failure on the context (used by the FAISS bridge, which lives
 *  in another shared object); returns status. NULL ctx is ignored. */
FKM_API fkm_status fkm_ctx_set_error(fkm_ctx *ctx, fkm_status status,
                                     const char *msg);

#ifdef __cplusplus
}
#endif

#endif
