/*
 * bench.h -- `moor bench`: load generator and latency histogram of the CLI.
 */
#ifndef MOOR_CLI_BENCH_H
#define MOOR_CLI_BENCH_H

/* ===== API ===== */

/* Runs `moor bench` with argv[0] == "bench" and its options after it,
 * against addr (authenticating every connection with token unless it is
 * NULL).  Prints progress to stderr and the summary to stdout; returns the
 * process exit status (0 when requests succeeded, 1 when none did, every
 * answer was an error or every connection failed, 2 for a usage error). */
int moor_bench_main(const char *addr, const char *token, int timeout_ms, int argc, char **argv);

#endif
