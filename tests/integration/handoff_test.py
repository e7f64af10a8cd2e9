#!/usr/bin/python3
"""handoff_test.py -- sloppy quorum and hinted handoff on real processes.

Five moords on 127.0.0.1-5, the default space n=3 r=2 w=2, hints replayed
slowly (hints.rate_kb_s = 4) so the test can read while hints are still
pending.  Two nodes are killed with SIGKILL; once the others' failure
detectors say `down`, 300 writes at w=2 through the live nodes must all be
acknowledged, some of them by fallbacks (seen in their receipts).  The two
come back: while hints are still pending, a read at r=one of every key
must find it (a replica that missed the write answers notfound, which
does not satisfy r while another replica has the key); once every node's
hints have drained, each key's first read with r=all and receipt=true
finds it on every owner that `where` names.  Figures (time to `down`,
how many writes went to fallbacks, hint replay time) are printed, never
asserted.  Every wait is bounded; every moord started is killed at exit.

usage: handoff_test.py --build BUILD_DIR [-k NAME]
"""
import sys
import time
import unittest

import moortest
from moortest import poll

BUILD = moortest.DEFAULT_BUILD
DETECT_S = 30   # bound on the detector agreeing (its target is 5 s; a busy box is slower)
DRAIN_S = 120   # bound on hints draining at 4 KB/s
KEYS = 300


def status_on(cluster, node):
    """{member id: status} in node's ring."""
    return {m["id"]: m["status"] for m in cluster.ring(node)["nodes"]}


def call(node, method, *params):
    c = node.conn(15)
    try:
        return c.call(method, *params)
    finally:
        c.close()


def hints_of(node):
    return node.info()["hints"]


class Handoff(unittest.TestCase):
    def test_two_down_writes_acknowledged_then_handed_off(self):
        cl = moortest.Cluster(BUILD, 5, "moor-handoff-", settings=
                              'engine = { sync = "interval" },\n'
                              '  hints = { rate_kb_s = 4 },\n'
                              '  log = { level = "info" }',
                              script='moor.space("default", { n = 3, r = 2, w = 2 })\n')
        try:
            self.run_case(cl)
        except BaseException:
            sys.stderr.write(cl.logs())
            raise
        finally:
            cl.cleanup()

    def run_case(self, cl):
        cl.start()
        cl.wait_converged()
        live, dead = cl.nodes[:3], cl.nodes[3:]
        t0 = time.time()
        for n in dead:
            n.kill9()

        def detected():
            for n in live:
                st = status_on(cl, n)
                for d in dead:
                    if st.get(d.id) != "down":
                        return "%s sees %s as %s" % (n.id, d.id, st.get(d.id))
            return None

        why = poll(detected, DETECT_S)
        self.assertIsNone(why, "not declared down within %d s: %s" % (DETECT_S, why))
        print("two killed nodes down on the three others after %.1f s" % (time.time() - t0))

        # Writes at w=2 through every live node: all acknowledged.
        conns = [n.conn(15) for n in live]
        fallback_acks = 0
        try:
            for i in range(KEYS):
                c = conns[i % len(conns)]
                err, res = c.call("put", "k%d" % i, "v%d" % i, {"w": 2, "receipt": True})
                self.assertIsNone(err, "put k%d: %r" % (i, err))
                self.assertIn("ctx", res)
                rec = res["receipt"]
                self.assertTrue(rec, "put k%d: empty receipt" % i)
                for r in rec:
                    self.assertIn(r["status"], ("ok", "timeout", "down", "error"), r)
                    if r["status"] == "ok" and r.get("fallback_for"):
                        fallback_acks += 1
                        self.assertIn(r["fallback_for"], [d.id for d in dead], r)
                        self.assertNotIn(r["node"], [d.id for d in dead], r)
        finally:
            for c in conns:
                c.close()
        print("%d writes acknowledged; %d acknowledgements came from fallbacks"
              % (KEYS, fallback_acks))
        self.assertGreater(fallback_acks, 0, "no write went to a fallback")
        pending = sum(hints_of(n)["pending"] for n in live)
        self.assertGreater(pending, 0, "fallbacks hold no hints")

        # The owners return.
        t1 = time.time()
        for n in dead:
            n.start()
        cl.wait_converged()
        print("restarted nodes up everywhere after %.1f s" % (time.time() - t1))

        # While hints are still pending, r=one never answers null.
        still = sum(hints_of(n)["pending"] for n in live)
        c = cl.nodes[4].conn(15)   # a node that missed the writes coordinates
        try:
            for i in range(KEYS):
                err, res = c.call("get", "k%d" % i, {"r": "one"})
                self.assertIsNone(err, "get k%d: %r" % (i, err))
                self.assertIsNotNone(res, "k%d: a node that was down answered null" % i)
                self.assertIn("v%d" % i, res["values"])
        finally:
            c.close()
        print("r=one read every key back with %d hints still pending at its start" % still)

        # Hints drain.
        t2 = time.time()

        def drained():
            left = {n.id: hints_of(n)["pending"] for n in cl.nodes}
            return None if not any(left.values()) else "pending: %r" % left

        why = poll(drained, DRAIN_S, interval=0.5)
        self.assertIsNone(why, "hints did not drain within %d s: %s" % (DRAIN_S, why))
        delivered = sum(hints_of(n)["delivered"] for n in cl.nodes)
        print("hints drained in %.1f s (%d delivered)" % (time.time() - t2, delivered))
        self.assertGreaterEqual(delivered, pending)

        # Every owner holds every key: first read with r=all and receipts.
        c = cl.nodes[0].conn(15)
        try:
            for i in range(KEYS):
                key = "k%d" % i
                err, where = c.call("where", key)
                self.assertIsNone(err, err)
                self.assertEqual(len(where["replicas"]), 3, where)
                self.assertEqual(where["fallbacks"], [], where)
                err, res = c.call("get", key, {"r": "all", "receipt": True})
                self.assertIsNone(err, "get %s: %r" % (key, err))
                self.assertEqual(res["values"], ["v%d" % i], res)
                got = sorted((r["node"], r["status"]) for r in res["receipt"])
                want = sorted((n, "found") for n in where["replicas"])
                self.assertEqual(got, want, "%s: %r" % (key, res["receipt"]))
                self.assertFalse(any(r.get("fallback_for") for r in res["receipt"]))
        finally:
            c.close()


def main():
    global BUILD
    args, rest = moortest.parse_args()
    BUILD = args.build
    sys.exit(0 if moortest.run_unittest(rest) else 1)


if __name__ == "__main__":
    main()
