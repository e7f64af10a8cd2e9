/*
 * hlc.c -- data_dir/HLC, the clock's saved high-water mark (hlc.h).
 */
#include "hlc.h"

#include <stdio.h>
#include <string.h>

#include "cluster/vclock.h"
#include "util/clock.h"
#include "util/crc32c.h"
#include "util/file.h"
#include "util/log.h"

static int mark_write(const char *path, uint64_t v)
{
    unsigned char b[12];
    uint32_t crc;

    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    crc = moor_crc32c(b, 8);
    for (int i = 0; i < 4; i++)
        b[8 + i] = (unsigned char)(crc >> (8 * i));
    return moor_file_replace(path, b, sizeof(b));
}

void moor_hlc_mark_init(moor_hlc_mark_t *m, uv_loop_t *loop, const char *data_dir, const char *name,
                        void (*settled)(void *ud), void *ud)
{
    memset(m, 0, sizeof(*m));
    m->loop = loop;
    m->settled = settled;
    m->ud = ud;
    snprintf(m->path, sizeof(m->path), "%s/%s", data_dir, name);
}

static uint64_t read_path(const char *path)
{
    unsigned char b[12];
    uint64_t v = 0;
    uint32_t crc = 0;
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(b, 1, sizeof(b), f) : 0;

    if (f)
        fclose(f);
    if (!f)
        return 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | b[i];
    for (int i = 3; i >= 0; i--)
        crc = crc << 8 | b[8 + i];
    if (n != sizeof(b) || crc != moor_crc32c(b, 8)) {
        moor_log_warn("%s is damaged; the clock restarts from the wall clock", path);
        return 0;
    }
    return v;
}

uint64_t moor_hlc_mark_read(const moor_hlc_mark_t *m)
{
    return read_path(m->path);
}

uint64_t moor_hlc_mark_read_file(const char *data_dir, const char *name)
{
    char path[4096 + 16];

    snprintf(path, sizeof(path), "%s/%s", data_dir, name);
    return read_path(path);
}

uint64_t moor_hlc_mark_floor(const moor_hlc_mark_t *m, uint64_t mark)
{
    uint64_t bound = moor_vclock_counter_bound(moor_clock_wall_ms());

    if (mark <= bound)
        return mark;
    moor_log_error("%s holds %llu, more than a day ahead of the clock; ignoring it "
                   "(versions stamped above it will look concurrent, never lost)",
                   m->path, (unsigned long long)mark);
    return 0;
}

static void written(moor_hlc_mark_t *m, uint64_t target, int rc)
{
    if (rc)
        moor_log_warn("cannot save the clock's high-water mark to %s: %s", m->path, strerror(-rc));
    else
        m->reserved = target;
}

/* Threadpool side: only path and target are read, rc written. */
static void work_cb(uv_work_t *w)
{
    moor_hlc_mark_t *m = w->data;

    m->rc = mark_write(m->path, m->target);
}

static void after_cb(uv_work_t *w, int status)
{
    moor_hlc_mark_t *m = w->data;

    written(m, m->target, status ? status : m->rc);
    m->busy = 0;
    if (m->settled)
        m->settled(m->ud);
}

int moor_hlc_mark_reserve(moor_hlc_mark_t *m, uint64_t hlc, int sync)
{
    uint64_t wall = moor_clock_wall_ms() * 1000;
    uint64_t base = hlc > wall ? hlc : wall;

    if (m->busy || base + MOOR_HLC_LEAD / 2 < m->reserved)
        return 0;
    m->target = base + MOOR_HLC_LEAD;
    if (sync) {
        written(m, m->target, mark_write(m->path, m->target));
        return 0;
    }
    m->work.data = m;
    if (uv_queue_work(m->loop, &m->work, work_cb, after_cb) != 0)
        return 0;
    m->busy = 1;
    return 1;
}
