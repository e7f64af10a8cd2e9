/*
 * harness.h -- what the Lua host's tests share: a fake node behind
 * moor_lua_ops_t and a real libuv loop, a host per test loaded from a
 * config text, calls that wait for their reply (header-only; each test
 * file is one executable).
 *
 * TEST: the fake node's ops.kv keeps an in-memory store and answers a
 * kv either at once (from inside ops.kv), later from a uv_timer, or never
 * (the token is kept so the test can answer late).  Nothing asserts
 * timings; every loop is bounded by a 10 s safety deadline.
 */
#ifndef MOOR_TEST_LUA_HARNESS_H
#define MOOR_TEST_LUA_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "lua/host.h"
#include "testutil.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/mp.h"

/* ---- the fake node --------------------------------------------------------------- */

enum { ANSWER_SYNC, ANSWER_ASYNC, ANSWER_NEVER };

#define STORE_MAX 512

typedef struct entry {
    char key[64];
    moor_buf_t val; /* encoded value */
    uint64_t ver;
} entry_t;

typedef struct fake {
    moor_lua_t *h;
    uv_loop_t *loop;
    int mode;
    uint64_t rng;
    entry_t store[STORE_MAX];
    int n;
    int kv_calls;
    uint64_t last_token;
} fake_t;

typedef struct pending {
    uv_timer_t t;
    fake_t *f;
    uint64_t token;
    char code[32];
    moor_buf_t ans;
} pending_t;

static inline entry_t *lookup(fake_t *f, const char *k, uint32_t kl, int create)
{
    for (int i = 0; i < f->n; i++)
        if (strlen(f->store[i].key) == kl && memcmp(f->store[i].key, k, kl) == 0)
            return &f->store[i];
    if (!create || f->n == STORE_MAX || kl >= 64)
        return NULL;
    memcpy(f->store[f->n].key, k, kl);
    f->store[f->n].key[kl] = '\0';
    return &f->store[f->n++];
}

static inline void pack_ctx(msgpack_packer *pk, uint64_t ver)
{
    msgpack_pack_str(pk, 3);
    msgpack_pack_str_body(pk, "ctx", 3);
    msgpack_pack_bin(pk, 8);
    msgpack_pack_bin_body(pk, &ver, 8);
}

static inline void answer_get(fake_t *f, entry_t *e, const char *k, uint32_t kl, moor_buf_t *ans)
{
    msgpack_packer pk;

    moor_mp_packer_init(&pk, ans);
    if (kl == 10 && memcmp(k, "resolve-me", 10) == 0) {
        /* siblings [{value="b"}, {value="a"}]: the resolver picks one */
        static const char sib[] = "\x92\x81\xa5value\xa1"
                                  "b\x81\xa5value\xa1"
                                  "a";
        moor_buf_t out = MOOR_BUF_INIT;
        int rc = moor_lua_resolve(f->h, "smallest", 8, sib, sizeof(sib) - 1, &out);
        assert_int_equal(rc, 0);
        msgpack_pack_map(&pk, 2);
        msgpack_pack_str(&pk, 6);
        msgpack_pack_str_body(&pk, "values", 6);
        msgpack_pack_array(&pk, 1);
        moor_buf_append(ans, out.data, out.len);
        pack_ctx(&pk, 1);
        moor_buf_free(&out);
        return;
    }
    if (!e) {
        msgpack_pack_nil(&pk);
        return;
    }
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str(&pk, 6);
    msgpack_pack_str_body(&pk, "values", 6);
    msgpack_pack_array(&pk, 1);
    moor_buf_append(ans, e->val.data, e->val.len);
    pack_ctx(&pk, e->ver);
}

static inline void pending_free(uv_handle_t *t)
{
    pending_t *pd = t->data;
    moor_buf_free(&pd->ans);
    free(pd);
}

static inline void pending_fire(uv_timer_t *t)
{
    pending_t *pd = t->data;

    moor_lua_kv_done(pd->f->h, pd->token, pd->code[0] ? pd->code : NULL,
                     pd->code[0] ? "refused" : NULL, pd->ans.data, pd->ans.len);
    uv_close((uv_handle_t *)t, pending_free);
}

/* Applies the request now; the answer goes out per f->mode. */
static inline int fake_kv(void *ud, moor_lua_t *from, int op, const char *params, size_t plen,
                          uint32_t np, uint64_t token)
{
    fake_t *f = ud;
    const char *p = params, *end = params + plen, *k, *v;
    uint32_t kl;
    moor_buf_t ans = MOOR_BUF_INIT;
    char code[32] = "";
    entry_t *e;

    assert_ptr_equal(from, f->h); /* the host that asks is the one answered */
    f->kv_calls++;
    f->last_token = token;
    if (moor_mp_read_strbin(&p, end, &k, &kl))
        return MOOR_EINVAL;
    if (kl == 4 && memcmp(k, "fail", 4) == 0) {
        strcpy(code, "KEY_TOO_LARGE");
    } else if (op == MOOR_LUA_GET) {
        answer_get(f, lookup(f, k, kl, 0), k, kl, &ans);
    } else if (op == MOOR_LUA_PUT) {
        msgpack_packer pk;
        assert_true(np >= 2);
        v = p;
        assert_int_equal(moor_mp_skip(&p, end, 64), 0);
        e = lookup(f, k, kl, 1);
        assert_non_null(e);
        moor_buf_reset(&e->val);
        moor_buf_append(&e->val, v, (size_t)(p - v));
        e->ver++;
        moor_mp_packer_init(&pk, &ans);
        msgpack_pack_map(&pk, 1);
        pack_ctx(&pk, e->ver);
    } else {
        e = lookup(f, k, kl, 0);
        if (e)
            e->key[0] = '\0', e->key[1] = 1; /* tombstone: never matches */
        moor_buf_append(&ans, "\xc3", 1);
    }
    if (f->mode == ANSWER_NEVER) {
        moor_buf_free(&ans);
        return 0;
    }
    if (f->mode == ANSWER_SYNC) {
        moor_lua_kv_done(f->h, token, code[0] ? code : NULL, code[0] ? "refused" : NULL, ans.data,
                         ans.len);
        moor_buf_free(&ans);
        return 0;
    }
    pending_t *pd = calloc(1, sizeof(*pd));
    pd->f = f;
    pd->token = token;
    strcpy(pd->code, code);
    pd->ans = ans;
    uv_timer_init(f->loop, &pd->t);
    pd->t.data = pd;
    uv_timer_start(&pd->t, pending_fire, testutil_rand(&f->rng) % 4, 0);
    return 0;
}

/* ---- harness -------------------------------------------------------------------- */

typedef struct reply {
    int done;
    char code[64];
    char msg[1024];
    struct {
        char data[8192];
        size_t len;
    } res; /* the encoded result (truncated past 8 KiB) */
} reply_t;

static inline void on_reply(void *ud, const char *errcode, const char *errmsg, const char *res,
                            size_t rlen)
{
    reply_t *r = ud;

    r->done++;
    snprintf(r->code, sizeof(r->code), "%s", errcode ? errcode : "");
    snprintf(r->msg, sizeof(r->msg), "%s", errmsg ? errmsg : "");
    r->res.len = res ? (rlen < sizeof(r->res.data) ? rlen : sizeof(r->res.data)) : 0;
    if (res)
        memcpy(r->res.data, res, r->res.len);
}

typedef struct env {
    uv_loop_t loop;
    fake_t *f;
    moor_lua_t *h;
    moor_config_t cfg;
    char *dir;
    char path[4200];
} env_t;

static char root[4096];
static uint64_t seed_state; /* from testutil_seed, once */

static inline void find_root(void)
{
    /* this file is <root>/tests/unit/lua/harness.h */
    const char *tail = "/tests/unit/lua/harness.h";
    size_t n = strlen(__FILE__), t = strlen(tail);

    if (n > t && strcmp(__FILE__ + n - t, tail) == 0)
        snprintf(root, sizeof(root), "%.*s", (int)(n - t), __FILE__);
    else
        snprintf(root, sizeof(root), ".");
}

static inline void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

/* Creates a host on a fresh loop and loads text as its config; returns the
 * load_config code (diagnostic in moor_diag_last()). */
static const char *env_node_arg; /* moor.arg.node for the next env_open, or NULL */

static inline int env_open(env_t *e, const char *text)
{
    moor_lua_opts_t o;

    memset(e, 0, sizeof(*e));
    uv_loop_init(&e->loop);
    e->f = calloc(1, sizeof(*e->f));
    e->f->loop = &e->loop;
    e->f->rng = testutil_rand(&seed_state);
    e->dir = testutil_tmpdir("lua-host");
    snprintf(e->path, sizeof(e->path), "%s/conf.lua", e->dir);
    write_file(e->path, text);
    memset(&o, 0, sizeof(o));
    o.loop = &e->loop;
    o.root = root;
    o.ops.kv = fake_kv;
    o.ops.ud = e->f;
    assert_int_equal(moor_lua_new(&o, &e->h), 0);
    e->f->h = e->h;
    if (env_node_arg)
        assert_int_equal(moor_lua_set_arg(e->h, "node", env_node_arg), 0);
    return moor_lua_load_config(e->h, e->path, &e->cfg);
}

static inline void env_close(env_t *e)
{
    moor_lua_free(e->h);
    for (int i = 0; i < STORE_MAX; i++)
        moor_buf_free(&e->f->store[i].val);
    uv_run(&e->loop, UV_RUN_DEFAULT); /* close timers */
    assert_int_equal(uv_loop_close(&e->loop), 0);
    testutil_rmrf(e->dir);
    free(e->dir);
    free(e->f);
}

static inline void run_until(env_t *e, int *flag, int want)
{
    uint64_t deadline = moor_clock_mono_ms() + 10000;

    while (*flag < want && moor_clock_mono_ms() < deadline)
        uv_run(&e->loop, UV_RUN_ONCE);
    assert_int_equal(*flag, want);
}

/* Calls handler name with args (encoded already, nargs of them) and waits. */
static inline void call(env_t *e, const char *name, const char *args, size_t alen, uint32_t nargs,
                        reply_t *r)
{
    memset(r, 0, sizeof(*r));
    assert_int_equal(moor_lua_call(e->h, name, strlen(name), args, alen, nargs, on_reply, r), 0);
    run_until(e, &r->done, 1);
}

static inline void expect_ok(const reply_t *r, const char *mp, size_t n)
{
    if (r->code[0])
        fail_msg("expected success, got %s: %s", r->code, r->msg);
    if (r->res.len != n || memcmp(r->res.data, mp, n) != 0) {
        char got[256] = "", want[256] = "";
        for (size_t i = 0; i < r->res.len && i < 100; i++)
            sprintf(got + 2 * i, "%02x", (unsigned char)r->res.data[i]);
        for (size_t i = 0; i < n && i < 100; i++)
            sprintf(want + 2 * i, "%02x", (unsigned char)mp[i]);
        fail_msg("result %s, expected %s", got, want);
    }
}

static inline void expect_err(const reply_t *r, const char *code, const char *needle)
{
    if (strcmp(r->code, code) != 0 || !strstr(r->msg, needle))
        fail_msg("expected %s containing \"%s\", got %s: \"%s\"", code, needle,
                 r->code[0] ? r->code : "(success)", r->msg);
}

#define OK_BYTES(r, lit) expect_ok((r), (lit), sizeof(lit) - 1)

#endif
