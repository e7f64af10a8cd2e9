/*
 * admin.h -- what the admin commands of one answer each share (admin.c):
 * connecting with the token, calling one method, printing the answer as
 * JSON, reading fields of an answer's maps, and a table printer that pads
 * its columns.  Used by snapshot.c and slowlog.c.
 */
#ifndef MOOR_CLI_ADMIN_H
#define MOOR_CLI_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#include "net/client.h"
#include "util/buf.h"

#define MOOR_EXIT_ERROR_REPLY 1
#define MOOR_EXIT_USAGE 2
#define MOOR_EXIT_TRANSPORT 3

/* ===== API ===== */

/* Prints why and the usage hint on stderr; returns MOOR_EXIT_USAGE. */
int moor_admin_usage(const char *why);

/* Connects to addr and authenticates with token (NULL: none).  0 or an
 * exit status (the reason on stderr); on failure *cl may be set: close it. */
int moor_admin_connect(const char *addr, const char *token, int timeout_ms, moor_client_t **cl);

/* Calls method with params (np of them; params NULL: none).  0 with *r
 * the answer (borrowed until the next call on cl), or an exit status:
 * MOOR_EXIT_TRANSPORT, MOOR_EXIT_ERROR_REPLY (code and message on stderr). */
int moor_admin_call(moor_client_t *cl, const char *method, const moor_buf_t *params, uint32_t np,
                    moor_client_reply_t *r);

/* Prints the MessagePack value as one line of JSON (pretty: indented).
 * 0 or MOOR_EXIT_TRANSPORT. */
int moor_admin_print_json(const char *res, size_t rlen, int pretty);

/* The value of field name of the map at p (NULL when absent). */
uint64_t moor_admin_u64(const char *p, const char *end, const char *name); /* 0 if absent */
/* As text (printable bytes; others '?'), "-" when absent or nil. */
void moor_admin_str(const char *p, const char *end, const char *name, char *out, size_t osz);

/* "1.5 MB" */
void moor_admin_bytes(double b, char *out, size_t osz);

/* A text table: cells added row by row, printed with padded columns. */
typedef struct moor_admin_table {
    unsigned ncols;
    moor_buf_t cells; /* NUL-separated cell texts, row after row */
    size_t ncells;
    size_t width[16];
} moor_admin_table_t;

void moor_admin_table_init(moor_admin_table_t *t, unsigned ncols); /* ncols <= 16 */
void moor_admin_table_cell(moor_admin_table_t *t, const char *text);
/* Prints every row (the first is the header) to stdout and frees t. */
void moor_admin_table_print(moor_admin_table_t *t);

#endif
