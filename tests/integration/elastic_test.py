#!/usr/bin/python3
"""elastic_test.py -- nodes join, leave and are removed while the cluster serves.

a. Join, remove and leave (one scenario, in order):
   - three moords, the default space n=3, r=w=2; 2,000 keys written with
     w=all.  A 4th node starts with the three as seeds and no data: it is
     `joining` (seen in `ring`), its ranges stream in at transfer.rate_mb_s
     = 0.05 (so the join lasts seconds), `moor transfers --json` shows
     ranges moving to it, and all the while every key read through it at
     r=one is found (the count of reads and misses is printed; misses must
     be 0).  It becomes `up`; then each key's first read with r=all and
     receipt=true finds it on all three replicas.
   - a 5th node joins the same way (and is `up`).
   - n3 is killed (SIGKILL); once the others see it down, `moor remove
     n3`: it becomes `left` everywhere and the others repair the ranges it
     held; once their repairs are done, every key is on three replicas.
   - `moor leave --wait` on n2: it is `leaving`, then `left` (a get
     through it now answers UNAVAILABLE); it is killed, and every key is still on three replicas (n1, n4, n5).
   Printed: keys and bytes each joiner received against the ideal (the
   share of the data a new member should own), and the join times.
c. Two joins and a leave at once under load: five moords; while `moor
   bench` (mixed, r=w=2) runs against n1 and a writer puts new keys at
   w=2 through n2, n6 and n7 start and n4 leaves, all at once.  Once n6
   and n7 are `up` and n4 is `left` (and killed): `moor bench` saw no
   error, and every write the writer had acknowledged reads back at r=2.
d. A join survives a restart of the joining node: n4 joins at rate_mb_s
   = 0.02; once it has handed over part of its ranges it is killed
   (SIGKILL) and started again: it comes back `joining` with the tokens it
   had switched on, resumes from its saved progress, ends `up`, and every
   key is on three replicas.
e. A joining node that dies is declared down like any member (not stuck
   `joining`): n4 is killed halfway through its join; n1 sees it `down`,
   writes at w=2 go on, `moor remove n4` takes it out, and after the
   repairs every key is on three replicas.
b. Refusals: `leave` and `remove` on a lone node answer UNAVAILABLE;
   `remove` of a member that is up answers BUSY and of an unknown id
   BAD_REQUEST; `_xfer_pull` from a client connection is refused; `moor
   transfers --rate-mb-s 0` exits 2 without asking.

Every wait is bounded; every moord started is killed at exit.

usage: elastic_test.py --build BUILD_DIR [-k NAME]
"""
import json
import os
import subprocess
import time
import unittest

import moortest
from moortest import poll

BUILD = moortest.DEFAULT_BUILD
KEYS = 2000
SETTINGS = ('vnodes = 16, request_timeout_ms = 4000, '
            'transfer = { rate_mb_s = 0.05, concurrency = 2, settle_ms = 1500 }')
FAST = SETTINGS.replace("rate_mb_s = 0.05", "rate_mb_s = 4")
SCRIPT = ('moor.space("default", { n = 3, r = 2, w = 2 })\n'
          'moor.gossip{ period_ms = 200, probe_timeout_ms = 100, suspicion_mult = 2 }\n')


def key(i):
    return "key%05d" % i


def moor(node, *args, timeout=60):
    p = subprocess.run([os.path.join(BUILD, "moor"), "-h", node.addr] + list(args),
                       capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def status_of(cl, via, nid):
    for m in cl.ring(via)["nodes"]:
        if m["id"] == nid:
            return m["status"]
    return None


def pipelined(node, calls, window=200):
    """Answers of calls [(method, params...)] through node, in order."""
    c = node.conn(30)
    try:
        return moortest.pipelined(c, calls, window)
    finally:
        c.close()


def replicas_found(node):
    """Keys whose r=all receipt read did not find them on 3 replicas."""
    calls = [("get", key(i), {"r": "all", "receipt": True}) for i in range(KEYS)]
    bad = []
    for i, (err, res) in enumerate(pipelined(node, calls)):
        found = 0 if err or not res else sum(1 for e in res["receipt"] if e["status"] == "found")
        if found < 3:
            bad.append((key(i), err, res and res.get("receipt")))
    return bad


class Elastic(unittest.TestCase):
    def setUp(self):
        self.cl = moortest.Cluster(BUILD, 3, prefix="moor-elastic-", settings=SETTINGS,
                                   script=SCRIPT)
        self.cl.start()
        self.cl.wait_converged()

    def tearDown(self):
        if self.cl:
            if any(self._outcome.errors if hasattr(self._outcome, "errors") else []):
                print(self.cl.logs())
            self.cl.cleanup()

    def add_node(self, i):
        cl = self.cl
        n = moortest.Node(BUILD, os.path.join(cl.tmp, "n%d" % i), "n%d" % i, "127.0.0.%d" % i)
        n.write_config(SETTINGS, [m.addr for m in cl.nodes[:3]], cl.secret, SCRIPT)
        return n

    def join(self, n):
        """Starts n, reads every key through it at r=one while it joins;
        returns (seconds, reads, misses, ranges seen moving to it)."""
        cl = self.cl
        t0 = time.time()
        n.start()
        cl.nodes.append(n)
        reads = misses = 0
        seen_joining = False
        moving = 0
        deadline = time.time() + 120
        while time.time() < deadline:
            st = status_of(cl, n, n.id)
            if st == "joining":
                seen_joining = True
            rc, out, err = moor(cl.nodes[0], "transfers", "--json")
            if rc == 0:
                for node in json.loads(out)["nodes"]:
                    moving += sum(1 for r in node["ranges"] if r["to"] == n.id)
            calls = [("get", key(i), {"r": 1}) for i in range(0, KEYS, 7)]
            for err, res in pipelined(n, calls):
                reads += 1
                if err is None and res is None:
                    misses += 1
            if st == "up":
                break
        secs = time.time() - t0
        self.assertEqual(status_of(cl, n, n.id), "up", "%s did not finish joining" % n.id)
        self.assertTrue(seen_joining, "%s was never seen joining" % n.id)
        self.assertEqual(misses, 0, "%d of %d reads through the joining node found nothing"
                         % (misses, reads))
        tr = n.info()["transfer"]
        print("%s joined in %.1f s: %d reads at r=one through it during the join, 0 missed; "
              "received %d keys, %d bytes in %d ranges (ideal share of %d keys x 3 replicas "
              "over %d members: %d keys)"
              % (n.id, secs, reads, tr["keys_received"], tr["bytes_received"],
                 tr["ranges_done"], KEYS, len(cl.nodes), KEYS * 3 // len(cl.nodes)))
        return secs, reads, misses, moving

    def test_a_join_remove_leave(self):
        cl = self.cl
        n1 = cl.nodes[0]
        self.write_keys()

        n4 = self.add_node(4)
        _, _, _, moving = self.join(n4)
        self.assertGreater(moving, 0, "moor transfers never showed a range moving to n4")
        bad = replicas_found(n4)
        self.assertEqual(bad[:3], [], "%d keys not on 3 replicas after the join" % len(bad))

        n5 = self.add_node(5)
        self.join(n5)

        # n3 dies and is removed: the others rebuild its ranges
        n3 = cl.nodes[2]
        n3.kill9()
        why = poll(lambda: None if status_of(cl, n1, "n3") == "down" else "n3 not down", 30)
        self.assertIsNone(why, why)
        rc, out, err = moor(n1, "remove", "n3")
        self.assertEqual(rc, 0, err)
        live = [n for n in cl.nodes if n.id != "n3"]
        why = poll(lambda: None if all(status_of(cl, n, "n3") == "left" for n in live)
                   else "n3 not left everywhere", 30)
        self.assertIsNone(why, why)

        def repaired():
            for n in live:
                r = n.info()["repair"]
                if n.info().get("cluster", {}).get("needs_repair") or r["running"]:
                    return "%s still repairing" % n.id
            return None
        why = poll(repaired, 120, 0.5)
        self.assertIsNone(why, why)
        cl.nodes = live
        bad = replicas_found(n1)
        self.assertEqual(bad[:3], [], "%d keys not on 3 replicas after the removal" % len(bad))

        # n2 leaves: every range handed off before it is `left`
        n2 = [n for n in cl.nodes if n.id == "n2"][0]
        t0 = time.time()
        rc, out, err = moor(n2, "leave", "--wait", timeout=180)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.strip(), "left")
        tr = n2.info()["transfer"]
        print("n2 left in %.1f s: sent %d keys, %d bytes in %d ranges"
              % (time.time() - t0, tr["keys_sent"], tr["bytes_sent"], tr["ranges_done"]))
        why = poll(lambda: None if all(status_of(cl, n, "n2") == "left" for n in cl.nodes
                                       if n.id != "n2") else "n2 not left everywhere", 30)
        self.assertIsNone(why, why)
        c = n2.conn(10)
        try:
            err, _ = c.call("get", key(1))
            self.assertEqual(err[0], "UNAVAILABLE", err)  # a node that left serves nothing
        finally:
            c.close()
        n2.kill9()
        cl.nodes = [n for n in cl.nodes if n.id != "n2"]
        bad = replicas_found(n1)
        self.assertEqual(bad[:3], [], "%d keys not on 3 replicas after n2 left" % len(bad))
        print("after 2 joins, a removal and a leave: all %d keys on 3 replicas" % KEYS)

    def test_c_two_joins_and_a_leave_under_load(self):
        cl = self.cl
        extra = [moortest.Node(BUILD, os.path.join(cl.tmp, "n%d" % i), "n%d" % i,
                               "127.0.0.%d" % i) for i in (4, 5)]
        for n in extra:
            n.write_config(FAST, [m.addr for m in cl.nodes], cl.secret, SCRIPT)
            n.start()
            cl.nodes.append(n)
        cl.wait_converged()
        n1, n2 = cl.nodes[0], cl.nodes[1]
        bench = subprocess.Popen([os.path.join(BUILD, "moor"), "-h", n1.addr, "bench",
                                  "--conns", "4", "--pipeline", "4", "--keys", "2000",
                                  "--duration", "15"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        acked, stop = [], [False]

        def writer():
            c = n2.conn(30)
            i = 0
            try:
                while not stop[0]:
                    err, _ = c.call("put", "w%06d" % i, "v", {"w": 2})
                    if err is None:
                        acked.append(i)
                    i += 1
            finally:
                c.close()
        import threading
        th = threading.Thread(target=writer)
        th.start()
        time.sleep(2)
        joiners = [self.add_node(i) for i in (6, 7)]
        for n in joiners:
            n.write_config(FAST, [m.addr for m in cl.nodes[:5]], cl.secret, SCRIPT)
            n.start()
            cl.nodes.append(n)
        n4 = [n for n in cl.nodes if n.id == "n4"][0]
        rc, out, err = moor(n4, "leave")
        self.assertEqual(rc, 0, err)
        t0 = time.time()

        def moved():
            if any(status_of(cl, n1, n.id) != "up" for n in joiners):
                return "still joining"
            if status_of(cl, n1, "n4") != "left":
                return "n4 still leaving"
            return None
        why = poll(moved, 180, 0.5)
        self.assertIsNone(why, why)
        took = time.time() - t0
        stop[0] = True
        th.join(30)
        out, errs = bench.communicate(timeout=120)
        res = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
        n4.kill9()
        cl.nodes = [n for n in cl.nodes if n.id != "n4"]
        calls = [("get", "w%06d" % i, {"r": 2}) for i in acked]
        lost = [acked[k] for k, (e, r) in enumerate(pipelined(n1, calls)) if e or not r]
        print("two joins and a leave at once: done in %.1f s; moor bench %.0f ops/s, %d errors; "
              "%d writes acknowledged during the moves, %d not read back"
              % (took, res["ops_per_sec"], res["errors"], len(acked), len(lost)))
        self.assertEqual(res["errors"], 0, [l for l in out.splitlines() if "error" in l])
        self.assertEqual(lost[:5], [])

    def write_keys(self):
        res = pipelined(self.cl.nodes[0], [("put", key(i), "v%05d" % i, {"w": "all"})
                                           for i in range(KEYS)])
        self.assertEqual([e for e, _ in res if e], [])

    def slow_joiner(self, i):
        """Node i started to join at rate_mb_s = 0.02 (so that it lasts)."""
        n = self.add_node(i)
        n.write_config(SETTINGS.replace("rate_mb_s = 0.05", "rate_mb_s = 0.02"),
                       [m.addr for m in self.cl.nodes[:3]], self.cl.secret, SCRIPT)
        n.start()
        return n

    def test_d_join_resumes_after_a_restart(self):
        cl = self.cl
        n1 = cl.nodes[0]
        self.write_keys()
        n4 = self.slow_joiner(4)
        cl.nodes.append(n4)

        def some_done():
            tr = n4.info()["transfer"]
            on = tr["vnodes"] - tr["inactive"]
            return None if on >= 2 else "%d tokens on" % on
        why = poll(some_done, 60, 0.1)
        self.assertIsNone(why, why)
        before = n4.info()["transfer"]
        n4.kill9()
        n4.start()
        after = n4.info()["transfer"]
        self.assertEqual(after["state"], "joining", after)
        self.assertLess(after["inactive"], after["vnodes"], "no token on after the restart")
        why = poll(lambda: None if status_of(cl, n1, "n4") == "up" else "joining", 120, 0.2)
        self.assertIsNone(why, why)
        print("n4 killed after %d ranges (%d of %d tokens on), restarted with %d on, then up"
              % (before["ranges_done"], before["vnodes"] - before["inactive"], before["vnodes"],
                 after["vnodes"] - after["inactive"]))
        bad = replicas_found(n1)
        self.assertEqual(bad[:3], [], "%d keys not on 3 replicas" % len(bad))

    def test_e_dead_joiner_is_removed(self):
        cl = self.cl
        n1 = cl.nodes[0]
        self.write_keys()
        n4 = self.slow_joiner(4)
        why = poll(lambda: None if n4.info()["transfer"]["inactive"] < 12 else "few tokens on",
                   60, 0.1)
        self.assertIsNone(why, why)
        n4.kill9()
        why = poll(lambda: None if status_of(cl, n1, "n4") == "down" else
                   "n4 is %s" % status_of(cl, n1, "n4"), 30, 0.2)
        self.assertIsNone(why, why)
        res = pipelined(n1, [("put", "after%04d" % i, "x", {"w": 2}) for i in range(200)])
        self.assertEqual([e for e, _ in res if e], [])
        rc, out, err = moor(n1, "remove", "n4")
        self.assertEqual(rc, 0, err)

        def repaired():
            for n in cl.nodes:
                if status_of(cl, n, "n4") != "left":
                    return "%s does not see n4 left" % n.id
                info = n.info()
                if info["cluster"].get("needs_repair") or info["repair"]["running"]:
                    return "%s still repairing" % n.id
            return None
        why = poll(repaired, 120, 0.5)
        self.assertIsNone(why, why)
        bad = replicas_found(n1)
        self.assertEqual(bad[:3], [], "%d keys not on 3 replicas" % len(bad))

    def test_b_refusals(self):
        cl = self.cl
        n1 = cl.nodes[0]
        c = n1.conn(10)
        try:
            err, _ = c.call("remove", "n2")
            self.assertEqual(err[0], "BUSY", err)
            err, _ = c.call("remove", "nobody")
            self.assertEqual(err[0], "BAD_REQUEST", err)
            err, _ = c.call("remove")
            self.assertEqual(err[0], "BAD_REQUEST", err)
            err, _ = c.call("leave", {"cancel": "yes"})
            self.assertEqual(err[0], "BAD_REQUEST", err)
            err, _ = c.call("leave", {"cancel": True})
            self.assertEqual(err[0], "BAD_REQUEST", err)  # not leaving
            err, _ = c.call("transfers", {"rate_mb_s": -1})
            self.assertEqual(err[0], "BAD_REQUEST", err)
            err, _ = c.call("_xfer_pull", {"spaces": ["default"], "lo": 0, "hi": 0})
            self.assertIsNotNone(err)
            err, res = c.call("transfers", {"rate_mb_s": 2, "concurrency": 3})
            self.assertIsNone(err, err)
            self.assertEqual(len(res["nodes"]), 3)
            for node in res["nodes"]:
                self.assertEqual(node["info"]["concurrency"], 3)
                self.assertEqual(node["info"]["rate_mb_s"], 2.0)
            err, res = c.call("ping")
            self.assertIsNone(err)
        finally:
            c.close()
        rc, _, _ = moor(n1, "transfers", "--rate-mb-s", "0")
        self.assertEqual(rc, 2)
        lone = moortest.Node(BUILD, os.path.join(cl.tmp, "lone"), "lone")
        lone.write_config("")
        lone.start()
        c = lone.conn(10)
        try:
            for m, p in (("leave", ()), ("remove", ("x",)), ("transfers", ())):
                err, _ = c.call(m, *p)
                self.assertEqual(err[0], "UNAVAILABLE", (m, err))
        finally:
            c.close()
            lone.cleanup()


if __name__ == "__main__":
    args, rest = moortest.parse_args()
    BUILD = args.build
    moortest.run_unittest(rest)
