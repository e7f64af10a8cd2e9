/*
 * utf8.h -- UTF-8 validation per RFC 3629, the one copy every layer uses
 * (the codec picks str or bin by it, the C client sends keys as str when
 * they pass, the CLI's JSON reads and writes strings with it).
 *
 * Valid means: no overlong forms, no surrogates (U+D800..U+DFFF), nothing
 * past U+10FFFF, no truncated sequence.  Pure functions; thread-safe.
 */
#ifndef MOOR_UTIL_UTF8_H
#define MOOR_UTIL_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* ===== API ===== */

/* Length (1..4) of the valid sequence at s, reading no byte at or past
 * end, with its code point in *cp (may be NULL); 0 when the bytes at s
 * are not one valid sequence.  REQUIRES: s < end. */
size_t moor_utf8_seq(const unsigned char *s, const unsigned char *end, uint32_t *cp);

/* 1 if the n bytes at s are valid UTF-8 (n == 0 is), else 0. */
int moor_utf8_valid(const void *s, size_t n);

#endif
