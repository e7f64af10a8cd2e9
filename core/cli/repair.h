/*
 * repair.h -- `moor repair`: starts, follows or stops an anti-entropy
 * repair on one node (the node's `repair` method and its info.repair).
 *
 * The pure parts (a --range argument, reading info.repair, the rate
 * window, the progress line and the summary) are declared here so that
 * the unit tests drive them without a node; moor_repair_main does the
 * talking.  Stateless apart from the caller's structs; thread-safe.
 */
#ifndef MOOR_CLI_REPAIR_H
#define MOOR_CLI_REPAIR_H

#include <stddef.h>
#include <stdint.h>

/* The fields of info.repair that `moor repair` shows (README, "Anti-entropy"). */
typedef struct moor_repair_info {
    int running, trees_ready;
    uint64_t ranges_total, ranges_done;
    uint64_t exchanges, exchange_failures;
    uint64_t ranges_incomplete; /* ranges not exchanged with every owner */
    uint64_t keys_compared, keys_repaired;
    uint64_t bytes_sent, bytes_received;
    uint64_t tombstones_reaped, passes, trees;
    double last_full_pass_s;
    uint64_t last_full_pass_ms;
} moor_repair_info_t;

/* Samples of (seconds, bytes, ranges) over the last MOOR_REPAIR_WINDOW_S
 * seconds, from which the rates of the progress line are taken. */
#define MOOR_REPAIR_SAMPLES 32
#define MOOR_REPAIR_WINDOW_S 5.0

typedef struct moor_repair_rate {
    double t[MOOR_REPAIR_SAMPLES];
    uint64_t bytes[MOOR_REPAIR_SAMPLES], ranges[MOOR_REPAIR_SAMPLES];
    unsigned n, head; /* samples kept; index of the oldest */
} moor_repair_rate_t;

/* ===== API ===== */

/* "LO:HI", each an unsigned 64-bit token in decimal or 0x-hex, into *lo
 * and *hi (the range (lo, hi] of the ring).  0, or MOOR_EINVAL (empty
 * part, no colon, sign, junk, overflow) with nothing stored. */
int moor_repair_parse_range(const char *s, uint64_t *lo, uint64_t *hi);

/* The info.repair map from res: either the map itself or an `info`
 * answer holding it under "repair".  Unknown entries are skipped; missing
 * ones read as 0.  0, MOOR_EPROTO (not a map, a field of the wrong type)
 * or MOOR_ENOTFOUND (an info answer without "repair"). */
int moor_repair_read_info(const char *res, size_t rlen, moor_repair_info_t *out);

/* Adds a sample at t seconds; samples older than the window before t go
 * (the newest MOOR_REPAIR_SAMPLES are kept in any case). */
void moor_repair_rate_add(moor_repair_rate_t *r, double t, uint64_t bytes, uint64_t ranges);
/* Bytes and ranges per second between the oldest and newest sample kept
 * (0 with fewer than two samples or no time between them). */
void moor_repair_rate_get(const moor_repair_rate_t *r, double *bytes_s, double *ranges_s);

/* n with thousands separators: 1234567 -> "1,234,567". */
void moor_repair_fmt_count(uint64_t n, char *buf, size_t size);
/* A byte count: "512 B", "1.2 KB", "3.4 MB", "5.6 GB" (1 KB = 1024 B). */
void moor_repair_fmt_bytes(double n, char *buf, size_t size);
/* A duration to go: "5 s", "12 min", "2.5 h"; "?" when secs < 0. */
void moor_repair_fmt_eta(double secs, char *buf, size_t size);

/* The live line (no newline):
 *   repair: ranges 12/192  keys compared 1,234  repaired 56  1.2 MB  3.4 MB/s  ETA 5 s
 * bytes are sent + received; the rate is bytes_s; the ETA is the ranges
 * left at ranges_s ("ETA ?" while ranges_s is 0, "ETA 0 s" when none is
 * left).  Returns the length (truncated to size - 1). */
size_t moor_repair_progress_line(const moor_repair_info_t *in, double bytes_s, double ranges_s,
                                 char *buf, size_t size);

/* The final line (no newline):
 *   repair done: 192 ranges in 12.3 s, 10,000 keys compared, 3,333 repaired,
 *   1.1 MB sent, 2.2 MB received, 0 exchanges failed
 * (one line) with secs the repair's duration and failed the exchanges
 * that failed during it; a repair that stopped before its end (fewer
 * ranges done than total) reads "repair stopped: 108/192 ranges in ...".
 * Returns the length (truncated to size - 1). */
size_t moor_repair_summary(const moor_repair_info_t *in, double secs, uint64_t failed, char *buf,
                           size_t size);

/* Runs `moor repair` with argv[0] == "repair" and its options after it,
 * against addr (authenticating with token unless NULL); timeout_ms bounds
 * each call, pretty asks for indented JSON.  Progress on stderr, the
 * summary (or JSON) on stdout.  Returns the exit status: 0 the repair
 * completed (or was started / stopped as asked), 1 an error answer, a
 * repair that stopped before its end or still ran at --timeout, 2 usage,
 * 3 transport failure. */
int moor_repair_main(const char *addr, const char *token, int timeout_ms, int pretty, int argc,
                     char **argv);

#endif
