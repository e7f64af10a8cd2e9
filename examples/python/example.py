#!/usr/bin/python3
"""example.py -- a tour of Moor from Python, and a check that a node works.

    /usr/bin/python3 examples/python/example.py [HOST:PORT] [--token T] [--space S]

Against a running node (default 127.0.0.1:7700) it writes and reads values
of every MessagePack type, makes siblings and collapses them with a ctx,
deletes with a ctx, pipelines 100 puts, and calls the `incr` handler
(plugins = {"handlers.incr"} in the node's config).  The space it uses
must keep siblings (no resolver: the default).  Keys are unique to the
run, so it can be run again against the same node.

Exit status: 0 when every step checked out; 1 when the node answered
wrongly; 2 when it could not talk to the node at all.
"""

import argparse
import os
import sys
import time

import msgpack

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moor_client import MoorClient, MoorError  # noqa: E402


class CheckFailed(Exception):
    pass


def check(cond, what, got=None, want=None):
    if not cond:
        detail = "" if want is None and got is None else ": got %r, want %r" % (got, want)
        raise CheckFailed(what + detail)


def step(title):
    print("-- " + title, flush=True)


def tour(c, space, prefix):
    kw = {"space": space} if space else {}

    step("ping and info")
    check(c.ping() is not None, "ping answered nil")
    info = c.info()
    check(isinstance(info, dict), "info is not a map", type(info).__name__, "dict")
    print("   node info:", {k: info[k] for k in list(info)[:6]})

    step("values of every type come back as they were written")
    value = {
        "str": "héllo", "bin": b"\x00\xffbytes", "ints": [0, -1, 127, -33, 2 ** 40,
                                                     2 ** 64 - 1, -2 ** 63],
        "float": 1.5, "bools": [True, False], "nil": None, "nested": {"a": [{"b": []}, {}]},
        "ext": msgpack.ExtType(7, b"ext-data"), 42: "int key",
    }
    w = c.put(prefix + "value", value, **kw)
    check(isinstance(w, dict) and isinstance(w.get("ctx"), bytes), "put answered without a ctx", w)
    r = c.get(prefix + "value", **kw)
    check(r is not None and r["values"] == [value], "value changed on the way", r and r["values"],
          [value])
    check(c.get(prefix + "missing", **kw) is None, "a missing key is not nil")
    bkey = prefix.encode() + b"\x00\xfe binary key"
    c.put(bkey, "under a binary key", **kw)
    check(c.get(bkey, **kw)["values"] == ["under a binary key"], "binary key lost its value")

    step("siblings: two writes without a ctx are both kept")
    k = prefix + "cart"
    c.put(k, ["milk"], **kw)
    c.put(k, ["eggs"], **kw)
    r = c.get(k, **kw)
    got = sorted(v[0] for v in r["values"])
    check(got == ["eggs", "milk"], "expected two siblings (does the space have a resolver?)", got,
          ["eggs", "milk"])
    print("   siblings:", r["values"])

    step("a put with the ctx replaces the siblings it saw")
    w = c.put(k, ["eggs", "milk"], ctx=r["ctx"], **kw)
    r = c.get(k, **kw)
    check(r["values"] == [["eggs", "milk"]], "ctx did not collapse the siblings", r["values"],
          [["eggs", "milk"]])

    step("del with the ctx")
    check(c.delete(k, ctx=r["ctx"], **kw) is True, "del did not answer true")
    check(c.get(k, **kw) is None, "deleted key still there", c.get(k, **kw))

    step("pipelining: 100 puts in flight, answers matched by msgid")
    ids = {c.send("put", prefix + "p%d" % i, i, *([kw] if kw else [])): i for i in range(100)}
    seen = set()
    for _ in range(100):
        msgid, result, err = c.recv()
        check(err is None, "pipelined put failed", err)
        check(msgid in ids and msgid not in seen, "unexpected msgid", msgid)
        check(isinstance(result.get("ctx"), bytes), "pipelined put without ctx", result)
        seen.add(msgid)
    check(c.get(prefix + "p99", **kw)["values"] == [99], "pipelined value missing")

    step("call incr (a server-side Lua handler)")
    ck = prefix + "counter"
    opts = [{"space": space}] if space else []
    n1 = c.call("incr", ck, 5, *opts)
    n2 = c.call("incr", ck, 1, *opts)
    check((n1, n2) == (5, 6), "incr counted wrong", (n1, n2), (5, 6))
    check(c.get(ck, **kw)["values"] == [6], "counter not stored", c.get(ck, **kw)["values"], [6])

    step("errors come back as MoorError with a stable code")
    try:
        c.call("no_such_handler_in_example_py")
    except MoorError as e:
        print("   got %s as expected" % e.code)
    else:
        raise CheckFailed("calling an unknown handler did not fail")
    check(c.ping() is not None, "connection unusable after an error answer")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("addr", nargs="?", default="127.0.0.1:7700")
    ap.add_argument("--token", default=os.environ.get("MOOR_TOKEN"))
    ap.add_argument("--space", default=None)
    ap.add_argument("--timeout", type=float, default=5.0)
    args = ap.parse_args()

    prefix = "example:%d:%d:" % (os.getpid(), time.time_ns())
    try:
        c = MoorClient(args.addr, timeout=args.timeout, token=args.token)
    except MoorError as e:
        print("example.py: cannot talk to %s: %s" % (args.addr, e), file=sys.stderr)
        return 2
    with c:
        try:
            tour(c, args.space, prefix)
        except CheckFailed as e:
            print("example.py: FAILED: %s" % e, file=sys.stderr)
            return 1
        except MoorError as e:
            print("example.py: FAILED: the node answered %s" % e, file=sys.stderr)
            return 1 if e.code not in ("CONNECT", "CLOSED", "TIMEOUT") else 2
    print("example.py: all steps passed against %s" % args.addr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
