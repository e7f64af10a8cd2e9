#!/usr/bin/python3
"""slowlog_test.py -- the slow-request log on a real moord (README "Slow
log").

threshold_ms = 0 logs every request with its method, space, key and
client, newest first with increasing ids; the ring stays at max_len;
len and reset; a handler that busy-loops is listed with lua_us > 0 (and a
long key is cut); threshold_ms = -1 logs nothing; `moor slowlog` prints
the table and --json; info.slowlog counts; in a 3-node cluster a put
shows replicas_us > 0 and engine_us > 0.  No wall-clock bounds beyond
"> 0" and ordering.

usage: slowlog_test.py --build BUILD_DIR [-k NAME]
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

import moortest

BUILD = moortest.DEFAULT_BUILD
SCRIPT = '''
moor.handle("spin", function(n)
  local x = 0
  for i = 1, n do x = x + i % 7 end
  return x
end)
'''


def node(threshold, max_len=16):
    n = moortest.Node(BUILD, tempfile.mkdtemp(prefix="moor-slow-"), "s1")
    n.write_config('slowlog = { threshold_ms = %s, max_len = %d },\n'
                   '  log = { level = "warn" },' % (threshold, max_len), script=SCRIPT)
    return n.start()


def cli(n, *args):
    p = subprocess.run([os.path.join(BUILD, "moor"), "-h", n.addr] + list(args),
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


class SlowlogTest(unittest.TestCase):
    def setUp(self):
        self.nodes = []

    def tearDown(self):
        for n in self.nodes:
            n.cleanup()

    def test_every_request(self):
        n = node(0, 16)
        self.nodes.append(n)
        c = n.conn()
        self.assertIsNone(c.call("put", "alpha", 1)[0])
        self.assertIsNone(c.call("get", "alpha", {"space": "default"})[0])
        self.assertIsNone(c.call("del", "alpha")[0])
        self.assertIsNone(c.call("ping")[0])
        err, log = c.call("slowlog", {"op": "get", "count": 10})
        self.assertIsNone(err)
        self.assertEqual([e["method"] for e in log], ["ping", "del", "get", "put"])
        ids = [e["id"] for e in log]
        self.assertEqual(ids, sorted(ids, reverse=True))
        for e in log[1:]:
            self.assertEqual(e["key"], "alpha")
            self.assertEqual(e["space"], "default")
        self.assertEqual(log[0]["key"], "")
        for e in log:
            self.assertEqual(set(e), {"id", "time_ms", "duration_us", "method", "space", "key",
                                      "client", "engine_us", "replicas_us", "lua_us"})
            self.assertTrue(e["client"].startswith("127.0.0.1:"), e)
            self.assertGreater(e["time_ms"], 1.7e12)
            self.assertEqual(e["replicas_us"], 0)  # a node alone
        self.assertGreater(log[3]["engine_us"], 0)  # put: its own write, until durable
        self.assertGreaterEqual(log[3]["duration_us"], log[3]["engine_us"])
        self.assertEqual(c.call("slowlog", {"op": "len"}), (None, 4))
        self.assertEqual(len(c.call("slowlog")[1]), 4)  # default: get, 10
        self.assertEqual(len(c.call("slowlog", {"count": 2})[1]), 2)

        # bounded at max_len, the newest kept
        for i in range(40):
            self.assertIsNone(c.call("put", "k%d" % i, i)[0])
        log = c.call("slowlog", {"count": 100})[1]
        self.assertEqual(len(log), 16)
        self.assertEqual(log[0]["key"], "k39")
        self.assertEqual(log[15]["key"], "k24")
        self.assertEqual(c.call("slowlog", {"op": "len"})[1], 16)
        info = c.call("info")[1]["slowlog"]
        self.assertEqual(info["len"], 16)
        self.assertEqual(info["total"], 44)
        self.assertEqual(info["threshold_ms"], 0)
        self.assertEqual(info["max_len"], 16)

        # a handler call: lua_us, the handler's name as key; a long key cut
        self.assertIsNone(c.call("call", "spin", 3000000)[0])
        self.assertIsNone(c.call("put", "x" * 100, 1)[0])
        log = c.call("slowlog", {"count": 2})[1]
        self.assertEqual(log[1]["method"], "call")
        self.assertEqual(log[1]["key"], "spin")
        self.assertGreater(log[1]["lua_us"], 0)
        self.assertGreaterEqual(log[1]["duration_us"], log[1]["lua_us"])
        self.assertEqual(log[0]["key"], "x" * 64 + "... (36 more bytes)")

        # the CLI
        rc, out, err = cli(n, "slowlog", "--count", "3")
        self.assertEqual(rc, 0, err)
        self.assertIn("spin", out)
        self.assertIn("lua_us", out)
        rc, out, err = cli(n, "slowlog", "--json", "--count", "1")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)[0]["key"], "x" * 64 + "... (36 more bytes)")
        rc, out, err = cli(n, "slowlog", "--len")
        self.assertEqual((rc, out.strip()), (0, "16"), err)

        # reset: empty, ids go on, total kept
        last = log[0]["id"]
        rc, out, err = cli(n, "slowlog", "--reset")
        self.assertEqual(rc, 0, err)
        self.assertEqual(c.call("slowlog", {"op": "len"})[1], 0)
        self.assertIsNone(c.call("put", "after", 1)[0])
        log = c.call("slowlog")[1]
        self.assertEqual(len(log), 1)
        self.assertGreater(log[0]["id"], last)

        # bad params answer BAD_REQUEST and the node goes on
        for p in ({"op": "nope"}, {"count": -1}, {"count": "x"}, {"op": 3}):
            self.assertEqual(c.call("slowlog", p)[0][0], "BAD_REQUEST", p)
        self.assertEqual(c.call("slowlog", 1, 2)[0][0], "BAD_REQUEST")
        self.assertIsNone(c.call("ping")[0])
        c.close()

    def test_resp(self):
        """SLOWLOG GET / LEN / RESET on the RESP port, in Redis's reply
        shape, read with redis-cli (skipped where it is not installed)."""
        import shutil
        if not shutil.which("redis-cli"):
            self.skipTest("redis-cli is not installed")
        n = moortest.Node(BUILD, tempfile.mkdtemp(prefix="moor-slow-"), "s1")
        rport = moortest.free_port()
        n.write_config('slowlog = { threshold_ms = 0 },\n  resp_listen = "127.0.0.1:%d",\n'
                       '  log = { level = "warn" },' % rport)
        self.nodes.append(n.start())
        c = n.conn()
        self.assertIsNone(c.call("put", "rk", 1)[0])
        self.assertIsNone(c.call("get", "rk")[0])
        c.close()

        def redis(*args):
            p = subprocess.run(["redis-cli", "-p", str(rport), "--no-raw"] + list(args),
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 0, p.stderr)
            return p.stdout

        self.assertEqual(redis("slowlog", "len").strip(), "(integer) 2")
        out = redis("slowlog", "get", "1")
        # [[id, unix time s, duration us, [method, key], client, name]]
        self.assertIn('1) 1) (integer) 2', out)
        self.assertIn('"get"', out)
        self.assertIn('"rk"', out)
        self.assertIn('"127.0.0.1:', out)
        self.assertEqual(redis("slowlog", "get", "-1").count('"rk"'), 2)
        self.assertIn("ERR", redis("slowlog", "nope"))
        self.assertEqual(redis("slowlog", "reset").strip(), "OK")
        self.assertEqual(redis("slowlog", "len").strip(), "(integer) 0")
        # RESP commands are logged too: the command (lowercased) and its key
        self.assertIn("OK", redis("set", "rk2", "v"))
        self.assertEqual(redis("slowlog", "len").strip(), "(integer) 1")
        out = redis("slowlog", "get", "1")
        self.assertIn('"set"', out)
        self.assertIn('"rk2"', out)
        c = n.conn()
        err, entries = c.call("slowlog", {"op": "get", "count": 1})
        c.close()
        self.assertIsNone(err)
        self.assertEqual((entries[0]["method"], entries[0]["key"], entries[0]["space"]),
                         ("set", "rk2", "default"))

    def test_off(self):
        n = node(-1)
        self.nodes.append(n)
        c = n.conn()
        self.assertIsNone(c.call("put", "a", 1)[0])
        self.assertIsNone(c.call("call", "spin", 100000)[0])
        self.assertEqual(c.call("slowlog")[1], [])
        self.assertEqual(c.call("info")[1]["slowlog"]["threshold_ms"], -1)
        c.close()

    def test_cluster_replicas(self):
        cl = moortest.Cluster(BUILD, 3, prefix="moor-slowcl-",
                              settings='slowlog = { threshold_ms = 0, max_len = 64 },\n'
                                       '  log = { level = "warn" },')
        cl.start()
        cl.wait_converged()
        c = cl.nodes[0].conn()
        for i in range(20):
            self.assertIsNone(c.call("put", "ck%d" % i, i, {"w": "all"})[0])
        log = [e for e in c.call("slowlog", {"count": 64})[1] if e["method"] == "put"]
        self.assertTrue(log)
        # every put with w = all waited on two other replicas (or was
        # forwarded to one): time spent on replicas
        self.assertTrue(all(e["replicas_us"] > 0 for e in log), log)
        coordinated = [e for e in log if e["engine_us"] > 0]
        self.assertTrue(coordinated, "no put was coordinated here")
        c.close()


if __name__ == "__main__":
    args, rest = moortest.parse_args()
    BUILD = args.build
    sys.exit(0 if moortest.run_unittest(rest) else 1)
