/*
 * clock.h -- time as Moor reads it: a monotonic clock for durations and
 * deadlines, and the wall clock for timestamps stored in data (tombstones,
 * vector clock entries).  Both are vDSO calls, cheap on the hot path.
 */
#ifndef MOOR_UTIL_CLOCK_H
#define MOOR_UTIL_CLOCK_H

#include <stdint.h>

/* ===== API ===== */

uint64_t moor_clock_mono_ns(void);  /* monotonic, arbitrary origin */
uint64_t moor_clock_mono_ms(void);
uint64_t moor_clock_wall_ms(void);  /* milliseconds since the Unix epoch */

#endif
