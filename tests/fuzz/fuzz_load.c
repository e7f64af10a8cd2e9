/*
 * fuzz_load.c -- libFuzzer target for the `_load` message (load.h), which
 * every node takes from its peers each second.  The input as a message:
 * moor_load_decode either refuses it with MOOR_EPROTO without passing a
 * single entry on, or passes entries whose id (1..64 bytes) and load (a
 * map of at most MOOR_LOAD_MAX_BYTES) lie inside the input; encoding them
 * again decodes to the same entries.  The same input handed to a table
 * through moor_load_handle answers either an error or a table that
 * decodes, and never grows the table past MOOR_LOAD_MAX_ENTRIES.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/load.h"
#include "util/err.h"
#include "util/log.h"
#include "util/mp.h"

typedef struct collect {
    const char *in;
    size_t size;
    moor_buf_t enc; /* the entries encoded again, as a loads array body */
    uint32_t n;
    uint64_t sum; /* of seqs and lengths, to compare the second decode */
} collect_t;

static int inside(const char *in, size_t size, const char *p, size_t n)
{
    return n == 0 || (p >= in && n <= size && (size_t)(p - in) <= size - n);
}

static void collect_fn(void *ud, const char *id, size_t idlen, uint64_t seq, const char *load,
                       size_t len, uint64_t age_ms)
{
    collect_t *c = ud;
    msgpack_packer pk;

    if (idlen == 0 || idlen > 64 || len == 0 || len > MOOR_LOAD_MAX_BYTES ||
        (c->in && (!inside(c->in, c->size, id, idlen) || !inside(c->in, c->size, load, len))))
        abort();
    c->n++;
    c->sum += seq + idlen + len + age_ms;
    moor_mp_packer_init(&pk, &c->enc);
    if (msgpack_pack_array(&pk, 4) || msgpack_pack_bin_with_body(&pk, id, idlen) ||
        msgpack_pack_uint64(&pk, seq) || moor_buf_append(&c->enc, load, len) ||
        msgpack_pack_uint64(&pk, age_ms))
        abort();
}

static uint64_t fixed_now(void *ud)
{
    (void)ud;
    return 1700000000000ull;
}

static uint64_t no_timer(void *ud, uint64_t delay, moor_timer_fn cb, void *arg)
{
    (void)ud, (void)delay, (void)cb, (void)arg;
    return 0;
}

static void no_stop(void *ud, uint64_t id)
{
    (void)ud, (void)id;
}

static int no_send(void *ud, const char *to, size_t tolen, const char *method, const char *params,
                   size_t plen, uint32_t nparams, uint32_t timeout_ms, moor_peer_reply_fn cb,
                   void *arg)
{
    return MOOR_ECLOSED;
}

static size_t no_members(void *ud, const char **ids, size_t *lens, size_t max)
{
    return 0;
}

static int answer_code;
static moor_buf_t answer;

static void done_fn(void *arg, int code, const char *errmsg, const char *res, size_t rlen)
{
    answer_code = code;
    moor_buf_reset(&answer);
    if (code == 0 && moor_buf_append(&answer, res, rlen))
        abort();
}

static void fuzz_table(const char *in, size_t size)
{
    moor_load_opts_t o;
    moor_load_t *l;
    collect_t c = {0};

    memset(&o, 0, sizeof(o));
    o.node_id = "self";
    o.idlen = 4;
    o.clock.now_ms = fixed_now;
    o.clock.timer_start = no_timer;
    o.clock.timer_stop = no_stop;
    o.transport.request = no_send;
    o.members = no_members;
    if (moor_load_new(&o, &l))
        abort();
    moor_load_handle(l, "_load", 5, in, size, 1, done_fn, NULL);
    if (answer_code == 0 &&
        moor_load_decode(answer.data, answer.len, collect_fn, &c, NULL, NULL) != 0)
        abort();
    if (moor_load_count(l) > MOOR_LOAD_MAX_ENTRIES)
        abort();
    moor_buf_free(&c.enc);
    moor_load_free(l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    collect_t a = {0}, b = {0};
    moor_buf_t msg = MOOR_BUF_INIT;
    msgpack_packer pk;
    int rc;

    moor_log_set_level(MOOR_LOG_OFF);
    a.in = in;
    a.size = size;
    rc = moor_load_decode(in, size, collect_fn, &a, NULL, NULL);
    if (rc) {
        if (rc != MOOR_EPROTO || a.n != 0)
            abort();
    } else {
        moor_mp_packer_init(&pk, &msg);
        if (msgpack_pack_map(&pk, 1) || msgpack_pack_str_with_body(&pk, "loads", 5) ||
            msgpack_pack_array(&pk, a.n) || moor_buf_append(&msg, a.enc.data, a.enc.len))
            abort();
        if (moor_load_decode(msg.data, msg.len, collect_fn, &b, NULL, NULL) || b.n != a.n ||
            b.sum != a.sum || b.enc.len != a.enc.len ||
            (a.enc.len && memcmp(b.enc.data, a.enc.data, a.enc.len)))
            abort();
    }
    moor_buf_free(&a.enc);
    moor_buf_free(&b.enc);
    moor_buf_free(&msg);
    fuzz_table(in, size);
    moor_buf_free(&answer);
    return 0;
}
