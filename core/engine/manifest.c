/*
 * manifest.c -- the MANIFEST: the whole list of live tables, encoded as in
 * manifest_format.h and replaced atomically on every change.
 *
 * Design: the list is small (one entry per table, a few thousand at most),
 * so it is rewritten whole rather than appended to as an edit log.  That
 * trades a little I/O per flush or compaction for a reader with no replay
 * logic: the file either decodes completely or is rejected.
 *
 * Durability: moor_file_replace (util/file.h): write MANIFEST.tmp,
 * fdatasync it, rename it over MANIFEST, fsync the directory.  A crash before the rename leaves the
 * old MANIFEST (and maybe a stale MANIFEST.tmp, which readers never look at and the next write
 * truncates); a crash after it leaves the new one.
 *
 * Untrusted input: the decoder treats the file as hostile.  It checks the
 * header, the exact body length and the CRC before parsing, then checks
 * every varint, every level and key length, and refuses a file count the
 * body is too short to hold before allocating anything for it.
 *
 * Threads: no shared state; a moor_manifest_t belongs to its caller.
 */
#include "manifest.h"

#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "manifest_format.h"
#include "util/crc32c.h"
#include "util/err.h"
#include "util/file.h"

/* Keys are internal keys: user key + 8-byte sequence/kind trailer. */
#define MANIFEST_MIN_KEY 8

/* Fewest body bytes one file entry can take: four 1-byte varints and two
 * keys of a 1-byte length plus MANIFEST_MIN_KEY bytes.  Bounds nfiles. */
#define MANIFEST_MIN_ENTRY (4 + 2 * (1 + MANIFEST_MIN_KEY))

#define MANIFEST_NAME "MANIFEST"

void moor_manifest_init(moor_manifest_t *m)
{
    memset(m, 0, sizeof(*m));
}

static void meta_free_keys(moor_file_meta_t *f)
{
    free(f->smallest);
    free(f->largest);
    f->smallest = f->largest = NULL;
}

void moor_manifest_clear(moor_manifest_t *m)
{
    for (size_t i = 0; i < m->nfiles; i++)
        meta_free_keys(&m->files[i]);
    free(m->files);
    moor_manifest_init(m);
}

/* The struct has no capacity field and callers may build m->files
 * themselves, so the real capacity is asked of the allocator: correct for
 * any malloc'ed array, and still geometric growth for moor_manifest_add. */
static int files_reserve(moor_manifest_t *m, size_t want)
{
    size_t have = m->files ? malloc_usable_size(m->files) / sizeof(*m->files) : 0;
    size_t cap = have > 4 ? have : 4;
    moor_file_meta_t *p;

    if (want <= have)
        return 0;
    while (cap < want)
        cap *= 2;
    if (cap > SIZE_MAX / sizeof(*p))
        return MOOR_ENOMEM;
    p = realloc(m->files, cap * sizeof(*p));
    if (!p)
        return MOOR_ENOMEM;
    m->files = p;
    return 0;
}

static char *dup_bytes(const char *p, size_t n)
{
    char *d = malloc(n ? n : 1);

    if (d && n)
        memcpy(d, p, n);
    return d;
}

int moor_manifest_add(moor_manifest_t *m, const moor_file_meta_t *f)
{
    moor_file_meta_t c = *f;

    if (files_reserve(m, m->nfiles + 1))
        return MOOR_ENOMEM;
    c.smallest = dup_bytes(f->smallest, f->smallest_len);
    c.largest = dup_bytes(f->largest, f->largest_len);
    if (!c.smallest || !c.largest) {
        meta_free_keys(&c);
        return MOOR_ENOMEM;
    }
    m->files[m->nfiles++] = c;
    return 0;
}

/* ---- encoding ------------------------------------------------------------ */

/* Refuses what the decoder would refuse, so a bug upstream fails the write
 * instead of leaving a MANIFEST that can never be opened again. */
static int check_meta(const moor_file_meta_t *f, size_t i)
{
    if (f->level < 0 || f->level >= MOOR_MAX_LEVELS)
        return moor_diag(MOOR_EINVAL, "manifest: file %zu (#%llu) has level %d", i,
                         (unsigned long long)f->number, f->level);
    if (f->smallest_len < MANIFEST_MIN_KEY || f->largest_len < MANIFEST_MIN_KEY)
        return moor_diag(
            MOOR_EINVAL, "manifest: file %zu (#%llu) has keys of %zu and %zu bytes, below %d", i,
            (unsigned long long)f->number, f->smallest_len, f->largest_len, MANIFEST_MIN_KEY);
    return 0;
}

static int encode_body(const moor_manifest_t *m, moor_buf_t *out)
{
    int rc = 0;

    rc |= moor_buf_put_varint(out, m->next_file);
    rc |= moor_buf_put_varint(out, m->last_seq);
    rc |= moor_buf_put_varint(out, m->log_number);
    rc |= moor_buf_put_varint(out, m->nfiles);
    for (size_t i = 0; i < m->nfiles && rc == 0; i++) {
        const moor_file_meta_t *f = &m->files[i];
        int bad = check_meta(f, i);
        if (bad)
            return bad;
        rc |= moor_buf_put_varint(out, (uint64_t)f->level);
        rc |= moor_buf_put_varint(out, f->number);
        rc |= moor_buf_put_varint(out, f->size);
        rc |= moor_buf_put_varint(out, f->entries);
        rc |= moor_buf_put_lenbytes(out, f->smallest, f->smallest_len);
        rc |= moor_buf_put_lenbytes(out, f->largest, f->largest_len);
    }
    return rc ? MOOR_ENOMEM : 0;
}

/* Appends the whole image to out.  0, MOOR_EINVAL (a meta the format cannot
 * hold; out is left as it was) or MOOR_ENOMEM. */
int moor_manifest_encode(const moor_manifest_t *m, moor_buf_t *out)
{
    size_t start = out->len, body_len;
    char hdr[MOOR_MANIFEST_HEADER];
    int rc;

    memset(hdr, 0, sizeof(hdr));
    if (moor_buf_append(out, hdr, sizeof(hdr)))
        return MOOR_ENOMEM;
    rc = encode_body(m, out);
    if (rc)
        goto fail;
    body_len = out->len - start - MOOR_MANIFEST_HEADER;
    if (body_len > UINT32_MAX) {
        rc = moor_diag(MOOR_EINVAL, "manifest: body of %zu bytes exceeds the format", body_len);
        goto fail;
    }
    moor_enc_fixed64(hdr, MOOR_MANIFEST_MAGIC);
    moor_enc_fixed32(hdr + 8, MOOR_MANIFEST_VERSION);
    moor_enc_fixed32(hdr + 12, (uint32_t)body_len);
    moor_enc_fixed32(hdr + 16, moor_crc32c_mask(moor_crc32c(
                                   out->data + start + MOOR_MANIFEST_HEADER, body_len)));
    memcpy(out->data + start, hdr, sizeof(hdr));
    return 0;
fail:
    out->len = start;
    return rc;
}

/* ---- decoding ------------------------------------------------------------ */

typedef struct decoder {
    const char *base; /* start of the image, for offsets in diagnostics */
    const char *p;    /* cursor, base <= p <= end */
    const char *end;
} decoder_t;

static int dec_varint(decoder_t *d, const char *what, uint64_t *v)
{
    if (moor_get_varint(&d->p, d->end, v))
        return moor_diag(MOOR_ECORRUPT, "manifest: bad varint (%s) at offset %zu", what,
                         (size_t)(d->p - d->base));
    return 0;
}

/* An internal key, copied out: length varint in range, >= 8 bytes. */
static int dec_key(decoder_t *d, const char *what, char **key, size_t *len)
{
    size_t at = (size_t)(d->p - d->base);
    const char *data;

    if (moor_get_lenbytes(&d->p, d->end, &data, len))
        return moor_diag(MOOR_ECORRUPT, "manifest: %s key at offset %zu overruns the body", what,
                         at);
    if (*len < MANIFEST_MIN_KEY)
        return moor_diag(MOOR_ECORRUPT,
                         "manifest: %s key at offset %zu is %zu bytes, shorter than %d", what, at,
                         *len, MANIFEST_MIN_KEY);
    if (!(*key = dup_bytes(data, *len)))
        return moor_diag(MOOR_ENOMEM, "manifest: out of memory for a %zu-byte key", *len);
    return 0;
}

static int dec_file(decoder_t *d, moor_file_meta_t *f)
{
    size_t at = (size_t)(d->p - d->base);
    uint64_t level;
    int rc;

    if ((rc = dec_varint(d, "level", &level)))
        return rc;
    if (level >= MOOR_MAX_LEVELS)
        return moor_diag(MOOR_ECORRUPT, "manifest: level %llu at offset %zu (max %d)",
                         (unsigned long long)level, at, MOOR_MAX_LEVELS - 1);
    f->level = (int)level;
    if ((rc = dec_varint(d, "number", &f->number)) || (rc = dec_varint(d, "size", &f->size)) ||
        (rc = dec_varint(d, "entries", &f->entries)))
        return rc;
    if ((rc = dec_key(d, "smallest", &f->smallest, &f->smallest_len)))
        return rc;
    return dec_key(d, "largest", &f->largest, &f->largest_len);
}

/* Magic, version, exact length and CRC; on success d covers the body. */
static int dec_header(const char *buf, size_t len, decoder_t *d)
{
    uint32_t version, body_len, crc;

    if (len < MOOR_MANIFEST_HEADER)
        return moor_diag(MOOR_ECORRUPT, "manifest: %zu bytes, shorter than the %d-byte header", len,
                         MOOR_MANIFEST_HEADER);
    if (moor_dec_fixed64(buf) != MOOR_MANIFEST_MAGIC)
        return moor_diag(MOOR_ECORRUPT, "manifest: bad magic at offset 0");
    version = moor_dec_fixed32(buf + 8);
    if (version > MOOR_MANIFEST_VERSION)
        return moor_diag(MOOR_EVERSION, "manifest: version %u is newer than this build's %d",
                         version, MOOR_MANIFEST_VERSION);
    if (version == 0)
        return moor_diag(MOOR_ECORRUPT, "manifest: version 0 at offset 8");
    body_len = moor_dec_fixed32(buf + 12);
    if (body_len != len - MOOR_MANIFEST_HEADER)
        return moor_diag(MOOR_ECORRUPT,
                         "manifest: header says %u body bytes at offset 12, file has %zu", body_len,
                         len - MOOR_MANIFEST_HEADER);
    crc = moor_crc32c_unmask(moor_dec_fixed32(buf + 16));
    if (crc != moor_crc32c(buf + MOOR_MANIFEST_HEADER, body_len))
        return moor_diag(MOOR_ECORRUPT, "manifest: body checksum mismatch (offset 16)");
    d->base = buf;
    d->p = buf + MOOR_MANIFEST_HEADER;
    d->end = buf + len;
    return 0;
}

static int dec_body(decoder_t *d, moor_manifest_t *m)
{
    uint64_t nfiles;
    size_t at;
    int rc;

    if ((rc = dec_varint(d, "next_file", &m->next_file)) ||
        (rc = dec_varint(d, "last_seq", &m->last_seq)) ||
        (rc = dec_varint(d, "log_number", &m->log_number)))
        return rc;
    at = (size_t)(d->p - d->base);
    if ((rc = dec_varint(d, "nfiles", &nfiles)))
        return rc;
    if (nfiles > (uint64_t)(d->end - d->p) / MANIFEST_MIN_ENTRY)
        return moor_diag(MOOR_ECORRUPT,
                         "manifest: %llu files at offset %zu cannot fit in %zu remaining bytes",
                         (unsigned long long)nfiles, at, (size_t)(d->end - d->p));
    if (nfiles && !(m->files = calloc((size_t)nfiles, sizeof(*m->files))))
        return moor_diag(MOOR_ENOMEM, "manifest: out of memory for %llu files",
                         (unsigned long long)nfiles);
    /* nfiles counts only fully decoded entries, so clear() frees exactly
     * the keys that were allocated. */
    for (m->nfiles = 0; m->nfiles < nfiles; m->nfiles++) {
        moor_file_meta_t *f = &m->files[m->nfiles];
        if ((rc = dec_file(d, f))) {
            meta_free_keys(f);
            return rc;
        }
    }
    if (d->p != d->end)
        return moor_diag(MOOR_ECORRUPT, "manifest: %zu stray bytes at offset %zu",
                         (size_t)(d->end - d->p), (size_t)(d->p - d->base));
    return 0;
}

int moor_manifest_decode(const char *buf, size_t len, moor_manifest_t *m)
{
    decoder_t d;
    int rc;

    moor_manifest_init(m);
    if ((rc = dec_header(buf, len, &d)) || (rc = dec_body(&d, m)))
        goto fail;
    return 0;
fail:
    moor_manifest_clear(m);
    return rc;
}

/* ---- files --------------------------------------------------------------- */

static int join_path(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);

    if (n < 0 || (size_t)n >= cap)
        return moor_diag(MOOR_EINVAL, "manifest: path %s/%s is too long", dir, name);
    return 0;
}

int moor_manifest_write(const char *dir, const moor_manifest_t *m)
{
    char path[PATH_MAX];
    moor_buf_t img = MOOR_BUF_INIT;
    int rc;

    if ((rc = join_path(path, sizeof(path), dir, MANIFEST_NAME)))
        return rc;
    if ((rc = moor_manifest_encode(m, &img))) {
        if (rc == MOOR_ENOMEM)
            moor_diag(rc, "manifest: out of memory encoding %zu files for %s", m->nfiles, path);
        goto out;
    }
    /* A failure after the rename (the directory fsync) leaves the new list
     * in place that may not survive a power loss: the caller still hears. */
    if ((rc = moor_file_replace(path, img.data, img.len)))
        moor_diag_wrap(rc, rc, "manifest");
out:
    moor_buf_free(&img);
    return rc;
}

/* Reads the whole of fd into out, however long the file turns out to be. */
static int read_all(int fd, moor_buf_t *out)
{
    struct stat st;
    size_t first = 4096;

    /* Sized from fstat, +1 so the EOF read needs no regrow; the loop still
     * copes with a file that changed size under us. */
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0)
        first = (size_t)st.st_size + 1;
    if (moor_buf_reserve(out, first))
        return MOOR_ENOMEM;
    for (;;) {
        ssize_t n;
        if (out->len == out->cap && moor_buf_reserve(out, 4096))
            return MOOR_ENOMEM;
        n = read(fd, out->data + out->len, out->cap - out->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return 0;
        out->len += (size_t)n;
    }
}

int moor_manifest_read(const char *dir, moor_manifest_t *m)
{
    char path[PATH_MAX];
    moor_buf_t img = MOOR_BUF_INIT;
    int fd, rc;

    moor_manifest_init(m);
    if ((rc = join_path(path, sizeof(path), dir, MANIFEST_NAME)))
        return rc;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return moor_diag(-errno, "manifest: open %s: %s", path, strerror(errno));
    rc = read_all(fd, &img);
    close(fd);
    if (rc) {
        moor_diag(rc, "manifest: read %s: %s", path, moor_strerror(rc));
        goto out;
    }
    if ((rc = moor_manifest_decode(img.data ? img.data : "", img.len, m)))
        moor_diag_wrap(rc, rc, "%s", path); /* the decoder's detail, with the file */
out:
    moor_buf_free(&img);
    return rc;
}
