/*
 * solo.c -- a node alone as the coordinator of a one-member ring (solo.h).
 */
#include "solo.h"

#include <stdlib.h>
#include <string.h>

#include "hlc.h"
#include "net/uvenv.h"
#include "util/err.h"

struct moor_solo {
    uv_loop_t *loop;
    moor_uvenv_t *env; /* the coordinator's clock and timers */
    moor_ring_t *ring;
    moor_coord_t *coord;
    moor_hlc_mark_t hlc;
    uv_timer_t hlc_timer; /* renews the HLC reservation every second */
    int open;             /* handles and renewals to wait for at close */
    int closing;
    void (*done)(void *ud);
    void *ud;
};

void moor_solo_space_siblings(void *ud, const char *space, size_t slen, uint32_t *warn,
                              uint32_t *max)
{
    const moor_config_t *cfg = ud;

    moor_config_siblings(cfg, moor_config_space(cfg, space, slen), warn, max);
}

/* A ring of one member has no peer to ask: never called in practice. */
static int no_peer(void *ud, const char *to, size_t tolen, const char *method, const char *params,
                   size_t plen, uint32_t nparams, uint32_t timeout_ms, moor_peer_reply_fn cb,
                   void *arg)
{
    (void)ud, (void)to, (void)tolen, (void)method, (void)params, (void)plen, (void)nparams;
    (void)timeout_ms, (void)cb, (void)arg;
    return moor_diag(MOOR_EUNAVAIL, "this node is not in a cluster: it has no peers");
}

static void maybe_freed(moor_solo_t *s)
{
    void (*done)(void *) = s->done;
    void *ud = s->ud;

    if (!s->closing || s->open)
        return;
    free(s);
    if (done)
        done(ud);
}

static void hlc_settled(void *ud)
{
    moor_solo_t *s = ud;

    s->open--;
    maybe_freed(s);
}

static void hlc_reserve(moor_solo_t *s, int sync)
{
    if (moor_hlc_mark_reserve(&s->hlc, moor_coord_hlc(s->coord), sync))
        s->open++;
}

static void hlc_timer_cb(uv_timer_t *t)
{
    moor_solo_t *s = t->data;

    if (!s->closing)
        hlc_reserve(s, 0);
}

/* The ring: this node, up, with one token (a single member owns every
 * range whatever its tokens). */
static int build_ring(const moor_config_t *cfg, moor_ring_t **out)
{
    moor_member_t m;
    size_t idlen = strlen(cfg->node);

    if (idlen == 0 || idlen > MOOR_RING_ID_MAX)
        return moor_diag(MOOR_EINVAL, "node id of %zu bytes (1..%d)", idlen, MOOR_RING_ID_MAX);
    memset(&m, 0, sizeof(m));
    memcpy(m.id, cfg->node, idlen);
    m.idlen = (uint8_t)idlen;
    m.vnodes = 1;
    m.status = MOOR_MEMBER_UP;
    return moor_ring_build(&m, 1, out);
}

int moor_solo_new(uv_loop_t *loop, const moor_config_t *cfg, moor_store_if_t store,
                  moor_coord_resolve_fn resolve, void *resolve_ud, moor_solo_t **out)
{
    moor_solo_t *s = calloc(1, sizeof(*s));
    moor_coord_opts_t co;
    int rc;

    *out = NULL;
    if (!s)
        return MOOR_ENOMEM;
    s->loop = loop;
    moor_hlc_mark_init(&s->hlc, loop, cfg->data_dir, MOOR_HLC_ALONE, hlc_settled, s);
    if ((rc = build_ring(cfg, &s->ring)) || (rc = moor_uvenv_new(loop, &s->env)))
        goto fail;
    memset(&co, 0, sizeof(co));
    co.node_id = cfg->node;
    co.idlen = strlen(cfg->node);
    co.clock = moor_uvenv_clock(s->env);
    co.transport.request = no_peer;
    co.store = store;
    co.resolve = resolve;
    co.resolve_ud = resolve_ud;
    co.timeout_ms = cfg->request_timeout_ms;
    co.vc_max_entries = cfg->vc_max_entries;
    co.vc_keep_min = cfg->vc_keep_min;
    co.vc_max_age_ms = cfg->vc_max_age_ms;
    co.siblings = moor_solo_space_siblings;
    co.siblings_ud = (void *)cfg;
    if ((rc = moor_coord_new(&co, &s->coord)))
        goto fail;
    moor_coord_set_ring(s->coord, s->ring);
    {
        /* above every counter given out alone or in a cluster */
        uint64_t own = moor_hlc_mark_read(&s->hlc);
        uint64_t cl = moor_hlc_mark_read_file(cfg->data_dir, MOOR_HLC_CLUSTER);
        moor_coord_hlc_floor(s->coord, moor_hlc_mark_floor(&s->hlc, own > cl ? own : cl));
    }
    hlc_reserve(s, 1);
    uv_timer_init(loop, &s->hlc_timer);
    s->hlc_timer.data = s;
    s->open++;
    uv_timer_start(&s->hlc_timer, hlc_timer_cb, 1000, 1000);
    uv_unref((uv_handle_t *)&s->hlc_timer); /* never keeps the loop alive alone */
    *out = s;
    return 0;
fail:
    if (s->env)
        moor_uvenv_close(s->env, NULL, NULL);
    if (s->ring)
        moor_ring_free(s->ring);
    free(s);
    return rc;
}

moor_coord_t *moor_solo_coord(moor_solo_t *s)
{
    return s->coord;
}

static void timer_closed(uv_handle_t *h)
{
    moor_solo_t *s = h->data;

    s->open--;
    maybe_freed(s);
}

static void env_closed(void *ud)
{
    moor_solo_t *s = ud;

    uv_close((uv_handle_t *)&s->hlc_timer, timer_closed);
}

void moor_solo_close(moor_solo_t *s, void (*done)(void *ud), void *ud)
{
    s->closing = 1;
    s->done = done;
    s->ud = ud;
    uv_timer_stop(&s->hlc_timer);
    moor_coord_free(s->coord); /* calls in flight answered SHUTTING_DOWN */
    s->coord = NULL;
    moor_ring_free(s->ring);
    s->ring = NULL;
    moor_uvenv_close(s->env, env_closed, s);
}
