/*
 * resp.h (server) -- the Redis-protocol (RESP2) commands of a node: GET,
 * SET, DEL, EXISTS, MGET, MSET, INCR/INCRBY/DECR/DECRBY, PING, ECHO,
 * QUIT, AUTH, HELLO, SELECT, INFO, COMMAND, CONFIG GET.
 *
 * Every command that touches data runs through the node's one request
 * path, moor_node_exec, with a MessagePack params array built here, and
 * its MessagePack answer is translated into RESP; nothing here reads or
 * writes the engine.  The connections, limits, deadlines and reply order
 * are the server's (net/server.h, opts.proto = MOOR_SRV_PROTO_RESP).
 * Runs on the loop thread.
 */
#ifndef MOOR_SERVER_RESP_H
#define MOOR_SERVER_RESP_H

#include <stddef.h>

#include "lua/config.h"
#include "net/server.h"
#include "server/node.h"

typedef struct moor_respd moor_respd_t;

/* ===== API ===== */

/* The command table for the databases of cfg (resp_databases; each must
 * name "default" or a declared keyspace).  0, or MOOR_EINVAL (a database
 * naming an unknown keyspace) / MOOR_ENOMEM with a diagnostic. */
int moor_respd_new(const moor_config_t *cfg, moor_respd_t **out);

/* The node every command runs on; set before the server dispatches. */
void moor_respd_set_node(moor_respd_t *d, moor_node_t *n);

/* The RESP server (for INFO's figures); set once it listens. */
void moor_respd_set_server(moor_respd_t *d, moor_srv_t *s);

/* Server dispatch callback (ud = the moor_respd_t). */
void moor_respd_dispatch(void *ud, moor_srv_req_t *req);

/* Server resp_class callback: MOOR_SRV_RESP_ALONE for the commands that
 * read then write (INCR and kin, DEL, SET with NX or XX), READ for GET,
 * MGET and EXISTS, WRITE for SET and MSET, FREE for the rest (see
 * net/server.h: a pipeline sees its own writes). */
int moor_respd_class(void *ud, const moor_srv_req_t *req);

/* Frees d.  REQUIRES: its server stopped. */
void moor_respd_free(moor_respd_t *d);

#endif
