/*
 * client.c -- the C client: MessagePack-RPC over one TCP connection with
 * plain sockets and poll(), no event loop.
 *
 * Design: the socket is non-blocking from connect on, and every wait is a
 * poll() bounded by the operation's deadline (one deadline per API call,
 * so a call never waits longer than timeout_ms in total).  Requests are
 * appended to `out` and written on flush (or once more than
 * MOOR_CLIENT_AUTOFLUSH bytes are queued); answers are read into `in` and
 * cut into frames with the resumable scan (rpc.h) and split with
 * moor_rpc_parse_answer.  While a flush waits for the
 * socket to take more bytes it also reads, so a server that stops reading
 * until we take its answers cannot deadlock us.
 *
 * A call waits for its own msgid; answers to earlier pipelined requests
 * that arrive meanwhile are copied, whole frames back to back, into
 * `stash`, and moor_client_recv hands those out first.
 *
 * Invariants: out.data[out_off..out.len) is unsent; in.data[in_off..in.len)
 * is read but not handed out; stash.data[stash_off..stash.len) holds whole
 * frames.  Buffers are compacted only when more bytes are about to be
 * read or stashed, which is why a reply (pointing into `in` or `stash`)
 * stays valid until the next call on the client.  Once `broken` is set the
 * connection is never used again.
 *
 * Threads: none of its own; a client belongs to one thread at a time.
 */
#include "net/client.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <msgpack.h>

#include "util/mp.h"
#include "net/rpc.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/utf8.h"

#define READ_CHUNK ((size_t)64 << 10)
#define NOWAIT_READ_MAX ((size_t)1 << 20) /* per io_nowait: fairness across clients */

struct moor_client {
    int fd;              /* non-blocking socket */
    int timeout_ms;      /* > 0 */
    int broken;          /* 0, or the transport error that ended the connection */
    uint32_t next_msgid; /* msgid of the next request (wraps) */
    uint64_t inflight;   /* requests sent minus answers handed out or stashed */
    moor_buf_t out;      /* unsent requests: [out_off, out.len) */
    size_t out_off;
    moor_buf_t in; /* read, not handed out: [in_off, in.len) */
    size_t in_off;
    moor_rpc_scan_t scan; /* progress through the partial frame at in_off */
    moor_buf_t stash;     /* whole frames set aside by call(): [stash_off, stash.len) */
    size_t stash_off;
    moor_buf_t params; /* scratch of the convenience wrappers */
    char ecode[64];    /* reply->error_code points here */
    char emsg[1024];   /* reply->error_msg points here */
};

/* ---- small helpers --------------------------------------------------------- */

static uint64_t deadline_of(const moor_client_t *c)
{
    return moor_clock_mono_ms() + (uint64_t)c->timeout_ms;
}

/* Records a transport error: the connection is unusable from now on. */
static int breaks(moor_client_t *c, int rc)
{
    if (!c->broken)
        c->broken = rc;
    return rc;
}

static int check_usable(moor_client_t *c)
{
    if (c->broken)
        return moor_diag(c->broken, "connection unusable after an earlier error: %s",
                         moor_strerror(c->broken));
    return 0;
}

/* Drops the consumed prefix of b when that is worth a memmove (or free). */
static void compact(moor_buf_t *b, size_t *off)
{
    if (*off == 0)
        return;
    if (*off == b->len) {
        b->len = 0;
        *off = 0;
    } else if (*off >= b->len / 2 || *off >= READ_CHUNK) {
        memmove(b->data, b->data + *off, b->len - *off);
        b->len -= *off;
        *off = 0;
    }
}

/* poll() on the socket until one of events or the deadline. 0 or error. */
static int wait_fd(moor_client_t *c, short events, uint64_t deadline, short *revents)
{
    for (;;) {
        uint64_t now = moor_clock_mono_ms();
        struct pollfd pfd = {c->fd, events, 0};
        int n;

        if (now >= deadline)
            return breaks(c, moor_diag(MOOR_ETIMEDOUT, "no answer within %d ms", c->timeout_ms));
        n = poll(&pfd, 1, (int)(deadline - now));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return breaks(c, moor_diag(-errno, "poll: %s", strerror(errno)));
        if (n > 0) {
            *revents = pfd.revents;
            return 0;
        }
    }
}

/* ---- reading and writing ------------------------------------------------------ */

/* One recv() into `in`.  1 if bytes came, 0 if none are available now, or
 * a transport error (the peer closing is -ECONNRESET). */
static int read_some(moor_client_t *c)
{
    ssize_t n;
    size_t room = c->in.len - c->in_off > READ_CHUNK ? c->in.len - c->in_off : READ_CHUNK;

    compact(&c->in, &c->in_off);
    if (moor_buf_reserve(&c->in, room))
        return breaks(c, moor_diag(MOOR_ENOMEM, "no memory for a %zu-byte read buffer", room));
    do
        n = recv(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len, 0);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        c->in.len += (size_t)n;
        return 1;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    if (n < 0)
        return breaks(c, moor_diag(-errno, "recv: %s", strerror(errno)));
    if (c->in.len > c->in_off)
        return breaks(c, moor_diag(-ECONNRESET,
                                   "server closed the connection in the middle of a frame "
                                   "(%zu bytes of it received)",
                                   c->in.len - c->in_off));
    return breaks(c, moor_diag(-ECONNRESET, "server closed the connection"));
}

/* One send() of what is queued.  0 (maybe partial) or a transport error. */
static int write_some(moor_client_t *c)
{
    ssize_t n;

    do
        n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n >= 0) {
        c->out_off += (size_t)n;
        if (c->out_off == c->out.len)
            c->out.len = c->out_off = 0;
        return 0;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return 0;
    return breaks(c, moor_diag(-errno, "send: %s", strerror(errno)));
}

/* Writes everything queued, reading meanwhile (see the file comment). */
static int flush_until(moor_client_t *c, uint64_t deadline)
{
    int rc;

    while (c->out.len > c->out_off) {
        short rev = 0;
        if ((rc = write_some(c)))
            return rc;
        if (c->out.len == c->out_off)
            break;
        if ((rc = wait_fd(c, POLLIN | POLLOUT, deadline, &rev)))
            return rc;
        if ((rev & (POLLIN | POLLHUP | POLLERR)) && (rc = read_some(c)) < 0)
            return rc;
    }
    return 0;
}

/* Waits for and reads more bytes into `in`. */
static int fill_until(moor_client_t *c, uint64_t deadline)
{
    for (;;) {
        short rev = 0;
        int rc = read_some(c);

        if (rc != 0)
            return rc < 0 ? rc : 0;
        if ((rc = wait_fd(c, POLLIN, deadline, &rev)))
            return rc;
    }
}

/* ---- frames -------------------------------------------------------------------- */

/* Length of the whole frame at the start of [p, p+len): > 0, 0 if more
 * bytes are needed, or a transport error.  The scan state makes a frame
 * that arrives in many reads cost one pass in total. */
static long frame_at(moor_client_t *c, const char *p, size_t len)
{
    long n = moor_rpc_scan_frame(&c->scan, p, len, MOOR_CLIENT_MAX_ANSWER);

    if (n == MOOR_ETOOLARGE)
        return breaks(
            c, moor_diag(MOOR_ETOOLARGE, "answer larger than %zu bytes", MOOR_CLIENT_MAX_ANSWER));
    if (n < 0)
        return breaks(c, moor_diag(MOOR_EPROTO, "server sent bytes that are not MessagePack"));
    return n;
}

static void copy_text(char *dst, size_t cap, const char *s, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

/* Splits a whole frame [1, msgid, error, result] into *r (the error's
 * code and message copied into the client, NUL-terminated). */
static int parse_reply(moor_client_t *c, const char *frame, size_t len, moor_client_reply_t *r)
{
    moor_rpc_answer_t a;

    if (moor_rpc_parse_answer(frame, len, &a) != 0)
        return breaks(c, moor_diag(MOOR_EPROTO,
                                   "server sent a frame that is not an answer [1, msgid, error, "
                                   "result]"));
    r->msgid = a.msgid;
    r->error_code = r->error_msg = NULL;
    if (a.is_error) {
        copy_text(c->ecode, sizeof(c->ecode), a.code, a.clen);
        copy_text(c->emsg, sizeof(c->emsg), a.msg, a.mlen);
        r->error_code = c->ecode;
        r->error_msg = c->emsg;
    }
    r->result = a.result;
    r->rlen = a.rlen;
    return 0;
}

static void took_answer(moor_client_t *c)
{
    if (c->inflight)
        c->inflight--;
}

/* Next stashed answer: 1 (filled), 0 (none). */
static int from_stash(moor_client_t *c, moor_client_reply_t *r)
{
    long n;
    int rc;

    if (c->stash_off == c->stash.len)
        return 0;
    n = moor_rpc_frame_len(c->stash.data + c->stash_off, c->stash.len - c->stash_off,
                           MOOR_CLIENT_MAX_ANSWER);
    if (n <= 0) /* cannot happen: only whole frames are stashed */
        return breaks(c, moor_diag(MOOR_EPROTO, "client stash is corrupt"));
    rc = parse_reply(c, c->stash.data + c->stash_off, (size_t)n, r);
    c->stash_off += (size_t)n;
    if (rc)
        return rc;
    took_answer(c);
    return 1;
}

/* Next whole answer in `in`: 1 (filled), 0 (need more bytes), or error. */
static int from_input(moor_client_t *c, moor_client_reply_t *r)
{
    long n = frame_at(c, c->in.data + c->in_off, c->in.len - c->in_off);
    int rc;

    if (n <= 0)
        return (int)n;
    rc = parse_reply(c, c->in.data + c->in_off, (size_t)n, r);
    c->in_off += (size_t)n;
    if (rc)
        return rc;
    took_answer(c);
    return 1;
}

/* ---- API ------------------------------------------------------------------------- */

/* Splits "host:port" or "[v6]:port" into host and port. */
static int split_addr(const char *addr, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *colon, *h = addr;
    size_t hlen;

    if (addr[0] == '[') {
        const char *rb = strchr(addr, ']');
        if (!rb || rb[1] != ':')
            goto bad;
        h = addr + 1;
        hlen = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon)
            goto bad;
        hlen = (size_t)(colon - addr);
    }
    if (hlen == 0 || hlen >= hcap || strlen(colon + 1) == 0 || strlen(colon + 1) >= pcap ||
        strspn(colon + 1, "0123456789") != strlen(colon + 1))
        goto bad;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    strcpy(port, colon + 1);
    return 0;
bad:
    return moor_diag(MOOR_EINVAL, "address '%s' is not host:port", addr);
}

/* Non-blocking connect to one address within the deadline: fd or error. */
static int connect_one(const struct addrinfo *ai, uint64_t deadline)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    int err = 0, one = 1;
    socklen_t elen = sizeof(err);

    if (fd < 0)
        return -errno;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (errno != EINPROGRESS) {
            err = -errno;
            goto fail;
        }
        for (;;) {
            uint64_t now = moor_clock_mono_ms();
            struct pollfd pfd = {fd, POLLOUT, 0};
            int n = now >= deadline ? 0 : poll(&pfd, 1, (int)(deadline - now));
            if (n < 0 && errno == EINTR)
                continue;
            if (n == 0) {
                err = MOOR_ETIMEDOUT;
                goto fail;
            }
            if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0) {
                err = -errno;
                goto fail;
            }
            if (err) {
                err = -err;
                goto fail;
            }
            break;
        }
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
fail:
    close(fd);
    return err;
}

int moor_client_connect(const char *addr, int timeout_ms, moor_client_t **out)
{
    char host[256], port[16];
    struct addrinfo hints = {0}, *res = NULL, *ai;
    moor_client_t *c;
    uint64_t deadline;
    int rc, fd = MOOR_EINVAL;

    *out = NULL;
    if (timeout_ms <= 0)
        timeout_ms = MOOR_CLIENT_TIMEOUT_MS;
    if ((rc = split_addr(addr, host, sizeof(host), port, sizeof(port))))
        return rc;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    if ((rc = getaddrinfo(host, port, &hints, &res)))
        return moor_diag(MOOR_EINVAL, "cannot resolve '%s': %s", host, gai_strerror(rc));
    deadline = moor_clock_mono_ms() + (uint64_t)timeout_ms;
    for (ai = res; ai; ai = ai->ai_next)
        if ((fd = connect_one(ai, deadline)) >= 0 || fd == MOOR_ETIMEDOUT)
            break;
    freeaddrinfo(res);
    if (fd < 0)
        return moor_diag(fd, "connect to %s: %s", addr, moor_strerror(fd));
    if (!(c = calloc(1, sizeof(*c)))) {
        close(fd);
        return moor_diag(MOOR_ENOMEM, "no memory for a client");
    }
    c->fd = fd;
    c->timeout_ms = timeout_ms;
    c->next_msgid = 1;
    moor_rpc_scan_init(&c->scan);
    *out = c;
    return 0;
}

void moor_client_close(moor_client_t *c)
{
    if (!c)
        return;
    close(c->fd);
    moor_buf_free(&c->out);
    moor_buf_free(&c->in);
    moor_buf_free(&c->stash);
    moor_buf_free(&c->params);
    free(c);
}

void moor_client_set_timeout(moor_client_t *c, int timeout_ms)
{
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : MOOR_CLIENT_TIMEOUT_MS;
}

/* The params must be exactly nparams whole objects: anything else would
 * desynchronise the stream, so it is refused before a byte is queued. */
static int check_params(const char *method, const char *params, size_t plen, uint32_t nparams)
{
    const char *p = params, *end = params + plen;

    if (!method || (plen && !params))
        return moor_diag(MOOR_EINVAL, "request without a method or params");
    for (uint32_t i = 0; i < nparams; i++)
        if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
            return moor_diag(MOOR_EINVAL, "'%s' param %u is not a whole MessagePack object", method,
                             i + 1);
    if (p != end)
        return moor_diag(MOOR_EINVAL, "'%s' params hold %zu bytes past %u objects", method,
                         (size_t)(end - p), nparams);
    return 0;
}

static long send_request(moor_client_t *c, const char *method, const char *params, size_t plen,
                         uint32_t nparams)
{
    uint32_t id;
    int rc;

    if ((rc = check_params(method, params, plen, nparams)))
        return rc;
    id = c->next_msgid++;

    if (c->out_off == c->out.len)
        c->out.len = c->out_off = 0;
    if ((rc = moor_rpc_encode_request(&c->out, id, method, params, plen, nparams)))
        return moor_diag(rc, "cannot encode the '%s' request: %s", method, moor_strerror(rc));
    c->inflight++;
    return (long)id;
}

long moor_client_send(moor_client_t *c, const char *method, const char *params, size_t plen,
                      uint32_t nparams)
{
    long id;
    int rc;

    if ((rc = check_usable(c)))
        return rc;
    if ((id = send_request(c, method, params, plen, nparams)) < 0)
        return id;
    if (c->out.len - c->out_off > MOOR_CLIENT_AUTOFLUSH && (rc = flush_until(c, deadline_of(c))))
        return rc;
    return id;
}

int moor_client_flush(moor_client_t *c)
{
    int rc = check_usable(c);

    return rc ? rc : flush_until(c, deadline_of(c));
}

int moor_client_recv(moor_client_t *c, moor_client_reply_t *reply)
{
    uint64_t deadline = deadline_of(c);
    int rc;

    if ((rc = check_usable(c)))
        return rc;
    if ((rc = from_stash(c, reply)))
        return rc < 0 ? rc : 0;
    if (c->inflight == 0 && c->in.len == c->in_off)
        return moor_diag(MOOR_EINVAL, "recv with no request in flight");
    if ((rc = flush_until(c, deadline)))
        return rc;
    while ((rc = from_input(c, reply)) == 0)
        if ((rc = fill_until(c, deadline)))
            return rc;
    return rc < 0 ? rc : 0;
}

/* Copies an answer for another msgid aside for a later recv(). */
static int stash_frame(moor_client_t *c, const char *frame, size_t len)
{
    compact(&c->stash, &c->stash_off);
    if (moor_buf_append(&c->stash, frame, len))
        return breaks(c, moor_diag(MOOR_ENOMEM, "no memory to keep a pipelined answer"));
    return 0;
}

int moor_client_call(moor_client_t *c, const char *method, const char *params, size_t plen,
                     uint32_t nparams, moor_client_reply_t *reply)
{
    uint64_t deadline = deadline_of(c);
    long id;
    int rc;

    if ((rc = check_usable(c)))
        return rc;
    if ((id = send_request(c, method, params, plen, nparams)) < 0)
        return (int)id;
    if ((rc = flush_until(c, deadline)))
        return rc;
    for (;;) {
        const char *frame = c->in.data + c->in_off;
        size_t before = c->in_off;

        rc = from_input(c, reply);
        if (rc < 0)
            return rc;
        if (rc == 0) {
            if ((rc = fill_until(c, deadline)))
                return rc;
            continue;
        }
        if (reply->msgid == (uint32_t)id)
            return 0;
        c->inflight++; /* stashed, not handed out yet */
        if ((rc = stash_frame(c, frame, c->in_off - before)))
            return rc;
    }
}

/* ---- event-loop use ------------------------------------------------------------- */

int moor_client_fd(const moor_client_t *c)
{
    return c->fd;
}

size_t moor_client_unsent(const moor_client_t *c)
{
    return c->out.len - c->out_off;
}

int moor_client_io_nowait(moor_client_t *c)
{
    size_t got = 0;
    int rc;

    if ((rc = check_usable(c)))
        return rc;
    if (c->out.len > c->out_off && (rc = write_some(c)))
        return rc;
    while (got < NOWAIT_READ_MAX) {
        size_t before = c->in.len - c->in_off;
        if ((rc = read_some(c)) <= 0)
            return rc;
        got += c->in.len - c->in_off - before;
    }
    return 0;
}

int moor_client_recv_nowait(moor_client_t *c, moor_client_reply_t *reply)
{
    int rc;

    if ((rc = check_usable(c)))
        return rc;
    if ((rc = from_stash(c, reply)))
        return rc;
    return from_input(c, reply);
}

/* ---- convenience wrappers ------------------------------------------------------- */

/* Keys go out as str when they are valid UTF-8 (readable in any tool) and
 * as bin otherwise; the node treats both alike. */
/* Packers return nonzero only when the buffer cannot grow. */
static int pack_key(msgpack_packer *pk, const void *key, size_t klen)
{
    if (moor_utf8_valid(key, klen))
        return msgpack_pack_str_with_body(pk, key, klen);
    return msgpack_pack_bin_with_body(pk, key, klen);
}

/* opts map with the given space (NULL: none) and ctx (NULL/0: none). */
static int pack_opts(msgpack_packer *pk, const char *space, const void *ctx, size_t ctxlen)
{
    int bad = msgpack_pack_map(pk, (space != NULL) + (ctx != NULL && ctxlen > 0));

    if (space) {
        bad |= msgpack_pack_str_with_body(pk, "space", 5);
        bad |= msgpack_pack_str_with_body(pk, space, strlen(space));
    }
    if (ctx && ctxlen) {
        bad |= msgpack_pack_str_with_body(pk, "ctx", 3);
        bad |= msgpack_pack_bin_with_body(pk, ctx, ctxlen);
    }
    return bad;
}

static int call_params(moor_client_t *c, int bad, const char *method, uint32_t np,
                       moor_client_reply_t *reply)
{
    if (bad)
        return moor_diag(MOOR_ENOMEM, "no memory to build the '%s' request", method);
    return moor_client_call(c, method, c->params.data, c->params.len, np, reply);
}

/* method(key, {space}): get and where. */
static int key_call(moor_client_t *c, const char *method, const char *space, const void *key,
                    size_t klen, moor_client_reply_t *reply)
{
    msgpack_packer pk;
    int bad;

    moor_buf_reset(&c->params);
    moor_mp_packer_init(&pk, &c->params);
    bad = pack_key(&pk, key, klen);
    bad |= pack_opts(&pk, space, NULL, 0);
    return call_params(c, bad, method, 2, reply);
}

int moor_client_get(moor_client_t *c, const char *space, const void *key, size_t klen,
                    moor_client_reply_t *reply)
{
    return key_call(c, "get", space, key, klen, reply);
}

int moor_client_put(moor_client_t *c, const char *space, const void *key, size_t klen,
                    const char *value_mp, size_t vlen, const void *ctx, size_t ctxlen,
                    moor_client_reply_t *reply)
{
    msgpack_packer pk;
    int bad;

    moor_buf_reset(&c->params);
    moor_mp_packer_init(&pk, &c->params);
    bad = pack_key(&pk, key, klen);
    bad |= moor_mp_pack_raw(&c->params, value_mp, vlen) != 0;
    bad |= pack_opts(&pk, space, ctx, ctxlen);
    return call_params(c, bad, "put", 3, reply);
}

int moor_client_del(moor_client_t *c, const char *space, const void *key, size_t klen,
                    const void *ctx, size_t ctxlen, moor_client_reply_t *reply)
{
    msgpack_packer pk;
    int bad;

    moor_buf_reset(&c->params);
    moor_mp_packer_init(&pk, &c->params);
    bad = pack_key(&pk, key, klen);
    bad |= pack_opts(&pk, space, ctx, ctxlen);
    return call_params(c, bad, "del", 2, reply);
}

int moor_client_where(moor_client_t *c, const char *space, const void *key, size_t klen,
                      moor_client_reply_t *reply)
{
    return key_call(c, "where", space, key, klen, reply);
}
