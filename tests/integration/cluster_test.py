#!/usr/bin/python3
"""cluster_test.py -- integration tests of a real three-node moord cluster.

Starts three moord processes on 127.0.0.1, 127.0.0.2 and 127.0.0.3 (free
ports, throwaway configs and data directories, a cluster_secret), drives
them over raw MessagePack-RPC (Debian's python3-msgpack) and the `moor`
CLI, kills nodes with SIGKILL and restarts them.  Every wait is bounded
and every moord this script starts is killed when it exits.
The harness (RPC client, nodes, clusters) is moortest.py, beside this file.

usage: cluster_test.py --build BUILD_DIR [-k NAME]
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
from moortest import ROOT, poll, retry

BUILD = moortest.DEFAULT_BUILD
SECRET = "cluster-test-secret-%d" % os.getpid()
REPAIR_S = 15       # bound on background read repair reaching a replica
READY_S = 20        # bound on peers reconnecting to a restarted node (back-off <= 5 s)


class Cluster(moortest.Cluster):
    """n1, n2, n3 with a cluster_secret, the default space and "carts"."""

    def __init__(self):
        super().__init__(
            BUILD, 3, "moor-cluster-", secret=SECRET, settings=
            'vnodes = 64,\n'
            '  engine = { sync = "interval", memtable_mb = 4, cache_mb = 8 },\n'
            '  log = { level = "info" },\n'
            '  plugins = { "resolvers.lww", "resolvers.set_union", "handlers.incr",'
            ' "handlers.cas" }', script=
            'moor.space("default", { n = 3, r = 2, w = 2 })\n'
            'moor.space("carts", { n = 3, r = 2, w = 2, resolver = "set_union" })\n')

    def wait_ready(self, timeout=READY_S):
        """Waits until a read with r = "all" works through every node: a
        restarted peer is reached only once the others' connections to it
        are out of their reconnect back-off."""
        for n in self.nodes:
            c = n.conn(5)
            try:
                retry(lambda: c.call("get", "ready-probe", {"r": "all", "timeout_ms": 2000}),
                      timeout, "get r=all through %s" % n.id)
            finally:
                c.close()

    def start_missing(self):
        """Starts every node that is not running, waits for convergence and
        for every node to reach every other one."""
        restarted = False
        for n in self.nodes:
            if not n.alive():
                n.start()
                restarted = True
        self.wait_converged()
        if restarted:
            self.wait_ready()


CLUSTER = None


def setUpModule():
    global CLUSTER
    CLUSTER = Cluster()     # removed at exit (moortest)
    CLUSTER.start()


def tearDownModule():
    if CLUSTER is not None:
        CLUSTER.stop()    # main() prints the logs on failure, then removes the directory


class ClusterTest(unittest.TestCase):
    """Test names are ordered a..g: each starts from a whole, converged cluster."""

    def setUp(self):
        self.c = CLUSTER
        self.n1, self.n2, self.n3 = self.c.nodes
        self.c.start_missing()

    def connect(self, node):
        """A connection to node, closed when the test ends."""
        c = node.conn()
        self.addCleanup(c.close)
        return c

    def test_a_converges(self):
        views = {}
        for n in self.c.nodes:
            r = self.c.ring(n)
            self.assertEqual(r["node"], n.id)
            self.assertIs(r["cluster"], True)
            members = sorted(r["nodes"], key=lambda m: m["id"])
            self.assertEqual([m["id"] for m in r["nodes"]], [m["id"] for m in members],
                             "ring nodes not sorted by id")
            self.assertEqual([(m["id"], m["addr"], m["status"]) for m in members],
                             [(x.id, x.addr, "up") for x in self.c.nodes])
            self.assertEqual([m["id"] for m in members if m["self"]], [n.id])
            self.assertTrue(all(m["vnodes"] == 64 for m in members), members)
            shares = [m["share"] for m in members]
            self.assertTrue(all(0 < s < 1 for s in shares), shares)
            self.assertAlmostEqual(sum(shares), 1.0, delta=0.01)
            views[n.id] = [(m["id"], m["addr"], m["status"], m["vnodes"]) for m in members]
        self.assertEqual(len(set(map(tuple, views.values()))), 1, views)

    def test_b_put_get_every_node(self):
        values = [None, True, 0, -1, 2**63 - 1, -2**63, 2**64 - 1, 1.5, "text", b"\x00\xff",
                  [1, [2, [3]]], {"a": {"b": [1, 2]}}, "", [], {}]
        conns = [self.connect(n) for n in self.c.nodes]
        for i, v in enumerate(values):
            writer = conns[i % 3]
            key = "b%d" % i
            err, res = writer.call("put", key, v)
            self.assertIsNone(err, err)
            self.assertIsInstance(res["ctx"], bytes)
            for j, reader in enumerate(conns):
                err, res = reader.call("get", key)
                self.assertIsNone(err, err)
                self.assertEqual(res["values"], [v], "%s via n%d" % (key, j + 1))
                err, res = reader.call("get", key, {"r": "all"})
                self.assertIsNone(err, err)
                self.assertEqual(res["values"], [v], "%s r=all via n%d" % (key, j + 1))
        # A non-canonical encoding (uint16 for 5) comes back as sent, from every node.
        conns[0].sock.sendall(b"\x94\x00\x63\xa3put\x92\xa3raw\xcd\x00\x05")
        msg = conns[0].recv()
        self.assertEqual(msg[1], 0x63)
        self.assertIsNone(msg[2], msg)
        for c in conns:
            c.sock.sendall(b"\x94\x00\x64\xa3get\x91\xa3raw")
            frame = c.sock.recv(65536)
            self.assertIn(b"\x91\xcd\x00\x05", frame)
        # Overwriting with the ctx replaces the value everywhere.
        err, res = conns[1].call("get", "b8")
        err, res = conns[2].call("put", "b8", "replaced", {"ctx": res["ctx"]})
        self.assertIsNone(err, err)
        for c in conns:
            self.assertEqual(c.call("get", "b8", {"r": "all"})[1]["values"], ["replaced"])
        self.assertEqual(conns[0].call("get", "absent", {"r": "all"}), (None, None))
        self.assertIsNone(conns[0].call("del", "b8", {"ctx": res["ctx"]})[0])
        for c in conns:
            self.assertEqual(c.call("get", "b8"), (None, None))

    def test_c_one_node_down(self):
        self.n3.kill9()
        for i, n in enumerate((self.n1, self.n2)):
            c = self.connect(n)
            for k in range(10):
                key = "c%d-%d" % (i, k)
                err, res = c.call("put", key, [i, k], {"timeout_ms": 5000})
                self.assertIsNone(err, "put %s via %s: %r" % (key, n.id, err))
            for other in (self.n1, self.n2):
                oc = self.connect(other)
                for k in range(10):
                    key = "c%d-%d" % (i, k)
                    err, res = oc.call("get", key, {"timeout_ms": 5000})
                    self.assertIsNone(err, "get %s via %s: %r" % (key, other.id, err))
                    self.assertEqual(res["values"], [[i, k]])

    def test_c2_handlers_through_the_coordinator(self):
        # A Lua handler's moor.get/put go through the coordinator: the
        # counter is replicated, and a lost quorum reaches the handler.
        c1 = self.connect(self.n1)
        self.assertEqual(c1.call("call", "incr", "hits", 5), (None, 5))
        c2 = self.connect(self.n2)
        self.assertEqual(c2.call("call", "incr", "hits", 2), (None, 7))
        self.n3.kill9()
        self.assertEqual(c1.call("call", "incr", "hits", 1), (None, 8))
        self.n2.kill9()
        err, _ = c1.call("call", "incr", "hits", 1)
        self.assertIsNotNone(err)
        self.assertEqual(err[0], "HANDLER_ERROR")
        self.assertIn("QUORUM_FAILED", err[1])
        err, res = c1.call("get", "hits", {"r": 1})
        self.assertIsNone(err)
        self.assertEqual(res["values"], [8])

    def test_d_two_nodes_down(self):
        c1 = self.connect(self.n1)
        err, res = c1.call("put", "d-known", "before")
        self.assertIsNone(err, err)
        ctx = res["ctx"]
        self.n2.kill9()
        self.n3.kill9()
        err, _ = c1.call("put", "d-blind", "x", {"timeout_ms": 5000})
        self.assertIsNotNone(err, "a put with 2 of 3 replicas dead succeeded")
        self.assertEqual(err[0], "QUORUM_FAILED", err)
        self.assertIn("1 of 3", err[1])
        err, _ = c1.call("put", "d-known", "after", {"ctx": ctx, "timeout_ms": 5000})
        self.assertIsNotNone(err, "a put with 2 of 3 replicas dead succeeded")
        self.assertEqual(err[0], "QUORUM_FAILED", err)
        self.assertIn("1 of 3", err[1])
        err, _ = c1.call("get", "d-known", {"r": 2, "timeout_ms": 5000})
        self.assertIsNotNone(err, "a get with r=2 and 2 of 3 replicas dead succeeded")
        self.assertEqual(err[0], "QUORUM_FAILED", err)
        self.assertIn("1 of 3", err[1])
        err, res = c1.call("ping")
        self.assertIsNone(err, err)
        self.assertEqual(res["node"], "n1")
        err, res = self.connect(self.n1).call("ping")     # and new connections too
        self.assertIsNone(err, err)

    def test_e_siblings_and_resolver(self):
        a, b, c = (self.connect(n) for n in self.c.nodes)
        # Two writers both start from the same (then stale) ctx: siblings.
        err, res = a.call("put", "e-key", "base")
        self.assertIsNone(err, err)
        stale = res["ctx"]
        self.assertIsNone(a.call("put", "e-key", "alpha-sibling", {"ctx": stale})[0])
        self.assertIsNone(b.call("put", "e-key", "beta-sibling", {"ctx": stale})[0])
        for conn in (a, b, c):
            err, res = conn.call("get", "e-key")
            self.assertIsNone(err, err)
            self.assertEqual(sorted(res["values"]), ["alpha-sibling", "beta-sibling"])
        # Two writers without any ctx: also kept side by side.
        self.assertIsNone(b.call("put", "e-blind", "one")[0])
        self.assertIsNone(c.call("put", "e-blind", "two")[0])
        err, res = a.call("get", "e-blind")
        self.assertIsNone(err, err)
        self.assertEqual(sorted(res["values"]), ["one", "two"])
        # The CLI prints every sibling.
        r = subprocess.run([os.path.join(BUILD, "moor"), "-h", self.n3.addr, "get", "e-key",
                            "--json"],
                           capture_output=True, text=True, timeout=20)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn('"alpha-sibling"', r.stdout)
        self.assertIn('"beta-sibling"', r.stdout)
        # A space with a resolver answers one merged value, and writes it back.
        carts = {"space": "carts"}
        err, res = a.call("put", "cart", ["apple", "milk"], carts)
        self.assertIsNone(err, err)
        stale = res["ctx"]
        self.assertIsNone(b.call("put", "cart", ["pear"], dict(carts, ctx=stale))[0])
        self.assertIsNone(c.call("put", "cart", ["apple", "bread"], dict(carts, ctx=stale))[0])
        err, res = a.call("get", "cart", carts)
        self.assertIsNone(err, err)
        self.assertEqual(res["values"], [["apple", "bread", "pear"]])
        for conn in (a, b, c):
            err, res = conn.call("get", "cart", dict(carts, r="all"))
            self.assertIsNone(err, err)
            self.assertEqual(res["values"], [["apple", "bread", "pear"]])
        # The same key in the default space is another key: untouched.
        self.assertEqual(a.call("get", "cart"), (None, None))

    def test_f_read_repair(self):
        keys = ["f%02d" % i for i in range(20)]
        self.n3.kill9()
        c1 = self.connect(self.n1)
        for i, k in enumerate(keys):
            err, _ = c1.call("put", k, {"i": i, "k": k}, {"timeout_ms": 5000})
            self.assertIsNone(err, "put %s with n3 down: %r" % (k, err))
        self.n3.start()
        self.c.wait_converged()
        self.c.wait_ready()     # from here on every r=all read must succeed at once
        peer = self.connect(self.n3)
        self.assertEqual(peer.call("_auth", {"secret": SECRET, "proto": 1})[0], None)
        for k in keys:          # n3 missed every write: nothing there before the reads
            self.assertEqual(peer.call("_get", {"space": "default", "key": k}), (None, None), k)
        for i, k in enumerate(keys):
            err, res = c1.call("get", k, {"r": "all", "timeout_ms": 5000})
            self.assertIsNone(err, "get %s r=all: %r" % (k, err))
            self.assertEqual(res["values"], [{"i": i, "k": k}])

        def missing_on_n3():
            missing = []
            for i, k in enumerate(keys):
                err, rec = peer.call("_get", {"space": "default", "key": k})
                self.assertIsNone(err, "_get %s on n3: %r" % (k, err))
                if rec is None:
                    missing.append(k)
                    continue
                self.assertIsInstance(rec, bytes)
                ver, vclock, siblings = msgpack.unpackb(rec, raw=False)
                self.assertEqual(ver, 2)    # format v2 (README "On-disk formats")
                self.assertIsInstance(vclock, list)
                self.assertEqual(len(siblings), 1, siblings)
                dot_id, dot_counter, value, ts, tombstone = siblings[0]
                self.assertTrue(dot_id, "no dot in %s's record" % k)
                self.assertGreater(dot_counter, 0)
                self.assertEqual(value, {"i": i, "k": k})
                self.assertIs(tombstone, False)
                self.assertIsInstance(ts, int)
            return missing
        missing = poll(missing_on_n3, REPAIR_S)
        self.assertEqual(missing, [], "not repaired on n3 within %ss" % REPAIR_S)

    def test_g_peer_methods_gated(self):
        c = self.connect(self.n1)
        self.assertIsNone(c.call("put", "g-key", "v")[0])
        err, _ = c.call("_get", {"space": "default", "key": "g-key"})
        self.assertIsNotNone(err, "a client called _get without the secret")
        self.assertIn(err[0], ("NOAUTH", "UNKNOWN_METHOD"), err)
        err, _ = c.call("_put", {"space": "default", "key": "g-key", "record": b"\x92\x90\x90"})
        self.assertIsNotNone(err, "a client called _put without the secret")
        self.assertIn(err[0], ("NOAUTH", "UNKNOWN_METHOD"), err)
        try:
            err, _ = c.call("_auth", {"secret": "wrong-" + SECRET, "proto": 1})
            self.assertIsNotNone(err, "_auth accepted a wrong secret")
        except (ConnectionError, ConnectionResetError):
            c = self.connect(self.n1)      # refusing by closing the connection is a failure too
        err, _ = c.call("_get", {"space": "default", "key": "g-key"})
        self.assertIsNotNone(err, "_get allowed after a failed _auth")
        self.assertIn(err[0], ("NOAUTH", "UNKNOWN_METHOD"), err)
        self.assertEqual(c.call("get", "g-key")[1]["values"], ["v"])  # still a client
        # a protocol this node does not speak, or the bare secret of an
        # older release: refused, and the connection stays a client's
        other = self.connect(self.n1)
        err, _ = other.call("_auth", {"secret": SECRET, "proto": 2})
        self.assertEqual(err[0], "UNSUPPORTED_VERSION", err)
        err, _ = other.call("_auth", SECRET)
        self.assertEqual(err[0], "BAD_REQUEST", err)
        err, _ = other.call("_get", {"space": "default", "key": "g-key"})
        self.assertIn(err[0], ("NOAUTH", "UNKNOWN_METHOD"), err)
        peer = self.connect(self.n1)
        err, ans = peer.call("_auth", {"secret": SECRET, "proto": 1})
        self.assertEqual((err, ans), (None, {"proto": 1}))
        err, rec = peer.call("_get", {"space": "default", "key": "g-key"})
        self.assertIsNone(err, err)
        self.assertEqual(msgpack.unpackb(rec, raw=False)[2][0][2], "v")

    def test_i_ctx_cannot_poison_clocks(self):
        # A ctx naming another node's counter near 2^64, or far ahead of
        # the clock, once made a key unwritable through that node for good
        # (or moved that node's persisted clock to 2^63): refused now.
        c1, c2 = self.connect(self.n1), self.connect(self.n2)
        now = int(time.time() * 1000)
        ctx = lambda entries: msgpack.packb(entries, use_bin_type=True)
        for bad in ([[b"n1", 1, 1], [b"n2", 2**64 - 1, 1]],
                    [[b"n2", 2**63, now]],
                    [[b"n2", (now + 2 * 86400000) * 1000, now]],
                    [[b"n2", 5, now + 2 * 86400000]]):
            err, _ = c1.call("put", "pk", "v1", {"ctx": ctx(bad)})
            self.assertIsNotNone(err, "accepted ctx %r" % bad)
            self.assertEqual(err[0], "BAD_CTX", err)
            self.assertNotIn("ctx: ctx:", err[1])
        self.assertIsNone(c1.call("get", "pk", {"r": "all"})[1])   # nothing was stored
        # writes through n2 with the ctx they read keep working
        err, res = c2.call("put", "pk", "v2")
        self.assertIsNone(err, err)
        err, res = c2.call("put", "pk", "v3", {"ctx": res["ctx"]})
        self.assertIsNone(err, err)
        err, got = c1.call("get", "pk")
        self.assertIsNone(err, err)
        self.assertEqual(got["values"], ["v3"])

    def test_j_replica_side_validates(self):
        # Whatever the connection, what a replica method receives is
        # checked: the space is declared, the record well-formed with at
        # least one sibling, its clock bounded.  An acknowledged value is
        # never replaced by it.
        c = self.connect(self.n1)
        self.assertIsNone(c.call("put", "j-key", "kept")[0])
        peer = self.connect(self.n1)
        self.assertIsNone(peer.call("_auth", {"secret": SECRET, "proto": 1})[0])
        now = int(time.time() * 1000)
        rec = lambda clock, sibs: msgpack.packb([clock, sibs], use_bin_type=True)
        good = [[[b"n9", now * 1000, now]], [["forged", now, False]]]
        cases = [
            (("nope", "j-key", rec(*good)), "unknown space"),
            (("default", "j-key", rec([[b"n9", 2**63, now]], good[1])), "ahead"),
            (("default", "j-key", rec([[b"n9", 2**64 - 1, now]], good[1])), "ahead"),
            (("default", "j-key", rec(good[0], [])), "no siblings"),
            (("default", "j-key", rec(good[0], [[None, now, False]]) + b"x"), "record"),
            (("default", "j" * 70000, rec(*good)), "key"),
            # format v2: a dot counter far ahead is refused like a clock's
            (("default", "j-key", msgpack.packb(
                [2, good[0], [[b"n9", 2**63, "forged", now, False]]], use_bin_type=True)),
             "dot counter"),
        ]
        for params, why in cases:
            space, key, record = params
            err, _ = peer.call("_put", {"space": space, "key": key, "record": record})
            self.assertIsNotNone(err, "accepted _put%r" % (params[:2],))
            self.assertEqual(err[0], "BAD_REQUEST", err)
            self.assertIn(why, err[1])
        err, _ = peer.call("_get", {"space": "nope", "key": "j-key"})
        self.assertEqual(err[0], "BAD_REQUEST", err)
        err, _ = peer.call("_coord", {"op": "put", "space": "nope", "key": "j-key", "value": "x",
                                      "n": 3, "w": 2, "timeout_ms": 1000})
        self.assertEqual(err[0], "BAD_REQUEST", err)
        err, got = c.call("get", "j-key", {"r": "all"})
        self.assertIsNone(err, err)
        self.assertEqual(got["values"], ["kept"])

    def test_k_where_and_receipts(self):
        # where names the key's three owners (every one of the three
        # nodes) and no fallback; a put and a get with receipt = true
        # answer one entry per replica asked, through any node.
        c = self.connect(self.n1)
        err, wh = c.call("where", "k-key")
        self.assertIsNone(err, err)
        self.assertEqual(sorted(wh["replicas"]), ["n1", "n2", "n3"])
        self.assertEqual(wh["fallbacks"], [])
        err, res = c.call("put", "k-key", "v", {"receipt": True})
        self.assertIsNone(err, err)
        self.assertIn("ctx", res)
        self.assertEqual(sorted(e["node"] for e in res["receipt"]), ["n1", "n2", "n3"])
        self.assertEqual({e["status"] for e in res["receipt"]}, {"ok"})
        err, res = self.connect(self.n2).call("get", "k-key", {"receipt": True, "r": "all"})
        self.assertIsNone(err, err)
        self.assertEqual(res["values"], ["v"])
        self.assertEqual({e["status"] for e in res["receipt"]}, {"found"})
        err, res = c.call("get", "k-none", {"receipt": True})
        self.assertIsNone(err, err)
        self.assertEqual(res["values"], [])
        self.assertEqual({e["status"] for e in res["receipt"]}, {"notfound"})


class BigRecordTest(unittest.TestCase):
    """A record larger than max_frame (two concurrent values near
    value_max) cannot be replicated with _put, but a _get answer carrying
    it is taken (answers may be larger than requests): reads at r = all
    see it, and the peer connection is not dropped."""

    @classmethod
    def setUpClass(cls):
        cls.c = moortest.Cluster(
            BUILD, 3, "moor-bigrec-", settings=
            'limits = { max_frame_mb = 4, value_max_mb = 3 },\n'
            '  engine = { sync = "interval" }, log = { level = "info" }', script=
            'moor.space("default", { n = 3, r = 2, w = 2 })\n')
        cls.c.start()
        cls.c.wait_converged()

    @classmethod
    def tearDownClass(cls):
        cls.c.stop()

    def test_big_record_read_through_a_peer(self):
        n1, n2, _ = self.c.nodes
        c1, c2 = n1.conn(30), n2.conn(30)
        self.addCleanup(c1.close)
        self.addCleanup(c2.close)
        big = lambda ch: ch * (3 * 1024 * 1024 - 100)
        retry(lambda: c1.call("put", "big", big("a"), {"w": "all"}), READY_S, "put")
        # a second blind write: two siblings, a record of 6 MiB > max_frame
        c1.call("put", "big", big("b"), {"w": "one"})
        err, got = c2.call("get", "big", {"r": "all", "timeout_ms": 5000})
        self.assertIsNone(err, err)
        self.assertEqual(sorted(v[0] for v in got["values"]), ["a", "b"])
        err, info = c2.call("info")
        self.assertIsNone(err, err)
        peers = info["cluster"]["peers"]
        self.assertTrue(all(p["errors"] == 0 for p in (peers.values() if isinstance(
            peers, dict) else peers)), peers)


class ConfigTest(unittest.TestCase):
    def test_h2_seeds_need_a_secret(self):
        # Without a secret anyone could call the replica methods: a node
        # with seeds refuses to start, and says how to make one.
        tmp = tempfile.mkdtemp(prefix="moor-nosecret-")
        self.addCleanup(shutil.rmtree, tmp, True)
        conf = os.path.join(tmp, "n.lua")
        with open(conf, "w") as f:
            f.write('moor.cfg{ node = "n1", listen = "127.0.0.1:7799", data_dir = "%s/d",\n'
                    '  seeds = { "127.0.0.1:7799" } }\n' % tmp)
        for extra in (["--check"], []):
            r = subprocess.run([os.path.join(BUILD, "moord"), conf] + extra, cwd=ROOT,
                               capture_output=True, text=True, timeout=20,
                               env=dict(os.environ, MOOR_ROOT=ROOT))
            self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
            self.assertIn("needs cluster_secret", r.stderr)
            self.assertIn("/dev/urandom", r.stderr)

    def test_h_shipped_cluster_configs_check(self):
        # conf/cluster.lua describes the 3- and 5-node local clusters; each
        # node picks its part with --node (and --set size=5).
        conf = "conf/cluster.lua"
        for size in (3, 5):
            for i in range(1, size + 1):
                args = [os.path.join(BUILD, "moord"), conf, "--node", "n%d" % i, "--check"]
                if size == 5:
                    args[4:4] = ["--set", "size=5"]
                r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=20,
                                   env=dict(os.environ, MOOR_ROOT=ROOT))
                self.assertEqual(r.returncode, 0, "%s: %s%s" % (args, r.stdout, r.stderr))
                self.assertIn("is valid (node n%d, listen 127.0.0.%d:%d)" % (i, i, 7700 + i),
                              r.stdout)
        # a node outside the cluster, or no node, is refused with a reason
        for extra in (["--node", "n4"], []):
            r = subprocess.run([os.path.join(BUILD, "moord"), conf, "--check"] + extra, cwd=ROOT,
                               capture_output=True, text=True, timeout=20,
                               env=dict(os.environ, MOOR_ROOT=ROOT))
            self.assertEqual(r.returncode, 2, r.stdout)
            self.assertIn("start with --node n1 .. n3", r.stderr)


def main():
    global BUILD
    args, rest = moortest.parse_args(BUILD)
    BUILD = args.build
    sys.exit(0 if moortest.run_unittest(rest) else 1)


if __name__ == "__main__":
    main()
