/*
 * scan.h -- `moor scan`: pages through a keyspace's keys (the node's
 * `scan` method, README "Scanning keys") and prints them.
 *
 * moor_scan_print_page is the pure part (one page's answer to text), so
 * the unit tests drive it without a node; moor_scan_main does the talking.
 * Thread-safe apart from stdout.
 */
#ifndef MOOR_CLI_SCAN_H
#define MOOR_CLI_SCAN_H

#include <stddef.h>

#include "util/buf.h"

#define MOOR_SCAN_CLI_JSON 1   /* one JSON object per key: {"key": k, "value": v?} */
#define MOOR_SCAN_CLI_VALUES 2 /* values asked: a tab and the value after each key */

/* ===== API ===== */

/* Appends the lines of one `scan` answer res (a map {keys, values?,
 * cursor}) to out, at most max keys (0: all): a key per line -- a str key
 * as it is, a bin key as {"$bin":"<base64>"} -- with MOOR_SCAN_CLI_VALUES
 * a tab and the value as `moor get` prints it; with MOOR_SCAN_CLI_JSON a
 * JSON object per line, {"key": k} or {"key": k, "value": v}.  *nkeys
 * gets the keys printed.  0, MOOR_EPROTO (not such an answer) or
 * MOOR_ENOMEM. */
int moor_scan_print_page(const char *res, size_t rlen, int flags, size_t max, moor_buf_t *out,
                         size_t *nkeys);

/* Runs `moor scan` with argv[0] == "scan" and its options after it,
 * against addr (authenticating with token unless NULL); timeout_ms bounds
 * each call.  Returns the exit status: 0 done, 1 an error answer, 2 usage,
 * 3 transport failure. */
int moor_scan_main(const char *addr, const char *token, int timeout_ms, int argc, char **argv);

#endif
