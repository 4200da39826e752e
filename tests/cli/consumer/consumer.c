/* Links the installed libflashkm and clusters 8 points in two obvious groups:
 * the centroids must be the groups' means, (0.5, 0.5) and (10.5, 10.5). */
#include <flashkm.h>
#include <stdio.h>

int main(void) {
  if (fkm_version() != FKM_VERSION_NUMBER) {
    printf("header %d, library %u\n", FKM_VERSION_NUMBER, fkm_version());
    return 1;
  }
  const float x[16] = {0, 0, 0, 1, 1, 0, 1, 1, 10, 10, 10, 11, 11, 10, 11, 11};
  float c[4];
  fkm_ctx *ctx = NULL;
  fkm_params p;
  fkm_params_init(&p);
  p.min_points_per_centroid = 1;
  if (fkm_ctx_create(FKM_BACKEND_CPU, 0, &ctx) != FKM_OK) return 1;
  fkm_status s = fkm_train(ctx, &p, 8, 2, 2, FKM_DTYPE_F32, x, NULL, c, 0, NULL, NULL, NULL, 0, NULL);
  if (s != FKM_OK) {
    printf("fkm_train: %s: %s\n", fkm_status_string(s), fkm_ctx_last_error(ctx));
    return 1;
  }
  fkm_ctx_destroy(ctx);
  int lo = c[0] < c[2] ? 0 : 2, hi = 2 - lo;
  if (c[lo] != 0.5f || c[lo + 1] != 0.5f || c[hi] != 10.5f || c[hi + 1] != 10.5f) {
    printf("unexpected centroids (%g, %g), (%g, %g)\n", c[0], c[1], c[2], c[3]);
    return 1;
  }
  printf("consumer ok: flashkm %s, centroids (%g, %g) and (%g, %g)\n", fkm_version_string(),
         c[lo], c[lo + 1], c[hi], c[hi + 1]);
  return 0;
}
