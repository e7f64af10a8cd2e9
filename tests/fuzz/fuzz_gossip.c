/*
 * fuzz_gossip.c -- libFuzzer target for the gossip messages any peer (or
 * anyone who reaches the port without a cluster secret) sends: `_join`,
 * `_members`, `_ping`, `_ping_req`, `_gossip` (core/cluster/gossip.h).
 *
 * The first byte picks the method, the rest is its one param.
 * moor_gossip_msg_decode on those bytes: when it accepts, the update count
 * is within bounds and every update is a valid member entry.  Then the
 * bytes go to a live gossip instance (a clock whose timers never fire, a
 * transport that refuses every request) through moor_gossip_handle: the
 * answer runs exactly once, and afterwards the table is still sorted, its
 * entries valid, this node is in it and `up`, and the ring of the table
 * builds.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/gossip.h"
#include "util/err.h"

static uint64_t now_ms(void *ud)
{
    (void)ud;
    return 1000;
}

static uint64_t timer_start(void *ud, uint64_t d, moor_timer_fn cb, void *arg)
{
    (void)ud, (void)d, (void)cb, (void)arg;
    return 1;
}

static void timer_stop(void *ud, uint64_t id)
{
    (void)ud, (void)id;
}

static int refuse(void *ud, const char *to, size_t tolen, const char *method, const char *params,
                  size_t plen, uint32_t nparams, uint32_t timeout_ms, moor_peer_reply_fn cb,
                  void *arg)
{
    (void)ud, (void)to, (void)tolen, (void)method, (void)params, (void)plen, (void)nparams;
    (void)timeout_ms, (void)cb, (void)arg;
    return MOOR_EAGAIN;
}

static void answered(void *arg, int status, const char *res, size_t rlen)
{
    (void)status, (void)res, (void)rlen;
    (*(int *)arg)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const methods[] = {"_join", "_members", "_ping", "_ping_req", "_gossip"};
    const char *method, *p;
    moor_gossip_opts_t o;
    moor_gossip_msg_t m;
    moor_gossip_t *g;
    const moor_members_t *t;
    moor_ring_t *ring = NULL;
    int calls = 0, self_seen = 0;

    if (size < 1)
        return 0;
    method = methods[data[0] % 5];
    p = (const char *)data + 1;
    size--;
    if (moor_gossip_msg_decode(p, size, &m) == 0) {
        if (m.nu > MOOR_GOSSIP_UPDATES_MAX)
            abort();
        for (uint32_t i = 0; i < m.nu; i++) {
            const moor_member_entry_t *e = &m.u[i].e;
            if (e->m.idlen == 0 || e->m.idlen > MOOR_RING_ID_MAX || e->m.vnodes == 0 ||
                e->m.vnodes > MOOR_RING_VNODES_MAX || e->m.status < 0 ||
                e->m.status >= MOOR_MEMBER_STATUS_COUNT || m.u[i].bylen > MOOR_RING_ID_MAX)
                abort();
        }
    }
    moor_gossip_msg_free(&m);

    memset(&o, 0, sizeof(o));
    o.self.m.idlen = 2;
    memcpy(o.self.m.id, "n1", 2);
    snprintf(o.self.m.addr, sizeof(o.self.m.addr), "127.0.0.1:7701");
    o.self.m.vnodes = 4;
    o.self.incarnation = 5;
    o.clock = (moor_clock_if_t){.now_ms = now_ms, .timer_start = timer_start,
                                .timer_stop = timer_stop};
    o.transport = (moor_transport_if_t){.request = refuse};
    o.seed = 1;
    moor_gossip_params_default(&o.p);
    if (moor_gossip_new(&o, &g))
        abort();
    moor_gossip_start(g);
    moor_gossip_handle(g, method, strlen(method), p, size, 1, answered, &calls);
    if (calls != 1)
        abort();
    t = moor_gossip_table(g);
    for (uint32_t i = 0; i < t->n; i++) {
        const moor_member_t *a = &t->e[i].m;
        if (i > 0) {
            const moor_member_t *b = &t->e[i - 1].m;
            int c = memcmp(b->id, a->id, a->idlen < b->idlen ? a->idlen : b->idlen);
            if (c > 0 || (c == 0 && b->idlen >= a->idlen))
                abort();
        }
        if (a->idlen == 2 && memcmp(a->id, "n1", 2) == 0) {
            self_seen = 1;
            if (a->status != MOOR_MEMBER_UP || t->e[i].incarnation < 5)
                abort();
        }
    }
    if (!self_seen || moor_members_ring(t, &ring) != 0)
        abort();
    moor_ring_free(ring);
    moor_gossip_free(g);
    return 0;
}
