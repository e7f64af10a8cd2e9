/*
 * admin.c -- shared pieces of the admin commands (admin.h).
 */
#include "admin.h"

#include <msgpack.h>
#include <stdio.h>
#include <string.h>

#include "cli/json.h"
#include "util/err.h"
#include "util/mp.h"

int moor_admin_usage(const char *why)
{
    fprintf(stderr, "moor: %s (moor --help for usage)\n", why);
    return MOOR_EXIT_USAGE;
}

int moor_admin_call(moor_client_t *cl, const char *method, const moor_buf_t *params, uint32_t np,
                    moor_client_reply_t *r)
{
    int rc =
        moor_client_call(cl, method, params ? params->data : NULL, params ? params->len : 0, np, r);

    if (rc) {
        fprintf(stderr, "moor: %s: %s\n", method, moor_diag_msg(rc));
        return MOOR_EXIT_TRANSPORT;
    }
    if (r->error_code) {
        fprintf(stderr, "moor: %s: %s\n", r->error_code, r->error_msg);
        return MOOR_EXIT_ERROR_REPLY;
    }
    return 0;
}

int moor_admin_connect(const char *addr, const char *token, int timeout_ms, moor_client_t **cl)
{
    moor_client_reply_t r;
    moor_buf_t tok = MOOR_BUF_INIT;
    msgpack_packer pk;
    int rc;

    if ((rc = moor_client_connect(addr, timeout_ms, cl))) {
        fprintf(stderr, "moor: cannot connect to %s: %s\n", addr, moor_diag_msg(rc));
        return MOOR_EXIT_TRANSPORT;
    }
    if (!token)
        return 0;
    moor_mp_packer_init(&pk, &tok);
    msgpack_pack_str_with_body(&pk, token, strlen(token));
    rc = moor_admin_call(*cl, "auth", &tok, 1, &r);
    moor_buf_free(&tok);
    return rc;
}

int moor_admin_print_json(const char *res, size_t rlen, int pretty)
{
    moor_buf_t out = MOOR_BUF_INIT;
    const char *p = res;
    int rc = moor_json_from_mp(&p, res + rlen, pretty ? MOOR_JSON_PRETTY : 0, &out);

    if (rc == 0) {
        fwrite(out.data, 1, out.len, stdout);
        fputc('\n', stdout);
    } else {
        fprintf(stderr, "moor: cannot print the answer: %s\n", moor_diag_msg(rc));
    }
    moor_buf_free(&out);
    return rc ? MOOR_EXIT_TRANSPORT : 0;
}

uint64_t moor_admin_u64(const char *p, const char *end, const char *name)
{
    const char *v = moor_mp_map_find(p, end, name);
    uint64_t u;

    return v && moor_mp_read_uint(&v, end, &u) == 0 ? u : 0;
}

void moor_admin_str(const char *p, const char *end, const char *name, char *out, size_t osz)
{
    const char *v = moor_mp_map_find(p, end, name), *s;
    uint32_t n;
    size_t k = 0;

    if (!v || moor_mp_read_strbin(&v, end, &s, &n)) {
        snprintf(out, osz, "-");
        return;
    }
    for (uint32_t i = 0; i < n && k + 1 < osz; i++)
        out[k++] = (unsigned char)s[i] >= 0x20 && (unsigned char)s[i] < 0x7f ? s[i] : '?';
    out[k] = '\0';
}

void moor_admin_bytes(double b, char *out, size_t osz)
{
    const char *u[] = {"B", "KB", "MB", "GB", "TB"};
    int i = 0;

    while (b >= 1024 && i < 4)
        b /= 1024, i++;
    snprintf(out, osz, i ? "%.1f %s" : "%.0f %s", b, u[i]);
}

void moor_admin_table_init(moor_admin_table_t *t, unsigned ncols)
{
    memset(t, 0, sizeof(*t));
    t->ncols = ncols > 16 ? 16 : ncols;
}

void moor_admin_table_cell(moor_admin_table_t *t, const char *text)
{
    size_t len = strlen(text), col = t->ncells % t->ncols;

    if (moor_buf_append(&t->cells, text, len + 1))
        return; /* out of memory: the cell is left out */
    if (len > t->width[col])
        t->width[col] = len;
    t->ncells++;
}

void moor_admin_table_print(moor_admin_table_t *t)
{
    const char *p = t->cells.data;

    for (size_t i = 0; i < t->ncells; i++) {
        size_t col = i % t->ncols;
        int last = col + 1 == t->ncols || i + 1 == t->ncells;
        if (last)
            printf("%s\n", p);
        else
            printf("%-*s  ", (int)t->width[col], p);
        p += strlen(p) + 1;
    }
    moor_buf_free(&t->cells);
}
