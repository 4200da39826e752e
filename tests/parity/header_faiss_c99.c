/* include/flashkm_faiss.h compiles as pedantic C99 (built with the tests; a
 * failure breaks the build). */
#include "flashkm_faiss.h"

typedef fkm_status (*fkm_header_train_index_fn)(fkm_ctx *, void *, int64_t, const float *);
fkm_header_train_index_fn fkm_header_faiss_c99_train_index = fkm_faiss_train_index;
