/* Links the installed FAISS bridge from C: a call that must be refused
 * (no index) comes back as a status with a message, not a crash. */
#include <flashkm_faiss.h>
#include <stdio.h>

int main(void) {
  fkm_ctx *ctx = NULL;
  if (fkm_ctx_create(FKM_BACKEND_CPU, 0, &ctx) != FKM_OK) return 1;
  float x[4] = {0, 1, 2, 3};
  fkm_status s = fkm_faiss_train_index(ctx, NULL, 2, x);
  printf("consumer_faiss: %s (%s)\n", fkm_status_string(s), fkm_ctx_last_error(ctx));
  fkm_ctx_destroy(ctx);
  return s == FKM_ERR_INVALID_ARG ? 0 : 1;
}
