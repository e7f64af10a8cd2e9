/*
 * json.h -- JSON <-> MessagePack for the moor CLI, plus base64.
 *
 * Parsing is strict RFC 8259 (one value, optional whitespace around it,
 * UTF-8 input, no comments, no trailing commas, no NaN) with a nesting
 * limit of MOOR_JSON_MAX_DEPTH.  Mapping, both ways:
 *   object -> map (str keys), array -> array, string -> str,
 *   number without fraction or exponent -> integer (exact over the whole
 *   int64/uint64 range; beyond it is an error), other numbers -> float64,
 *   true/false -> bool, null -> nil,
 *   {"$bin": "<base64>"} (exactly that one key, spelled literally) <-> bin.
 * Printing also handles what JSON lacks: a map key that is not a string is
 * printed as a string holding the key's own JSON text (the integer key 1
 * becomes "1"); a str that is not valid UTF-8 is printed as {"$bin": ...};
 * ext is printed as {"$ext": {"type": T, "data": "<base64>"}} (not read
 * back); NaN and infinities, which JSON cannot write, are printed as null.
 * Floats are printed with the fewest digits that read back to the same
 * value (float32 judged as float32), always with a '.' or an exponent so
 * that they stay floats on the way back.  A real map key "$bin" is printed
 * as "\u0024bin", which reads back as that key and never as the bin
 * marker, so every printed text reads back to the same MessagePack (up to
 * the float32, ext, non-UTF-8 str and non-string key cases above).
 *
 * Stateless; thread-safe.
 */
#ifndef MOOR_CLI_JSON_H
#define MOOR_CLI_JSON_H

#include <stddef.h>

#include "util/buf.h"

#define MOOR_JSON_MAX_DEPTH 64 /* == MOOR_MP_MAX_DEPTH: both ways agree */
#define MOOR_JSON_PRETTY 1     /* flag: newlines and two-space indentation */

/* ===== API ===== */

/* Parses JSON text and appends the one MessagePack object it denotes to
 * out.  0; MOOR_EINVAL with a diagnostic "JSON: <what> at byte N" (N the
 * 0-based offset, also stored in *errpos when errpos is not NULL);
 * MOOR_ENOMEM.  On failure out keeps exactly what it had. */
int moor_json_to_mp(const char *text, size_t len, moor_buf_t *out, size_t *errpos);

/* Prints the MessagePack object at *p as JSON text appended to out (no
 * NUL) and advances *p past it.  0; MOOR_EAGAIN (the object is truncated),
 * MOOR_EPROTO (not MessagePack, or nested deeper than the limit),
 * MOOR_EINVAL (a non-string map key whose JSON text is over 4 KiB: keys
 * within keys are escaped once per level, which would grow without
 * bound) or MOOR_ENOMEM, with a diagnostic; on failure *p and out are unchanged. */
int moor_json_from_mp(const char **p, const char *end, int flags, moor_buf_t *out);

/* Standard base64 with padding.  0 or MOOR_ENOMEM. */
int moor_json_b64_encode(const void *data, size_t n, moor_buf_t *out);

/* Decodes standard base64, padded or not (no whitespace).  0, MOOR_EINVAL
 * with a diagnostic naming the bad offset, or MOOR_ENOMEM; on failure out
 * keeps what it had. */
int moor_json_b64_decode(const char *s, size_t n, moor_buf_t *out);

#endif
