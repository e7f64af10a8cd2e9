/*
 * resp_info.h -- the text of the RESP INFO command (server/resp.c), made
 * from the node's `info` map: Redis-style sections (# Server, # Clients,
 * # Stats, # Keyspace) and one # Moor_<name> section per map of `info`.
 * Pure: reads the MessagePack it is given, writes text.
 */
#ifndef MOOR_SERVER_RESP_INFO_H
#define MOOR_SERVER_RESP_INFO_H

#include <stddef.h>

#include "net/server.h"
#include "util/buf.h"

/* What INFO shows beside the node's own figures. */
typedef struct moor_resp_info {
    moor_srv_stats_t stats; /* the RESP server's */
    int port;               /* the RESP port */
    unsigned ndbs;          /* SELECT databases ... */
    const char (*dbs)[256]; /* ... and their keyspaces */
} moor_resp_info_t;

/* ===== API ===== */

/* Appends to txt the sections named by want (lower case: "server",
 * "keyspace", "moor", "moor_engine", ...; "", "all", "everything" or
 * "default": every one), lines ended by \r\n, from the info map r (rlen
 * bytes).  0, or -1 when r is not a map of the shape `info` answers (txt
 * then holds part of the text; the caller frees it either way). */
int moor_resp_info_text(moor_buf_t *txt, const char *want, const char *r, size_t rlen,
                        const moor_resp_info_t *in);

#endif
