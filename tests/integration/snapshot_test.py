#!/usr/bin/python3
"""snapshot_test.py -- `snapshot` on a real moord (README "Snapshots and
restore").

Under write load: writer threads put keys over their own connections,
recording when each put was sent and when it was acknowledged; a snapshot
is taken mid-load; the node is stopped; a fresh node started on a copy of
the snapshot directory (cp -a, as README says) holds every write
acknowledged before the snapshot request was sent, with its value, and
no write sent after the snapshot's answer came back.  Also: a node with
data in both tables and the memtable, list/delete/sizes through the CLI,
bad tags and names, and a second create while one runs (BUSY).  In a
3-node cluster, a member restored from a snapshot gets the writes it
missed back from `moor repair` (README's cluster restore).

usage: snapshot_test.py --build BUILD_DIR [-k NAME]
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import msgpack

import moortest

BUILD = moortest.DEFAULT_BUILD
SETTINGS = ('engine = { sync = "interval", memtable_mb = 1 },\n'
            '  log = { level = "warn" },')


def make_node(data=None):
    """A node in a fresh directory; data: start it on a copy of this
    directory (cp -a, as a restore does)."""
    n = moortest.Node(BUILD, tempfile.mkdtemp(prefix="moor-snap-"), "s1")
    if data:
        subprocess.run(["cp", "-a", data, n.data], check=True, timeout=120)
    n.write_config(SETTINGS)
    return n


def value_of(key):
    return "%s:%s" % (key, "v" * (1500 + hash(key) % 500))


def cli(node, *args):
    p = subprocess.run([os.path.join(BUILD, "moor"), "-h", node.addr] + list(args),
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


class Writer(threading.Thread):
    """Puts w<id>-<i> = value_of(key) in order until told to stop; keeps
    (key, sent, acked) of every put acknowledged."""

    def __init__(self, node, wid):
        super().__init__(daemon=True)
        self.conn = node.conn(15)
        self.wid = wid
        self.done = []
        self.sent_after = []  # keys sent after `mark` was set
        self.stop = threading.Event()
        self.mark = None
        self.error = None

    def run(self):
        try:
            i = 0
            while not self.stop.is_set() and i < 100000:
                key = "w%d-%d" % (self.wid, i)
                sent = time.monotonic()
                err, _ = self.conn.call("put", key, value_of(key))
                if err is not None:
                    raise AssertionError("put %s: %r" % (key, err))
                self.done.append((key, sent, time.monotonic()))
                i += 1
        except Exception as e:  # reported by the test
            self.error = e
        finally:
            self.conn.close()


class SnapshotTest(unittest.TestCase):
    def setUp(self):
        self.nodes = []

    def tearDown(self):
        for n in self.nodes:
            n.cleanup()

    def node(self, data=None):
        n = make_node(data)
        self.nodes.append(n)
        return n.start()

    def snapshot(self, node, **params):
        c = node.conn(120)
        try:
            return c.call("snapshot", params) if params else c.call("snapshot")
        finally:
            c.close()

    def test_under_load(self):
        n = self.node()
        writers = [Writer(n, w) for w in range(4)]
        for w in writers:
            w.start()
        behind = moortest.poll(lambda: sum(len(w.done) for w in writers) < 2000, 60)
        self.assertFalse(behind, "the writers made too little progress in 60 s")
        c = n.conn(120)
        t_send = time.monotonic()
        err, snap = c.call("snapshot", {"tag": "load"})
        t_answer = time.monotonic()
        c.close()
        self.assertIsNone(err)
        # more writes after the snapshot, then stop
        more = sum(len(w.done) for w in writers) + 1000
        moortest.poll(lambda: sum(len(w.done) for w in writers) < more, 60)
        for w in writers:
            w.stop.set()
        for w in writers:
            w.join(30)
            self.assertIsNone(w.error)
        self.assertTrue(snap["name"].endswith("-load"), snap)
        self.assertGreater(snap["bytes"], 0)
        self.assertEqual(snap["bytes"], snap["linked_bytes"] + snap["copied_bytes"])
        self.assertGreater(snap["tables"], 0, "load of several MB with 1 MB memtables")
        before = [k for w in writers for (k, sent, acked) in w.done if acked < t_send]
        after = [k for w in writers for (k, sent, acked) in w.done if sent > t_answer]
        self.assertGreater(len(before), 1000)
        self.assertGreater(len(after), 0)
        n.stop()

        r = self.node(snap["path"])
        c = r.conn(30)
        got = moortest.pipelined(c, [("get", k) for k in before + after])
        c.close()
        missing = [k for k, (e, v) in zip(before, got) if e is not None or v is None or
                   v["values"] != [value_of(k)]]
        self.assertEqual(missing[:5], [], "%d of %d writes acknowledged before the snapshot "
                         "are not in it" % (len(missing), len(before)))
        late = [k for k, (e, v) in zip(after, got[len(before):]) if v is not None]
        self.assertEqual(late[:5], [], "%d writes sent after the snapshot answered are in it"
                         % len(late))

    def test_tables_and_memtable_list_delete(self):
        n = self.node()
        c = n.conn(30)
        keys = ["k%05d" % i for i in range(3000)]
        for e, _ in moortest.pipelined(c, [("put", k, value_of(k)) for k in keys]):
            self.assertIsNone(e)
        info = c.call("info")[1]["engine"]
        self.assertGreater(info["tables_l0"] + info["compactions"], 0)
        self.assertGreater(info["memtable_bytes"], 0)
        err, s1 = c.call("snapshot", {"op": "create"})
        self.assertIsNone(err)
        self.assertGreater(s1["linked_bytes"], 0)
        self.assertGreater(s1["copied_bytes"], 0)
        for e, _ in moortest.pipelined(c, [("del", k) for k in keys[:100]]):
            self.assertIsNone(e)
        rc, out, errtext = cli(n, "snapshot", "--tag", "second", "--json")
        self.assertEqual(rc, 0, errtext)
        s2 = json.loads(out)
        self.assertTrue(s2["name"].endswith("-second"))

        rc, out, errtext = cli(n, "snapshot", "list", "--json")
        self.assertEqual(rc, 0, errtext)
        lst = json.loads(out)
        self.assertEqual([s["name"] for s in lst], [s1["name"], s2["name"]])
        self.assertEqual(lst[0]["tag"], None)
        self.assertEqual(lst[1]["tag"], "second")
        for s, made in zip(lst, (s1, s2)):
            self.assertEqual(s["path"], made["path"])
            self.assertGreater(s["bytes"], 0)
            self.assertGreater(s["created_ms"], 1.7e12)
        rc, out, _ = cli(n, "snapshot", "list")
        self.assertEqual(rc, 0)
        self.assertIn(s2["name"], out)

        # the data_dir scan ignores snapshots: info's disk_bytes counts the node's own files
        self.assertIsNone(c.call("info")[0])

        # bad input: the node answers and keeps serving
        for params in ({"tag": "bad tag"}, {"tag": ""}, {"tag": "x" * 65}, {"op": "nope"},
                       {"op": "delete"}, {"op": "delete", "name": "../etc"},
                       {"op": "delete", "name": ".tmp-x"}, {"op": "list", "tag": "a"}):
            err, _ = c.call("snapshot", params)
            self.assertEqual(err[0], "BAD_REQUEST", params)
        err, _ = c.call("snapshot", {"op": "delete", "name": "20200101T000000.000Z"})
        self.assertEqual(err[0], "BAD_REQUEST")
        rc, _, errtext = cli(n, "snapshot", "--tag", "a/b")
        self.assertEqual(rc, 1)
        self.assertIn("BAD_REQUEST", errtext)

        # two creates at once: the second is BUSY
        c.sock.sendall(msgpack.packb([0, 901, "snapshot", []]) +
                       msgpack.packb([0, 902, "snapshot", [{"tag": "two"}]]))
        answers = {m[1]: m for m in (c.recv(), c.recv())}
        self.assertIsNone(answers[901][2])
        self.assertEqual(answers[902][2][0], "BUSY")
        self.assertIsNone(c.call("snapshot", {"op": "delete", "name": answers[901][3]["name"]})[0])

        # back to back (maybe within one millisecond): distinct names
        quick = [c.call("snapshot", {"tag": "q"}) for _ in range(5)]
        self.assertEqual([e for e, _ in quick], [None] * 5)
        self.assertEqual(len({r["name"] for _, r in quick}), 5)
        for _, r in quick:
            self.assertIsNone(c.call("snapshot", {"op": "delete", "name": r["name"]})[0])

        rc, out, errtext = cli(n, "snapshot", "delete", s2["name"])
        self.assertEqual(rc, 0, errtext)
        self.assertFalse(os.path.exists(s2["path"]))
        lst = c.call("snapshot", {"op": "list"})[1]
        self.assertEqual([s["name"] for s in lst], [s1["name"]])
        self.assertEqual(c.call("get", keys[0])[1]["values"], [value_of(keys[0])])
        c.close()
        n.stop()

        # the first snapshot restores every key, deletes after it not applied
        r = self.node(s1["path"])
        c = r.conn(30)
        got = moortest.pipelined(c, [("get", k) for k in keys])
        bad = [k for k, (e, v) in zip(keys, got) if e is not None or v is None or
               v["values"] != [value_of(k)]]
        self.assertEqual(bad[:5], [])
        # a restored node takes writes and snapshots of its own
        self.assertIsNone(c.call("put", "new", "x")[0])
        self.assertIsNone(c.call("snapshot")[0])
        c.close()

    def test_cluster_restore_then_repair(self):
        """README's cluster restore: n1 restored from a snapshot misses the
        writes made after it; `moor repair` on n1 brings them back (read
        from n1 alone once n2 and n3 are down)."""
        cl = moortest.Cluster(BUILD, 3, prefix="moor-snapcl-",
                              settings='log = { level = "warn" },')
        cl.start()
        cl.wait_converged()
        n1 = cl.nodes[0]
        c = n1.conn(30)
        before = ["a%03d" % i for i in range(100)]
        after = ["b%03d" % i for i in range(100)]
        for k in before:
            self.assertIsNone(c.call("put", k, value_of(k), {"w": "all"})[0])
        err, snap = c.call("snapshot", {"tag": "cl"})
        self.assertIsNone(err)
        for k in after:
            self.assertIsNone(c.call("put", k, value_of(k), {"w": "all"})[0])
        c.close()
        n1.stop()
        os.rename(n1.data, n1.data + ".old")
        subprocess.run(["cp", "-a", os.path.join(n1.data + ".old", "snapshots", snap["name"]),
                        n1.data], check=True, timeout=120)
        n1.start()
        cl.wait_converged()
        rc, out, errtext = cli(n1, "repair", "--timeout", "120")
        self.assertEqual(rc, 0, out + errtext)
        for other in cl.nodes[1:]:
            other.kill9()
        c = n1.conn(30)
        got = moortest.pipelined(c, [("get", k, {"r": 1, "timeout_ms": 2000})
                                     for k in before + after])
        bad = [k for k, (e, v) in zip(before + after, got)
               if e is not None or v is None or v["values"] != [value_of(k)]]
        self.assertEqual(bad[:5], [], "%d keys not on the restored, repaired node" % len(bad))
        c.close()


if __name__ == "__main__":
    args, rest = moortest.parse_args()
    BUILD = args.build
    sys.exit(0 if moortest.run_unittest(rest) else 1)
