/*
 * human.h -- answers as `moor` prints them for a person (without --json):
 * a get's values one per line with the ctx below, a map as "key: value"
 * lines, an array of maps as a table.  --json prints the answer itself
 * instead (show.h for get).
 *
 * Pure functions over MessagePack bytes (no I/O), driven by the unit tests
 * with made-up answers.  Values inside the text are compact JSON, so a
 * ctx line reads `ctx: {"$bin":"..."}`, the form --ctx takes back.  Bytes
 * that are not printable in a bare string are shown as '?'.  Every
 * function appends NUL-terminated text (out->len excludes the NUL) and
 * returns 0, MOOR_EPROTO (malformed or not of the expected shape) or
 * MOOR_ENOMEM; out keeps what it had on error.  Stateless; thread-safe.
 */
#ifndef MOOR_CLI_HUMAN_H
#define MOOR_CLI_HUMAN_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* ===== API ===== */

/* A get answer: "(not found)" for nil (or no values); otherwise each
 * value as JSON on its own line, then -- when there are siblings -- the
 * line "clock: {...}" (decoded from the ctx), then "ctx: {"$bin":"..."}"
 * and any other entry of the answer (a receipt) as "name: JSON".
 * *nvalues gets the number of values (0 for nil). */
int moor_human_get(const char *res, size_t rlen, moor_buf_t *out, uint32_t *nvalues);

/* A map as one "key: value" line per entry, nested maps flattened with
 * dots ("engine.flushes: 3"); a str value bare, a float with 6
 * significant digits (%.6g; null for NaN), an array of strs as
 * "a, b, c" ("-" when empty), anything else as compact JSON.  A value
 * that is not a map is one JSON line. */
int moor_human_map(const char *res, size_t rlen, moor_buf_t *out);

/* The array of maps under key `field` of the map res as a table: one
 * column per key met (in the order met, across all rows), a header of
 * the keys (a map inside a row gives one column per entry, "rps.get"),
 * cells formatted as moor_human_map formats values ("-" when a
 * row lacks the key), columns padded to their widest cell.  "(none)" for
 * an empty array.  MOOR_EPROTO when res is not a map with such an array. */
int moor_human_table(const char *res, size_t rlen, const char *field, moor_buf_t *out);

#endif
