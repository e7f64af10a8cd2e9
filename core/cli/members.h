/*
 * members.h -- `moor leave`, `moor remove ID`, `moor transfers` (members.c).
 */
#ifndef MOOR_CLI_MEMBERS_H
#define MOOR_CLI_MEMBERS_H

/* argv[0] is the command ("leave", "remove" or "transfers"); pretty: the
 * global --pretty for --json.  Returns the exit status: 0, 1 (an error
 * answer), 2 (usage), 3 (connection). */
int moor_members_main(const char *addr, const char *token, int timeout_ms, int pretty, int argc,
                      char **argv);

#endif
