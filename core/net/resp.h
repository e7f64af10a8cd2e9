/*
 * resp.h -- the Redis serialization protocol (RESP2): cutting commands
 * out of a byte stream and encoding replies.  Pure: no sockets, no loop.
 *
 * A command is either a multibulk array of bulk strings
 *
 *     *<argc>\r\n  then argc times  $<len>\r\n<len bytes>\r\n
 *
 * or an inline command: one line (ended by \n, an \r before it dropped)
 * of arguments separated by spaces or tabs, as telnet users type and
 * redis-cli may send.  A line starting with '*' is always multibulk.  An
 * empty line, `*0` and `*-1` are commands of no arguments (skipped).
 *
 * Limits, each judged as soon as a header announces it (the scanner never
 * waits for bytes it would refuse): an argument count over max_args, or
 * one whose smallest encoding could not end within max_frame; a bulk
 * length over max_bulk, or one ending past max_frame from the command's
 * start; an inline line over max_inline bytes.  Errors are worded the way
 * Redis words them ("Protocol error: ...") so clients show something
 * familiar.
 */
#ifndef MOOR_NET_RESP_H
#define MOOR_NET_RESP_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define MOOR_RESP_MAX_ARGS (1024u * 1024u) /* default max_args, as Redis */
#define MOOR_RESP_MAX_INLINE (64u * 1024u) /* default max_inline, as Redis */
#define MOOR_RESP_HEADER_MAX 32            /* "*N\r\n" / "$N\r\n" lines: at most this */

typedef struct moor_resp_limits {
    size_t max_frame;  /* bytes of one whole command */
    size_t max_bulk;   /* bytes of one argument */
    size_t max_inline; /* bytes of one inline line, \n included */
    uint32_t max_args; /* arguments of one command */
} moor_resp_limits_t;

/* Progress through one partly received command.  Opaque: initialise with
 * moor_resp_scan_init; any non-zero answer of moor_resp_scan resets it. */
typedef struct moor_resp_scan {
    size_t off;    /* bytes of the command already validated */
    uint32_t argc; /* announced by the multibulk header */
    uint32_t seen; /* bulk arguments complete */
    int multi;     /* 1: multibulk header read; 0: nothing read yet or inline */
} moor_resp_scan_t;

typedef struct moor_resp_arg {
    const char *p; /* borrowed from the command's bytes; not NUL-terminated */
    size_t len;
} moor_resp_arg_t;

/* ===== API ===== */

void moor_resp_scan_init(moor_resp_scan_t *s);

/* Length of the complete command at the start of buf, with *argc its
 * argument count (0: an empty command, to be skipped); 0 when more bytes
 * are needed; MOOR_EPROTO (malformed) or MOOR_ETOOLARGE (over a limit)
 * with the reason in moor_diag_msg.  REQUIRES: between calls that
 * returned 0, buf starts with the same bytes (it may move and grow). */
long moor_resp_scan(moor_resp_scan_t *s, const char *buf, size_t len, const moor_resp_limits_t *lim,
                    uint32_t *argc);

/* Splits a command that moor_resp_scan cut (len bytes, argc arguments)
 * into its first min(argc, max) arguments, borrowed from cmd.  Can't fail
 * on such a command; MOOR_EPROTO on bytes that are not one. */
int moor_resp_split(const char *cmd, size_t len, uint32_t argc, moor_resp_arg_t *args,
                    uint32_t max);

/* Reply encoders: each appends to b, 0 or MOOR_ENOMEM (b keeps what it
 * had).  moor_resp_error and moor_resp_status replace any \r or \n in
 * the text by a space (a simple string cannot hold them). */
int moor_resp_status(moor_buf_t *b, const char *s); /* +s */
int moor_resp_error(moor_buf_t *b, const char *s);  /* -s ("ERR ...", "NOAUTH ...") */
int moor_resp_errorf(moor_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int moor_resp_int(moor_buf_t *b, long long v);              /* :v */
int moor_resp_bulk(moor_buf_t *b, const void *p, size_t n); /* $n bytes */
int moor_resp_null(moor_buf_t *b);                          /* $-1 */
int moor_resp_array(moor_buf_t *b, long long n);            /* *n (-1: null array) */

#endif
