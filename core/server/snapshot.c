/*
 * snapshot.c -- the `snapshot` method (snapshot.h): create, list and
 * delete point-in-time copies of the node's data in data_dir/snapshots.
 *
 * Each request becomes a job run on libuv's threadpool (the disk work:
 * the engine's checkpoint, copies, directory walks) whose answer is
 * packed back on the loop.  One create at a time (BUSY otherwise), which
 * is also what makes a leftover .tmp-* directory safe to remove: none is
 * in use when a create begins.
 */
#include "snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cluster/fields.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/file.h"
#include "util/log.h"
#include "util/mp.h"

#define NAME_MAX_LEN (20 + 1 + MOOR_SNAP_TAG_MAX) /* time, '-', tag */
#define NAME_BUF 128

enum { OP_CREATE, OP_LIST, OP_DELETE };

/* The node's small files a snapshot carries (snapshot.h says why). */
static const char *const small_files[] = {"MEMBERS", "HLC", "HLC.alone", "REPAIR", "REPAIR_OWED"};

struct moor_snap {
    uv_loop_t *loop;
    char dir[4096 + 16]; /* data_dir/snapshots */
    char data_dir[4096];
    moor_engine_t *engine;
    int creating; /* a create job is in flight (loop thread) */
    unsigned jobs;
};

typedef struct job {
    uv_work_t work;
    moor_snap_t *s;
    int op;
    char name[NAME_BUF];
    char tag[MOOR_SNAP_TAG_MAX + 1];
    moor_snap_done_fn done;
    void *ud;
    /* results, set on the threadpool */
    int rc;
    char msg[512];
    moor_engine_checkpoint_t ck;
    uint64_t small_bytes; /* small files copied */
    uint64_t ms;
    moor_buf_t out; /* list: the answer, packed on the threadpool */
} job_t;

int moor_snap_tag_ok(const char *tag, size_t len)
{
    if (len < 1 || len > MOOR_SNAP_TAG_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = tag[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* A name a snapshot could have: a tag-like word not starting with '.'. */
static int name_ok(const char *name, size_t len)
{
    return len <= NAME_MAX_LEN && name[0] != '.' && moor_snap_tag_ok(name, len);
}

moor_snap_t *moor_snap_new(uv_loop_t *loop, const char *data_dir, moor_engine_t *e)
{
    moor_snap_t *s = calloc(1, sizeof(*s));

    if (!s)
        return NULL;
    s->loop = loop;
    s->engine = e;
    snprintf(s->data_dir, sizeof(s->data_dir), "%s", data_dir);
    snprintf(s->dir, sizeof(s->dir), "%s/snapshots", data_dir);
    return s;
}

void moor_snap_free(moor_snap_t *s)
{
    free(s);
}

/* ---- on the threadpool ------------------------------------------------------- */

/* a, sep, b into out; a path too long for out is cut (then names nothing
 * that exists: the caller's open or stat fails and says so). */
static void join3(char *out, size_t size, const char *a, const char *sep, const char *b)
{
    if ((size_t)snprintf(out, size, "%s%s%s", a, sep, b) >= size)
        out[size - 1] = '\0';
}

static void join(char *out, size_t size, const char *a, const char *b)
{
    join3(out, size, a, "/", b);
}

static int fail_errno(job_t *j, const char *what, const char *path)
{
    int err = errno;

    snprintf(j->msg, sizeof(j->msg), "%s %.300s: %s", what, path, strerror(err));
    return err == ENOSPC || err == EDQUOT ? MOOR_ENOSPC : -err;
}

/* Removes dir and the files in it (a snapshot holds no subdirectories). */
static int remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int rc = 0;

    if (!d)
        return -errno;
    while ((de = readdir(d))) {
        char path[8300];
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        join(path, sizeof(path), dir, de->d_name);
        if (unlink(path) != 0 && !rc)
            rc = -errno;
    }
    closedir(d);
    if (rmdir(dir) != 0 && !rc)
        rc = -errno;
    return rc;
}

/* Bytes of the regular files in dir. */
static uint64_t dir_bytes(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    uint64_t sum = 0;

    while (d && (de = readdir(d))) {
        char path[8300];
        struct stat st;
        join(path, sizeof(path), dir, de->d_name);
        if (de->d_name[0] != '.' && stat(path, &st) == 0 && S_ISREG(st.st_mode))
            sum += (uint64_t)st.st_size;
    }
    if (d)
        closedir(d);
    return sum;
}

/* Copies data_dir/name into dir if it exists.  REPAIR_OWED is appended to
 * line by line while the node runs: only whole lines are taken. */
static int copy_small(job_t *j, const char *dir, const char *name)
{
    char src[8300], dst[8300];
    moor_buf_t b = MOOR_BUF_INIT;
    FILE *f;
    char chunk[8192];
    size_t got;
    int rc = 0;

    join(src, sizeof(src), j->s->data_dir, name);
    join(dst, sizeof(dst), dir, name);
    if (!(f = fopen(src, "rb")))
        return errno == ENOENT ? 0 : fail_errno(j, "cannot read", src);
    while (rc == 0 && (got = fread(chunk, 1, sizeof(chunk), f)) > 0)
        rc = moor_buf_append(&b, chunk, got);
    if (rc == 0 && ferror(f))
        rc = fail_errno(j, "cannot read", src);
    fclose(f);
    if (rc == 0 && !strcmp(name, "REPAIR_OWED"))
        while (b.len && b.data[b.len - 1] != '\n')
            b.len--;
    if (rc == 0 && (rc = moor_file_replace(dst, b.data ? b.data : "", b.len))) {
        snprintf(j->msg, sizeof(j->msg), "%s", moor_diag_msg(rc));
        if (rc == -ENOSPC || rc == -EDQUOT)
            rc = MOOR_ENOSPC;
    }
    if (rc == 0)
        j->small_bytes += b.len;
    moor_buf_free(&b);
    return rc;
}

/* Removes the .tmp-* directories a crash left (no create runs now). */
static void make_name(job_t *j);

static void remove_leftovers(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;

    while (d && (de = readdir(d))) {
        char path[8300];
        if (strncmp(de->d_name, ".tmp-", 5) != 0)
            continue;
        join(path, sizeof(path), dir, de->d_name);
        moor_log_warn("snapshot: removing %s, left by an unfinished snapshot", path);
        remove_dir(path);
    }
    if (d)
        closedir(d);
}

static void do_create(job_t *j)
{
    char tmp[8300], fin[8300];
    uint64_t t0 = moor_clock_mono_ns();
    int rc;

    if (mkdir(j->s->dir, 0755) != 0 && errno != EEXIST) {
        j->rc = fail_errno(j, "cannot create", j->s->dir);
        return;
    }
    remove_leftovers(j->s->dir);
    join(fin, sizeof(fin), j->s->dir, j->name);
    /* Two snapshots in one millisecond: the later one takes the next. */
    for (int tries = 0; access(fin, F_OK) == 0; tries++) {
        if (tries == 100) {
            snprintf(j->msg, sizeof(j->msg), "a snapshot named %s exists already", j->name);
            j->rc = MOOR_EEXIST;
            return;
        }
        usleep(1000);
        make_name(j);
        join(fin, sizeof(fin), j->s->dir, j->name);
    }
    join3(tmp, sizeof(tmp), j->s->dir, "/.tmp-", j->name);
    if ((rc = moor_engine_checkpoint(j->s->engine, tmp, &j->ck))) {
        snprintf(j->msg, sizeof(j->msg), "%s", moor_diag_msg(rc));
        j->rc = rc;
        return;
    }
    for (size_t i = 0; rc == 0 && i < sizeof(small_files) / sizeof(small_files[0]); i++)
        rc = copy_small(j, tmp, small_files[i]);
    if (rc == 0 && (rc = moor_file_sync_dir(tmp)) == 0) {
        if (rename(tmp, fin) != 0)
            rc = fail_errno(j, "cannot rename to", fin);
        else if ((rc = moor_file_sync_dir(j->s->dir)))
            snprintf(j->msg, sizeof(j->msg), "%s", moor_diag_msg(rc));
    } else if (rc && !j->msg[0]) {
        snprintf(j->msg, sizeof(j->msg), "%s", moor_diag_msg(rc));
    }
    if (rc == -ENOSPC || rc == -EDQUOT)
        rc = MOOR_ENOSPC;
    if (rc && access(tmp, F_OK) == 0)
        remove_dir(tmp);
    j->rc = rc;
    j->ms = (moor_clock_mono_ns() - t0) / 1000000;
}

/* Parses "YYYYMMDDTHHMMSS.mmmZ[-tag]": its time in unix ms (0 if the
 * name is not of that form) and where its tag starts (NULL: none). */
static uint64_t name_time(const char *name, const char **tag)
{
    struct tm tm;
    int ms = 0, used = 0;

    *tag = NULL;
    memset(&tm, 0, sizeof(tm));
    if (sscanf(name, "%4d%2d%2dT%2d%2d%2d.%3dZ%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms, &used) != 7 ||
        used != 20)
        return 0;
    if (name[used] == '-' && name[used + 1])
        *tag = name + used + 1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (uint64_t)timegm(&tm) * 1000 + (uint64_t)ms;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

static void do_list(job_t *j)
{
    DIR *d = opendir(j->s->dir);
    struct dirent *de;
    char **names = NULL;
    size_t n = 0, cap = 0;
    msgpack_packer pk;

    if (!d && errno != ENOENT) {
        j->rc = fail_errno(j, "cannot list", j->s->dir);
        return;
    }
    while (d && (de = readdir(d))) {
        char path[8300];
        struct stat st;
        join(path, sizeof(path), j->s->dir, de->d_name);
        if (de->d_name[0] == '.' || stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
            continue;
        if (n == cap) {
            char **nn = realloc(names, (cap ? cap * 2 : 16) * sizeof(*nn));
            if (!nn)
                break;
            names = nn;
            cap = cap ? cap * 2 : 16;
        }
        if ((names[n] = strdup(de->d_name)))
            n++;
    }
    if (d)
        closedir(d);
    if (n > 1)
        qsort(names, n, sizeof(*names), cmp_str);
    moor_mp_packer_init(&pk, &j->out);
    msgpack_pack_array(&pk, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        char path[8300];
        const char *tag;
        uint64_t t = name_time(names[i], &tag);
        join(path, sizeof(path), j->s->dir, names[i]);
        msgpack_pack_map(&pk, 5);
        pack_str(&pk, "name");
        pack_str(&pk, names[i]);
        pack_str(&pk, "tag");
        if (tag)
            pack_str(&pk, tag);
        else
            msgpack_pack_nil(&pk);
        pack_str(&pk, "created_ms");
        msgpack_pack_uint64(&pk, t);
        pack_str(&pk, "bytes");
        msgpack_pack_uint64(&pk, dir_bytes(path));
        pack_str(&pk, "path");
        pack_str(&pk, path);
        free(names[i]);
    }
    free(names);
}

static void do_delete(job_t *j)
{
    char path[8300];
    struct stat st;
    int rc;

    join(path, sizeof(path), j->s->dir, j->name);
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(j->msg, sizeof(j->msg), "no snapshot named '%s' (see snapshot {op = \"list\"})",
                 j->name);
        j->rc = MOOR_EINVAL;
        return;
    }
    if ((rc = remove_dir(path))) {
        errno = -rc;
        j->rc = fail_errno(j, "cannot delete", path);
    }
}

static void job_work(uv_work_t *w)
{
    job_t *j = w->data;

    if (j->op == OP_CREATE)
        do_create(j);
    else if (j->op == OP_LIST)
        do_list(j);
    else
        do_delete(j);
}

/* ---- on the loop ------------------------------------------------------------------ */

static void job_after(uv_work_t *w, int status)
{
    job_t *j = w->data;
    moor_snap_t *s = j->s;
    msgpack_packer pk;

    (void)status;
    s->jobs--;
    if (j->op == OP_CREATE)
        s->creating = 0;
    if (j->rc) {
        j->done(j->ud, moor_err_wire(j->rc), j->msg[0] ? j->msg : moor_strerror(j->rc), NULL, 0);
    } else if (j->op == OP_LIST) {
        j->done(j->ud, NULL, NULL, j->out.data, j->out.len);
    } else if (j->op == OP_DELETE) {
        j->done(j->ud, NULL, NULL, "\xc3", 1);
    } else {
        char path[8300];
        uint64_t copied = j->ck.copied_bytes + j->small_bytes;
        join(path, sizeof(path), s->dir, j->name);
        moor_mp_packer_init(&pk, &j->out);
        msgpack_pack_map(&pk, 7);
        pack_str(&pk, "name");
        pack_str(&pk, j->name);
        pack_str(&pk, "path");
        pack_str(&pk, path);
        pack_str(&pk, "bytes");
        msgpack_pack_uint64(&pk, j->ck.linked_bytes + copied);
        pack_str(&pk, "linked_bytes");
        msgpack_pack_uint64(&pk, j->ck.linked_bytes);
        pack_str(&pk, "copied_bytes");
        msgpack_pack_uint64(&pk, copied);
        pack_str(&pk, "tables");
        msgpack_pack_uint32(&pk, j->ck.tables);
        pack_str(&pk, "ms");
        msgpack_pack_uint64(&pk, j->ms);
        moor_log_info("snapshot %s: %llu bytes (%llu linked, %llu copied), %u tables, %llu ms",
                      path, (unsigned long long)(j->ck.linked_bytes + copied),
                      (unsigned long long)j->ck.linked_bytes, (unsigned long long)copied,
                      j->ck.tables, (unsigned long long)j->ms);
        j->done(j->ud, NULL, NULL, j->out.data, j->out.len);
    }
    moor_buf_free(&j->out);
    free(j);
}

/* The params into j: NULL, or what is wrong. */
static const char *read_params(job_t *j, const char *params, size_t plen, uint32_t np)
{
    moor_field_t f[3] = {{"op", 0, 0}, {"tag", 0, 0}, {"name", 0, 0}};
    const char *why, *s;
    uint32_t len;

    j->op = OP_CREATE;
    if (np == 0)
        return NULL;
    if (np > 1)
        return "snapshot takes at most one map param {op, tag, name}";
    if ((why = moor_fields_read(params, plen, np, f, 3)))
        return why;
    if (!moor_field_nil(&f[0])) {
        if (moor_field_strbin(&f[0], &s, &len))
            return "snapshot: op must be \"create\", \"list\" or \"delete\"";
        if (len == 6 && !memcmp(s, "create", 6))
            j->op = OP_CREATE;
        else if (len == 4 && !memcmp(s, "list", 4))
            j->op = OP_LIST;
        else if (len == 6 && !memcmp(s, "delete", 6))
            j->op = OP_DELETE;
        else
            return "snapshot: op must be \"create\", \"list\" or \"delete\"";
    }
    if (!moor_field_nil(&f[1])) {
        if (j->op != OP_CREATE)
            return "snapshot: tag is for op = \"create\"";
        if (moor_field_strbin(&f[1], &s, &len) || !moor_snap_tag_ok(s, len))
            return "snapshot: tag must be 1 to 64 of A-Z a-z 0-9 . _ -";
        memcpy(j->tag, s, len);
        j->tag[len] = '\0';
    }
    if (j->op == OP_DELETE) {
        if (moor_field_nil(&f[2]) || moor_field_strbin(&f[2], &s, &len) || !name_ok(s, len))
            return "snapshot: delete takes name = the name of a snapshot (see op = \"list\")";
        memcpy(j->name, s, len);
        j->name[len] = '\0';
    } else if (!moor_field_nil(&f[2])) {
        return "snapshot: name is for op = \"delete\"";
    }
    return NULL;
}

/* YYYYMMDDTHHMMSS.mmmZ of now, then -tag. */
static void make_name(job_t *j)
{
    uint64_t now = moor_clock_wall_ms();
    time_t t = (time_t)(now / 1000);
    struct tm tm;

    gmtime_r(&t, &tm);
    snprintf(j->name, sizeof(j->name), "%04d%02d%02dT%02d%02d%02d.%03dZ%s%.64s",
             (tm.tm_year + 1900) % 10000, (tm.tm_mon + 1) % 100, tm.tm_mday % 100, tm.tm_hour % 100,
             tm.tm_min % 100, tm.tm_sec % 100, (int)(now % 1000), j->tag[0] ? "-" : "", j->tag);
}

void moor_snap_exec(moor_snap_t *s, const char *params, size_t plen, uint32_t np,
                    moor_snap_done_fn done, void *ud)
{
    job_t *j = calloc(1, sizeof(*j));
    const char *why;
    int rc;

    if (!j) {
        done(ud, moor_err_wire(MOOR_ENOMEM), moor_strerror(MOOR_ENOMEM), NULL, 0);
        return;
    }
    if ((why = read_params(j, params, plen, np))) {
        free(j);
        done(ud, moor_err_wire(MOOR_EINVAL), why, NULL, 0);
        return;
    }
    if (j->op == OP_CREATE) {
        if (s->creating) {
            free(j);
            done(ud, moor_err_wire(MOOR_EBUSY),
                 "a snapshot is being taken; try again when it is done", NULL, 0);
            return;
        }
        make_name(j);
    }
    j->s = s;
    j->done = done;
    j->ud = ud;
    j->work.data = j;
    if ((rc = uv_queue_work(s->loop, &j->work, job_work, job_after))) {
        free(j);
        done(ud, moor_err_wire(MOOR_EINTERNAL), uv_strerror(rc), NULL, 0);
        return;
    }
    s->jobs++;
    if (j->op == OP_CREATE)
        s->creating = 1;
}

int moor_snap_busy(const moor_snap_t *s)
{
    return s && s->jobs > 0;
}
