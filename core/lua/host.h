/*
 * host.h -- the LuaJIT host: one Lua state on the loop thread that runs
 * the config and the server-side handlers.
 *
 * Handlers run in coroutines.  Inside one, moor.get/put/del encode their
 * arguments as a client request would and hand them to the node through
 * ops.kv with a token, then yield; the node answers later (from the loop)
 * with moor_lua_kv_done(token, ...), which resumes the coroutine -- the
 * OpenResty cosocket pattern.  Many handlers are in flight at once.
 *
 * Budgets: every call has an instruction budget (count hook; handler code
 * runs with the JIT off for it, since compiled traces skip hooks; C
 * functions that loop -- pattern matching, sort, the codec -- charge it
 * too) and a wall-clock budget (checked as it runs, and a libuv timer
 * while it waits).  Over either, the coroutine is abandoned and the caller
 * gets HANDLER_TIMEOUT.  The state's heap is capped (handler.memory_mb):
 * a call whose allocation would pass it gets HANDLER_ERROR naming the
 * limit, and its memory is collected before the answer goes out.  A Lua
 * error gives HANDLER_ERROR with its message.  Writes already acknowledged
 * stay (they were durable); the error message says how many writes the
 * handler completed before it stopped.  A result whose encoding is larger
 * than limits.value_max (or than limits.max_frame allows in a reply) is
 * refused: VALUE_TOO_LARGE, nothing sent.
 *
 * Sandbox: handlers see a restricted environment (no io, os.execute,
 * loadfile, dofile, bytecode load, ffi, debug, require outside lua/ and
 * plugins/) unless the config opts in; moor and the library tables are
 * read-only, and each handler and each resolver has its own globals.
 */
#ifndef MOOR_LUA_HOST_H
#define MOOR_LUA_HOST_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "util/buf.h"

typedef struct moor_lua moor_lua_t;

enum moor_lua_kv_op { MOOR_LUA_GET = 1, MOOR_LUA_PUT = 2, MOOR_LUA_DEL = 3 };

typedef struct moor_lua_ops {
    void *ud;
    /* Starts a get/put/del with params encoded exactly as the wire method
     * takes them (get: key, opts; put: key, value, opts; del: key, opts).
     * Returns 0 if started (moor_lua_kv_done(from, token) will follow), or
     * an error code (no callback).  from: the host asking, which is the one
     * to answer (after a reload, calls still running on the old host ask
     * through it while new calls run on the new one). */
    int (*kv)(void *ud, moor_lua_t *from, int op, const char *params, size_t plen,
              uint32_t nparams, uint64_t token);
} moor_lua_ops_t;

/* Answer of a handler call: errcode NULL on success with result encoded
 * MessagePack; else "HANDLER_ERROR", "HANDLER_TIMEOUT", "NO_HANDLER", ... */
typedef void (*moor_lua_reply_fn)(void *ud, const char *errcode, const char *errmsg,
                                  const char *result, size_t rlen);

typedef struct moor_lua_opts {
    uv_loop_t *loop;
    const char *root; /* directory holding lua/ and plugins/ */
    moor_lua_ops_t ops;
} moor_lua_opts_t;

/* ===== API ===== */

int moor_lua_new(const moor_lua_opts_t *o, moor_lua_t **out);

/* Sets ops.ud after creation (the node is made from the config the host
 * loads, so it exists only after moor_lua_load_config). */
void moor_lua_set_ops_ud(moor_lua_t *L, void *ud);

/* What running the config file may spend (at start, on reload and in
 * moord --check): an endless loop in a config is an error, not a hang. */
#define MOOR_LUA_CONFIG_INSTRUCTIONS 100000000ull
#define MOOR_LUA_CONFIG_TIMEOUT_MS 5000u

/* Runs the config file and validates it into cfg (defaults first), under
 * the config budget above.  On a bad config: MOOR_EINVAL with a diagnostic
 * naming the key and what was expected (file:line when Lua gives it); over
 * the budget: MOOR_EINVAL, "config exceeded its budget (...)". */
int moor_lua_load_config(moor_lua_t *L, const char *path, moor_config_t *cfg);

/* Sets moor.arg[key] = value (strings, copied) for the config to read: one
 * config file can describe a whole cluster and pick this node's part by
 * `moord FILE --node n2` (moor.arg.node).  0 or MOOR_ENOMEM. */
int moor_lua_set_arg(moor_lua_t *L, const char *key, const char *value);

/* Starts handler `name` with nargs encoded arguments.  reply runs exactly
 * once, maybe before this returns.  Returns 0. */
int moor_lua_call(moor_lua_t *L, const char *name, size_t nlen, const char *args, size_t alen,
                  uint32_t nargs, moor_lua_reply_fn reply, void *ud);

/* moor_lua_call that also adds to *run_ns the time the handler spent
 * running Lua (every resume of its coroutine, not its waits on kv), up
 * to the moment reply runs and never after: *run_ns may live in ud. */
int moor_lua_call_timed(moor_lua_t *L, const char *name, size_t nlen, const char *args, size_t alen,
                        uint32_t nargs, moor_lua_reply_fn reply, void *ud, uint64_t *run_ns);

/* Resumes the coroutine waiting on token (ignored if it was abandoned). */
void moor_lua_kv_done(moor_lua_t *L, uint64_t token, const char *errcode, const char *errmsg,
                      const char *result, size_t rlen);

/* Runs the resolver registered as name (moor.resolver or a resolvers.*
 * plugin) on siblings, an encoded array of {value=, ts=, tombstone=} maps,
 * synchronously under the node's default handler budget, and appends the
 * encoded value it returns to out.  0; MOOR_ENOHANDLER (no such resolver),
 * MOOR_EHANDLER (it raised), MOOR_EHTIMEOUT (over budget), MOOR_EINVAL
 * (siblings undecodable, result unencodable), each with a diagnostic; out
 * is unchanged on error.  May be called from inside ops.kv. */
int moor_lua_resolve(moor_lua_t *L, const char *name, size_t nlen, const char *siblings,
                     size_t slen, moor_buf_t *out);

/* Checks the laws of every resolver the loaded config registered
 * (moor.resolver and resolvers.* plugins; not the autoscale policy):
 * lua/moor/laws.lua's check_config runs each on generated sibling sets,
 * calling it exactly as a read does (moor_lua_resolve: its own globals,
 * the node's default handler budget per call, the heap cap, the result
 * encoded within limits.value_max).  A resolver's whole check is bounded
 * by MOOR_LUA_LAWS_MS of wall time (laws it has not broken by then count
 * as held, and its line says it stopped early).  Appends one line per
 * resolver to report: "resolver 'lww': ok (commutative, associative,
 * idempotent; 200 runs)", or one line per law it breaks, with the failing
 * input: "resolver 'first': not commutative: siblings {...} give 1, but
 * in the order {...} give 2".  Returns 0 when every resolver holds its
 * laws; MOOR_EHANDLER when one or more do not (the diagnostic counts and
 * names them); MOOR_EINVAL (no config loaded, lua/moor/laws.lua missing
 * or broken) or MOOR_ENOMEM with a diagnostic.  Runs on the loop thread
 * and blocks it for the check's length: call it before a config goes
 * live (moord --check, a reload), not per request. */
#define MOOR_LUA_LAWS_MS 3000
int moor_lua_check_laws(moor_lua_t *L, moor_buf_t *report);
/* What the host did since it started, for the metrics: handler calls
 * (moor_lua_call), resolver runs and how many of those failed, and the
 * calls of either kind stopped by a budget: its wall clock, its
 * instruction count, the heap limit. */
typedef struct moor_lua_stats {
    uint64_t handler_calls;
    uint64_t resolver_calls, resolver_errors;
    uint64_t time_kills, budget_kills, memory_kills;
} moor_lua_stats_t;

/* Copies the counters into out.  Can't fail. */
void moor_lua_stats(const moor_lua_t *L, moor_lua_stats_t *out);
/* What moor_lua_catalog lists. */
enum { MOOR_LUA_HANDLERS = 1, MOOR_LUA_RESOLVERS = 2 };

typedef void (*moor_lua_entry_fn)(void *ud, const char *name, size_t nlen, uint64_t digest);

/* Calls fn for every handler (kind MOOR_LUA_HANDLERS) or resolver
 * (MOOR_LUA_RESOLVERS) the loaded config registered, plugins included,
 * with a digest of its stripped bytecode (and, for a handler, its
 * budget): two hosts loaded from the same code give the same digests, and
 * a function that only moved in the file keeps its digest.  The digest does
 * not see upvalues' contents, nor the code of functions a handler calls
 * through them.  Returns how many there are.  Can't fail. */
unsigned moor_lua_catalog(moor_lua_t *L, int kind, moor_lua_entry_fn fn, void *ud);

/* Handlers currently running or waiting. */
unsigned moor_lua_inflight(const moor_lua_t *L);

/* The Lua heap: bytes held now, the cap (handler.memory_mb, its default
 * until the config loads) and how many allocations the cap refused. */
void moor_lua_heap(const moor_lua_t *L, size_t *used, size_t *cap, uint64_t *refused);

/* Answers every pending call with an error (SHUTTING_DOWN) and frees the
 * state.  Timers of those calls finish closing on the loop's next turn
 * (their memory is freed then), so keep running the loop afterwards. */
void moor_lua_free(moor_lua_t *L);

#endif
