/*
 * ring.h -- the consistent-hash ring: which nodes hold a key.
 *
 * A ring is a pure function of a member table: each member owns `vnodes`
 * tokens on the 64-bit ring, token i = moor_hash_token(id | be32 i), so
 * every node that holds the same table derives the same ring and routes the
 * same way (DESIGN.md, Cluster).  A vnode with token t owns the range
 * (previous token, t]; a key belongs to the first vnode whose token is >=
 * the key's token, wrapping past the top.  Equal tokens (a hash collision)
 * are ordered by member id, so the lower id owns the range and the other
 * vnode owns nothing.
 *
 * The preference list of a key is the first N distinct members clockwise
 * from its token, distinct zones first: the walk picks members whose zone
 * is not yet in the list, then, if there are fewer zones than N, fills up
 * with the remaining members in clockwise order.  A member with an empty
 * zone is a zone of its own, so a ring without zones gives the plain first
 * N distinct members.  The first entry is the key's primary.
 *
 * Members with status `left` stay in the ring's table (so tools can show
 * them) but own no tokens; a member with `inactive` tokens owns only its
 * first vnodes - inactive ones (a join or leave in progress).  Every other status is on the ring; whether a
 * joining, suspect, down or leaving member should receive traffic is the
 * caller's decision, expressed through the filter of
 * moor_ring_preference_list_filter().
 *
 * A built ring is immutable and reference-counted: readers on any thread
 * may share it; membership changes build a new one.  No I/O.
 */
#ifndef MOOR_CLUSTER_RING_H
#define MOOR_CLUSTER_RING_H

#include <stddef.h>
#include <stdint.h>

#define MOOR_RING_ID_MAX 64         /* bytes of a member id (= MOOR_VC_ID_MAX) */
#define MOOR_RING_ADDR_MAX 128      /* address buffer, NUL included */
#define MOOR_RING_ZONE_MAX 64       /* zone buffer, NUL included */
#define MOOR_RING_VNODES_MAX 4096   /* tokens of one member */
#define MOOR_RING_MEMBERS_MAX 16384 /* members in one table */

/* Status of a member, shared with the membership module.  The values are
 * stable (they travel in handshakes); names via moor_member_status_name(). */
enum moor_member_status {
    MOOR_MEMBER_JOINING = 0, /* announced its tokens; data still streaming in */
    MOOR_MEMBER_UP = 1,
    MOOR_MEMBER_SUSPECT = 2, /* failure detector doubts it */
    MOOR_MEMBER_DOWN = 3,    /* declared dead; keeps its tokens */
    MOOR_MEMBER_LEAVING = 4, /* streaming its data away */
    MOOR_MEMBER_LEFT = 5     /* gone: owns no tokens */
};
#define MOOR_MEMBER_STATUS_COUNT 6

typedef struct moor_member {
    uint8_t idlen;                 /* 1..MOOR_RING_ID_MAX */
    char id[MOOR_RING_ID_MAX];     /* node id bytes (not NUL-terminated) */
    char addr[MOOR_RING_ADDR_MAX]; /* "host:port", NUL-terminated */
    char zone[MOOR_RING_ZONE_MAX]; /* NUL-terminated; "" = no zone */
    uint32_t vnodes;               /* 1..MOOR_RING_VNODES_MAX */
    int status;                    /* a moor_member_status */
    /* Tokens not (or no longer) on the ring, counted from the top: the
     * member owns tokens 0 .. vnodes - inactive - 1.  A joining member
     * starts with all of them inactive and switches them on one range at
     * a time as their data arrives; a leaving one switches them off from
     * the top as it hands their data over (README "Joining and leaving").
     * 0 for a member in no motion; values over vnodes count as vnodes. */
    uint32_t inactive;
} moor_member_t;

typedef struct moor_ring moor_ring_t; /* opaque, immutable once built */

/* Decides whether a member may appear in a preference list (1) or is
 * skipped (0); member is an index into the ring's table.  Called at most
 * once per member per list, on the caller's thread. */
typedef int (*moor_ring_filter_fn)(const moor_ring_t *ring, uint32_t member, void *arg);

/* TEST: the token of vnode i of a member, replacing the real derivation
 * (to force collisions). */
typedef uint64_t (*moor_ring_token_fn)(const char *id, size_t idlen, uint32_t i);

/* ===== API ===== */

/* "joining", "up", "suspect", "down", "leaving", "left"; "unknown" for any
 * other value.  Never NULL. */
const char *moor_member_status_name(int status);

/* The status named by s (len bytes), or MOOR_EINVAL (with diag). */
int moor_member_status_parse(const char *s, size_t len);

/* 1 if a member with this status may own tokens. */
static inline int moor_member_on_ring(int status)
{
    return status != MOOR_MEMBER_LEFT;
}

/* Tokens member m has on the ring: vnodes - inactive, 0 once it left. */
static inline uint32_t moor_member_tokens(const moor_member_t *m)
{
    if (!moor_member_on_ring(m->status) || m->inactive >= m->vnodes)
        return 0;
    return m->vnodes - m->inactive;
}

/* Token of vnode i of member id: moor_hash_token(id | be32 i).  Can't fail. */
uint64_t moor_ring_vnode_token(const char *id, size_t idlen, uint32_t i);

/* Token of a key in a space: moor_hash_token(u8 slen | space | key), the
 * same token moor_record_key() puts in front of the engine key.  0, or
 * MOOR_EINVAL (space over MOOR_SPACE_MAX = 255 bytes; *token unaltered). */
int moor_ring_key_token(const char *space, size_t slen, const char *key, size_t klen,
                        uint64_t *token);

/* Builds the ring of n members (copied; the table may be freed after).
 * The result does not depend on the order of the table: members are kept
 * sorted by id (memcmp order, shorter first), and member indices in every
 * other call refer to that order.  On success *out holds one reference.
 * MOOR_EINVAL (with diag) for an empty or oversized table, an id empty or
 * over MOOR_RING_ID_MAX, two members with one id, vnodes 0 or over
 * MOOR_RING_VNODES_MAX, an unknown status, an address or zone without its
 * NUL, or no member on the ring (all left); MOOR_ENOMEM.  On error *out is
 * untouched. */
int moor_ring_build(const moor_member_t *members, uint32_t n, moor_ring_t **out);

/* TEST: moor_ring_build() with another token derivation. */
int moor_ring_build_tokens(const moor_member_t *members, uint32_t n, moor_ring_token_fn token,
                           moor_ring_t **out);

/* Takes another reference; returns ring.  Thread-safe. */
moor_ring_t *moor_ring_ref(moor_ring_t *ring);

/* Drops a reference; the last one frees the ring.  NULL is a no-op.
 * Thread-safe. */
void moor_ring_free(moor_ring_t *ring);

/* The table: member i (sorted by id), NULL if i is out of range.  The
 * pointer is borrowed for as long as the caller holds its reference. */
uint32_t moor_ring_member_count(const moor_ring_t *ring);
const moor_member_t *moor_ring_member(const moor_ring_t *ring, uint32_t i);

/* Index of the member with this id, or MOOR_ENOENT. */
int moor_ring_find(const moor_ring_t *ring, const char *id, size_t idlen);

/* Vnodes on the ring (sum of vnodes over members not left), sorted by
 * token, ties by member index.  moor_ring_vnode() gives vnode i's token
 * and owner: 0 or MOOR_EINVAL (i out of range). */
uint32_t moor_ring_vnode_count(const moor_ring_t *ring);
int moor_ring_vnode(const moor_ring_t *ring, uint32_t i, uint64_t *token, uint32_t *member);

/* Index of the vnode that owns token: the first with a token >= it,
 * wrapping to 0.  Can't fail. */
uint32_t moor_ring_vnode_at(const moor_ring_t *ring, uint64_t token);

/* The range (*start, *end] of tokens vnode i owns, for range scans (when
 * start > end the range wraps: (start, 2^64-1] and [0, end]).  Every token
 * in it has the same preference list as *end.  Returns 1 for a non-empty
 * range (start == end then means the whole ring: one vnode, or every token
 * equal), 0 for an empty one (the vnode's token equals the one before it),
 * or MOOR_EINVAL (i out of range). */
int moor_ring_range_of(const moor_ring_t *ring, uint32_t i, uint64_t *start, uint64_t *end);

/* Fraction of the 2^64 tokens whose primary is member (0 for a member that
 * has left or an index out of range).  Computed at build; can't fail. */
double moor_ring_owned_share(const moor_ring_t *ring, uint32_t member);

/* The preference list of token: up to n distinct members (indices),
 * distinct zones first, into out (room for n).  *count = min(n, members on
 * the ring).  0, or MOOR_EINVAL (n == 0), MOOR_ENOMEM (rings of over 1024
 * members need scratch memory). */
int moor_ring_preference_list(const moor_ring_t *ring, uint64_t token, uint32_t n, uint32_t *out,
                              uint32_t *count);

/* The same, over only the members filter accepts (the list a ring built
 * without the others would give): e.g. the next healthy nodes for a sloppy
 * quorum.  *count = min(n, accepted members on the ring). */
int moor_ring_preference_list_filter(const moor_ring_t *ring, uint64_t token, uint32_t n,
                                     moor_ring_filter_fn filter, void *arg, uint32_t *out,
                                     uint32_t *count);

#endif
