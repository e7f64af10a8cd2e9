/*
 * err.c -- error names, messages and the per-thread diagnostics slot.
 * The slot is thread-local, so no locking: each thread reports its own.
 */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local moor_diag_t diag_slot;

const char *moor_err_name(int code)
{
    switch (code) {
#define MOOR_ERR_NAME_(name, val, msg) \
    case (val): return #name;
        MOOR_ERR_MAP(MOOR_ERR_NAME_)
#undef MOOR_ERR_NAME_
    default: return "UNKNOWN";
    }
}

const char *moor_strerror(int code)
{
    switch (code) {
#define MOOR_ERR_MSG_(name, val, msg) \
    case (val): return msg;
        MOOR_ERR_MAP(MOOR_ERR_MSG_)
#undef MOOR_ERR_MSG_
    default:
        if (code < 0 && code > -1000)
            return strerror(-code);
        return "unknown error";
    }
}

const char *moor_err_wire(int code)
{
#define MOOR_ERR_WIRE_(c, name) \
    if (code == (c))            \
        return name;
    MOOR_ERR_WIRE_MAP(MOOR_ERR_WIRE_)
#undef MOOR_ERR_WIRE_
    return code < 0 && code > -1000 ? "IO_ERROR" : "INTERNAL";
}

int moor_err_from_wire(const char *name, size_t n)
{
#define MOOR_ERR_FROM_WIRE_(c, wname)                                          \
    if (n == sizeof(wname) - 1 && memcmp(name, wname, sizeof(wname) - 1) == 0) \
        return (c);
    MOOR_ERR_WIRE_MAP(MOOR_ERR_FROM_WIRE_)
#undef MOOR_ERR_FROM_WIRE_
    return MOOR_EPEER;
}

/* The arguments may point into diag_slot.msg, so the message is made in
 * `tmp` and only then copied over the slot. */
int moor_diag_set(const char *file, int line, int code, const char *fmt, ...)
{
    char tmp[sizeof(diag_slot.msg)];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    diag_slot.code = code;
    diag_slot.file = file;
    diag_slot.line = line;
    memcpy(diag_slot.msg, tmp, sizeof(tmp));
    return code;
}

int moor_diag_wrap_set(const char *file, int line, int code, int prev, const char *fmt, ...)
{
    char ctx[sizeof(diag_slot.msg)], was[sizeof(diag_slot.msg)];
    va_list ap;

    snprintf(was, sizeof(was), "%s", moor_diag_msg(prev));
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof(ctx), fmt, ap);
    va_end(ap);
    return moor_diag_set(file, line, code, "%s: %s", ctx, was);
}

const moor_diag_t *moor_diag_last(void)
{
    return &diag_slot;
}

const char *moor_diag_msg(int code)
{
    if (code != 0 && diag_slot.code == code && diag_slot.msg[0])
        return diag_slot.msg;
    return moor_strerror(code);
}

void moor_diag_clear(void)
{
    diag_slot.code = 0;
    diag_slot.file = NULL;
    diag_slot.line = 0;
    diag_slot.msg[0] = '\0';
}
