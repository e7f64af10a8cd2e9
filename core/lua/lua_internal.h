/*
 * lua_internal.h -- what the files of core/lua share and nobody else uses:
 * the sandbox (sandbox.c), its string and table functions (pattern.c,
 * tablib.c), the running call's budget (host.c) and filling a
 * moor_config_t from the table that lua/moor/config.lua returns
 * (config.c).
 */
#ifndef MOOR_LUA_INTERNAL_H
#define MOOR_LUA_INTERNAL_H

#include <lua.h>
#include <stdint.h>

#include "config.h"
#include "host.h"

enum { MOOR_SANDBOX_HANDLER = 1, MOOR_SANDBOX_RESOLVER = 2 };

/* ===== API ===== */

/* --- sandbox.c --- */

/* Builds the sandbox (see sandbox.c) with moor = a read-only proxy of the
 * table at moor_idx, and pushes P, the function environment of every
 * sandboxed chunk; the config's globals are current until
 * moor_sandbox_seal.  root: directory holding lua/ and plugins/ (copied).
 * Also points the string metatable's __index at the sandbox's string
 * table (no string.dump through ("").dump) and protects the codec's
 * marker metatables.  REQUIRES: the standard libraries are open in L and
 * moor_codec_init(L) done. */
void moor_sandbox_push_env(lua_State *L, int moor_idx, const char *root);

/* Widens the sandbox with the opt-ins of the table at opt_idx
 * ({io=, os=, ffi=, debug=}).  Before moor_sandbox_seal only. */
void moor_sandbox_apply(lua_State *L, int opt_idx);

/* Ends the config phase: its globals become read-only and what every
 * handler's and resolver's environment reads through to. */
void moor_sandbox_seal(lua_State *L);

/* Pushes the environment of the handler (kind MOOR_SANDBOX_HANDLER) or
 * resolver (MOOR_SANDBOX_RESOLVER) called name, made on first use and kept
 * for the life of the state. */
void moor_sandbox_push_own_env(lua_State *L, int kind, const char *name, size_t len);

/* Makes the environment at idx the current one (what the globals of all
 * sandboxed code resolve to) and pushes the one that was current, which
 * the caller switches back to when its code is done. */
void moor_sandbox_switch(lua_State *L, int idx);

/* Pushes a read-only proxy of the table at idx; name is for messages
 * ("cannot set moor.put: moor is read-only"). */
void moor_sandbox_push_readonly(lua_State *L, int idx, const char *name);

/* 1 when the value at idx is one of the sandbox's read-only proxies. */
int moor_sandbox_readonly(lua_State *L, int idx);

/* --- pattern.c, tablib.c: set their functions in the table at idx --- */

/* string.find, match, gmatch, gsub (budgeted; see pattern.c). */
void moor_pattern_register(lua_State *L, int idx);

/* table.sort, move (budgeted), insert, remove (refuse read-only tables). */
void moor_tablib_register(lua_State *L, int idx);

/* --- budget.c: what a call may spend (instructions, time, memory) --- */

enum { MOOR_OVER_NONE = 0, MOOR_OVER_INSTR, MOOR_OVER_TIME, MOOR_OVER_MEMORY };

/* The Lua state's memory, counted by moor_heap_alloc. */
typedef struct moor_heap {
    size_t used;      /* bytes the state holds */
    size_t cap;       /* allocations in capped budgets stop here; 0 = none */
    size_t peak;      /* largest used seen */
    size_t after_gc;  /* used after the last full collection the host ran */
    uint64_t refused; /* allocations refused at the cap */
} moor_heap_t;

typedef struct moor_budget {
    uint64_t limit;       /* instructions */
    uint64_t used;        /* charged so far */
    uint64_t deadline_ms; /* monotonic */
    unsigned timeout_ms;  /* for messages */
    int over;             /* MOOR_OVER_*: once set, every instruction raises */
    int every;            /* the hook fires on every instruction */
    moor_heap_t *heap;    /* whose cap applies while capped */
    int capped;           /* user code runs: allocations are held to the cap */
} moor_budget_t;

/* A lua_Alloc; ud is a moor_heap_t (zeroed, cap set by the owner). */
void *moor_heap_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

void moor_budget_init(moor_budget_t *b, uint64_t instructions, unsigned timeout_ms,
                      moor_heap_t *heap);

/* Makes b the running budget (hook installed on L's state) and returns the
 * previous one, which moor_budget_leave restores.  capped: hold
 * allocations to the heap's cap (user code is about to run). */
moor_budget_t *moor_budget_enter(lua_State *L, moor_budget_t *b, int capped);
void moor_budget_leave(lua_State *L, moor_budget_t *prev);

/* For the host's entry points, which may run nested inside a handler's
 * C call: no budget runs (nothing charged or capped) until
 * moor_budget_resume puts the returned one back, with its hook. */
moor_budget_t *moor_budget_suspend(void);
void moor_budget_resume(lua_State *L, moor_budget_t *b);

/* "over its instruction budget", "over its time budget", "over the Lua
 * memory limit". */
const char *moor_budget_over_text(int over);

/* Charges steps of work done in C on behalf of Lua code (one step counts
 * as one instruction) and checks the clock.  Returns 0, or 1 when the call
 * is over its budget: it then raises at its next instruction, so a pcall
 * cannot swallow the stop.  Outside a call: 0.  Never raises. */
int moor_budget_charge(lua_State *L, unsigned steps);

/* moor_budget_charge, raising the stop error ("stopped: over its ...
 * budget") at once when over.  Only where a Lua error may be raised. */
void moor_budget_tick(lua_State *L, unsigned steps);

/* --- host.c, for laws.c --- */

struct moor_lua;

typedef struct moor_lua_inside {
    lua_State *L;
    moor_heap_t *heap;
    const char *root;        /* directory holding lua/ and plugins/ */
    unsigned timeout_ms;     /* the default handler (and resolver) time budget */
    moor_lua_stats_t *stats; /* the host's counters (the check's runs are not requests) */
} moor_lua_inside_t;

/* What laws.c needs of a host (borrowed for the host's life). */
void moor_lua_inside(struct moor_lua *h, moor_lua_inside_t *out);

/* Pushes the validated config table (lua/moor/config.lua's) and returns
 * 1, or pushes nothing and returns 0 before a config has loaded. */
int moor_lua_push_config(struct moor_lua *h);

/* --- config.c --- */

/* Fills c (already holding defaults) from the normalised config table at
 * idx.  0, or MOOR_EINVAL with a diagnostic (a field C cannot take). */
int moor_config_from_lua(lua_State *L, int idx, moor_config_t *c);

#endif
