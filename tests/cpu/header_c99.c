/* Compiled with -std=c99 -pedantic -Werror: the public header is clean C99. */
#include "flashkm.h"

int fkm_header_c99_probe(void);
int fkm_header_c99_probe(void) {
  fkm_params p;
  fkm_iteration_stats s;
  (void)sizeof(p);
  (void)sizeof(s);
  return FKM_OK + FKM_VERSION_NUMBER;
}
