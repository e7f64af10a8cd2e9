/*
 * top.h -- `moor top` (top.c): a live view of every member's figures.
 */
#ifndef MOOR_CLI_TOP_H
#define MOOR_CLI_TOP_H

/* argv[0] is "top".  Returns the exit status: 0, 2 (usage), 3 (the node
 * given by -h cannot be reached or its ring read on the first refresh). */
int moor_top_main(const char *addr, const char *token, int timeout_ms, int argc, char **argv);

#endif
