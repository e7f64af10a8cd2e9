/*
 * host.c -- the LuaJIT host: one Lua state on the loop thread that runs
 * the config file, the handlers (in coroutines) and the resolvers.
 *
 * Handlers follow the cosocket pattern (OpenResty): moor.get/put/del are
 * classic lua_CFunctions that encode their request, hand it to the node
 * through ops.kv with a token and lua_yield; moor_lua_kv_done(token)
 * pushes the answer onto the suspended coroutine and resumes it.  The node
 * may answer from inside ops.kv (a read served from memory): the answer is
 * then stashed and returned without yielding.
 *
 * Reuse: a finished call_t goes back to h->pool with its timer handle still
 * open and, when its coroutine returned normally (status 0, stack emptied),
 * that coroutine too; the next call takes both.  A fresh call_t (over 1 KiB,
 * past malloc's small caches), a uv_close and a new Lua thread per call
 * were a third of the CPU of a trivial handler (README "Lua handlers
 * against native gets").  A coroutine that raised, was stopped or is
 * suspended in a yield is never reused.  The wall-clock timer is started
 * only when the handler first waits on kv: while Lua runs the count hook
 * checks the same deadline, so a call answered synchronously never touches
 * the timer heap.
 *
 * Tokens: a call lives in a slot of h->slots; a token is (generation << 32
 * | slot + 1) and every kv bumps the slot's generation, so an answer for an
 * abandoned call (or an older kv) never matches and is ignored.
 *
 * Budgets (budget.c): the state runs with the JIT off.  LuaJIT's count
 * hook is not called from compiled traces, so a `while true do end`
 * compiled into a trace would never be stopped; switching the JIT off for
 * the whole state (rather than jit.off on each handler) also covers helper
 * functions and modules a handler calls.  Every resume of a handler and
 * every resolver runs under its call's budget (instructions, a deadline,
 * and the state's memory cap, handler.memory_mb); C functions that loop
 * charge the same budget.  A libuv timer per call enforces the wall clock
 * while the handler waits on kv: the coroutine is abandoned,
 * HANDLER_TIMEOUT goes out, and the late answer is ignored.
 *
 * Memory: the state allocates through budget.c's counting allocator.  A
 * call whose allocation would pass the cap is stopped with HANDLER_ERROR
 * naming the limit, its coroutine dropped, and a full collection run
 * before the answer goes out, so the memory is back when the next call
 * starts.  Before a call, when the heap is past half the cap and has grown
 * by an eighth of it since the last full collection, the host collects
 * first, so garbage does not count against the next handler.
 *
 * Environments (sandbox.c): each handler and each resolver has its own
 * globals table; call_run and moor_lua_resolve make it current around the
 * code they run and restore the previous one after.
 *
 * Results: a handler's result is encoded with a bound, the smaller of
 * limits.value_max and limits.max_frame less the reply's envelope; past
 * it the caller gets VALUE_TOO_LARGE and nothing is sent.  A resolver's
 * result is bounded by limits.value_max (it is stored as a value).
 *
 * Errors: a Lua error in a handler gives HANDLER_ERROR with the message
 * and the top of the traceback.  Messages say how many writes the handler
 * completed, and whether one was in flight, so nothing half-applied goes
 * unsaid.  An allocation failure outside user code (malloc itself failing)
 * is fatal: the panic handler logs and aborts.
 *
 * Threads: everything here runs on the loop thread.
 */
#include "host.h"

#include <lauxlib.h>
#include <luajit.h>
#include <lualib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "lua_internal.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/log.h"

#define MAX_CALL_ARGS 200
#define NO_SLOT UINT32_MAX
#define REPLY_ENVELOPE 64 /* [1, msgid, nil, result] around a result, generously */
#define LOG_MSG_MAX 1800  /* escaped bytes of a moor.log message (log lines are 2 KiB) */
#define POOL_MAX 128      /* finished calls kept for reuse (most calls finish synchronously) */

typedef struct call {
    moor_lua_t *h;
    lua_State *co; /* the handler's coroutine */
    int co_ref;    /* registry ref keeping co alive */
    uint32_t slot;
    uint64_t token; /* kv waited on; 0 = not waiting */
    int op;         /* that kv's op */
    int in_kv;      /* inside ops.kv: an answer now is synchronous */
    int sync_done;  /* it came: stashed below */
    char *s_errcode, *s_errmsg;
    moor_buf_t s_result;
    moor_buf_t buf; /* request params, then the encoded reply */
    moor_budget_t budget;
    int env_ref;      /* registry ref of the handler's environment */
    unsigned writes;  /* puts/dels acknowledged */
    char name[64];    /* handler name, for messages */
    char msg[1024];   /* error message of the reply */
    uv_timer_t timer; /* wall-clock budget while waiting on kv; closing frees the call */
    moor_lua_reply_fn reply;
    void *ud;
    uint64_t *run_ns;  /* the caller's: Lua run time is added until the reply; may be NULL */
    int co_clean;      /* co returned normally: empty and reusable */
    struct call *next; /* in h->pool */
} call_t;

typedef struct slot {
    call_t *c;     /* NULL when free */
    uint32_t gen;  /* bumped by every kv issued from this slot */
    uint32_t next; /* free list */
} slot_t;

struct moor_lua {
    lua_State *L;
    uv_loop_t *loop;
    moor_lua_ops_t ops;
    char root[4096];
    int env_ref, moor_ref;           /* sandbox environment, moor table */
    int handlers_ref, resolvers_ref; /* from the config; LUA_NOREF before */
    int config_ref;                  /* the whole validated config table (gossip, seeds: issue 4) */
    slot_t *slots;
    uint32_t nslots, free_head;
    unsigned inflight;
    call_t *running; /* call being resumed now, or NULL */
    uint64_t def_instructions;
    unsigned def_timeout_ms;
    size_t result_max;          /* a handler's encoded result, bytes */
    const char *result_max_why; /* the limit that sets it, for messages */
    size_t value_max;           /* a resolver's result, a put's value */
    size_t frame_max;           /* a kv request's params, moor.encode */
    int arg_ref;                /* moor.arg's real table (the sandbox sees a proxy) */
    int dump_ref;               /* string.dump, for moor_lua_catalog (the sandbox has none) */
    moor_heap_t heap;           /* the state's memory (budget.c) */
    call_t *pool;               /* finished calls, timer open, maybe with a clean coroutine */
    unsigned npool;             /* their number, at most POOL_MAX */
    int closing;
    moor_lua_stats_t stats; /* counters for the metrics (moor_lua_stats) */
};

static const char *const op_names[] = {"", "moor.get", "moor.put", "moor.del"};

/* ---- memory ------------------------------------------------------------------ */

static void heap_collect(moor_lua_t *h)
{
    lua_gc(h->L, LUA_GCCOLLECT, 0);
    h->heap.after_gc = h->heap.used;
}

/* Before a call: collect when garbage could crowd the next handler out. */
static void heap_prepare(moor_lua_t *h)
{
    size_t cap = h->heap.cap;

    if (cap && h->heap.used > cap / 2 && h->heap.used > h->heap.after_gc + cap / 8)
        heap_collect(h);
}

/* The codec's tick: the running call's budget. */
static int codec_tick(lua_State *L, unsigned steps)
{
    return moor_budget_charge(L, steps);
}

/* ---- slots and tokens ------------------------------------------------------------ */

static int slot_alloc(moor_lua_t *h, call_t *c)
{
    uint32_t i;

    if (h->free_head == NO_SLOT) {
        uint32_t n = h->nslots ? h->nslots * 2 : 64;
        slot_t *s = realloc(h->slots, n * sizeof(*s));
        if (!s)
            return MOOR_ENOMEM;
        for (i = h->nslots; i < n; i++) {
            s[i].c = NULL;
            s[i].gen = 0;
            s[i].next = i + 1 < n ? i + 1 : NO_SLOT;
        }
        h->free_head = h->nslots;
        h->slots = s;
        h->nslots = n;
    }
    i = h->free_head;
    h->free_head = h->slots[i].next;
    h->slots[i].c = c;
    c->slot = i;
    return 0;
}

static void slot_free(moor_lua_t *h, call_t *c)
{
    slot_t *s = &h->slots[c->slot];

    s->c = NULL;
    s->gen++;
    s->next = h->free_head;
    h->free_head = c->slot;
}

static uint64_t token_issue(moor_lua_t *h, call_t *c)
{
    slot_t *s = &h->slots[c->slot];

    s->gen++;
    return ((uint64_t)s->gen << 32) | ((uint64_t)c->slot + 1);
}

static call_t *token_find(moor_lua_t *h, uint64_t token)
{
    uint32_t idx = (uint32_t)token - 1, gen = (uint32_t)(token >> 32);

    if ((uint32_t)token == 0 || idx >= h->nslots)
        return NULL;
    if (!h->slots[idx].c || h->slots[idx].gen != gen || h->slots[idx].c->token != token)
        return NULL;
    return h->slots[idx].c;
}

/* ---- finishing a call -------------------------------------------------------- */

static void call_free_cb(uv_handle_t *t)
{
    call_t *c = t->data;

    moor_buf_free(&c->buf);
    moor_buf_free(&c->s_result);
    free(c->s_errcode);
    free(c->s_errmsg);
    free(c);
}

/* Drops c's coroutine (if any) and closes its timer; the memory goes in
 * the close callback. */
static void call_destroy(moor_lua_t *h, call_t *c)
{
    luaL_unref(h->L, LUA_REGISTRYINDEX, c->co_ref);
    c->co_ref = LUA_NOREF;
    c->co = NULL;
    uv_close((uv_handle_t *)&c->timer, call_free_cb);
}

/* After its answer: back to the pool, or closed when the pool is full or
 * the host is closing. */
static void call_release(moor_lua_t *h, call_t *c)
{
    if (h->closing || h->npool >= POOL_MAX) {
        call_destroy(h, c);
        return;
    }
    c->next = h->pool;
    h->pool = c;
    h->npool++;
}

/* Answers the caller once and releases everything.  errmsg/result may
 * point into the call: it is released only once reply has returned. */
static void call_finish(call_t *c, const char *errcode, const char *errmsg, const char *res,
                        size_t rlen)
{
    moor_lua_t *h = c->h;
    moor_lua_reply_fn reply = c->reply;
    void *ud = c->ud;

    c->run_ns = NULL; /* the caller's may go with the reply */
    slot_free(h, c);
    h->inflight--;
    c->token = 0;
    if (c->co_clean && !c->budget.over) {
        lua_settop(c->co, 0); /* kept with the call for the next one */
    } else {
        luaL_unref(h->L, LUA_REGISTRYINDEX, c->co_ref);
        c->co_ref = LUA_NOREF;
        c->co = NULL;
    }
    luaL_unref(h->L, LUA_REGISTRYINDEX, c->env_ref);
    c->env_ref = LUA_NOREF;
    if (c->budget.over == MOOR_OVER_MEMORY)
        heap_collect(h); /* the stopped call's memory is garbage now */
    uv_timer_stop(&c->timer);
    reply(ud, errcode, errmsg, res, rlen);
    call_release(h, c);
}

static void call_fail(call_t *c, const char *errcode, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void call_fail(call_t *c, const char *errcode, const char *fmt, ...)
{
    va_list ap;
    size_t n;

    va_start(ap, fmt);
    vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
    va_end(ap);
    n = strlen(c->msg);
    if (c->writes && n < sizeof(c->msg))
        snprintf(c->msg + n, sizeof(c->msg) - n, " (%u write%s completed before it stopped)",
                 c->writes, c->writes == 1 ? "" : "s");
    call_finish(c, errcode, c->msg, NULL, 0);
}

/* A budget that ran out, counted by kind for the metrics. */
static void count_kill(moor_lua_stats_t *st, int over)
{
    if (over == MOOR_OVER_MEMORY)
        st->memory_kills++;
    else if (over == MOOR_OVER_INSTR)
        st->budget_kills++;
    else if (over == MOOR_OVER_TIME)
        st->time_kills++;
}

static void call_timeout_msg(call_t *c, const char *waiting)
{
    count_kill(&c->h->stats, c->budget.over);
    if (c->budget.over == MOOR_OVER_MEMORY)
        call_fail(c, "HANDLER_ERROR",
                  "handler '%s' stopped: an allocation would take the Lua heap past its limit "
                  "of %zu MiB (handler.memory_mb)",
                  c->name, c->h->heap.cap >> 20);
    else if (c->budget.over == MOOR_OVER_INSTR)
        call_fail(c, "HANDLER_TIMEOUT",
                  "handler '%s' stopped: over its budget of %llu instructions", c->name,
                  (unsigned long long)c->budget.limit);
    else
        call_fail(c, "HANDLER_TIMEOUT", "handler '%s' stopped: over its time budget of %u ms%s",
                  c->name, c->budget.timeout_ms, waiting ? waiting : "");
}

/* The handler returned: encode its first result, within the result bound
 * and the call's budget. */
static void call_complete(call_t *c)
{
    lua_State *co = c->co;
    moor_budget_t *pb;
    int rc;

    if (lua_gettop(co) == 0)
        lua_pushnil(co);
    moor_buf_reset(&c->buf);
    pb = moor_budget_enter(co, &c->budget, 0);
    rc = moor_codec_encode_max(co, 1, 0, c->h->result_max, &c->buf);
    moor_budget_leave(co, pb);
    if (rc == MOOR_EVALTOOBIG) {
        moor_buf_free(&c->buf);
        call_fail(c, "VALUE_TOO_LARGE",
                  "handler '%s' returned a value whose encoding is larger than %zu bytes (%s); "
                  "nothing was sent",
                  c->name, c->h->result_max, c->h->result_max_why);
    } else if (c->budget.over) {
        call_timeout_msg(c, " while its result was encoded");
    } else if (rc) {
        call_fail(c, "HANDLER_ERROR", "handler '%s' returned a value that cannot be encoded: %s",
                  c->name, moor_diag_msg(rc));
    } else {
        call_finish(c, NULL, NULL, c->buf.data, c->buf.len);
    }
}

/* The handler raised: its message plus the first lines of the traceback. */
static void call_error(call_t *c)
{
    lua_State *co = c->co;
    const char *msg = lua_tostring(co, -1);
    const char *tb;
    char line[512] = "";

    if (c->budget.over) {
        call_timeout_msg(c, NULL);
        return;
    }
    if (!msg)
        msg = lua_isnil(co, -1) ? "nil error" : lua_typename(co, lua_type(co, -1));
    luaL_traceback(co, co, NULL, 0);
    tb = lua_tostring(co, -1);
    /* "stack traceback:\n\t[C]: in ...\n\tfile:line: in ..." -> the first
     * Lua frame, where the error was raised */
    for (const char *p = tb ? strchr(tb, '\n') : NULL; p && *p; p = strchr(p, '\n')) {
        p += strspn(p, "\n\t");
        if (*p && strncmp(p, "[C]", 3) != 0) {
            snprintf(line, sizeof(line), " (at %.*s)", (int)strcspn(p, "\n"), p);
            break;
        }
    }
    call_fail(c, "HANDLER_ERROR", "handler '%s': %s%s", c->name, msg, line);
}

static void on_timer(uv_timer_t *t);

static void call_run(call_t *c, int nargs)
{
    moor_lua_t *h = c->h;
    call_t *prev = h->running;
    moor_budget_t *pb;
    uint64_t t0;
    int st, top = lua_gettop(h->L);

    h->running = c;
    lua_rawgeti(h->L, LUA_REGISTRYINDEX, c->env_ref);
    moor_sandbox_switch(h->L, -1); /* pushes the environment to go back to */
    pb = moor_budget_enter(c->co, &c->budget, 1);
    t0 = c->run_ns ? uv_hrtime() : 0;
    st = lua_resume(c->co, nargs);
    if (c->run_ns)
        *c->run_ns += uv_hrtime() - t0;
    moor_budget_leave(c->co, pb);
    moor_sandbox_switch(h->L, top + 2);
    lua_settop(h->L, top);
    h->running = prev;
    if (st == LUA_YIELD && c->token) { /* waiting on kv: the timer keeps the deadline */
        if (!uv_is_active((uv_handle_t *)&c->timer)) {
            uint64_t now = moor_clock_mono_ms();
            uint64_t left = c->budget.deadline_ms > now ? c->budget.deadline_ms - now : 0;
            uv_timer_start(&c->timer, on_timer, left, 0);
        }
        return;
    }
    c->co_clean = st == 0;
    if (c->budget.over)
        call_timeout_msg(c, NULL);
    else if (st == LUA_YIELD)
        call_fail(c, "HANDLER_ERROR", "handler '%s' yielded outside moor.get/put/del", c->name);
    else if (st == 0)
        call_complete(c);
    else
        call_error(c);
}

static void on_timer(uv_timer_t *t)
{
    call_t *c = t->data;
    char waiting[128] = "";
    static const char *const what[] = {"", "a get", "a put", "a del"};

    c->budget.over = MOOR_OVER_TIME;
    if (c->token)
        snprintf(waiting, sizeof(waiting), " while waiting on %s%s", what[c->op],
                 c->op != MOOR_LUA_GET ? " (which may or may not be applied)" : "");
    call_timeout_msg(c, waiting);
}

/* ---- moor.get / put / del (the cosocket functions) ------------------------------ */

/* Pushes the Lua results of a kv answer onto L; returns how many. */
static int push_kv_result(lua_State *L, call_t *c, const char *errcode, const char *errmsg,
                          const char *res, size_t rlen)
{
    const char *p = res;
    int rc;

    lua_checkstack(L, 4);
    if (errcode) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", errcode, errmsg ? errmsg : "");
        return 2;
    }
    if (!res || rlen == 0 || (rlen == 1 && (unsigned char)res[0] == 0xc0)) {
        if (c->op == MOOR_LUA_GET) { /* not found: nil, nil */
            lua_pushnil(L);
            lua_pushnil(L);
            return 2;
        }
        c->writes++;
        lua_pushboolean(L, 1);
        return 1;
    }
    rc = moor_codec_decode(L, &p, res + rlen);
    if (rc) {
        lua_pushnil(L);
        lua_pushfstring(L, "BAD_REPLY: %s", moor_diag_msg(rc));
        return 2;
    }
    if (c->op != MOOR_LUA_GET)
        c->writes++;
    return 1;
}

static int kv_encode(lua_State *L, call_t *c, int op, uint32_t *np)
{
    int nfixed = op == MOOR_LUA_PUT ? 2 : 1, rc;

    moor_buf_reset(&c->buf);
    for (int i = 1; i <= nfixed; i++) {
        luaL_checkany(L, i);
        if ((rc = moor_codec_encode_max(L, i, 0, c->h->frame_max, &c->buf)))
            return luaL_error(L, "%s: %s %s", op_names[op],
                              i == 1 ? "key:" : "value:", moor_diag_msg(rc));
    }
    *np = (uint32_t)nfixed;
    if (!lua_isnoneornil(L, nfixed + 1)) {
        luaL_checktype(L, nfixed + 1, LUA_TTABLE);
        if ((rc = moor_codec_encode_max(L, nfixed + 1, 1, c->h->frame_max, &c->buf)))
            return luaL_error(L, "%s: opts: %s", op_names[op], moor_diag_msg(rc));
        (*np)++;
    }
    return 0;
}

/* Upvalues: 1 = the host, 2 = the op. */
static int l_kv(lua_State *L)
{
    moor_lua_t *h = lua_touserdata(L, lua_upvalueindex(1));
    int op = (int)lua_tointeger(L, lua_upvalueindex(2)), rc, n;
    call_t *c = h->running;
    uint32_t np = 0;

    if (!c || c->co != L || c->in_kv)
        return luaL_error(L, "%s can only be called from a handler", op_names[op]);
    kv_encode(L, c, op, &np);
    c->op = op;
    c->token = token_issue(h, c);
    c->in_kv = 1;
    c->sync_done = 0;
    rc = h->ops.kv(h->ops.ud, h, op, c->buf.data, c->buf.len, np, c->token);
    c->in_kv = 0;
    if (rc) {
        c->token = 0;
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", moor_err_name(rc), moor_diag_msg(rc));
        return 2;
    }
    if (!c->sync_done)
        return lua_yield(L, 0);
    n = push_kv_result(L, c, c->s_errcode, c->s_errmsg, c->s_result.data, c->s_result.len);
    free(c->s_errcode);
    free(c->s_errmsg);
    c->s_errcode = c->s_errmsg = NULL;
    moor_buf_reset(&c->s_result);
    return n;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

void moor_lua_kv_done(moor_lua_t *h, uint64_t token, const char *errcode, const char *errmsg,
                      const char *result, size_t rlen)
{
    call_t *c = token_find(h, token);
    moor_budget_t *outer;
    int n;

    if (!c)
        return; /* abandoned (timed out) or unknown: ignored */
    c->token = 0;
    if (c->in_kv) {
        c->sync_done = 1;
        c->s_errcode = dup_or_null(errcode);
        c->s_errmsg = dup_or_null(errmsg);
        moor_buf_reset(&c->s_result);
        if ((errcode && !c->s_errcode) || (result && moor_buf_append(&c->s_result, result, rlen))) {
            free(c->s_errcode);
            c->s_errcode = strdup("OUT_OF_MEMORY");
        }
        return;
    }
    outer = moor_budget_suspend(); /* maybe inside another handler's ops.kv */
    n = push_kv_result(c->co, c, errcode, errmsg, result, rlen);
    call_run(c, n);
    moor_budget_resume(h->L, outer);
}

/* ---- moor.log, moor.now ------------------------------------------------------- */

/* Copies s[0..n) into out (cap bytes, NUL-terminated) with control
 * characters escaped: \n \r \t, other bytes below 0x20 and 0x7f as \xHH,
 * so one call is one log line whatever it holds.  Cut with "..." past cap. */
static void escape_line(const char *s, size_t n, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        char esc[5] = {(char)ch, 0};
        size_t len = 1;
        if (ch == '\n' || ch == '\r' || ch == '\t') {
            esc[0] = '\\', esc[1] = ch == '\n' ? 'n' : ch == '\r' ? 'r' : 't', len = 2;
        } else if (ch < 0x20 || ch == 0x7f) {
            esc[0] = '\\', esc[1] = 'x', esc[2] = hex[ch >> 4], esc[3] = hex[ch & 15], len = 4;
        }
        if (o + len + 4 > cap) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        memcpy(out + o, esc, len);
        o += len;
    }
    out[o] = '\0';
}

static int l_log(lua_State *L)
{
    static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
    int level = luaL_checkoption(L, 1, NULL, levels);
    size_t n;
    const char *msg = luaL_checklstring(L, 2, &n);
    char text[LOG_MSG_MAX], src[128];
    lua_Debug ar;

    escape_line(msg, n, text, sizeof(text));
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar)) {
        /* a chunk name is the handler's to choose (load's second argument) */
        escape_line(ar.short_src, strlen(ar.short_src), src, sizeof(src));
        moor_log_write(level, src, ar.currentline, "%s", text);
    } else {
        moor_log_write(level, "lua", 0, "%s", text);
    }
    return 0;
}

static int l_now(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)moor_clock_wall_ms());
    return 1;
}

static int l_config_only(lua_State *L)
{
    return luaL_error(L, "moor.%s can only be called while the config file loads",
                      lua_tostring(L, lua_upvalueindex(1)));
}

/* ---- the state ---------------------------------------------------------------- */

static int l_panic(lua_State *L)
{
    moor_log_error("Lua panic: %s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
    abort();
}

/* The state allocates through budget.c's counting allocator (which is
 * realloc-based, so ASan also sees Lua's memory: TESTING.md). */
static lua_State *new_state(moor_heap_t *heap)
{
    lua_State *L = lua_newstate(moor_heap_alloc, heap);

    if (!L)
        return NULL;
    lua_atpanic(L, l_panic);
    luaL_openlibs(L);
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    return L;
}

/* The moor table: codec functions, get/put/del, log, now. */
static void push_moor(moor_lua_t *h)
{
    lua_State *L = h->L;
    static const int ops[] = {MOOR_LUA_GET, MOOR_LUA_PUT, MOOR_LUA_DEL};
    static const char *const names[] = {"get", "put", "del"};

    lua_createtable(L, 0, 24);
    moor_codec_register(L);
    for (int i = 0; i < 3; i++) {
        lua_pushlightuserdata(L, h);
        lua_pushinteger(L, ops[i]);
        lua_pushcclosure(L, l_kv, 2);
        lua_setfield(L, -2, names[i]);
    }
    lua_pushcfunction(L, l_log);
    lua_setfield(L, -2, "log");
    lua_pushcfunction(L, l_now);
    lua_setfield(L, -2, "now");
}

/* The bounds that come from the config's limits (defaults before it). */
static void set_limits(moor_lua_t *h, const moor_config_t *cfg)
{
    size_t frame = cfg->max_frame > REPLY_ENVELOPE ? cfg->max_frame - REPLY_ENVELOPE : 0;

    h->def_instructions = cfg->handler_instructions;
    h->def_timeout_ms = cfg->handler_timeout_ms;
    h->heap.cap = cfg->handler_memory;
    h->value_max = cfg->value_max;
    h->frame_max = cfg->max_frame;
    h->result_max = cfg->value_max < frame ? cfg->value_max : frame;
    h->result_max_why = cfg->value_max < frame ? "limits.value_max" : "limits.max_frame";
    moor_codec_set_limits(h->L, codec_tick, h->frame_max);
}

int moor_lua_new(const moor_lua_opts_t *o, moor_lua_t **out)
{
    moor_lua_t *h = calloc(1, sizeof(*h));
    moor_config_t def;

    *out = NULL;
    if (!h)
        return MOOR_ENOMEM;
    if (!o->root || strlen(o->root) >= sizeof(h->root)) {
        free(h);
        return moor_diag(MOOR_EINVAL, "Lua host: root directory missing or too long");
    }
    h->L = new_state(&h->heap);
    if (!h->L) {
        free(h);
        return moor_diag(MOOR_ENOMEM, "Lua host: cannot create a Lua state");
    }
    h->loop = o->loop;
    h->ops = o->ops;
    strcpy(h->root, o->root);
    h->free_head = NO_SLOT;
    h->handlers_ref = h->resolvers_ref = h->config_ref = LUA_NOREF;
    moor_codec_init(h->L);
    lua_getglobal(h->L, "string");
    lua_getfield(h->L, -1, "dump");
    h->dump_ref = luaL_ref(h->L, LUA_REGISTRYINDEX);
    lua_pop(h->L, 1);
    moor_config_default(&def);
    set_limits(h, &def);
    push_moor(h);
    lua_newtable(h->L); /* moor.arg: what moord's command line passes (--node) */
    lua_pushvalue(h->L, -1);
    h->arg_ref = luaL_ref(h->L, LUA_REGISTRYINDEX);
    moor_sandbox_push_readonly(h->L, -1, "moor.arg");
    lua_setfield(h->L, -3, "arg");
    lua_pop(h->L, 1);
    moor_sandbox_push_env(h->L, -1, h->root);
    h->env_ref = luaL_ref(h->L, LUA_REGISTRYINDEX);
    h->moor_ref = luaL_ref(h->L, LUA_REGISTRYINDEX);
    *out = h;
    return 0;
}

void moor_lua_set_ops_ud(moor_lua_t *h, void *ud)
{
    h->ops.ud = ud;
}

void moor_lua_stats(const moor_lua_t *h, moor_lua_stats_t *out)
{
    *out = h->stats;
}

unsigned moor_lua_inflight(const moor_lua_t *h)
{
    return h->inflight;
}

void moor_lua_heap(const moor_lua_t *h, size_t *used, size_t *cap, uint64_t *refused)
{
    *used = h->heap.used;
    *cap = h->heap.cap;
    *refused = h->heap.refused;
}

/* ---- config ------------------------------------------------------------------- */

/* on_sandbox(t) for lua/moor/config.lua. */
static int l_on_sandbox(lua_State *L)
{
    lua_settop(L, 1);
    moor_sandbox_apply(L, 1);
    return 0;
}

/* Pushes config.run and its arguments: path, env, moor, opts. */
static int push_config_run(moor_lua_t *h, const char *path)
{
    lua_State *L = h->L;
    char file[4200];

    snprintf(file, sizeof(file), "%s/lua/moor/config.lua", h->root);
    if (luaL_loadfilex(L, file, "t") || lua_pcall(L, 0, 1, 0))
        return moor_diag(MOOR_EINVAL, "cannot load the config schema: %s", lua_tostring(L, -1));
    lua_getfield(L, -1, "run");
    lua_remove(L, -2);
    lua_pushstring(L, path);
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->env_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->moor_ref);
    lua_createtable(L, 0, 2);
    lua_getfield(L, -3, "require");
    lua_setfield(L, -2, "require");
    lua_pushcfunction(L, l_on_sandbox);
    lua_setfield(L, -2, "on_sandbox");
    return 0;
}

static void keep_field(moor_lua_t *h, int t, const char *k, int *ref)
{
    luaL_unref(h->L, LUA_REGISTRYINDEX, *ref);
    lua_getfield(h->L, t, k);
    if (!lua_istable(h->L, -1)) {
        lua_pop(h->L, 1);
        lua_newtable(h->L);
    }
    *ref = luaL_ref(h->L, LUA_REGISTRYINDEX);
}

/* After loading, the config functions only explain that they are over. */
static void seal_config_api(moor_lua_t *h)
{
    static const char *const fns[] = {"cfg",    "space",     "resolver", "handle",
                                      "gossip", "autoscale", NULL};
    lua_State *L = h->L;

    lua_rawgeti(L, LUA_REGISTRYINDEX, h->moor_ref);
    for (const char *const *f = fns; *f; f++) {
        lua_pushstring(L, *f);
        lua_pushcclosure(L, l_config_only, 1);
        lua_setfield(L, -2, *f);
    }
    lua_pop(L, 1);
}

int moor_lua_set_arg(moor_lua_t *h, const char *key, const char *value)
{
    lua_State *L = h->L;

    lua_rawgeti(L, LUA_REGISTRYINDEX, h->arg_ref);
    lua_pushstring(L, value);
    lua_setfield(L, -2, key);
    lua_pop(L, 1);
    return 0;
}

/* The config raised the value at the top, which is not a string:
 * describes it (lua/moor/config.lua turns most such errors into text
 * already; this covers the rest). */
static int config_raised(lua_State *L)
{
    const char *what = luaL_typename(L, -1);

    if (lua_isnil(L, -1))
        return moor_diag(MOOR_EINVAL, "config error: the config raised nil instead of a message");
    return moor_diag(MOOR_EINVAL, "config error: the config raised a %s", what);
}

/* The config was stopped by its budget: what it was, and where the stop
 * hit (the Lua message names the file and line running then). */
static int config_over(lua_State *L, const moor_budget_t *b)
{
    const char *at = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";

    /* the stop's own text says nothing more unless it carries a place */
    if (strncmp(at, "stopped: ", 9) == 0)
        at = "";
    return moor_diag(MOOR_EINVAL,
                     "config exceeded its budget (%llu instructions, %u ms): %s (an endless "
                     "loop?)%s%s",
                     (unsigned long long)b->limit, b->timeout_ms, moor_budget_over_text(b->over),
                     at[0] ? "; " : "", at);
}

/* After a good config: what the handlers start from must fit the cap. */
static int config_memory_check(moor_lua_t *h)
{
    heap_collect(h);
    if (h->heap.cap && h->heap.used > h->heap.cap)
        return moor_diag(MOOR_EINVAL,
                         "config: the config leaves %zu MiB in the Lua heap, more than "
                         "handler.memory_mb = %zu; raise handler.memory_mb or keep less in the "
                         "config's tables",
                         (h->heap.used + (1 << 20) - 1) >> 20, h->heap.cap >> 20);
    return 0;
}

int moor_lua_load_config(moor_lua_t *h, const char *path, moor_config_t *cfg)
{
    lua_State *L = h->L;
    int top = lua_gettop(L), rc;
    moor_budget_t b, *pb;

    moor_config_default(cfg);
    if ((rc = push_config_run(h, path)))
        goto out;
    /* the config is the operator's code: a budget for runaway loops, no
     * memory cap (the cap is one of the things it sets) */
    moor_budget_init(&b, MOOR_LUA_CONFIG_INSTRUCTIONS, MOOR_LUA_CONFIG_TIMEOUT_MS, &h->heap);
    pb = moor_budget_enter(L, &b, 0);
    rc = lua_pcall(L, 4, 1, 0);
    moor_budget_leave(L, pb);
    if (rc) {
        if (b.over)
            rc = config_over(L, &b);
        else if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER)
            rc = moor_diag(MOOR_EINVAL, "%s", lua_tostring(L, -1));
        else
            rc = config_raised(L);
        goto out;
    }
    if ((rc = moor_config_from_lua(L, -1, cfg)))
        goto out;
    luaL_unref(L, LUA_REGISTRYINDEX, h->config_ref);
    lua_pushvalue(L, -1);
    h->config_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    keep_field(h, lua_gettop(L), "handlers", &h->handlers_ref);
    keep_field(h, lua_gettop(L), "resolvers", &h->resolvers_ref);
    set_limits(h, cfg);
    seal_config_api(h);
    moor_sandbox_seal(L);
    lua_settop(L, top);
    rc = config_memory_check(h);
out:
    lua_settop(L, top);
    return rc;
}

/* ---- calls -------------------------------------------------------------------- */

static void reply_now(moor_lua_reply_fn reply, void *ud, const char *code, const char *fmt,
                      const char *name, size_t nlen)
{
    char msg[512];

    snprintf(msg, sizeof(msg), fmt, (int)(nlen > 200 ? 200 : nlen), name);
    reply(ud, code, msg, NULL, 0);
}

/* Pushes entry name of the table ref if it has type want (a handler's
 * {fn, instructions, timeout_ms} or a resolver function), or returns 0 with
 * nothing pushed. */
static int find_entry(moor_lua_t *h, int ref, const char *name, size_t nlen, int want)
{
    lua_State *L = h->L;

    if (ref == LUA_NOREF)
        return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    lua_pushlstring(L, name, nlen);
    lua_rawget(L, -2);
    lua_remove(L, -2);
    if (lua_type(L, -1) == want)
        return 1;
    lua_pop(L, 1);
    return 0;
}

static double entry_num(lua_State *L, int idx, const char *k, double def)
{
    double v = def;

    lua_getfield(L, idx, k);
    if (lua_type(L, -1) == LUA_TNUMBER)
        v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    return v;
}

/* A call from the pool (its coroutine kept if clean) or a new one. */
static call_t *call_new(moor_lua_t *h, const char *name, size_t nlen, moor_lua_reply_fn reply,
                        void *ud)
{
    call_t *c = h->pool;

    if (c) {
        h->pool = c->next;
        h->npool--;
    } else {
        if (!(c = calloc(1, sizeof(*c))))
            return NULL;
        c->co_ref = LUA_NOREF;
        uv_timer_init(h->loop, &c->timer);
        c->timer.data = c;
    }
    if (slot_alloc(h, c)) {
        call_release(h, c);
        return NULL;
    }
    c->h = h;
    c->reply = reply;
    c->ud = ud;
    c->run_ns = NULL;
    c->env_ref = LUA_NOREF;
    c->token = 0;
    c->op = c->in_kv = c->sync_done = c->co_clean = 0;
    c->writes = 0;
    c->msg[0] = '\0';
    free(c->s_errcode);
    free(c->s_errmsg);
    c->s_errcode = c->s_errmsg = NULL;
    moor_buf_reset(&c->buf);
    moor_buf_reset(&c->s_result);
    nlen = nlen > 60 ? 60 : nlen;
    memcpy(c->name, name, nlen);
    c->name[nlen] = '\0';
    h->inflight++;
    return c;
}

/* Decodes the nargs arguments onto the coroutine; 0 or an error code. */
static int push_args(call_t *c, const char *args, size_t alen, uint32_t nargs)
{
    const char *p = args, *end = args + alen;
    int rc;

    if (!lua_checkstack(c->co, (int)nargs + LUA_MINSTACK))
        return moor_diag(MOOR_EINVAL, "too many arguments");
    for (uint32_t i = 0; i < nargs; i++)
        if ((rc = moor_codec_decode(c->co, &p, end)))
            return rc;
    return 0;
}

static void call_start(moor_lua_t *h, const char *name, size_t nlen, const char *args, size_t alen,
                       uint32_t nargs, moor_lua_reply_fn reply, void *ud, uint64_t *run_ns)
{
    lua_State *L = h->L;
    call_t *c;
    int rc;

    if (h->closing) {
        reply(ud, "SHUTTING_DOWN", "the node is shutting down", NULL, 0);
        return;
    }
    if (!find_entry(h, h->handlers_ref, name, nlen, LUA_TTABLE)) {
        reply_now(reply, ud, "NO_HANDLER", "no handler named '%.*s'", name, nlen);
        return;
    }
    if (nargs > MAX_CALL_ARGS) {
        lua_pop(L, 1);
        reply_now(reply, ud, "BAD_REQUEST", "too many arguments for handler '%.*s' (max 200)", name,
                  nlen);
        return;
    }
    if (!(c = call_new(h, name, nlen, reply, ud))) {
        lua_pop(L, 1);
        reply(ud, "OUT_OF_MEMORY", "no memory for a handler call", NULL, 0);
        return;
    }
    heap_prepare(h);
    moor_budget_init(&c->budget,
                     (uint64_t)entry_num(L, -1, "instructions", (double)h->def_instructions),
                     (unsigned)entry_num(L, -1, "timeout_ms", h->def_timeout_ms), &h->heap);
    moor_sandbox_push_own_env(L, MOOR_SANDBOX_HANDLER, name, nlen);
    c->env_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    c->run_ns = run_ns;
    if (!c->co) {
        c->co = lua_newthread(L);
        c->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_getfield(L, -1, "fn");
    lua_xmove(L, c->co, 1);
    lua_pop(L, 1);
    if ((rc = push_args(c, args, alen, nargs))) {
        call_fail(c, "BAD_REQUEST", "arguments of handler '%s': %s", c->name, moor_diag_msg(rc));
        return;
    }
    call_run(c, (int)nargs);
}

int moor_lua_call_timed(moor_lua_t *h, const char *name, size_t nlen, const char *args, size_t alen,
                        uint32_t nargs, moor_lua_reply_fn reply, void *ud, uint64_t *run_ns)
{
    moor_budget_t *outer = moor_budget_suspend();

    h->stats.handler_calls++;
    call_start(h, name, nlen, args, alen, nargs, reply, ud, run_ns);
    moor_budget_resume(h->L, outer);
    return 0;
}

int moor_lua_call(moor_lua_t *h, const char *name, size_t nlen, const char *args, size_t alen,
                  uint32_t nargs, moor_lua_reply_fn reply, void *ud)
{
    return moor_lua_call_timed(h, name, nlen, args, alen, nargs, reply, ud, NULL);
}

/* ---- resolvers ----------------------------------------------------------------- */

/* The diagnostic of a resolver that failed (raised, over budget, over
 * memory); the text is escaped since the node logs it. */
static int resolve_failed(moor_lua_t *h, const char *name, size_t nlen, const moor_budget_t *b)
{
    lua_State *L = h->L;
    char msg[512];
    const char *raised = lua_tostring(L, -1);

    if (!raised)
        raised = luaL_typename(L, -1);
    if (b->over == MOOR_OVER_MEMORY)
        return moor_diag(MOOR_EHANDLER,
                         "resolver '%.*s' stopped: an allocation would take the Lua heap past "
                         "its limit of %zu MiB (handler.memory_mb)",
                         (int)nlen, name, h->heap.cap >> 20);
    if (b->over)
        return moor_diag(MOOR_EHTIMEOUT, "resolver '%.*s' stopped: %s", (int)nlen, name,
                         moor_budget_over_text(b->over));
    escape_line(raised, strlen(raised), msg, sizeof(msg));
    return moor_diag(MOOR_EHANDLER, "resolver '%.*s': %s", (int)nlen, name, msg);
}

/* Encodes the resolver's result (top) within value_max and the budget. */
static int resolve_encode(moor_lua_t *h, const char *name, size_t nlen, moor_budget_t *b,
                          moor_buf_t *out)
{
    lua_State *L = h->L;
    moor_budget_t *pb = moor_budget_enter(L, b, 0);
    int rc = moor_codec_encode_max(L, -1, 0, h->value_max, out);

    moor_budget_leave(L, pb);
    if (rc == MOOR_EVALTOOBIG)
        return moor_diag(MOOR_EVALTOOBIG,
                         "resolver '%.*s' returned a value whose encoding is larger than "
                         "limits.value_max (%zu bytes)",
                         (int)nlen, name, h->value_max);
    if (b->over)
        return moor_diag(MOOR_EHTIMEOUT, "resolver '%.*s' stopped: %s", (int)nlen, name,
                         moor_budget_over_text(b->over));
    if (rc)
        return moor_diag_wrap(rc, rc, "resolver '%.*s' returned a value that cannot be encoded",
                              (int)nlen, name);
    return 0;
}

/* Runs the resolver found at the top of the stack on the decoded siblings
 * (pushed above it), in its own environment and budget; appends the
 * encoded result to out. */
static int resolve_run(moor_lua_t *h, const char *name, size_t nlen, moor_buf_t *out)
{
    lua_State *L = h->L;
    int top = lua_gettop(L) - 2, rc;
    moor_budget_t b, *pb;
    size_t old = out->len;

    heap_prepare(h);
    moor_budget_init(&b, h->def_instructions, h->def_timeout_ms, &h->heap);
    moor_sandbox_push_own_env(L, MOOR_SANDBOX_RESOLVER, name, nlen);
    moor_sandbox_switch(L, -1); /* top + 3: the resolver's, top + 4: the one before */
    pb = moor_budget_enter(L, &b, 1);
    lua_pushvalue(L, top + 1);
    lua_pushvalue(L, top + 2);
    rc = lua_pcall(L, 1, 1, 0);
    moor_budget_leave(L, pb);
    if (rc)
        rc = resolve_failed(h, name, nlen, &b);
    else if ((rc = resolve_encode(h, name, nlen, &b, out)))
        out->len = old;
    moor_sandbox_switch(L, top + 4);
    lua_settop(L, top);
    h->stats.resolver_calls++;
    if (rc)
        h->stats.resolver_errors++;
    count_kill(&h->stats, b.over);
    if (b.over == MOOR_OVER_MEMORY)
        heap_collect(h);
    return rc;
}

int moor_lua_resolve(moor_lua_t *h, const char *name, size_t nlen, const char *siblings,
                     size_t slen, moor_buf_t *out)
{
    lua_State *L = h->L;
    int top = lua_gettop(L), rc;
    const char *p = siblings;
    moor_budget_t *outer = moor_budget_suspend(); /* maybe inside a handler's ops.kv */

    if (!find_entry(h, h->resolvers_ref, name, nlen, LUA_TFUNCTION))
        rc = moor_diag(MOOR_ENOHANDLER, "no resolver named '%.*s'", (int)(nlen > 200 ? 200 : nlen),
                       name);
    else if ((rc = moor_codec_decode(L, &p, siblings + slen)) == 0)
        rc = resolve_run(h, name, nlen, out);
    lua_settop(L, top);
    moor_budget_resume(L, outer);
    return rc;
}

/* ---- for laws.c ----------------------------------------------------------------- */

void moor_lua_inside(moor_lua_t *h, moor_lua_inside_t *out)
{
    out->L = h->L;
    out->heap = &h->heap;
    out->root = h->root;
    out->timeout_ms = h->def_timeout_ms;
    out->stats = &h->stats;
}

int moor_lua_push_config(moor_lua_t *h)
{
    if (h->config_ref == LUA_NOREF)
        return 0;
    lua_rawgeti(h->L, LUA_REGISTRYINDEX, h->config_ref);
    return 1;
}

/* ---- what a config registered ------------------------------------------------ */

/* seed mixed with the stripped bytecode of the function at the top (a C
 * function has none: seed).  Stripped: no chunk name, no line numbers, so
 * a handler that only moved in the file digests the same. */
static uint64_t fn_digest(moor_lua_t *h, uint64_t seed)
{
    lua_State *L = h->L;
    const char *bc;
    size_t len;
    uint64_t d = seed;

    if (lua_iscfunction(L, -1))
        return seed;
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->dump_ref);
    lua_pushvalue(L, -2);
    lua_pushboolean(L, 1);
    if (lua_pcall(L, 2, 1, 0) == 0 && (bc = lua_tolstring(L, -1, &len)))
        d = moor_hash64(bc, len, seed);
    lua_pop(L, 1);
    return d;
}

/* The digest of a handler entry {fn, instructions, timeout_ms} or of a
 * resolver function, at the top. */
static uint64_t entry_digest(moor_lua_t *h)
{
    lua_State *L = h->L;
    uint64_t d;
    double lim[2];

    if (!lua_istable(L, -1))
        return lua_isfunction(L, -1) ? fn_digest(h, 0) : 0;
    lim[0] = entry_num(L, -1, "instructions", -1);
    lim[1] = entry_num(L, -1, "timeout_ms", -1);
    d = moor_hash64(lim, sizeof(lim), 0);
    lua_getfield(L, -1, "fn");
    if (lua_isfunction(L, -1))
        d = fn_digest(h, d);
    lua_pop(L, 1);
    return d;
}

/* d mixed with the law-check options the config gave resolver name
 * (config.lua's resolver_checks[name]: values, a name or a generator
 * function; laws; runs; or plugin), so that a reload changing only them
 * counts as a change and checks the laws again. */
static uint64_t checks_digest(moor_lua_t *h, const char *name, uint64_t d)
{
    lua_State *L = h->L;
    int top = lua_gettop(L);
    static const char *const keys[] = {"values", "laws", "runs", "plugin"};

    if (!moor_lua_push_config(h))
        return d;
    lua_getfield(L, -1, "resolver_checks");
    if (lua_istable(L, -1))
        lua_getfield(L, -1, name);
    if (!lua_istable(L, -1)) {
        lua_settop(L, top);
        return d;
    }
    for (unsigned k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
        size_t len;
        const char *s;
        lua_getfield(L, -1, keys[k]);
        d = moor_hash64(keys[k], strlen(keys[k]), d);
        if (lua_isfunction(L, -1)) {
            d = fn_digest(h, d);
        } else if (lua_istable(L, -1)) { /* laws: a list of names */
            for (int i = 1;; i++) {
                lua_rawgeti(L, -1, i);
                if (!(s = lua_tolstring(L, -1, &len))) {
                    lua_pop(L, 1);
                    break;
                }
                d = moor_hash64(s, len + 1, d);
                lua_pop(L, 1);
            }
        } else if ((s = lua_tolstring(L, -1, &len))) { /* a string or a number */
            d = moor_hash64(s, len, d);
        }
        lua_pop(L, 1);
    }
    lua_settop(L, top);
    return d;
}

unsigned moor_lua_catalog(moor_lua_t *h, int kind, moor_lua_entry_fn fn, void *ud)
{
    lua_State *L = h->L;
    int ref = kind == MOOR_LUA_HANDLERS ? h->handlers_ref : h->resolvers_ref;
    int top = lua_gettop(L);
    moor_budget_t *outer = moor_budget_suspend();
    unsigned n = 0;

    if (ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            if (lua_type(L, -2) == LUA_TSTRING) {
                size_t nlen;
                const char *name = lua_tolstring(L, -2, &nlen);
                uint64_t d = entry_digest(h);
                if (kind == MOOR_LUA_RESOLVERS)
                    d = checks_digest(h, name, d);
                fn(ud, name, nlen, d);
                n++;
            }
            lua_pop(L, 1);
        }
    }
    lua_settop(L, top);
    moor_budget_resume(L, outer);
    return n;
}

/* ---- teardown ------------------------------------------------------------------ */

void moor_lua_free(moor_lua_t *h)
{
    if (!h)
        return;
    moor_budget_suspend(); /* nothing runs any more */
    h->closing = 1;
    for (uint32_t i = 0; i < h->nslots; i++)
        if (h->slots[i].c)
            call_fail(h->slots[i].c, "SHUTTING_DOWN",
                      "handler '%s' cancelled: the node is "
                      "shutting down",
                      h->slots[i].c->name);
    while (h->pool) {
        call_t *c = h->pool;
        h->pool = c->next;
        call_destroy(h, c);
    }
    h->npool = 0;
    lua_close(h->L);
    free(h->slots);
    free(h);
}
