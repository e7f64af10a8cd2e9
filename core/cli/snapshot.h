/*
 * snapshot.h -- `moor snapshot` (snapshot.c).
 */
#ifndef MOOR_CLI_SNAPSHOT_H
#define MOOR_CLI_SNAPSHOT_H

/* argv[0] is "snapshot"; pretty: the global --pretty for --json.  Returns
 * the exit status: 0, 1 (an error answer), 2 (usage), 3 (connection). */
int moor_snapshot_main(const char *addr, const char *token, int timeout_ms, int pretty, int argc,
                       char **argv);

#endif
