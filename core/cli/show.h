/*
 * show.h -- how the moor CLI shows answers that need more than a plain
 * MessagePack -> JSON print: the siblings of a get together with their
 * vector clock, and the `ring` answer as a table.  A ctx stays bin, which
 * JSON shows as {"$bin": "<base64>"}: the form --ctx and `call` take back.
 *
 * Pure functions over MessagePack bytes (no I/O), so that the unit tests
 * drive them with made-up answers.  Stateless; thread-safe.
 */
#ifndef MOOR_CLI_SHOW_H
#define MOOR_CLI_SHOW_H

#include <stddef.h>

#include "util/buf.h"

/* ===== API ===== */

/* Appends the clock of an encoded ctx (vclock.h) as a MessagePack map
 * {node id (str) = counter, ...} in the clock's order (sorted by id).
 * 0, MOOR_EBADCTX (not exactly one valid clock) or MOOR_ENOMEM; out keeps
 * what it had on error. */
int moor_show_clock(const char *ctx, size_t len, moor_buf_t *out);

/* Appends what `moor get --json` prints for the get answer res, as
 * MessagePack: with at most one value (or an answer that is not a map,
 * such as nil) the answer as it is ({values = [v], ctx = bin}); with
 * several values (siblings),
 *   {siblings = [v1, v2, ...], clock = {id = counter, ...}, ctx = bin}
 * followed by any other entries of the answer.  A record has one clock
 * for all its siblings, so the clock appears once; it is left out when
 * the answer has no ctx or one that does not decode.  0, MOOR_EPROTO or
 * MOOR_ENOMEM. */
int moor_show_get(const char *res, size_t rlen, moor_buf_t *out);

/* Appends the `ring` answer res as a text table (NUL-terminated, out->len
 * excludes the NUL): a header line, then one line per node in the
 * answer's order:
 *     id  address  zone  status  vnodes  share
 *   * n1  127.0.0.1:7701  a  up  64  33.4%
 * (columns padded to their widest cell), the leading "*" marking the node
 * that answered (self), "-" for an empty zone or a missing field, the
 * share (a fraction of the ring) as a percentage with one decimal, and a
 * last column "link" (this node's connection to each member: self,
 * connected, down, idle) when the answer has one.  Bytes
 * that are not printable (control characters) are shown as '?'.
 * 0, MOOR_EPROTO (not a map with a "nodes" array of maps) or MOOR_ENOMEM;
 * out keeps what it had on error. */
int moor_show_ring(const char *res, size_t rlen, moor_buf_t *out);

#endif
