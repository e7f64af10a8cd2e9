/*
 * test_config_diff.c -- which settings differ between two configs and
 * which of them a running node can take (core/lua/config_diff.c, the
 * table behind `moor reload`).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/config.h"

/* What moor_config_diff reported: "name" or "name!" (restart-only),
 * space-separated. */
typedef struct seen {
    char text[2048];
} seen_t;

static void on_diff(void *ud, const char *name, int restart)
{
    seen_t *s = ud;
    size_t n = strlen(s->text);

    snprintf(s->text + n, sizeof(s->text) - n, "%s%s%s", n ? " " : "", name, restart ? "!" : "");
}

static moor_config_t *config_new(void)
{
    moor_config_t *c = malloc(sizeof(*c));

    assert_non_null(c);
    moor_config_default(c);
    strcpy(c->node, "n1");
    return c;
}

/* Diffs a and b, checks the count against the names, and the names. */
static void expect(const moor_config_t *a, const moor_config_t *b, const char *want)
{
    seen_t s = {""};
    unsigned n = moor_config_diff(a, b, on_diff, &s), words = 0;

    for (const char *p = s.text; *p; p++)
        words += (p == s.text || p[-1] == ' ') && *p != ' ';
    if (strcmp(s.text, want) != 0 || n != words)
        fail_msg("diff: got \"%s\" (%u), expected \"%s\"", s.text, n, want);
}

static void test_same(void **state)
{
    moor_config_t *a = config_new(), *b = config_new();

    (void)state;
    expect(a, b, "");
    /* bytes past a string's NUL are not the config's */
    memset(b->log_file + 1, 'x', 8);
    expect(a, b, "");
    free(a);
    free(b);
}

static void test_restart_only(void **state)
{
    moor_config_t *a = config_new(), *b = config_new();

    (void)state;
    strcpy(b->node, "n2");
    b->listen_port = 7701;
    strcpy(b->listen_host, "127.0.0.2"); /* one setting: listen, once */
    strcpy(b->data_dir, "elsewhere");
    b->engine.memtable_bytes *= 2;
    b->value_max /= 2;
    strcpy(b->cluster_secret, "s");
    b->nseeds = 1;
    strcpy(b->seeds[0], "127.0.0.1:7000");
    b->resp_on = 1;
    b->resp_port = 6379;
    expect(a, b,
           "node! listen! data_dir! engine.memtable_mb! limits.value_max_mb! cluster_secret! "
           "resp_listen! seeds!");
    free(a);
    free(b);
}

static void test_live(void **state)
{
    moor_config_t *a = config_new(), *b = config_new();

    (void)state;
    b->max_conns = 10;
    b->output_hard *= 2;
    b->log_level = 0;
    b->handler_timeout_ms = 50;
    b->request_timeout_ms = 300;
    b->gossip.period_ms = 900;
    b->gossip.gossip_fanout = 5;
    b->sibling_max = 50;
    expect(a, b,
           "limits.max_conns limits.output_hard_mb log.level handler.timeout_ms "
           "request_timeout_ms sibling_max gossip.period_ms gossip.gossip_fanout");
    free(a);
    free(b);
}

static moor_space_cfg_t *add_space(moor_config_t *c, const char *name, int n, int r, int w,
                                   const char *resolver)
{
    moor_space_cfg_t *s = &c->spaces[c->nspaces++];

    memset(s, 0, sizeof(*s));
    snprintf(s->name, sizeof(s->name), "%s", name);
    s->n = n, s->r = r, s->w = w, s->sloppy = 1, s->grace_s = -1;
    snprintf(s->resolver, sizeof(s->resolver), "%s", resolver);
    return s;
}

static void test_spaces(void **state)
{
    moor_config_t *a = config_new(), *b = config_new();

    (void)state;
    add_space(a, "carts", 3, 2, 2, "");
    add_space(a, "tags", 3, MOOR_LEVEL_ONE, MOOR_LEVEL_ALL, "set_union");
    /* the same spaces in another order: no change */
    add_space(b, "tags", 3, MOOR_LEVEL_ONE, MOOR_LEVEL_ALL, "set_union");
    add_space(b, "carts", 3, 2, 2, "");
    expect(a, b, "");
    /* levels, resolver, sloppy: live; grace: restart-only */
    b->spaces[2].r = 1;
    b->spaces[2].w = MOOR_LEVEL_QUORUM;
    snprintf(b->spaces[2].resolver, sizeof(b->spaces[2].resolver), "lww");
    b->spaces[1].n = 5;
    b->spaces[1].sloppy = 0;
    b->spaces[1].grace_s = 60;
    expect(a, b,
           "spaces.carts.r spaces.carts.w spaces.carts.resolver spaces.tags.n spaces.tags.sloppy "
           "spaces.tags.tombstone_grace_s!");
    /* a space added or gone: restart-only, said once */
    add_space(b, "new", 1, 1, 1, "");
    expect(a, b, "spaces!");
    b->nspaces--;
    snprintf(b->spaces[2].name, sizeof(b->spaces[2].name), "cart");
    expect(a, b, "spaces!");
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same),
        cmocka_unit_test(test_restart_only),
        cmocka_unit_test(test_live),
        cmocka_unit_test(test_spaces),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
