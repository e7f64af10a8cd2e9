#!/usr/bin/python3
"""scan_test.py -- key scans (`scan`, README "Scanning keys") on real moords.

A node alone: 2,500 keys in each of two spaces; pages of 100 list every key
of a space exactly once (and none of the other space), no page over its
limit; a prefix filters; values mode answers each key's value as a get
does; deleted keys are not listed; a cursor taken before a restart of the
node resumes after it; malformed cursors and options are BAD_REQUEST.

Three nodes (n = 3, r = w = 2): 1,000 keys written, a scan through each
node lists them all exactly once; keys written while one replica was down
(so it lacks them) are listed by a quorum scan through that replica once
it is back; with two of three nodes stopped a quorum scan answers
QUORUM_FAILED.  Also the `moor scan` CLI.

Every wait is bounded; every moord started is killed at exit (moortest.py).

usage: scan_test.py --build BUILD_DIR [-k NAME]
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

import moortest
from moortest import pipelined, retry

BUILD = moortest.DEFAULT_BUILD
SPACES = 'moor.space("default", {})\nmoor.space("other", {})\nmoor.space("big", {})\n'


def scan_all(conn, opts, page_max=None):
    """Every page of a scan until the cursor is nil: (keys, values, pages)."""
    keys, values, pages = [], [], 0
    cursor = None
    while True:
        o = dict(opts)
        if cursor is not None:
            o["cursor"] = cursor
        err, res = conn.call("scan", o)
        if err is not None:
            raise AssertionError("scan %r: %r" % (o, err))
        pages += 1
        if page_max is not None and len(res["keys"]) > page_max:
            raise AssertionError("a page of %d keys, limit %d" % (len(res["keys"]), page_max))
        keys += res["keys"]
        values += res.get("values", [])
        cursor = res["cursor"]
        if cursor is None:
            return keys, values, pages
        if pages > 100000:
            raise AssertionError("no end of the scan after 100,000 pages")


def write(conn, space, keys, value=lambda k: k):
    out = pipelined(conn, [("put", k, value(k), {"space": space}) for k in keys])
    bad = [e for e, _ in out if e is not None]
    if bad:
        raise AssertionError("puts failed: %r" % bad[:3])


class LoneNode(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = moortest.Node(BUILD, tempfile.mkdtemp(prefix="moor-scan-"), "s1")
        cls.node.write_config('engine = { sync = "interval", memtable_mb = 1 },\n'
                              '  log = { level = "warn" }', script=SPACES)
        cls.node.start()
        c = cls.node.conn()
        cls.keys = {"default": ["key:%05d" % i for i in range(2500)],
                    "other": ["o:%05d" % i for i in range(2499)] + [b"\xff\xfe-bin"]}
        write(c, "default", cls.keys["default"])
        write(c, "other", cls.keys["other"], value=lambda k: {"v": k if isinstance(k, str) else 1})
        c.close()

    @classmethod
    def tearDownClass(cls):
        cls.node.cleanup()

    def setUp(self):
        self.c = self.node.conn()

    def tearDown(self):
        self.c.close()

    def test_pages_list_each_key_once(self):
        for space in ("default", "other"):
            keys, _, pages = scan_all(self.c, {"space": space, "limit": 100}, page_max=100)
            self.assertEqual(len(keys), len(set(keys)), "a key listed twice in %s" % space)
            self.assertEqual(sorted(keys, key=str), sorted(self.keys[space], key=str))
            self.assertGreaterEqual(pages, 25)
        # not UTF-8: bin; the rest str
        keys, _, _ = scan_all(self.c, {"space": "other", "limit": 1000})
        self.assertIn(b"\xff\xfe-bin", keys)
        # the default page is 100 keys
        err, res = self.c.call("scan")
        self.assertIsNone(err)
        self.assertLessEqual(len(res["keys"]), 100)
        self.assertIsNotNone(res["cursor"])
        self.assertNotIn("values", res)

    def test_prefix(self):
        keys, _, _ = scan_all(self.c, {"prefix": "key:001", "limit": 7}, page_max=7)
        self.assertEqual(sorted(keys), ["key:%05d" % i for i in range(100, 200)])
        keys, _, _ = scan_all(self.c, {"prefix": "nothing-starts-so"})
        self.assertEqual(keys, [])

    def test_values(self):
        keys, values, _ = scan_all(self.c, {"space": "other", "values": True, "limit": 500},
                                   page_max=500)
        self.assertEqual(len(keys), 2500)
        self.assertEqual(len(values), len(keys))
        for k, v in zip(keys, values):
            self.assertEqual(v["values"], [{"v": k if isinstance(k, str) else 1}])
            self.assertIsInstance(v["ctx"], bytes)
        # the ctx is a get's: a put with it replaces the value
        err, res = self.c.call("get", keys[0], {"space": "other"})
        self.assertEqual(res["ctx"], values[0]["ctx"])

    def test_pages_bounded_in_bytes(self):
        # 12 values of 1 MiB: a page holds about 4 MiB of records, whatever its limit
        c = self.c
        big = "x" * (1 << 20)
        write(c, "big", ["big:%02d" % i for i in range(12)], value=lambda k: big)
        keys, values, pages = scan_all(c, {"space": "big", "values": True, "limit": 100},
                                       page_max=5)
        self.assertEqual(sorted(keys), ["big:%02d" % i for i in range(12)])
        self.assertTrue(all(v["values"] == [big] for v in values))
        self.assertGreaterEqual(pages, 3)
        # keys only: values stripped on the replica, so one page takes them all
        keys, _, pages = scan_all(c, {"space": "big", "limit": 100})
        self.assertEqual(len(keys), 12)
        self.assertEqual(pages, 1)

    def test_deleted_keys_absent(self):
        c = self.c
        write(c, "default", ["gone:%d" % i for i in range(50)])
        out = pipelined(c, [("del", "gone:%d" % i, {"overwrite": True}) for i in range(0, 50, 2)])
        self.assertTrue(all(e is None for e, _ in out))
        keys, _, _ = scan_all(c, {"prefix": "gone:"})
        self.assertEqual(sorted(keys), sorted("gone:%d" % i for i in range(1, 50, 2)))
        out = pipelined(c, [("del", "gone:%d" % i, {"overwrite": True}) for i in range(1, 50, 2)])
        keys, _, _ = scan_all(c, {"prefix": "gone:"})
        self.assertEqual(keys, [])

    def test_bad_requests(self):
        err, res = self.c.call("scan", {"cursor": b"\x01not a cursor at all"})
        self.assertEqual(err[0], "BAD_REQUEST", err)
        err, res = self.c.call("scan", {"limit": 100})
        cur = bytearray(res["cursor"])
        cur[3] ^= 1
        err, _ = self.c.call("scan", {"cursor": bytes(cur)})
        self.assertEqual(err[0], "BAD_REQUEST", err)
        for opts in ({"limit": 0}, {"limit": 1001}, {"bogus": 1}, {"space": "nope"},
                     {"values": 3}, {"r": "most"}):
            err, _ = self.c.call("scan", opts)
            self.assertEqual(err[0], "BAD_REQUEST", (opts, err))
        err, _ = self.c.call("scan", {}, {})
        self.assertEqual(err[0], "BAD_REQUEST", err)

    def test_cli(self):
        moor = os.path.join(BUILD, "moor")
        out = subprocess.run([moor, "-h", self.node.addr, "scan", "--space", "other"],
                             capture_output=True, timeout=60, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = out.stdout.splitlines()
        self.assertEqual(len(lines), 2500)
        self.assertTrue('{"$bin":"//4tYmlu"}' in lines, "no bin key line among %d" % len(lines))
        out = subprocess.run([moor, "-h", self.node.addr, "scan", "--prefix", "key:000",
                              "--values", "--limit", "5"], capture_output=True, timeout=60,
                             text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = out.stdout.splitlines()
        self.assertEqual(len(lines), 5)
        for line in lines:
            k, v = line.split("\t")
            self.assertEqual(json.loads(v)["values"], [k])
        out = subprocess.run([moor, "-h", self.node.addr, "scan", "--page", "10", "--json"],
                             capture_output=True, timeout=60, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        page = json.loads(out.stdout)
        self.assertLessEqual(len(page["keys"]), 10)
        self.assertIsInstance(page["cursor"], str)
        out2 = subprocess.run([moor, "-h", self.node.addr, "scan", "--page", "10",
                               "--cursor", page["cursor"]], capture_output=True, timeout=60,
                              text=True)
        self.assertEqual(out2.returncode, 0, out2.stderr)
        self.assertFalse(set(out2.stdout.splitlines()) & set(page["keys"]))
        out = subprocess.run([moor, "-h", self.node.addr, "scan", "--cursor", "bm90IGEgY3Vyc29y"],
                             capture_output=True, timeout=60, text=True)
        self.assertEqual(out.returncode, 1, out.stderr)
        self.assertIn("BAD_REQUEST", out.stderr)

    def test_python_client(self):
        sys.path.insert(0, os.path.join(moortest.ROOT, "examples", "python"))
        from moor_client import MoorClient, MoorError
        with MoorClient(self.node.addr, timeout=10) as c:
            keys = list(c.scan_all(space="other", limit=333))
            self.assertEqual(sorted(keys, key=str), sorted(self.keys["other"], key=str))
            pairs = list(c.scan_all(prefix="key:0000", values=True))
            self.assertEqual(sorted(pairs), [("key:%05d" % i, {"values": ["key:%05d" % i],
                                                               "ctx": v["ctx"]})
                                             for i, (_, v) in enumerate(sorted(pairs))])
            page = c.scan(limit=10)
            self.assertLessEqual(len(page["keys"]), 10)
            with self.assertRaises(MoorError) as e:
                c.scan(cursor=b"nonsense")
            self.assertEqual(e.exception.code, "BAD_REQUEST")

    def test_zz_resume_after_restart(self):
        c = self.c
        first = []
        cursor = None
        for _ in range(5):
            err, res = c.call("scan", {"limit": 100, "cursor": cursor})
            self.assertIsNone(err)
            first += res["keys"]
            cursor = res["cursor"]
        c.close()
        self.assertEqual(self.node.stop(), 0, self.node.logtail())  # clean (and leak-free) exit
        self.node.start()
        self.c = self.node.conn()
        rest, _, _ = scan_all(self.c, {"limit": 100, "cursor": cursor})
        keys = first + rest
        self.assertEqual(len(keys), len(set(keys)))
        self.assertEqual(set(keys), set(self.keys["default"]) | set(self.extra_default()))

    def extra_default(self):
        # what test_deleted_keys_absent left behind (nothing: all deleted)
        return set()


class ThreeNodes(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cl = moortest.Cluster(
            BUILD, 3, "moor-scan-cl-",
            settings='engine = { sync = "interval", memtable_mb = 2 },\n'
                     '  anti_entropy = { interval_s = 0 },\n  log = { level = "warn" }',
            script='moor.space("default", { n = 3, r = 2, w = 2 })\n')
        cls.cl.start()
        cls.cl.wait_converged()
        c = cls.cl.nodes[0].conn()
        retry(lambda: c.call("get", "probe", {"r": "all", "timeout_ms": 2000}), 20, "get r=all")
        cls.keys = ["c:%04d" % i for i in range(1000)]
        out = pipelined(c, [("put", k, k, {"w": "all"}) for k in cls.keys])
        assert all(e is None for e, _ in out), [e for e, _ in out if e][:3]
        c.close()

    @classmethod
    def tearDownClass(cls):
        cls.cl.cleanup()

    def test_a_each_node_lists_all_once(self):
        for n in self.cl.nodes:
            c = n.conn()
            keys, _, _ = scan_all(c, {"limit": 100, "prefix": "c:"}, page_max=100)
            c.close()
            self.assertEqual(len(keys), len(set(keys)), n.id)
            self.assertEqual(sorted(keys), self.keys, n.id)
        c = self.cl.nodes[1].conn()
        keys, values, _ = scan_all(c, {"limit": 250, "prefix": "c:", "values": True,
                                       "r": "all"}, page_max=250)
        c.close()
        self.assertEqual(sorted(keys), self.keys)
        self.assertTrue(all(v["values"] == [k] for k, v in zip(keys, values)))

    def test_b_quorum_scan_lists_keys_a_replica_missed(self):
        n1, n3 = self.cl.nodes[0], self.cl.nodes[2]
        self.assertEqual(n3.stop(), 0, n3.logtail())  # after scans through it: a clean exit
        c = n1.conn()
        missed = ["m:%03d" % i for i in range(100)]
        out = pipelined(c, [("put", k, k, {"w": 2, "timeout_ms": 3000}) for k in missed])
        self.assertTrue(all(e is None for e, _ in out), [e for e, _ in out if e][:3])
        c.close()
        n3.start()
        self.cl.wait_converged()
        c = n3.conn()
        # n3's own store lacks them: a scan of n3 alone (r = 1) lists none
        err, res = c.call("scan", {"prefix": "m:", "r": 1, "limit": 1000})
        self.assertIsNone(err, err)
        self.assertEqual(res["keys"], [])
        keys, _, _ = scan_all(c, {"prefix": "m:", "r": "quorum"})
        c.close()
        self.assertEqual(sorted(keys), missed)

    def test_c_quorum_failed(self):
        n1, n2, n3 = self.cl.nodes
        n2.kill9()
        n3.kill9()
        c = n1.conn()
        err, _ = c.call("scan", {"r": "quorum", "timeout_ms": 2000})
        self.assertEqual(err[0], "QUORUM_FAILED", err)
        err, res = c.call("scan", {"r": 1, "prefix": "c:", "limit": 1000})
        self.assertIsNone(err, err)
        self.assertGreater(len(res["keys"]) + (res["cursor"] is not None), 0)
        err, _ = c.call("scan", {"cursor": b"\x00" * 13})
        self.assertEqual(err[0], "BAD_REQUEST", err)
        c.close()


def main():
    global BUILD
    args, rest = moortest.parse_args(BUILD)
    BUILD = args.build
    sys.exit(0 if moortest.run_unittest(rest) else 1)


if __name__ == "__main__":
    main()
