/*
 * budget.c -- what a handler or resolver call may spend: instructions,
 * wall-clock time, and the memory of the Lua state.
 *
 * Instructions and time.  The state runs with the JIT off (compiled traces
 * skip hooks; see host.c).  While a call runs, the count hook fires every
 * HOOK_GRAIN instructions, charges them and checks the monotonic clock
 * against the call's deadline.  C functions that loop on behalf of Lua
 * (the matcher of pattern.c, tablib.c's sort and move, the codec) charge
 * their own steps through moor_budget_charge, so the budget holds inside
 * them too.  Once over, the hook is re-armed to fire on every instruction
 * and raises each time, so a pcall inside the handler cannot swallow the
 * stop.  Hooks are global to a LuaJIT state, so the running budget is a
 * thread-local pointer saved and restored around nested runs (a resolver
 * called from inside a handler's moor.get).  Once installed the hook stays
 * (with no budget running it returns at once): lua_sethook makes LuaJIT
 * re-patch its dispatch table whenever the hook mask changes, and turning
 * the hook on and off around every handler resume was about 5% of the CPU
 * of a trivial handler call; it is re-set only when its count must change.
 * The instruction count so left running means a budget's first charge can
 * come up to HOOK_GRAIN instructions early.
 *
 * Memory.  The state allocates through moor_heap_alloc, which counts the
 * bytes the state holds (realloc-based, so ASan sees every Lua object).
 * While user code runs (a budget entered with capped = 1), an allocation
 * that would take the total past the cap is refused: LuaJIT raises "not
 * enough memory" where it happened, nothing was allocated, and the budget
 * is marked OVER_MEMORY, so the call is stopped at its next instruction
 * like an over-budget one.  Once over, a small reserve (HEAP_RESERVE) past
 * the cap is allowed so unwinding and error messages can still allocate.
 * Host code outside user code (decoding arguments, pushing answers) is not
 * capped: its sizes are bounded by the protocol's limits, and an
 * allocation refused there would have no Lua frame to land in.  The host's
 * entry points may be reached from inside a running handler (the node
 * answers a kv or runs a resolver from ops.kv), so each suspends the
 * running budget first (moor_budget_suspend) and resumes it on the way
 * out: its code is never charged to, or capped by, the handler below.
 *
 * Threads: the loop thread (cur_budget is thread-local).
 */
#include <lauxlib.h>
#include <stdlib.h>

#include "lua_internal.h"
#include "util/clock.h"

#define HOOK_GRAIN 1000
#define HEAP_RESERVE ((size_t)1 << 20)

static _Thread_local moor_budget_t *cur_budget;

const char *moor_budget_over_text(int over)
{
    switch (over) {
    case MOOR_OVER_INSTR: return "over its instruction budget";
    case MOOR_OVER_TIME: return "over its time budget";
    case MOOR_OVER_MEMORY: return "over the Lua memory limit";
    default: return "running";
    }
}

static void count_hook(lua_State *L, lua_Debug *ar);

/* Installs count_hook every `count` instructions unless it already is. */
static void set_hook(lua_State *L, int count)
{
    if (lua_gethook(L) != count_hook || lua_gethookmask(L) != LUA_MASKCOUNT ||
        lua_gethookcount(L) != count)
        lua_sethook(L, count_hook, LUA_MASKCOUNT, count);
}

/* Arms the hook to fire on every instruction from now on. */
static void arm_every(lua_State *L, moor_budget_t *b)
{
    if (!b->every) {
        b->every = 1;
        set_hook(L, 1);
    }
}

/* Charges steps and sets b->over when a limit is passed. */
static void charge(moor_budget_t *b, uint64_t steps)
{
    if (b->over)
        return;
    b->used += steps;
    if (b->used > b->limit)
        b->over = MOOR_OVER_INSTR;
    else if (moor_clock_mono_ms() > b->deadline_ms)
        b->over = MOOR_OVER_TIME;
}

static void count_hook(lua_State *L, lua_Debug *ar)
{
    moor_budget_t *b = cur_budget;

    (void)ar;
    if (!b)
        return;
    if (!b->every)
        charge(b, HOOK_GRAIN);
    if (!b->over)
        return;
    arm_every(L, b);
    luaL_error(L, "stopped: %s", moor_budget_over_text(b->over));
}

void moor_budget_init(moor_budget_t *b, uint64_t instructions, unsigned timeout_ms,
                      moor_heap_t *heap)
{
    b->limit = instructions;
    b->used = 0;
    b->timeout_ms = timeout_ms;
    b->deadline_ms = moor_clock_mono_ms() + timeout_ms;
    b->over = MOOR_OVER_NONE;
    b->every = 0;
    b->heap = heap;
    b->capped = 0;
}

moor_budget_t *moor_budget_enter(lua_State *L, moor_budget_t *b, int capped)
{
    moor_budget_t *prev = cur_budget;

    cur_budget = b;
    b->capped = capped;
    b->every = b->over != MOOR_OVER_NONE;
    set_hook(L, b->every ? 1 : HOOK_GRAIN);
    return prev;
}

void moor_budget_leave(lua_State *L, moor_budget_t *prev)
{
    cur_budget = prev;
    set_hook(L, prev && prev->every ? 1 : HOOK_GRAIN); /* without a budget it returns at once */
}

moor_budget_t *moor_budget_suspend(void)
{
    moor_budget_t *running = cur_budget;

    cur_budget = NULL;
    return running;
}

void moor_budget_resume(lua_State *L, moor_budget_t *b)
{
    moor_budget_leave(L, b);
}

int moor_budget_charge(lua_State *L, unsigned steps)
{
    moor_budget_t *b = cur_budget;

    if (!b)
        return 0;
    charge(b, steps);
    if (!b->over)
        return 0;
    arm_every(L, b);
    return 1;
}

void moor_budget_tick(lua_State *L, unsigned steps)
{
    if (moor_budget_charge(L, steps))
        luaL_error(L, "stopped: %s", moor_budget_over_text(cur_budget->over));
}

void *moor_heap_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    moor_heap_t *hp = ud;
    moor_budget_t *b = cur_budget;
    void *p;

    if (!ptr)
        osize = 0;
    if (nsize == 0) {
        free(ptr);
        hp->used -= osize;
        return NULL;
    }
    if (nsize > osize && hp->cap && b && b->capped && b->heap == hp) {
        size_t grow = nsize - osize, limit = hp->cap + (b->over ? HEAP_RESERVE : 0);
        if (grow > limit || hp->used > limit - grow) {
            if (!b->over)
                b->over = MOOR_OVER_MEMORY;
            hp->refused++;
            return NULL;
        }
    }
    if (!(p = realloc(ptr, nsize)))
        return NULL;
    hp->used = hp->used - osize + nsize;
    if (hp->used > hp->peak)
        hp->peak = hp->used;
    return p;
}
