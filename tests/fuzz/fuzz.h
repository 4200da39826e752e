/* Pieces the libFuzzer targets share: the property check and a reader of
 * the fuzz input as a stream of arguments. */
#ifndef FKM_FUZZ_H
#define FKM_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* A broken property: named on stderr, then a trap that libFuzzer reports as
 * a crash (with the input saved as the reproducer). */
#define FUZZ_CHECK(cond)                                                     \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "fuzz check failed: %s (%s:%d)\n", #cond, __FILE__,   \
              __LINE__);                                                     \
      __builtin_trap();                                                      \
    }                                                                        \
  } while (0)

/* The input, consumed front to back; zeros once it runs out. */
typedef struct fuzz_src {
  const uint8_t *p;
  size_t left;
} fuzz_src;

static inline uint64_t fuzz_take(fuzz_src *s, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes && s->left > 0; i++, s->left--) v |= (uint64_t)*s->p++ << (8 * i);
  return v;
}

/* Reads every byte (ASan checks each load) and returns their sum, which the
 * caller keeps so that the loads are not optimised away. */
static inline uint64_t fuzz_touch(const void *p, size_t bytes) {
  const volatile uint8_t *b = p;
  uint64_t sum = 0;
  for (size_t i = 0; i < bytes; i++) sum += b[i];
  return sum;
}

/* a * b * c, or -1 when a factor is negative or the product exceeds limit
 * (which stays far below 2^31: no overflow). */
static inline int64_t fuzz_small(int64_t a, int64_t b, int64_t c, int64_t limit) {
  if (a < 0 || b < 0 || c < 0 || a > limit || b > limit || c > limit) return -1;
  if (a * b > limit || a * b * c > limit) return -1;
  return a * b * c;
}

#endif
