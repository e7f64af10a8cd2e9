#!/usr/bin/python3
"""node_test.py -- integration tests of a real moord process.

Starts moord on 127.0.0.1 with a throwaway config and data directory,
drives it over raw MessagePack-RPC (Debian's python3-msgpack), with the
`moor` CLI (the C client), the Lua client and the Python example, and
kills what it starts.  Every wait is bounded.
The harness (RPC client, nodes, clusters) is moortest.py, beside this file.

usage: node_test.py --build BUILD_DIR [--cycles N] [-k NAME]
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import msgpack

import moortest
from moortest import ROOT

BUILD = moortest.DEFAULT_BUILD
CYCLES = 5


class Node(moortest.Node):
    """moord "t1" on 127.0.0.1 in its own temporary directory; stop(),
    kill9() or cleanup() it."""

    def __init__(self, extra="", sync="interval", port=None):
        super().__init__(BUILD, tempfile.mkdtemp(prefix="moor-node-"), "t1", port=port)
        self.write_config(
            'engine = { sync = "%s", memtable_mb = 4 },\n'
            '  log = { level = "warn" },\n'
            '  plugins = { "resolvers.lww", "resolvers.set_union", "handlers.incr",'
            ' "handlers.cas" } %s' % (sync, extra),
            script='moor.handle("echo", function(...) return {...} end)\n'
                   'moor.handle("spin", function() while true do end end)\n')


def Conn(port):
    """A connection to the node on 127.0.0.1:port."""
    return moortest.Conn(("127.0.0.1", port), 10)


class NodeTest(unittest.TestCase):
    def setUp(self):
        self.node = Node().start()

    def tearDown(self):
        self.node.cleanup()

    def test_ping_info(self):
        c = Conn(self.node.port)
        err, res = c.call("ping")
        self.assertIsNone(err)
        self.assertEqual(res, {"pong": True, "node": "t1"})
        err, res = c.call("info")
        self.assertIsNone(err)
        self.assertEqual(res["node"], "t1")
        self.assertIn("engine", res)

    def test_values_byte_identical(self):
        c = Conn(self.node.port)
        values = [None, True, 0, -1, 2**63 - 1, -2**63, 2**64 - 1, 1.5, "text", b"\x00\xff",
                  [1, [2, [3]]], {"a": {"b": [1, 2]}}, "", [], {}]
        for i, v in enumerate(values):
            err, res = c.call("put", "k%d" % i, v)
            self.assertIsNone(err, err)
            err, res = c.call("get", "k%d" % i)
            self.assertIsNone(err, err)
            self.assertEqual(res["values"], [v])
        # A non-canonical encoding (uint16 for 5) comes back as sent.
        raw = b"\x94\x00\x63\xa3put\x92\xa3raw\xcd\x00\x05"
        c.sock.sendall(raw)
        self.assertIsNone(c.recv()[2])
        c.sock.sendall(b"\x94\x00\x64\xa3get\x91\xa3raw")
        frame = c.sock.recv(65536)
        self.assertIn(b"\x91\xcd\x00\x05", frame)

    def test_value_depth(self):
        # A value nested 61 deep reads back; 62 deep is refused at put (it
        # could be stored but its get reply would pass the frame's 64).
        c = Conn(self.node.port)
        def nested(depth):
            v = None
            for _ in range(depth):
                v = [v]
            return v
        self.assertIsNone(c.call("put", "deep", nested(61))[0])
        err, res = c.call("get", "deep")
        self.assertIsNone(err, err)
        self.assertEqual(res["values"], [nested(61)])
        err, _ = c.call("put", "deeper", nested(62))
        self.assertIsNotNone(err)
        self.assertEqual(err[0], "BAD_REQUEST", err)
        self.assertIn("61", err[1])
        self.assertIsNone(c.call("get", "deeper")[1])

    def test_siblings_and_ctx(self):
        c = Conn(self.node.port)
        self.assertIsNone(c.call("put", "s", "v1")[0])
        self.assertIsNone(c.call("put", "s", "v2")[0])     # no ctx: a sibling
        err, res = c.call("get", "s")
        self.assertEqual(sorted(res["values"]), ["v1", "v2"])
        err, res2 = c.call("put", "s", "v3", {"ctx": res["ctx"]})  # latest ctx: replaces
        self.assertIsNone(err)
        err, res = c.call("get", "s")
        self.assertEqual(res["values"], ["v3"])
        err, _ = c.call("put", "s", "v4", {"ctx": b"\xc1junk"})
        self.assertEqual(err[0], "BAD_CTX")
        self.assertEqual(c.call("del", "s", {"ctx": res["ctx"]}), (None, True))
        self.assertEqual(c.call("get", "s"), (None, None))
        self.assertEqual(c.call("get", "missing"), (None, None))

    def test_overwrite_and_one_path(self):
        # A node alone runs the coordinator of a one-member ring: blind
        # puts make siblings, overwrite replaces them, a del of a missing
        # key leaves a tombstone and answers true, and the ctx carries the
        # node's hybrid-logical-clock counter (microseconds, not 1, 2, ...).
        c = Conn(self.node.port)
        self.assertIsNone(c.call("put", "o", "v1")[0])
        self.assertIsNone(c.call("put", "o", "v2")[0])
        self.assertEqual(sorted(c.call("get", "o")[1]["values"]), ["v1", "v2"])
        err, res = c.call("put", "o", b"v3", {"overwrite": True})
        self.assertIsNone(err, err)
        clock = msgpack.unpackb(res["ctx"], raw=False)
        self.assertGreater(max(e[1] for e in clock), 10 ** 15)  # an HLC counter
        self.assertEqual(c.call("get", "o")[1]["values"], [b"v3"])
        self.assertIsNone(c.call("put", "o", "v4")[0])
        self.assertEqual(c.call("del", "o", {"overwrite": True}), (None, True))
        self.assertEqual(c.call("get", "o"), (None, None))
        self.assertEqual(c.call("del", "never-written"), (None, True))
        self.assertEqual(c.call("get", "never-written"), (None, None))
        self.assertEqual(c.call("put", "o", "x", {"overwrite": 1})[0][0], "BAD_REQUEST")
        info = c.call("info")[1]
        self.assertGreaterEqual(info["siblings"]["most"], 2)
        # alone, the clock's mark is HLC.alone: data_dir/HLC says when the
        # node last ran in a cluster (the rejoin guard), and running alone
        # must not refresh it
        self.assertTrue(os.path.exists(os.path.join(self.node.data, "HLC.alone")))
        self.assertFalse(os.path.exists(os.path.join(self.node.data, "HLC")))

    def test_receipt_alone(self):
        # A node alone is its keys' one replica: one receipt entry, itself.
        c = Conn(self.node.port)
        me = c.call("ping")[1]["node"]
        err, res = c.call("put", "r", "v", {"receipt": True})
        self.assertIsNone(err, err)
        self.assertIn("ctx", res)
        self.assertEqual(res["receipt"], [{"node": me, "status": "ok"}])
        err, res = c.call("get", "r", {"receipt": True})
        self.assertIsNone(err, err)
        self.assertEqual(res["values"], ["v"])
        self.assertEqual(res["receipt"], [{"node": me, "status": "found"}])
        ctx = res["ctx"]
        err, res = c.call("get", "none", {"receipt": True})
        self.assertIsNone(err, err)          # not nil: {values = [], receipt}
        self.assertEqual(res, {"values": [], "receipt": [{"node": me, "status": "notfound"}]})
        err, res = c.call("del", "r", {"receipt": True, "ctx": ctx})
        self.assertEqual(res, {"receipt": [{"node": me, "status": "ok"}]})
        self.assertEqual(c.call("get", "r"), (None, None))   # without: nil as before
        self.assertEqual(c.call("get", "r", {"receipt": 1})[0][0], "BAD_REQUEST")

    def test_where_alone(self):
        c = Conn(self.node.port)
        me = c.call("ping")[1]["node"]
        self.assertEqual(c.call("where", "k"), (None, {"replicas": [me], "fallbacks": []}))
        self.assertEqual(c.call("where", "k", {"space": "default"})[1]["replicas"], [me])
        self.assertEqual(c.call("where", "k", {"space": "nospace"})[0][0], "BAD_REQUEST")
        self.assertEqual(c.call("where")[0][0], "BAD_REQUEST")

    def test_pipelined_out_of_order_ids(self):
        c = Conn(self.node.port)
        ids = [c.send("put", "p%d" % i, i) for i in range(500)]
        got = {}
        for _ in ids:
            msg = c.recv()
            got[msg[1]] = msg
        self.assertEqual(sorted(got), ids)
        self.assertTrue(all(m[2] is None for m in got.values()))

    def test_errors(self):
        c = Conn(self.node.port)
        self.assertEqual(c.call("nope")[0][0], "UNKNOWN_METHOD")
        self.assertEqual(c.call("get")[0][0], "BAD_REQUEST")
        self.assertEqual(c.call("get", 5)[0][0], "BAD_REQUEST")
        self.assertEqual(c.call("get", "k", {"bogus": 1})[0][0], "BAD_REQUEST")
        self.assertEqual(c.call("get", "k", {"space": "nospace"})[0][0], "BAD_REQUEST")
        self.assertEqual(c.call("put", "x" * 70000, 1)[0][0], "KEY_TOO_LARGE")
        self.assertEqual(c.call("call", "nohandler")[0][0], "NO_HANDLER")
        err, _ = c.call("call", "spin")
        self.assertEqual(err[0], "HANDLER_TIMEOUT")
        self.assertEqual(c.call("ping")[0], None)      # the node still serves

    def test_call_handlers(self):
        c = Conn(self.node.port)
        self.assertEqual(c.call("call", "echo", 1, "two", [3]), (None, [1, "two", [3]]))
        self.assertEqual(c.call("call", "incr", "counter", 5), (None, 5))
        self.assertEqual(c.call("call", "incr", "counter", 2), (None, 7))

    def test_bad_input_keeps_serving(self):
        good = Conn(self.node.port)
        bad = Conn(self.node.port)
        bad.sock.sendall(b"\xc1\xc1\xc1")                   # never valid: closed
        with self.assertRaises((ConnectionError, ConnectionResetError)):
            bad.recv()
        half = Conn(self.node.port)
        frame = msgpack.packb([0, 7, "ping", []])
        half.sock.sendall(frame[:3])
        self.assertEqual(good.call("ping")[0], None)
        half.sock.sendall(frame[3:])
        self.assertEqual(half.recv()[1], 7)
        notarray = Conn(self.node.port)
        notarray.sock.sendall(msgpack.packb({"not": "a request"}))
        try:
            notarray.recv()
        except (ConnectionError, ConnectionResetError):
            pass
        big = Conn(self.node.port)
        try:
            big.sock.sendall(b"\xc6\x7f\xff\xff\xff" + b"\x00" * 1024 * 1024)
            big.recv()
        except (ConnectionError, ConnectionResetError, BrokenPipeError):
            pass
        self.assertEqual(good.call("put", "after", "garbage")[0], None)
        self.assertEqual(good.call("get", "after")[1]["values"], ["garbage"])

    def test_cli(self):
        moor = os.path.join(BUILD, "moor")
        if not os.path.exists(moor):
            self.skipTest("moor CLI not built")
        h = "127.0.0.1:%d" % self.node.port
        run = lambda *a: subprocess.run([moor, "-h", h] + list(a), capture_output=True,
                                        text=True, timeout=20)
        r = run("put", "cli", '{"a": [1, 2.5, "x"]}')
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run("get", "cli")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('"a"', r.stdout)
        r = run("ping")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run("del", "cli")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run("call", "nohandler")
        self.assertNotEqual(r.returncode, 0)
        me = Conn(self.node.port).call("ping")[1]["node"]
        r = run("where", "cli", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout), {"replicas": [me], "fallbacks": []})
        r = run("where", "cli", "--space", "nospace")
        self.assertEqual(r.returncode, 1, r.stderr)
        r = run("put", "cli", "1", "--receipt", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["receipt"], [{"node": me, "status": "ok"}])
        r = run("where", "cli", "--receipt")
        self.assertEqual(r.returncode, 2, r.stderr)

    def test_python_example(self):
        ex = os.path.join(ROOT, "examples", "python", "example.py")
        if not os.path.exists(ex):
            self.skipTest("no python example")
        r = subprocess.run(["/usr/bin/python3", ex, "127.0.0.1:%d" % self.node.port],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_lua_client(self):
        if not shutil.which("luajit") or not os.path.exists(
                os.path.join(ROOT, "lua", "moor", "client.lua")):
            self.skipTest("no luajit or Lua client")
        script = (
            'local client = require("moor.client")\n'
            'local c = assert(client.connect("127.0.0.1:%d", {timeout = 5}))\n'
            'assert(c:put("lua", {1, 2, 3}))\n'
            'local res = assert(c:get("lua"))\n'
            'assert(#res.values == 1 and res.values[1][3] == 3)\n'
            'assert(c:ping())\n'
            'c:close() print("ok")\n' % self.node.port)
        r = subprocess.run(["luajit", "-e", script], capture_output=True, text=True,
                           timeout=30, env=dict(os.environ, LUA_PATH=os.path.join(
                               ROOT, "lua", "?.lua") + ";" + os.path.join(
                               ROOT, "lua", "?", "init.lua") + ";;"))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


class LifecycleTest(unittest.TestCase):
    def test_config_errors(self):
        node = Node(extra=', lisen = "x"')
        try:
            r = subprocess.run([os.path.join(BUILD, "moord"), node.conf], capture_output=True,
                               text=True, timeout=20, env=dict(os.environ, MOOR_ROOT=ROOT))
            self.assertEqual(r.returncode, 2)
            self.assertIn("lisen", r.stderr)
        finally:
            node.cleanup()

    def test_port_in_use(self):
        a = Node().start()
        b = Node(port=a.port)
        try:
            r = subprocess.run([os.path.join(BUILD, "moord"), b.conf], capture_output=True,
                               text=True, timeout=20, env=dict(os.environ, MOOR_ROOT=ROOT))
            self.assertEqual(r.returncode, 2)
            self.assertTrue(r.stderr.strip(), "no message for a busy port")
        finally:
            a.cleanup()
            b.cleanup()

    def test_auth(self):
        node = Node(extra=', auth_token = "s3cret"').start()
        try:
            c = Conn(node.port)
            self.assertEqual(c.call("get", "k")[0][0], "NOAUTH")
            self.assertEqual(c.call("auth", "wrong")[0][0], "NOAUTH")
            self.assertEqual(c.call("auth", "s3cret"), (None, True))
            self.assertEqual(c.call("get", "k"), (None, None))
        finally:
            node.cleanup()

    def test_sigterm_then_recover(self):
        node = Node().start()
        try:
            c = Conn(node.port)
            for i in range(200):
                self.assertIsNone(c.call("put", "r%d" % i, i)[0])
            self.assertEqual(node.stop(signal.SIGTERM), 0, node.logtail())
            node.start()
            c = Conn(node.port)
            for i in range(200):
                self.assertEqual(c.call("get", "r%d" % i)[1]["values"], [i])
        finally:
            node.cleanup()

    def test_kill9_under_load(self):
        """Every put acknowledged under sync=always survives kill -9."""
        node = Node(sync="always").start()
        acked = {}
        try:
            for cycle in range(CYCLES):
                c = Conn(node.port)
                sent = {}
                deadline = time.time() + 0.3 + 0.1 * cycle
                n = 0
                try:
                    while time.time() < deadline:
                        for _ in range(16):
                            key = "c%d-%d" % (cycle, n)
                            sent[c.send("put", key, [cycle, n])] = (key, [cycle, n])
                            n += 1
                        for _ in range(16):
                            msg = c.recv()
                            if msg[2] is None:
                                k, v = sent[msg[1]]
                                acked[k] = v
                except (ConnectionError, OSError):
                    pass
                node.kill9()
                node.start()
                c = Conn(node.port)
                for k, v in acked.items():
                    err, res = c.call("get", k)
                    self.assertIsNone(err)
                    self.assertIsNotNone(res, "acknowledged %s lost after kill -9" % k)
                    self.assertEqual(res["values"], [v])
            self.assertGreater(len(acked), 0)
        finally:
            node.cleanup()


def main():
    global BUILD, CYCLES
    args, rest = moortest.parse_args(
        BUILD, lambda ap: ap.add_argument("--cycles", type=int, default=CYCLES))
    BUILD = args.build
    CYCLES = args.cycles
    sys.exit(0 if moortest.run_unittest(rest) else 1)


if __name__ == "__main__":
    main()
