#!/usr/bin/python3
"""ttl_test.py -- expiry (put opts.ttl_ms, RESP SET EX/PX, SETEX, TTL) on
real processes.

a. A node alone: a value put with ttl_ms reads (with expires_ms) and
   then reads as missing, never present again after that; a put without
   ttl_ms over it lasts; bad ttl_ms (0, negative, a float, a string, over
   100 years, on del or get) answers BAD_REQUEST and the node keeps
   serving; a handler's moor.put takes ttl_ms too; `moor put --ttl`; the
   expired key stays missing across a restart.
b. RESP on the same node: SET EX/PX, SETEX, PSETEX, TTL and PTTL (-2
   missing, -1 no expiry, the time left), expiry errors; redis-cli, and
   redis-benchmark running SETEX.
c. Reaped by compaction: with a 1 MiB memtable, expiring values are
   written, expire, then other writes make compactions run: the
   compaction filter turns the expired values into tombstones
   (filter_rewrites) or, in a space with tombstone_grace_s = 1, drops them
   once that second has passed (filter_drops); they read as missing, the other values as written.
d. A 3-node cluster (n = 3): a value put on all three with ttl_ms, one
   replica stopped before the expiry and restarted after it, then `moor
   repair` on every node: no node ever answers the value again.  A replica
   down during the put is repaired after the expiry: the key stays
   missing, and what the replica holds for it is a tombstone.

Timing is never asserted: every wait polls with a bound, and only the
order of what is seen is checked (present, then missing, never present
again).

usage: ttl_test.py --build BUILD_DIR [-k NAME]
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import msgpack

import moortest
from moortest import free_port, poll

BUILD = moortest.DEFAULT_BUILD
REDIS_CLI = "/usr/bin/redis-cli"
EXPIRE_WAIT_S = 60      # bound on waiting for a value to expire
REPAIR_S = 300          # bound on one `moor repair`
TTL_MS = 1500


def call(node, method, *params):
    c = node.conn(15)
    try:
        return c.call(method, *params)
    finally:
        c.close()


def wait_missing(test, get, what):
    """Polls get() (-> the value or None): present first, then missing
    within the bound; after that, never present again."""
    first = get()
    test.assertIsNotNone(first, "%s: missing at the first read" % what)
    left = poll(lambda: get() is not None, EXPIRE_WAIT_S, 0.1)
    test.assertFalse(left, "%s: still there after %ss" % (what, EXPIRE_WAIT_S))
    for _ in range(5):
        test.assertIsNone(get(), "%s: came back after it expired" % what)
        time.sleep(0.1)


# ---- a, b, c: a node alone ------------------------------------------------------------

class LoneNode(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="moor-ttl-")
        cls.resp_port = free_port()
        cls.node = moortest.Node(BUILD, os.path.join(cls.tmp, "n1"), "n1")
        cls.node.write_config(
            'resp_listen = "127.0.0.1:%d",\n  engine = { memtable_mb = 1 }' % cls.resp_port,
            script='moor.space("short", { tombstone_grace_s = 1 })\n'
                   'moor.handle("putttl", function(k, v, ttl)\n'
                   '  local r, err = moor.put(k, v, { ttl_ms = ttl })\n'
                   '  if err then error(err, 0) end\n'
                   '  return true\n'
                   'end)\n')
        cls.node.start()

    @classmethod
    def tearDownClass(cls):
        cls.node.stop(check=False)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def get(self, key, space=None):
        err, res = call(self.node, "get", key, {"space": space} if space else None)
        self.assertIsNone(err, err)
        return res

    def value(self, key, space=None):
        res = self.get(key, space)
        return None if res is None else res["values"]

    def test_a_put_ttl(self):
        c = self.node.conn()
        err, res = c.call("put", "a1", "v", {"ttl_ms": TTL_MS})
        self.assertIsNone(err, err)
        got = self.get("a1")
        self.assertEqual(got["values"], ["v"])
        self.assertIn("expires_ms", got)
        self.assertGreater(got["expires_ms"], int(time.time() * 1000) - 60000)
        wait_missing(self, lambda: self.value("a1"), "a1")
        # a put without ttl_ms lasts, and its answer has no expires_ms
        err, _ = c.call("put", "a1", "w")
        self.assertIsNone(err, err)
        got = self.get("a1")
        self.assertEqual(got["values"], ["w"])
        self.assertNotIn("expires_ms", got)
        # a handler's moor.put takes ttl_ms
        err, res = c.call("call", "putttl", "a2", "h", TTL_MS)
        self.assertIsNone(err, err)
        self.assertIn("expires_ms", self.get("a2"))
        wait_missing(self, lambda: self.value("a2"), "a2 (handler put)")
        err, res = c.call("call", "putttl", "a2", "h", 0)
        self.assertEqual(err[0], "HANDLER_ERROR")
        self.assertIn("ttl_ms", err[1])
        # moor put --ttl
        r = subprocess.run([os.path.join(BUILD, "moor"), "-h", self.node.addr, "put", "a3",
                            '"c"', "--ttl", str(TTL_MS)], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("expires_ms", self.get("a3"))
        wait_missing(self, lambda: self.value("a3"), "a3 (moor put --ttl)")
        r = subprocess.run([os.path.join(BUILD, "moor"), "-h", self.node.addr, "put", "a3",
                            '"c"', "--ttl", "0"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        c.close()

    def test_a_bad_ttl(self):
        c = self.node.conn()
        for bad in (0, -1, 1.5, "10", True, 100 * 365 * 24 * 3600 * 1000 + 1):
            err, _ = c.call("put", "b1", "v", {"ttl_ms": bad})
            self.assertEqual(err and err[0], "BAD_REQUEST", "ttl_ms = %r: %r" % (bad, err))
            self.assertIn("ttl_ms", err[1])
        err, _ = c.call("del", "b1", {"ttl_ms": 1000})
        self.assertEqual(err and err[0], "BAD_REQUEST", err)
        err, _ = c.call("get", "b1", {"ttl_ms": 1000})
        self.assertEqual(err and err[0], "BAD_REQUEST", err)
        self.assertEqual(c.call("ping")[0], None)
        self.assertIsNone(self.get("b1"))
        c.close()

    def test_a_restart(self):
        err, _ = call(self.node, "put", "r1", "v", {"ttl_ms": TTL_MS})
        self.assertIsNone(err, err)
        err, _ = call(self.node, "put", "r2", "v", {"ttl_ms": 3600 * 1000})
        self.assertIsNone(err, err)
        wait_missing(self, lambda: self.value("r1"), "r1")
        self.node.stop()
        self.node.start()
        self.assertIsNone(self.value("r1"))
        self.assertEqual(self.value("r2"), ["v"])

    # ---- b. RESP ----

    def redis(self, *args):
        r = subprocess.run([REDIS_CLI, "-p", str(self.resp_port)] + [str(a) for a in args],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.strip()

    def test_b_resp(self):
        if not os.access(REDIS_CLI, os.X_OK):
            self.skipTest("redis-cli not installed")
        self.assertEqual(self.redis("SET", "s1", "v", "EX", "1"), "OK")
        wait_missing(self, lambda: self.redis("GET", "s1") or None, "SET EX 1")
        self.assertEqual(self.redis("SET", "s2", "v", "PX", TTL_MS), "OK")
        left = int(self.redis("PTTL", "s2"))
        self.assertTrue(0 <= left <= TTL_MS, left)
        wait_missing(self, lambda: self.redis("GET", "s2") or None, "SET PX")
        self.assertEqual(self.redis("TTL", "s2"), "-2")
        self.assertEqual(self.redis("SET", "s3", "v"), "OK")
        self.assertEqual(self.redis("TTL", "s3"), "-1")
        self.assertEqual(self.redis("PTTL", "s3"), "-1")
        self.assertEqual(self.redis("SETEX", "s4", "100", "v"), "OK")
        left = int(self.redis("TTL", "s4"))
        self.assertTrue(0 <= left <= 100, left)
        self.assertEqual(self.redis("SET", "s4", "w"), "OK")   # a SET drops the expiry
        self.assertEqual(self.redis("TTL", "s4"), "-1")
        self.assertEqual(self.redis("PSETEX", "s5", TTL_MS, "v"), "OK")
        self.assertEqual(self.redis("GET", "s5"), "v")
        wait_missing(self, lambda: self.redis("GET", "s5") or None, "PSETEX")
        at = int(time.time()) + 100
        self.assertEqual(self.redis("SET", "s6", "v", "EXAT", at), "OK")
        left = int(self.redis("TTL", "s6"))
        self.assertTrue(0 <= left <= 200, left)
        self.assertEqual(self.redis("SET", "s7", "v", "NX", "PX", TTL_MS), "OK")
        self.assertEqual(self.redis("SET", "s7", "w", "NX", "PX", TTL_MS), "")  # nil
        wait_missing(self, lambda: self.redis("GET", "s7") or None, "SET NX PX")
        self.assertEqual(self.redis("SET", "s7", "w", "NX", "PX", TTL_MS), "OK")
        for args, want in ((("SET", "e", "v", "EX", "0"), "ERR invalid expire time in 'set'"),
                           (("SET", "e", "v", "EX", "-5"), "ERR invalid expire time in 'set'"),
                           (("SET", "e", "v", "PX", "x"), "ERR value is not an integer"),
                           (("SET", "e", "v", "EX"), "ERR syntax error"),
                           (("SET", "e", "v", "EX", "1", "PX", "1"), "ERR syntax error"),
                           (("SET", "e", "v", "KEEPTTL"), "ERR KEEPTTL is not supported"),
                           (("SETEX", "e", "0", "v"), "ERR invalid expire time in 'setex'"),
                           (("PSETEX", "e", "abc", "v"), "ERR value is not an integer"),
                           (("SET", "e", "v", "EX", str(100 * 365 * 24 * 3600 + 1)),
                            "ERR invalid expire time")):
            out = self.redis(*args)
            self.assertTrue(out.startswith(want), "%r answered %r" % (args, out))
        self.assertEqual(self.redis("GET", "e"), "")
        self.assertEqual(self.redis("PING"), "PONG")
        # redis-benchmark with SETEX (keys bench:000000000000..99): every
        # command answered, and the keys it wrote expire
        r = subprocess.run(["/usr/bin/redis-benchmark", "-p", str(self.resp_port), "-n", "2000",
                            "-c", "10", "-P", "16", "-r", "100", "-q", "SETEX",
                            "bench:__rand_int__", "6", "v"],
                           capture_output=True, text=True, timeout=180)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("requests per second", r.stdout.replace("\r", "\n"))
        key = next(k for k in ("bench:%012d" % i for i in range(100))
                   if self.redis("GET", k) == "v")
        left = int(self.redis("PTTL", key))
        self.assertTrue(0 <= left <= 6000, left)
        wait_missing(self, lambda: self.redis("GET", key) or None, "redis-benchmark SETEX")
        # written over RESP, read over MessagePack-RPC: expires_ms there too
        self.assertEqual(self.redis("SET", "s8", "v", "EX", "100"), "OK")
        self.assertIn("expires_ms", self.get(b"s8"))

    # ---- c. compaction ----

    def engine(self):
        return self.node.info()["engine"]

    def test_c_compaction_reaps(self):
        c = self.node.conn(60)
        big = b"x" * 32768
        n = 96
        before = self.engine()
        reqs = []
        for i in range(n):
            reqs.append(("put", "c%d" % i, big, {"ttl_ms": TTL_MS}))
            reqs.append(("put", "c%d" % i, big, {"ttl_ms": TTL_MS, "space": "short"}))
        for err, _ in moortest.pipelined(c, reqs, 32):
            self.assertIsNone(err, err)
        wait_missing(self, lambda: self.value("c%d" % (n - 1)), "c%d" % (n - 1))
        self.assertIsNone(self.value("c0", "short"))
        # Other writes: flushes, and compactions that merge the expired values
        def filtered():
            e = self.engine()
            return (e["filter_rewrites"] - before["filter_rewrites"],
                    e["filter_drops"] - before["filter_drops"])
        done = None
        for rnd in range(40):
            reqs = [("put", "f%d-%d" % (rnd, i), big) for i in range(64)]
            for err, _ in moortest.pipelined(c, reqs, 32):
                self.assertIsNone(err, err)
            rw, dr = filtered()
            if rw > 0 and dr > 0:
                done = rnd
                break
        rw, dr = filtered()
        after = self.engine()
        print("  compaction filter: %d expired records rewritten as tombstones, %d dropped "
              "(grace 1 s), %d compactions; disk %d -> %d bytes"
              % (rw, dr, after["compactions"] - before["compactions"], before["disk_bytes"],
                 after["disk_bytes"]))
        self.assertIsNotNone(done, "no compaction reaped an expired value (rewrites %d, "
                             "drops %d)" % (rw, dr))
        for i in range(n):
            self.assertIsNone(self.value("c%d" % i))
            self.assertIsNone(self.value("c%d" % i, "short"))
        self.assertEqual(self.value("f0-0"), [big])
        c.close()


# ---- d. a cluster -------------------------------------------------------------------

def moor_repair(node, timeout=REPAIR_S):
    cmd = [os.path.join(BUILD, "moor"), "-h", node.addr, "--timeout", "20000", "repair",
           "--timeout", str(timeout)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 60)
    return r.returncode, r.stdout, r.stderr


def live_values(rec_bytes):
    """The live (not tombstone) values of a record's bytes, as Python
    objects; expired-but-unconverted values included (their exp)."""
    rec = msgpack.unpackb(rec_bytes, raw=False)
    assert rec[0] == 2, rec
    return [(s[2], s[5] if len(s) > 5 else None) for s in rec[2] if not s[4]]


class ClusterExpiry(unittest.TestCase):
    def setUp(self):
        self.cl = moortest.Cluster(BUILD, 3, "moor-ttl-cl-", settings=
                                   'vnodes = 16,\n'
                                   '  request_timeout_ms = 1000,\n'
                                   '  anti_entropy = { interval_s = 0 }',
                                   script='moor.space("t", { n = 3, r = 2, w = 2, '
                                          'sloppy = false })\n')
        self.cl.start()
        self.cl.wait_converged()

    def tearDown(self):
        if sys.exc_info()[0] is not None:
            sys.stderr.write(self.cl.logs())
        self.cl.cleanup()

    def get_all(self, node, key):
        """get with r = all (every replica answers, read repair follows)."""
        err, res = call(node, "get", key, {"space": "t", "r": "all"})
        if err is not None:
            return ("error", err)
        return None if res is None else res["values"]

    def stored(self, node, key):
        c = node.conn(15)
        try:
            err, _ = c.call("_auth", {"secret": self.cl.secret, "proto": 1})
            self.assertIsNone(err, err)
            err, rec = c.call("_get", {"space": "t", "key": key})
        finally:
            c.close()
        self.assertIsNone(err, err)
        return rec

    def repair_all(self):
        for n in self.cl.nodes:  # a repair needs every replica's hash trees
            why = poll(lambda: None if n.info()["repair"]["trees_ready"]
                       else "trees of %s not built" % n.id, 120)
            self.assertIsNone(why, why)
        for n in self.cl.nodes:
            # Right after a restart the failure detector may still flap
            # (suspect, then up again): a repair that could not reach every
            # replica says so (exit 1) and is run again, a bounded number of
            # times.
            for attempt in range(10):
                self.cl.wait_converged()
                rc, out, err = moor_repair(n)
                if rc == 0:
                    break
                time.sleep(1)
            self.assertEqual(rc, 0, "moor repair on %s: %s %s\n%s" % (n.id, out, err,
                                                                     self.cl.logs()))

    def never_back(self, key):
        now_ms = int(time.time() * 1000)
        for n in self.cl.nodes:
            self.assertIsNone(self.get_all(n, key), "%s answers %s" % (n.id, key))
            rec = self.stored(n, key)
            if rec is not None:
                for v, exp in live_values(rec):
                    self.assertTrue(exp is not None and exp <= now_ms,
                                    "%s holds a live value %r of %s" % (n.id, v, key))

    def test_d_stopped_replica(self):
        n1, n2, n3 = self.cl.nodes
        err, _ = call(n1, "put", "k1", "v", {"space": "t", "w": "all", "ttl_ms": TTL_MS})
        self.assertIsNone(err, err)
        for n in self.cl.nodes:   # every replica holds it, expiring
            self.assertEqual([v for v, _ in live_values(self.stored(n, "k1"))], ["v"])
        n3.stop()
        wait_missing(self, lambda: call(n1, "get", "k1", {"space": "t"})[1], "k1 on n1")
        n3.start()
        self.cl.wait_converged()
        self.repair_all()
        self.never_back("k1")
        self.repair_all()
        self.never_back("k1")

    def test_d_missed_write(self):
        n1, n2, n3 = self.cl.nodes
        n3.stop()
        poll(lambda: any(m["id"] == "n3" and m["status"] == "up"
                         for m in self.cl.ring(n1)["nodes"]), 30)
        err, _ = call(n1, "put", "k2", "v", {"space": "t", "w": 2, "ttl_ms": TTL_MS})
        self.assertIsNone(err, err)
        wait_missing(self, lambda: call(n1, "get", "k2", {"space": "t"})[1], "k2 on n1")
        n3.start()
        self.cl.wait_converged()
        self.assertIsNone(self.stored(n3, "k2"))   # it missed the write
        self.repair_all()
        self.never_back("k2")
        rec = self.stored(n3, "k2")
        print("  n3, which missed the write, holds after the repair: %r"
              % (None if rec is None else msgpack.unpackb(rec, raw=False)))


if __name__ == "__main__":
    args, rest = moortest.parse_args()
    BUILD = args.build
    sys.exit(0 if moortest.run_unittest(rest) else 1)
