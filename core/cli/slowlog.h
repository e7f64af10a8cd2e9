/*
 * slowlog.h -- `moor slowlog` (slowlog.c).
 */
#ifndef MOOR_CLI_SLOWLOG_H
#define MOOR_CLI_SLOWLOG_H

/* argv[0] is "slowlog"; pretty: the global --pretty for --json.  Returns
 * the exit status: 0, 1 (an error answer), 2 (usage), 3 (connection). */
int moor_slowlog_main(const char *addr, const char *token, int timeout_ms, int pretty, int argc,
                      char **argv);

#endif
