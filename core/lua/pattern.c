/*
 * pattern.c -- string.find, string.match, string.gmatch and string.gsub
 * for the sandbox, with Lua 5.1 pattern semantics as LuaJIT implements
 * them, written for Moor so that a match can be stopped.
 *
 * Why: the VM's count hook never fires inside a C function, and pattern
 * matching is backtracking: ("a"):rep(400):find(".-.-.-b") takes some 10^9
 * steps inside one call.  This matcher counts its steps and every
 * PAT_TICK of them charges them to the running call's budget
 * (moor_budget_tick, one step = one instruction): over budget, the call
 * stops exactly as the hook stops it (HANDLER_TIMEOUT).  Plain searches
 * (the fourth argument, or a pattern without special characters) use
 * memmem, which is linear.
 *
 * Semantics (checked against LuaJIT's own functions by
 * tests/unit/lua/test_pattern.c): classes %a %c %d %g %l %p %s %u %w %x %z
 * and their upper-case complements, ASCII only (bytes >= 0x80 are in no
 * class); sets [...] with ranges, %classes and a leading ^; '.'; the
 * quantifiers * + - ?; ^ anchors at the start of a find/match/gsub
 * pattern (in gmatch it is an ordinary character); $ anchors only as the
 * last character; captures, position captures () and back-references
 * %1-%9; %bxy; %f[set].  As in LuaJIT, a pattern ends at its first NUL
 * byte, a '%' at the end of a gsub replacement adds a NUL byte, and an
 * init past the end of the subject is clamped to it.  Recursion is
 * bounded (PAT_MAX_DEPTH, "pattern too complex"), as are captures (32).
 *
 * Threads: whichever thread runs the Lua state; no globals.
 */
#include <lauxlib.h>
#include <lua.h>
#include <stddef.h>
#include <string.h> /* memmem: _GNU_SOURCE comes from the build */

#include "lua_internal.h"

#define PAT_MAX_CAPTURES 32
#define PAT_MAX_DEPTH 200
#define PAT_TICK 4096
#define CAP_OPEN (-1) /* capture started, not closed yet */
#define CAP_POS (-2)  /* position capture: () */

typedef struct capture {
    const char *at; /* where it starts in the subject */
    ptrdiff_t len;  /* its length, or CAP_OPEN / CAP_POS */
} capture_t;

typedef struct matcher {
    lua_State *L;
    const char *subj, *subj_end; /* the subject */
    const char *pat_end;         /* the pattern ends here: at its first NUL */
    int depth;                   /* nested match_here calls */
    int ncap;                    /* captures started */
    unsigned steps;              /* since the budget was last charged */
    capture_t cap[PAT_MAX_CAPTURES];
} matcher_t;

/* ---- character classes (ASCII, like LuaJIT's lj_char) ----------------------- */

static int is_lower(unsigned c)
{
    return c >= 'a' && c <= 'z';
}
static int is_upper(unsigned c)
{
    return c >= 'A' && c <= 'Z';
}
static int is_digit(unsigned c)
{
    return c >= '0' && c <= '9';
}
static int is_alpha(unsigned c)
{
    return is_lower(c) || is_upper(c);
}
static int is_graph(unsigned c)
{
    return c > 32 && c < 127;
}

/* Whether byte c is in class cl (the letter after '%'); a letter that
 * names no class, or any other character, stands for itself. */
static int in_class(unsigned c, unsigned cl)
{
    unsigned lower = is_upper(cl) ? cl + 32 : cl;
    int in;

    switch (lower) {
    case 'a': in = is_alpha(c); break;
    case 'c': in = c < 32 || c == 127; break;
    case 'd': in = is_digit(c); break;
    case 'g': in = is_graph(c); break;
    case 'l': in = is_lower(c); break;
    case 'p': in = is_graph(c) && !is_alpha(c) && !is_digit(c); break;
    case 's': in = c == ' ' || (c >= '\t' && c <= '\r'); break;
    case 'u': in = is_upper(c); break;
    case 'w': in = is_alpha(c) || is_digit(c); break;
    case 'x': in = is_digit(c) || ((c | 32) >= 'a' && (c | 32) <= 'f'); break;
    case 'z': in = c == 0; break;
    default: return cl == c;
    }
    return is_upper(cl) ? !in : in;
}

/* Whether c is in the set that opens at p ('[') and closes at close (']'). */
static int in_set(unsigned c, const unsigned char *p, const unsigned char *close)
{
    int hit = 1;

    p++;
    if (*p == '^') {
        hit = 0;
        p++;
    }
    for (; p < close; p++) {
        if (*p == '%') {
            p++;
            if (in_class(c, *p))
                return hit;
        } else if (p + 2 < close && p[1] == '-') {
            if (p[0] <= c && c <= p[2])
                return hit;
            p += 2;
        } else if (*p == c) {
            return hit;
        }
    }
    return !hit;
}

/* ---- the matcher ---------------------------------------------------------- */

static void tick(matcher_t *m)
{
    if (++m->steps >= PAT_TICK) {
        m->steps = 0;
        moor_budget_tick(m->L, PAT_TICK);
    }
}

/* The end of the single-character item at p: past "%x", "[...]" or one
 * character. */
static const char *item_end(matcher_t *m, const char *p)
{
    if (*p == '%') {
        if (p + 1 >= m->pat_end)
            luaL_error(m->L, "malformed pattern (ends with '%%')");
        return p + 2;
    }
    if (*p != '[')
        return p + 1;
    p++;
    if (p < m->pat_end && *p == '^')
        p++;
    /* the first member is taken as it is, even a ']' */
    do {
        if (p >= m->pat_end)
            luaL_error(m->L, "malformed pattern (missing ']')");
        if (*p++ == '%' && p < m->pat_end)
            p++;
    } while (p >= m->pat_end || *p != ']');
    return p + 1;
}

/* Whether the subject byte at s matches the item [p, ep). */
static int item_match(const matcher_t *m, const char *s, const char *p, const char *ep)
{
    unsigned c;

    if (s >= m->subj_end)
        return 0;
    c = (unsigned char)*s;
    switch (*p) {
    case '.': return 1;
    case '%': return in_class(c, (unsigned char)p[1]);
    case '[': return in_set(c, (const unsigned char *)p, (const unsigned char *)ep - 1);
    default: return (unsigned char)*p == c;
    }
}

static const char *match_here(matcher_t *m, const char *s, const char *p);

/* Greedy: as many repetitions as match, then back off one at a time. */
static const char *repeat_max(matcher_t *m, const char *s, const char *p, const char *ep)
{
    ptrdiff_t n = 0;

    while (item_match(m, s + n, p, ep)) {
        n++;
        tick(m);
    }
    for (; n >= 0; n--) {
        const char *r = match_here(m, s + n, ep + 1);
        if (r)
            return r;
    }
    return NULL;
}

/* Lazy: try the rest first, then one more repetition. */
static const char *repeat_min(matcher_t *m, const char *s, const char *p, const char *ep)
{
    for (;;) {
        const char *r = match_here(m, s, ep + 1);
        if (r)
            return r;
        if (!item_match(m, s, p, ep))
            return NULL;
        s++;
    }
}

static const char *open_capture(matcher_t *m, const char *s, const char *p, ptrdiff_t what)
{
    const char *r;

    if (m->ncap >= PAT_MAX_CAPTURES)
        luaL_error(m->L, "too many captures");
    m->cap[m->ncap].at = s;
    m->cap[m->ncap].len = what;
    m->ncap++;
    if (!(r = match_here(m, s, p)))
        m->ncap--;
    return r;
}

static const char *close_capture(matcher_t *m, const char *s, const char *p)
{
    const char *r;
    int i = m->ncap - 1;

    while (i >= 0 && m->cap[i].len != CAP_OPEN)
        i--;
    if (i < 0)
        luaL_error(m->L, "invalid pattern capture");
    m->cap[i].len = s - m->cap[i].at;
    if (!(r = match_here(m, s, p)))
        m->cap[i].len = CAP_OPEN;
    return r;
}

/* %bxy at s (p points at x). */
static const char *balanced(matcher_t *m, const char *s, const char *p)
{
    int open = 1;

    if (p + 1 >= m->pat_end)
        luaL_error(m->L, "unbalanced pattern");
    if (s >= m->subj_end || *s != p[0])
        return NULL;
    while (++s < m->subj_end) {
        tick(m);
        if (*s == p[1]) {
            if (--open == 0)
                return s + 1;
        } else if (*s == p[0]) {
            open++;
        }
    }
    return NULL;
}

/* %1..%9: the text of a closed capture again.  A position capture never
 * matches. */
static const char *backref(matcher_t *m, const char *s, int digit)
{
    int i = digit - '1';
    size_t len;

    if (i < 0 || i >= m->ncap || m->cap[i].len == CAP_OPEN)
        luaL_error(m->L, "invalid capture index");
    if (m->cap[i].len < 0)
        return NULL;
    len = (size_t)m->cap[i].len;
    if ((size_t)(m->subj_end - s) >= len && memcmp(m->cap[i].at, s, len) == 0)
        return s + len;
    return NULL;
}

/* %f[set] at s: the previous byte (NUL at the start) is not in the set
 * and the current one (NUL at the end) is.  Returns the pattern after the
 * set, or NULL. */
static const char *frontier(matcher_t *m, const char *s, const char *p)
{
    const char *ep;
    unsigned prev, cur;

    if (p >= m->pat_end || *p != '[')
        luaL_error(m->L, "missing '[' after '%%f' in pattern");
    ep = item_end(m, p);
    prev = s > m->subj ? (unsigned char)s[-1] : 0;
    cur = s < m->subj_end ? (unsigned char)*s : 0;
    if (in_set(prev, (const unsigned char *)p, (const unsigned char *)ep - 1) ||
        !in_set(cur, (const unsigned char *)p, (const unsigned char *)ep - 1))
        return NULL;
    return ep;
}

/* Matches pattern p at subject position s; returns where the match ends
 * or NULL.  Items that need no backtracking loop here; quantifiers and
 * captures recurse. */
static const char *match_body(matcher_t *m, const char *s, const char *p)
{
    for (;;) {
        const char *ep, *r;
        int ok;

        tick(m);
        if (p >= m->pat_end)
            return s;
        if (*p == '(') {
            if (p + 1 < m->pat_end && p[1] == ')')
                return open_capture(m, s, p + 2, CAP_POS);
            return open_capture(m, s, p + 1, CAP_OPEN);
        }
        if (*p == ')')
            return close_capture(m, s, p + 1);
        if (*p == '$' && p + 1 == m->pat_end)
            return s == m->subj_end ? s : NULL;
        if (*p == '%' && p + 1 < m->pat_end) {
            if (p[1] == 'b') {
                if (!(s = balanced(m, s, p + 2)))
                    return NULL;
                p += 4;
                continue;
            }
            if (p[1] == 'f') {
                if (!(p = frontier(m, s, p + 2)))
                    return NULL;
                continue;
            }
            if (is_digit((unsigned char)p[1])) {
                if (!(s = backref(m, s, p[1])))
                    return NULL;
                p += 2;
                continue;
            }
        }
        ep = item_end(m, p);
        ok = item_match(m, s, p, ep);
        switch (ep < m->pat_end ? *ep : '\0') {
        case '?':
            if (ok && (r = match_here(m, s + 1, ep + 1)))
                return r;
            p = ep + 1;
            continue;
        case '*': return repeat_max(m, s, p, ep);
        case '+': return ok ? repeat_max(m, s + 1, p, ep) : NULL;
        case '-': return repeat_min(m, s, p, ep);
        default:
            if (!ok)
                return NULL;
            s++;
            p = ep;
        }
    }
}

static const char *match_here(matcher_t *m, const char *s, const char *p)
{
    const char *r;

    if (++m->depth > PAT_MAX_DEPTH)
        luaL_error(m->L, "pattern too complex");
    r = match_body(m, s, p);
    m->depth--;
    return r;
}

/* ---- captures to Lua -------------------------------------------------------- */

/* Pushes capture i; with no captures at all, capture 0 is the whole
 * match [s, e). */
static void push_capture(matcher_t *m, int i, const char *s, const char *e)
{
    if (i >= m->ncap) {
        if (i != 0)
            luaL_error(m->L, "invalid capture index");
        lua_pushlstring(m->L, s, (size_t)(e - s));
    } else if (m->cap[i].len == CAP_OPEN) {
        luaL_error(m->L, "unfinished capture");
    } else if (m->cap[i].len == CAP_POS) {
        lua_pushinteger(m->L, m->cap[i].at - m->subj + 1);
    } else {
        lua_pushlstring(m->L, m->cap[i].at, (size_t)m->cap[i].len);
    }
}

/* Pushes every capture, or the whole match when there are none and s is
 * given; returns how many. */
static int push_captures(matcher_t *m, const char *s, const char *e)
{
    int n = m->ncap == 0 && s ? 1 : m->ncap;

    luaL_checkstack(m->L, n, "too many captures");
    for (int i = 0; i < n; i++)
        push_capture(m, i, s, e);
    return n;
}

/* ---- the library functions -------------------------------------------------- */

static void matcher_init(matcher_t *m, lua_State *L, const char *s, size_t sl, const char *p,
                         size_t pl)
{
    const char *nul = memchr(p, '\0', pl);

    m->L = L;
    m->subj = s;
    m->subj_end = s + sl;
    m->pat_end = nul ? nul : p + pl;
    m->depth = 0;
    m->ncap = 0;
    m->steps = 0;
}

/* Whether p has any of the characters that make it a pattern. */
static int has_specials(const char *p, size_t pl)
{
    for (size_t i = 0; i < pl; i++)
        if (p[i] && strchr("^$*+?.([%-", p[i]))
            return 1;
    return 0;
}

/* 0-based start of a search from a 1-based (or negative) init, clamped to
 * [0, len]. */
static size_t start_of(lua_Integer init, size_t len)
{
    if (init < 0)
        init += (lua_Integer)len;
    else
        init--;
    if (init < 0)
        return 0;
    return (size_t)init > len ? len : (size_t)init;
}

static int find_or_match(lua_State *L, int find)
{
    size_t sl, pl;
    const char *s = luaL_checklstring(L, 1, &sl), *p = luaL_checklstring(L, 2, &pl), *from;
    size_t init = start_of(luaL_optinteger(L, 3, 1), sl);
    int anchored;
    matcher_t m;

    if (find && (lua_toboolean(L, 4) || !has_specials(p, pl))) {
        const char *at = memmem(s + init, sl - init, p, pl);
        if (!at) {
            lua_pushnil(L);
            return 1;
        }
        lua_pushinteger(L, at - s + 1);
        lua_pushinteger(L, (lua_Integer)(at - s + pl));
        return 2;
    }
    matcher_init(&m, L, s, sl, p, pl);
    anchored = m.pat_end > p && *p == '^';
    if (anchored)
        p++;
    from = s + init;
    do {
        const char *e;
        m.ncap = 0;
        m.depth = 0;
        if ((e = match_here(&m, from, p))) {
            if (!find)
                return push_captures(&m, from, e);
            lua_pushinteger(L, from - s + 1);
            lua_pushinteger(L, e - s);
            return push_captures(&m, NULL, NULL) + 2;
        }
    } while (from++ < m.subj_end && !anchored);
    lua_pushnil(L);
    return 1;
}

static int l_find(lua_State *L)
{
    return find_or_match(L, 1);
}

static int l_match(lua_State *L)
{
    return find_or_match(L, 0);
}

/* The gmatch iterator: upvalues subject, pattern, next 0-based position. */
static int gmatch_next(lua_State *L)
{
    size_t sl, pl;
    const char *s = lua_tolstring(L, lua_upvalueindex(1), &sl);
    const char *p = lua_tolstring(L, lua_upvalueindex(2), &pl);
    lua_Integer pos = lua_tointeger(L, lua_upvalueindex(3));
    matcher_t m;

    matcher_init(&m, L, s, sl, p, pl);
    for (const char *from = s + pos; from <= m.subj_end; from++) {
        const char *e;
        m.ncap = 0;
        m.depth = 0;
        if ((e = match_here(&m, from, p))) {
            /* after an empty match, the next search starts one further */
            lua_pushinteger(L, (e - s) + (e == from));
            lua_replace(L, lua_upvalueindex(3));
            return push_captures(&m, from, e);
        }
    }
    return 0;
}

static int l_gmatch(lua_State *L)
{
    luaL_checkstring(L, 1);
    luaL_checkstring(L, 2);
    lua_settop(L, 2);
    lua_pushinteger(L, 0);
    lua_pushcclosure(L, gmatch_next, 3);
    return 1;
}

/* gsub with a string replacement: %0 is the match, %1-%9 captures, '%'
 * before anything else is that character. */
static void add_string(matcher_t *m, luaL_Buffer *b, const char *s, const char *e)
{
    size_t rl;
    const char *r = lua_tolstring(m->L, 3, &rl);

    for (size_t i = 0; i < rl; i++) {
        char c = r[i];
        if (c != '%') {
            luaL_addchar(b, c);
            continue;
        }
        c = ++i < rl ? r[i] : '\0';
        if (!is_digit((unsigned char)c)) {
            luaL_addchar(b, c);
        } else if (c == '0') {
            luaL_addlstring(b, s, (size_t)(e - s));
        } else {
            push_capture(m, c - '1', s, e);
            luaL_addvalue(b);
        }
    }
}

/* gsub with a table or function: its value replaces the match, unless it
 * is false or nil (the match stays). */
static void add_value(matcher_t *m, luaL_Buffer *b, const char *s, const char *e, int type)
{
    lua_State *L = m->L;

    if (type == LUA_TFUNCTION) {
        int n;
        lua_pushvalue(L, 3);
        n = push_captures(m, s, e);
        lua_call(L, n, 1);
    } else {
        push_capture(m, 0, s, e);
        lua_gettable(L, 3);
    }
    if (!lua_toboolean(L, -1)) {
        lua_pop(L, 1);
        lua_pushlstring(L, s, (size_t)(e - s));
    } else if (!lua_isstring(L, -1)) {
        luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    }
    luaL_addvalue(b);
}

static int l_gsub(lua_State *L)
{
    size_t sl, pl;
    const char *s = luaL_checklstring(L, 1, &sl), *p = luaL_checklstring(L, 2, &pl);
    int type = lua_type(L, 3), anchored;
    lua_Integer max = luaL_optinteger(L, 4, (lua_Integer)sl + 1), n = 0;
    const char *src = s;
    luaL_Buffer b;
    matcher_t m;

    luaL_argcheck(L,
                  type == LUA_TNUMBER || type == LUA_TSTRING || type == LUA_TFUNCTION ||
                      type == LUA_TTABLE,
                  3, "string/function/table expected");
    matcher_init(&m, L, s, sl, p, pl);
    anchored = m.pat_end > p && *p == '^';
    if (anchored)
        p++;
    luaL_buffinit(L, &b);
    while (n < max) {
        const char *e;
        m.ncap = 0;
        m.depth = 0;
        if ((e = match_here(&m, src, p))) {
            n++;
            if (type == LUA_TFUNCTION || type == LUA_TTABLE)
                add_value(&m, &b, src, e, type);
            else
                add_string(&m, &b, src, e);
        }
        if (e && e > src)
            src = e;
        else if (src < m.subj_end)
            luaL_addchar(&b, *src++);
        else
            break;
        if (anchored)
            break;
    }
    luaL_addlstring(&b, src, (size_t)(m.subj_end - src));
    luaL_pushresult(&b);
    lua_pushinteger(L, n);
    return 2;
}

void moor_pattern_register(lua_State *L, int idx)
{
    static const luaL_Reg fns[] = {
        {"find", l_find}, {"match", l_match}, {"gmatch", l_gmatch}, {"gsub", l_gsub}, {NULL, NULL}};

    if (idx < 0)
        idx = lua_gettop(L) + idx + 1;
    for (const luaL_Reg *f = fns; f->name; f++) {
        lua_pushcfunction(L, f->func);
        lua_setfield(L, idx, f->name);
    }
}
