/*
 * arena.c -- bump allocation over a singly linked list of blocks.
 * Invariant: ptr + left is the end of blocks' head, or left == 0 and ptr
 * NULL before the first allocation.
 */
#include "arena.h"

#include <stdint.h>
#include <stdlib.h>

struct moor_arena_block {
    moor_arena_block_t *next;
    max_align_t data[]; /* aligned payload */
};

void moor_arena_init(moor_arena_t *a)
{
    a->ptr = NULL;
    a->left = 0;
    a->blocks = NULL;
    a->usage = 0;
}

void moor_arena_destroy(moor_arena_t *a)
{
    moor_arena_block_t *b = a->blocks;

    while (b) {
        moor_arena_block_t *next = b->next;
        free(b);
        b = next;
    }
    moor_arena_init(a);
}

static void *new_block(moor_arena_t *a, size_t n)
{
    moor_arena_block_t *b = malloc(sizeof(*b) + n);

    if (!b)
        return NULL;
    b->next = a->blocks;
    a->blocks = b;
    a->usage += sizeof(*b) + n;
    return b->data;
}

void *moor_arena_alloc(moor_arena_t *a, size_t n)
{
    size_t pad = (8 - ((uintptr_t)a->ptr & 7)) & 7;
    char *p;

    if (n + pad <= a->left) {
        p = a->ptr + pad;
        a->ptr = p + n;
        a->left -= n + pad;
        return p;
    }
    if (n > MOOR_ARENA_BLOCK / 4) {
        /* Large: own block, keep bumping in the current one.  Insert the new
         * block behind the head so ptr/left still describe the head. */
        moor_arena_block_t *head = a->blocks;
        void *big = new_block(a, n);
        if (!big)
            return NULL;
        if (head) {
            moor_arena_block_t *nb = a->blocks;
            a->blocks = head;
            nb->next = head->next;
            head->next = nb;
        }
        return big;
    }
    p = new_block(a, MOOR_ARENA_BLOCK);
    if (!p)
        return NULL;
    a->ptr = p + n;
    a->left = MOOR_ARENA_BLOCK - n;
    return p;
}
