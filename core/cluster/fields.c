/*
 * fields.c -- reading the one map param of a peer request (fields.h).
 */
#include "fields.h"

#include <string.h>

#include "util/mp.h"

const char *moor_fields_read(const char *params, size_t plen, uint32_t nparams, moor_field_t *f,
                             size_t n)
{
    const char *p = params, *end = params + plen;
    uint32_t count;

    for (size_t i = 0; i < n; i++)
        f[i].v = f[i].end = NULL;
    if (nparams != 1)
        return "expected one map param";
    if (moor_mp_read_map(&p, end, &count))
        return "the param must be a map";
    while (count--) {
        const char *k, *v;
        uint32_t klen;
        size_t i;
        if (moor_mp_read_str(&p, end, &k, &klen))
            return "the map's keys must be str";
        v = p;
        if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
            return "a value is not MessagePack";
        for (i = 0; i < n; i++)
            if (strlen(f[i].name) == klen && memcmp(f[i].name, k, klen) == 0)
                break;
        if (i == n)
            continue;
        if (f[i].v)
            return "a field given twice";
        f[i].v = v;
        f[i].end = p;
    }
    return p == end ? NULL : "bytes after the map";
}

int moor_field_nil(const moor_field_t *f)
{
    const char *p = f->v;

    return !f->v || (moor_mp_read_nil(&p, f->end) == 0 && p == f->end);
}

int moor_field_strbin(const moor_field_t *f, const char **s, uint32_t *len)
{
    const char *p = f->v;

    return f->v && moor_mp_read_strbin(&p, f->end, s, len) == 0 && p == f->end ? 0 : -1;
}

int moor_field_uint(const moor_field_t *f, uint64_t *u)
{
    const char *p = f->v;

    return f->v && moor_mp_read_uint(&p, f->end, u) == 0 && p == f->end ? 0 : -1;
}

int moor_field_bool(const moor_field_t *f, int dflt, int *b)
{
    const char *p = f->v;
    int v;

    if (moor_field_nil(f)) {
        *b = dflt;
        return 0;
    }
    if (moor_mp_read_bool(&p, f->end, &v) || p != f->end)
        return -1;
    *b = v;
    return 0;
}
