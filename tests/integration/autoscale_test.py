#!/usr/bin/python3
"""autoscale_test.py -- automatic scaling end to end (README "Automatic
scaling"): a 3-node cluster (n = 3) whose config has moor.autoscale{} with
the shipped default policy at low thresholds and short windows, and the
local scaler (scripts/scaler.sh) as its add and remove commands.

1. Keys are written, then `moor bench` drives load through n1 past
   rps_per_node; the evaluator (n1, the lowest id that is up) runs
   `scaler.sh add`, which starts n4 on 127.0.0.4.  The test waits (bounded)
   for n4 to be up in every node's ring, and for the keys written before
   it came to be on n4: a key whose `where` lists n4, read with r = all
   and receipt = true, finds it there.
2. The load stops; once the cluster stayed under the low marks for the
   window, the evaluator runs `scaler.sh remove n4`, which sends `leave`
   to n4 and waits for it to be `left`; the test waits (bounded) for n4 to
   be `left` and its process gone.  This half needs the `leave` method
   (join/leave streaming); without it the remove command fails and so
   does this test.

Every node this test starts, directly or through the scaler, is killed
when it ends.  usage: autoscale_test.py --build BUILD_DIR [-k NAME]
"""
import json
import os
import signal
import subprocess
import sys
import time
import unittest

import moortest
from moortest import ROOT, poll

BUILD = moortest.DEFAULT_BUILD
SECRET = "autoscale-test-secret-%d" % os.getpid()
ADD_S = 120     # bound on the 4th node being added and up under load
DATA_S = 60     # bound on the old keys reaching it
REMOVE_S = 240  # bound on its removal after the load stops
KEYS = 200

POLICY = """
moor.autoscale{
  check_s = 1,
  cooldown_s = 3,
  policy = require("moor.autoscale").default{
    p99_ms = 100000, rps_per_node = 300, low_rps_per_node = 60, window_s = 4, max_nodes = 4,
  },
  add = %(add)s,
  remove = %(remove)s,
}
"""

# What the scaler starts n4 with: everything node-specific from moor.arg.
TEMPLATE = """
local seeds = {}
for s in moor.arg.seeds:gmatch("[^,]+") do seeds[#seeds + 1] = s end
moor.cfg{ node = moor.arg.node, listen = moor.arg.listen, data_dir = moor.arg.data_dir,
  seeds = seeds, cluster_secret = "%(secret)s",
  engine = { sync = "interval", memtable_mb = 4, cache_mb = 8 }, log = { level = "info" } }
moor.space("default", { n = 3, r = 2, w = 2 })
"""


def lua_str(s):
    return json.dumps(s)  # a JSON string is a valid Lua string literal here


class AutoscaleTest(unittest.TestCase):
    def setUp(self):
        self.cluster = moortest.Cluster(BUILD, 3, "moor-autoscale-", secret=SECRET)
        self.state = os.path.join(self.cluster.tmp, "scaler")
        template = os.path.join(self.cluster.tmp, "template.lua")
        env = "MOOR_SCALER_DIR=%s MOOR_SCALER_CONFIG=%s MOOR_SCALER_PORT=%d MOOR_BUILD=%s" % (
            self.state, template, moortest.free_port("127.0.0.4"), BUILD)
        scaler = os.path.join(ROOT, "scripts", "scaler.sh")
        policy = POLICY % {"add": lua_str("%s %s add" % (env, scaler)),
                           "remove": lua_str("%s MOOR_SCALER_LEAVE_S=%d %s remove" %
                                             (env, REMOVE_S, scaler))}
        with open(template, "w") as f:
            f.write(TEMPLATE % {"secret": SECRET} + policy)
        for n in self.cluster.nodes:
            n.write_config('engine = { sync = "interval", memtable_mb = 4, cache_mb = 8 },\n'
                           '  log = { level = "info" }',
                           [m.addr for m in self.cluster.nodes], SECRET,
                           'moor.space("default", { n = 3, r = 2, w = 2 })\n' + policy)
        self.bench = None
        self.passed = False
        self.cluster.start()
        self.cluster.wait_converged()

    def tearDown(self):
        if self.bench and self.bench.poll() is None:
            self.bench.kill()
            self.bench.wait()
        # the nodes the scaler started: not children of this script
        subprocess.run([os.path.join(ROOT, "scripts", "scaler.sh"), "stop-all"],
                       env=dict(os.environ, MOOR_SCALER_DIR=self.state), timeout=60)
        if not self.passed:
            sys.stderr.write("\nlogs of the nodes the scaler started:\n%s\n" % self.scaler_logs())
        self.cluster.stop()  # run_unittest prints n1..n3's logs on failure, then removes them

    def scaler_logs(self):
        out = []
        base = os.path.join(self.state, "nodes")
        for nid in sorted(os.listdir(base)) if os.path.isdir(base) else []:
            path = os.path.join(base, nid, "moord.log")
            try:
                with open(path, "rb") as f:
                    out.append("---- %s (%s)\n%s" % (nid, path,
                                                     f.read().decode(errors="replace")[-4000:]))
            except OSError:
                pass
        return "\n".join(out)

    def call(self, node, method, *params):
        c = node.conn(10)
        try:
            return c.call(method, *params)
        finally:
            c.close()

    def ring_of(self, node):
        err, res = self.call(node, "ring")
        self.assertIsNone(err)
        return {m["id"]: m for m in res["nodes"]}

    def extra(self):
        """(id, addr) of the members the scaler started, from n1's ring."""
        return [(i, m["addr"]) for i, m in self.ring_of(self.cluster.nodes[0]).items()
                if i not in ("n1", "n2", "n3")]

    def test_scale_out_under_load_then_in(self):
        n1 = self.cluster.nodes[0]
        for i in range(KEYS):
            err, _ = self.call(n1, "put", "old:%d" % i, "v%d" % i, {"w": "all"})
            self.assertIsNone(err, "put old:%d: %r" % (i, err))
        info = n1.info()
        self.assertTrue(info["autoscale"]["enabled"])
        # n1, the lowest id that is up, evaluates (from its first tick on)
        poll(lambda: not n1.info()["autoscale"]["evaluator"], 10)
        self.assertTrue(n1.info()["autoscale"]["evaluator"])
        self.assertFalse(self.cluster.nodes[1].info()["autoscale"]["evaluator"])
        self.assertIn("rps", info["load"])

        # every member's figures reach n1 through _load within seconds
        def no_figures():
            err, res = self.call(n1, "load")
            self.assertIsNone(err)
            return [m["id"] for m in res["nodes"] if "rps" not in m or m["age_ms"] > 5000]
        lacking = poll(no_figures, 15)
        self.assertFalse(lacking, "no load figures of %r on n1" % lacking)
        # 1. load past rps_per_node until a 4th node is up everywhere
        self.bench = subprocess.Popen(
            [os.path.join(BUILD, "moor"), "-h", n1.addr, "bench", "--conns", "2",
             "--pipeline", "4", "--duration", str(ADD_S + DATA_S + 60)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=moortest.die_with_parent)

        def not_up():
            try:
                ex = self.extra()
            except (OSError, ConnectionError, AssertionError) as e:
                return "ring: %s" % e
            if not ex:
                return "no 4th member yet (n1 autoscale: %r)" % n1.info()["autoscale"]
            nid = ex[0][0]
            for n in self.cluster.nodes:
                st = self.ring_of(n).get(nid, {}).get("status")
                if st != "up":
                    return "%s sees %s as %s" % (n.id, nid, st)
            return None

        why = poll(not_up, ADD_S, 0.5)
        self.assertIsNone(why, "no node added within %ss: %s" % (ADD_S, why))
        (new_id, new_addr), = self.extra()
        a = n1.info()["autoscale"]
        self.assertEqual(a["changes"], 1, a)
        self.assertEqual(a["last_decision"], "add", a)
        self.assertIn("rps_per_node", a["last_reason"])
        # the `load` method lists the new node too, with figures once they spread
        err, res = self.call(n1, "load")
        self.assertIsNone(err)
        self.assertIn(new_id, [m["id"] for m in res["nodes"]])

        # 2. the keys written before it came are on it
        def owned():
            keys = []
            for i in range(KEYS):
                err, res = self.call(n1, "where", "old:%d" % i)
                self.assertIsNone(err)
                if new_id in res["replicas"]:
                    keys.append("old:%d" % i)
            return keys
        keys = owned()
        self.assertTrue(keys, "%s is a replica of none of %d keys" % (new_id, KEYS))

        def missing():
            left = []
            for k in keys[:20]:
                err, res = self.call(n1, "get", k, {"r": "all", "receipt": True})
                if err is not None:
                    left.append((k, err))
                    continue
                st = {r["node"]: r["status"] for r in res["receipt"]}
                if st.get(new_id) != "found":
                    left.append((k, st))
            return left
        left = poll(missing, DATA_S, 1.0)
        self.assertFalse(left, "keys not on %s within %ss: %r" % (new_id, DATA_S, left[:3]))

        # 3. the load stops: the node is removed (`leave`, then `left`)
        self.bench.send_signal(signal.SIGKILL)
        self.bench.wait()

        def not_left():
            try:
                st = self.ring_of(n1).get(new_id, {}).get("status")
            except (OSError, ConnectionError) as e:
                return "ring: %s" % e
            if st != "left":
                return "%s is %s (n1 autoscale: %r)" % (new_id, st, n1.info()["autoscale"])
            return None
        why = poll(not_left, REMOVE_S, 1.0)
        self.assertIsNone(why, "not removed within %ss: %s" % (REMOVE_S, why))
        a = n1.info()["autoscale"]
        self.assertEqual(a["changes"], 2, a)
        pid = int(open(os.path.join(self.state, "nodes", new_id, "pid")).read())
        gone = poll(lambda: os.path.exists("/proc/%d" % pid) and
                    b"moord" in open("/proc/%d/cmdline" % pid, "rb").read(), 60)
        self.assertFalse(gone, "%s (pid %d) still runs after leaving" % (new_id, pid))
        # never below n: three nodes stay
        time.sleep(8)
        ups = [i for i, m in self.ring_of(n1).items() if m["status"] == "up"]
        self.assertEqual(sorted(ups), ["n1", "n2", "n3"])
        self.passed = True


if __name__ == "__main__":
    args, rest = moortest.parse_args(BUILD)
    BUILD = args.build
    sys.exit(0 if moortest.run_unittest(rest) else 1)
