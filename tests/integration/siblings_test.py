#!/usr/bin/python3
"""siblings_test.py -- siblings on a real three-node moord cluster with
dotted version vectors.

1. Six client threads, each doing get then put with the ctx it got, on one
   key for a bounded time: prints the acknowledged writes and the most
   siblings any get saw, which DVV bounds by the writers (6), plus any
   write that failed (a failed write may have landed unseen).
2. 3,000 blind writes (no ctx) to one key of a space with sibling_max =
   100: the first 100 are stored, every later one is refused
   TOO_MANY_SIBLINGS, and reading back finds exactly the accepted values
   -- none dropped silently; info.siblings counts it.

Nodes on 127.0.0.1..3 as in cluster_test.py (harness: moortest.py).  Every
wait is bounded; every moord started is killed at exit.

usage: siblings_test.py --build BUILD_DIR [-k NAME]
"""
import sys
import threading
import time
import unittest

import moortest
from moortest import retry

BUILD = moortest.DEFAULT_BUILD
WRITERS = 6
RUN_S = 10.0          # how long the writers loop (bounded; the count is printed)
BLIND = 3000


class Cluster(moortest.Cluster):
    def __init__(self):
        super().__init__(
            BUILD, 3, "moor-siblings-", settings=
            'engine = { sync = "interval", memtable_mb = 4, cache_mb = 8 },\n'
            '  log = { level = "info" }', script=
            'moor.space("default", { n = 3, r = 2, w = 2 })\n'
            'moor.space("pile", { n = 3, r = 2, w = 2, sibling_warn = 25, sibling_max = 100 })\n')


CLUSTER = None


def setUpModule():
    global CLUSTER
    CLUSTER = Cluster()
    CLUSTER.start()
    CLUSTER.wait_converged()
    for n in CLUSTER.nodes:
        c = n.conn(5)
        try:
            retry(lambda: c.call("get", "ready-probe", {"r": "all", "timeout_ms": 2000}),
                  20, "get r=all through %s" % n.id)
        finally:
            c.close()


def tearDownModule():
    CLUSTER.stop()


class SiblingsTest(unittest.TestCase):
    def test_writers_with_ctx_stay_bounded(self):
        stop = time.monotonic() + RUN_S
        lock = threading.Lock()
        stats = {"acked": 0, "failed": 0, "gets": 0, "most": 0, "errors": []}

        def writer(i):
            node = CLUSTER.nodes[i % len(CLUSTER.nodes)]
            c = node.conn(10)
            seq = 0
            try:
                while time.monotonic() < stop:
                    err, res = c.call("get", "hot")
                    if err is not None:
                        with lock:
                            stats["errors"].append(("get", err))
                        continue
                    opts = {}
                    nvals = 0
                    if res is not None:
                        opts["ctx"] = res["ctx"]
                        nvals = len(res["values"])
                    seq += 1
                    err, _ = c.call("put", "hot", [i, seq], opts)
                    with lock:
                        stats["gets"] += 1
                        stats["most"] = max(stats["most"], nvals)
                        if err is None:
                            stats["acked"] += 1
                        else:
                            stats["failed"] += 1
                            stats["errors"].append(("put", err))
            finally:
                c.close()

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(RUN_S + 60)
            self.assertFalse(t.is_alive(), "a writer did not finish")
        c = CLUSTER.nodes[0].conn(10)
        try:
            err, res = c.call("get", "hot", {"r": "all"})
        finally:
            c.close()
        self.assertIsNone(err)
        final = len(res["values"])
        print("\n%d writers, get then put with the ctx for %.0f s: %d acknowledged writes, "
              "%d failed, %d gets; most siblings seen by a get: %d (at the end: %d)"
              % (WRITERS, RUN_S, stats["acked"], stats["failed"], stats["gets"], stats["most"],
                 final), flush=True)
        self.assertGreater(stats["acked"], WRITERS)
        # DVV: a write with the ctx it read replaces every sibling it saw,
        # so the live siblings are at most one per writer -- plus a failed
        # write that may have landed where the writer's next read missed it.
        self.assertLessEqual(stats["most"], WRITERS + stats["failed"], stats["errors"][:5])
        self.assertLessEqual(final, WRITERS + stats["failed"])

    def test_blind_writes_refused_past_sibling_max(self):
        c = CLUSTER.nodes[0].conn(10)
        accepted, refused, other = [], 0, []
        msg = None
        try:
            t0 = time.monotonic()
            for i in range(BLIND):
                err, _ = c.call("put", "heap", i, {"space": "pile"})
                if err is None:
                    accepted.append(i)
                elif err[0] == "TOO_MANY_SIBLINGS":
                    refused += 1
                    msg = err[1]
                else:
                    other.append(err)
            took = time.monotonic() - t0
            err, res = c.call("get", "heap", {"space": "pile", "r": "all"})
            self.assertIsNone(err)
            err, dres = c.call("del", "heap", {"space": "pile"})
            self.assertEqual(err[0], "TOO_MANY_SIBLINGS")   # a blind delete too
        finally:
            c.close()
        info = CLUSTER.nodes[0].info()
        print("\n%d blind writes to one key (sibling_max = 100) in %.1f s: %d accepted, %d "
              "refused TOO_MANY_SIBLINGS, %d other errors; read back %d values; "
              "info.siblings = %r" % (BLIND, took, len(accepted), refused, len(other),
                                      len(res["values"]), info["siblings"]), flush=True)
        self.assertEqual(other, [])
        self.assertEqual(len(accepted), 100)
        self.assertEqual(accepted, list(range(100)))    # the 101st and later were refused
        self.assertEqual(refused, BLIND - 100)
        self.assertIn("ctx", msg)
        self.assertIn("resolver", msg)
        self.assertEqual(sorted(res["values"]), accepted)   # none dropped silently
        self.assertGreaterEqual(info["siblings"]["refused"], BLIND - 100 + 1)
        self.assertGreaterEqual(info["siblings"]["most"], 100)
        self.assertGreaterEqual(info["siblings"]["warned"], 100 - 25)
        # a write with the ctx still goes through and leaves one
        c = CLUSTER.nodes[1].conn(10)
        try:
            err, _ = c.call("put", "heap", "one", {"space": "pile", "ctx": res["ctx"]})
            self.assertIsNone(err)
            err, res = c.call("get", "heap", {"space": "pile", "r": "all"})
            self.assertIsNone(err)
            self.assertEqual(res["values"], ["one"])
        finally:
            c.close()


def main():
    global BUILD
    args, rest = moortest.parse_args(BUILD)
    BUILD = args.build
    sys.exit(0 if moortest.run_unittest(rest) else 1)


if __name__ == "__main__":
    main()
