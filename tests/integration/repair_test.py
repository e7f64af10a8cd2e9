#!/usr/bin/python3
"""repair_test.py -- anti-entropy repair (`repair`, `moor repair`) on real processes.

a. Wiped replica: three moords, the default space n=3, 10,000 keys
   written with w=all (pipelined).  n3 is stopped, its data deleted
   (its membership file kept, moortest.Node.wipe_data) and it is started
   again (same id, address and seeds).  Then
   `build/moor repair` runs against n3 (a subprocess, waited for): after
   it, each key's first read with r=all and receipt=true must find the key
   on all three replicas (the number that does not is printed, and must be
   0).  Printed: the record bytes n3 was missing (the sum of the records'
   sizes as `_get` on n1 returns them), info.repair.bytes_received of n3,
   and their ratio; asserted: n3 received at most 1.2x the missing bytes
   plus 64 B per key.
b. Tombstones: a keyspace with tombstone_grace_s = 2 and sloppy = false
   (no fallbacks, so no hints), anti_entropy.interval_s = 0 (no background
   pass).  A key written with w=all; n3 cut off from n1 and n2 (iptables
   in a network namespace of this script, as partition_test.py does); the
   key deleted with w=2; once the grace has passed, `moor repair` on n1
   must leave the tombstone on n1 and n2 (reaping needs every replica's
   word, and n3 cannot give it).  Healed, `moor repair` twice on every
   node: the key is gone from every store (`_get` answers nil) and reads
   nil; one more repair on every node does not bring the value back.
   Without root, unshare or iptables this case is skipped (printed); the
   others run outside a namespace.
d. Stop and resume: a replica that missed 2,000 writes while stopped
   (sloppy = false, so no hints) repaired at rate_kb_s = 4 (so it lasts): `moor repair --no-wait` starts it, `moor repair --timeout 1.5`
   gives up (exit 1) while it goes on, `--stop --json` stops it part way,
   `--no-wait` again resumes from the ranges done, `--restart` starts
   from zero, `--stop` with nothing running succeeds.
c. Bad input: `repair` with a space, ranges, stop or restart of the wrong
   type, more than one param, or a range that is not one of the node's
   answers BAD_REQUEST, and the node keeps serving; `moor repair` with
   bad options exits 2 without asking; on a lone node `repair` answers
   UNAVAILABLE.

Every wait is bounded; every moord started is killed at exit.

usage: repair_test.py --build BUILD_DIR [-k NAME]
"""
import json
import os
import shutil
import subprocess
import sys
import time
import unittest


import moortest
from moortest import pipelined, poll

BUILD = moortest.DEFAULT_BUILD
NS_ENV = "MOOR_REPAIR_OUTER_NETNS"  # set (to the outer namespace) once re-executed
NO_NETNS = None         # why case b cannot run here (None: it can)
CLIENT_HOST = None      # the test's source address inside the namespace
CHAIN = "MOORREP"
KEYS = 10000
VALUE = 100             # bytes per value
PIPELINE = 256
REPAIR_S = 600          # bound on one `moor repair`
GRACE_S = 2
HEAL_S = 40


def netns_id():
    return os.readlink("/proc/self/ns/net")


def find_tool(name):
    return shutil.which(name) or next(
        (p for p in ("/usr/sbin/" + name, "/sbin/" + name) if os.access(p, os.X_OK)), None)


def namespace_problem():
    """None when this script can run in a network namespace of its own
    with iptables; else why not."""
    if os.geteuid() != 0:
        return "needs root (unshare --net, iptables)"
    tools = {n: find_tool(n) for n in ("unshare", "iptables", "ip")}
    missing = [n for n, p in tools.items() if p is None]
    if missing:
        return "%s not installed" % ", ".join(missing)
    probe = ("{ip} link set lo up && {ipt} -w 10 -N P && {ipt} -w 10 -A INPUT -i lo -j P && "
             "{ipt} -w 10 -A P -s 127.0.0.1 -d 127.0.0.2 -j DROP"
             ).format(ip=tools["ip"], ipt=tools["iptables"])
    try:
        r = subprocess.run([tools["unshare"], "--net", "sh", "-c", probe],
                           capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "unshare --net / iptables probe did not finish within 30 s"
    if r.returncode != 0:
        return ("unshare --net with iptables does not work here: %s" %
                (r.stderr.strip() or r.stdout.strip() or "exit %d" % r.returncode))
    return None


class Firewall:
    """iptables in this namespace: one chain hooked into INPUT on lo."""

    def __init__(self):
        self.ipt = find_tool("iptables")
        self.run("-N", CHAIN)
        self.run("-I", "INPUT", "-i", "lo", "-j", CHAIN)

    def run(self, *args):
        r = subprocess.run([self.ipt, "-w", "10"] + list(args), capture_output=True, text=True,
                           timeout=30)
        if r.returncode != 0:
            raise RuntimeError("iptables %s: %s" % (" ".join(args), r.stderr.strip()))
        return r.stdout

    def cut(self, a, b):
        for s, d in ((a, b), (b, a)):
            self.run("-A", CHAIN, "-i", "lo", "-s", s, "-d", d, "-j", "DROP")

    def heal(self):
        self.run("-F", CHAIN)


# ---- helpers ----------------------------------------------------------------------

def call(node, method, *params):
    c = node.conn(15)
    try:
        return c.call(method, *params)
    finally:
        c.close()


def peer(node, secret):
    """A connection to node that passed _auth: it may call _get."""
    c = node.conn(15)
    err, _ = c.call("_auth", {"secret": secret, "proto": 1})
    assert err is None, "_auth on %s: %r" % (node.id, err)
    return c



def moor_repair(node, *args, timeout=REPAIR_S):
    """Runs build/moor repair against node; returns (exit status, stdout, stderr)."""
    cmd = [os.path.join(BUILD, "moor"), "-h", node.addr, "--timeout", "20000", "repair",
           "--timeout", str(timeout)] + list(args)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 60)
    return r.returncode, r.stdout, r.stderr


def repair_info(node):
    return node.info()["repair"]


def wait_trees(node, timeout=120):
    why = poll(lambda: None if repair_info(node)["trees_ready"] else "trees of %s not built"
               % node.id, timeout)
    assert not why, why


# ---- a. a wiped replica -----------------------------------------------------------

class WipedReplica(unittest.TestCase):
    def test_wiped_replica_repaired(self):
        cl = moortest.Cluster(BUILD, 3, "moor-repair-", source=CLIENT_HOST, settings=
                              'engine = { sync = "interval" },\n'
                              '  anti_entropy = { interval_s = 0 },\n'
                              '  log = { level = "info" }',
                              script='moor.space("default", { n = 3, r = 2, w = 2,'
                                     ' sloppy = false })\n')
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
        n1, n2, n3 = cl.nodes
        keys = ["key:%05d" % i for i in range(KEYS)]
        value = lambda i: ("v%05d-" % i) + "x" * (VALUE - 7)

        t0 = time.time()
        c = n1.conn(30)
        try:
            answers = pipelined(c, [("put", k, value(i), {"w": "all"})
                                    for i, k in enumerate(keys)])
        finally:
            c.close()
        failed = [(k, a[0]) for k, a in zip(keys, answers) if a[0] is not None]
        self.assertEqual(failed, [], "puts at w=all failed: %r" % failed[:5])
        print("\n  %d keys written at w=all in %.1f s" % (KEYS, time.time() - t0))

        # What n3 will miss: the records as a replica holds them.
        p = peer(n1, cl.secret)
        try:
            recs = pipelined(p, [("_get", {"space": "default", "key": k}) for k in keys])
        finally:
            p.close()
        self.assertTrue(all(e is None and isinstance(r, bytes) for e, r in recs),
                        "_get on n1: %r" % [x for x in recs if x[0] is not None][:3])
        missing = sum(len(r) for _, r in recs)

        n3.stop()
        n3.wipe_data()
        n3.start()
        cl.wait_converged()
        wait_trees(n3)
        p = peer(n3, cl.secret)
        try:
            self.assertEqual(p.call("_get", {"space": "default", "key": keys[0]}), (None, None))
        finally:
            p.close()

        t1 = time.time()
        rc, out, err = moor_repair(n3)
        took = time.time() - t1
        self.assertEqual(rc, 0, "moor repair exited %d\nstdout: %s\nstderr: %s" % (rc, out, err))
        self.assertTrue(out.startswith("repair done: "), out)
        print("  moor repair on the wiped n3 (%.1f s): %s" % (took, out.strip()))
        info = repair_info(n3)
        self.assertFalse(info["running"], info)
        self.assertEqual(info["ranges_done"], info["ranges_total"], info)

        # Each key's first read with r=all finds it on every replica.
        c = n1.conn(30)
        try:
            answers = pipelined(c, [("get", k, {"r": "all", "receipt": True}) for k in keys])
        finally:
            c.close()
        absent = 0
        for i, (k, (e, res)) in enumerate(zip(keys, answers)):
            ok = (e is None and res is not None and res.get("values") == [value(i)]
                  and sorted(r["node"] for r in res["receipt"] if r["status"] == "found")
                  == ["n1", "n2", "n3"])
            if not ok:
                if absent < 5:
                    print("  %s: %r %r" % (k, e, res))
                absent += 1
        received = info["bytes_received"]
        bound = 1.2 * missing + 64 * KEYS
        print("  keys missing on a replica after the repair: %d of %d" % (absent, KEYS))
        print("  n3 was missing %d record bytes (%d keys); it received %d bytes, sent %d: "
              "%.3fx the missing bytes (bound %.0f = 1.2x + 64 B/key), %.1f B per key"
              % (missing, KEYS, received, info["bytes_sent"], received / missing, bound,
                 received / KEYS))
        print("  keys compared %d, repaired %d" % (info["keys_compared"], info["keys_repaired"]))
        self.assertEqual(absent, 0)
        self.assertLessEqual(received, bound)


# ---- b. tombstones ------------------------------------------------------------------

class Tombstones(unittest.TestCase):
    def test_reaped_delete_never_comes_back(self):
        if NO_NETNS:
            self.skipTest(NO_NETNS)
        cl = moortest.Cluster(BUILD, 3, "moor-repair-ts-", source=CLIENT_HOST, settings=
                              'vnodes = 16,\n'
                              '  request_timeout_ms = 1000,\n'
                              '  engine = { sync = "interval" },\n'
                              '  anti_entropy = { interval_s = 0 },\n'
                              '  log = { level = "info" }',
                              script='moor.space("ts", { n = 3, r = 2, w = 2, sloppy = false,'
                                     ' tombstone_grace_s = %d })\n' % GRACE_S)
        fw = Firewall()
        try:
            self.run_case(cl, fw)
        except BaseException:
            sys.stderr.write(cl.logs())
            raise
        finally:
            fw.heal()
            cl.cleanup()

    def stores(self, cl, key):
        """{node id: the record bytes its store holds for key, or None}."""
        out = {}
        for n in cl.nodes:
            p = peer(n, cl.secret)
            try:
                err, rec = p.call("_get", {"space": "ts", "key": key})
            finally:
                p.close()
            self.assertIsNone(err, "_get on %s: %r" % (n.id, err))
            out[n.id] = rec
        return out

    def wait_status(self, cl, node, want):
        def check():
            for n in cl.nodes:
                if n is node:
                    continue
                st = {m["id"]: m["status"] for m in cl.ring(n)["nodes"]}
                if st.get(node.id) != want:
                    return "%s sees %s as %s" % (n.id, node.id, st.get(node.id))
            return None
        why = poll(check, HEAL_S)
        self.assertIsNone(why, why)

    def wait_paths(self, cl):
        """Until a get with r = "all" works through every node: each node's
        connections to both others carry requests and answers again (after
        a partition TCP retransmits on its own back-off)."""
        deadline = time.time() + HEAL_S
        for n in cl.nodes:
            c = n.conn(5)
            try:
                moortest.retry(lambda: c.call("get", "ready-probe", {"space": "ts", "r": "all"}),
                               max(0.0, deadline - time.time()), "get r=all through %s" % n.id)
            finally:
                c.close()

    def run_case(self, cl, fw):
        cl.start()
        cl.wait_converged()
        n1, n2, n3 = cl.nodes
        for n in cl.nodes:
            wait_trees(n)
        key = "doomed"
        err, _ = call(n1, "put", key, "alive", {"space": "ts", "w": "all"})
        self.assertIsNone(err, err)

        fw.cut(n3.host, n1.host)
        fw.cut(n3.host, n2.host)
        self.wait_status(cl, n3, "down")
        err, res = call(n1, "get", key, {"space": "ts", "r": 2})
        self.assertIsNone(err, err)
        self.assertEqual(res["values"], ["alive"], res)
        err, res = call(n1, "del", key, {"space": "ts", "w": 2, "ctx": res["ctx"],
                                         "receipt": True})
        self.assertIsNone(err, "del at w=2 with n3 cut off: %r" % (err,))
        t_del = time.time()
        print("\n  deleted with n3 cut off: %r" % res["receipt"])
        time.sleep(max(0.0, t_del + GRACE_S + 1.5 - time.time()))

        rc, out, errout = moor_repair(n1, "--space", "ts", timeout=120)
        print("  moor repair on n1 while n3 is cut off: exit %d: %s %s"
              % (rc, out.strip(), errout.strip()))
        # n3 is down: its ranges are incomplete, and the CLI says so
        self.assertEqual(rc, 1, errout)
        self.assertIn("could not be exchanged with every replica", errout)
        st = self.stores(cl, key)
        self.assertIsNotNone(st["n1"], "n1 reaped the tombstone without n3's word")
        self.assertIsNotNone(st["n2"], "n2 reaped the tombstone without n3's word")
        self.assertIsNone(call(n1, "get", key, {"space": "ts", "r": 2})[1])
        reaped = sum(repair_info(n)["tombstones_reaped"] for n in (n1, n2))
        self.assertEqual(reaped, 0)
        print("  after the grace, with n3 cut off: the tombstone stays on n1 and n2")

        fw.heal()
        # Every node must see every other up (n3 its peers too): a repair
        # skips an owner it sees down, and only the range's first owner
        # reaps, with every owner up.
        cl.wait_converged(HEAL_S)
        self.wait_paths(cl)
        for rnd in range(2):
            for n in cl.nodes:
                cl.wait_converged(HEAL_S)   # the detector may still flap after the heal
                rc, out, errout = moor_repair(n, "--space", "ts", timeout=120)
                self.assertEqual(rc, 0, "round %d, moor repair on %s: %s %s"
                                 % (rnd + 1, n.id, out, errout))
        st = self.stores(cl, key)
        self.assertEqual(st, {"n1": None, "n2": None, "n3": None},
                         "after two repairs on every node the stores hold %r" % st)
        reaped = {n.id: repair_info(n)["tombstones_reaped"] for n in cl.nodes}
        print("  healed, two repairs on every node: reaped everywhere %r" % reaped)
        self.assertGreater(sum(reaped.values()), 0)

        for n in cl.nodes:
            rc, out, errout = moor_repair(n, "--space", "ts", timeout=120)
            self.assertEqual(rc, 0, "%s: %s %s" % (n.id, out, errout))
        st = self.stores(cl, key)
        self.assertEqual(st, {"n1": None, "n2": None, "n3": None}, st)
        for n in cl.nodes:
            err, res = call(n, "get", key, {"space": "ts", "r": "all"})
            self.assertIsNone(err, err)
            self.assertIsNone(res, "the deleted value came back through %s: %r" % (n.id, res))
        print("  one more repair on every node: still gone, every read nil")


# ---- d. stop, resume, restart, timeout ------------------------------------------------

class StopResume(unittest.TestCase):
    """A replica that missed 2,000 writes (stopped meanwhile, sloppy =
    false: no hints) repaired at anti_entropy.rate_kb_s = 4, so that the
    repair lasts: after the first listings the token bucket is in debt for
    minutes."""

    def test_stop_resume_restart_timeout(self):
        cl = moortest.Cluster(BUILD, 3, "moor-repair-stop-", source=CLIENT_HOST, settings=
                              'anti_entropy = { interval_s = 0, rate_kb_s = 4 },\n'
                              '  log = { level = "info" }',
                              script='moor.space("default", { n = 3, r = 2, w = 2,'
                                     ' sloppy = false })\n')
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
        n1, n2, n3 = cl.nodes

        def write(prefix):
            c = n1.conn(30)
            try:
                bad = [a for a in pipelined(c, [("put", "%s%04d" % (prefix, i), "x" * 200,
                                                 {"w": 2})
                                                for i in range(2000)]) if a[0] is not None]
            finally:
                c.close()
            self.assertEqual(bad, [])

        write("a")
        n3.stop()
        write("b")      # sloppy = false: no fallback, no hint; n3 misses them
        n3.start()
        cl.wait_converged()
        wait_trees(n3)

        rc, out, err = moor_repair(n3, "--no-wait", timeout=30)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"^repair running: ranges \d+/192\n$")
        # --timeout (seconds) bounds the wait; the repair goes on in the node.
        rc, out, err = moor_repair(n3, "--timeout", "1.5", timeout=30)
        self.assertEqual(rc, 1, "%s %s" % (out, err))
        self.assertIn("still running after 2 s", err)
        self.assertTrue(repair_info(n3)["running"])
        why = poll(lambda: None if repair_info(n3)["ranges_done"] >= 1 else "no range done",
                   60, 0.2)
        self.assertIsNone(why, why)
        rc, out, err = moor_repair(n3, "--stop", "--json", timeout=30)
        self.assertEqual(rc, 0, err)
        stopped = json.loads(out)
        self.assertFalse(stopped["running"], stopped)
        done = stopped["ranges_done"]
        self.assertLess(done, stopped["ranges_total"], stopped)
        print("\n  stopped at %d of %d ranges" % (done, stopped["ranges_total"]))
        time.sleep(0.5)   # exchanges in flight finish (and count)
        done = repair_info(n3)["ranges_done"]

        # Started again: it resumes with the ranges it had not done.
        rc, out, err = moor_repair(n3, "--no-wait", "--json", timeout=30)
        self.assertEqual(rc, 0, err)
        resumed = json.loads(out)
        self.assertTrue(resumed["running"], resumed)
        self.assertGreaterEqual(resumed["ranges_done"], done, resumed)
        self.assertGreater(resumed["ranges_done"], 0, resumed)
        rc, out, err = moor_repair(n3, "--stop", timeout=30)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"^repair stopped: ranges \d+/192\n$")
        print("  resumed at %d of 192 ranges" % resumed["ranges_done"])

        # --restart forgets that progress.
        time.sleep(0.5)
        rc, out, err = moor_repair(n3, "--restart", "--no-wait", "--json", timeout=30)
        self.assertEqual(rc, 0, err)
        restarted = json.loads(out)
        self.assertTrue(restarted["running"], restarted)
        self.assertLess(restarted["ranges_done"], resumed["ranges_done"], restarted)
        print("  restarted at %d of 192 ranges" % restarted["ranges_done"])
        rc, out, err = moor_repair(n3, "--stop", timeout=30)
        self.assertEqual(rc, 0, err)
        # A stop with no repair running says so, and succeeds.
        time.sleep(0.5)
        rc, out, err = moor_repair(n3, "--stop", timeout=30)
        self.assertEqual(rc, 0, err)
        self.assertTrue(out.startswith("repair stopped: "), out)


# ---- c. bad input ---------------------------------------------------------------------

class BadInput(unittest.TestCase):
    def test_bad_params_and_lone_node(self):
        cl = moortest.Cluster(BUILD, 2, "moor-repair-bad-", source=CLIENT_HOST, settings=
                              'anti_entropy = { interval_s = 0 }',
                              script='moor.space("default", { n = 2, r = 1, w = 2 })\n')
        lone = None
        try:
            cl.start()
            cl.wait_converged()
            n1 = cl.nodes[0]
            wait_trees(n1)
            c = n1.conn(15)
            try:
                for i, params in enumerate(([{"space": 5}], [{"space": ["default"]}], [{"ranges": "all"}],
                               [{"ranges": [[1]]}], [{"ranges": [[1, "2"]]}],
                               [{"ranges": [[-1, 2]]}], [{"ranges": [1, 2]}],
                               [{"ranges": [[i, i + 1] for i in range(65)]}],
                               [{"stop": "yes"}], [{"stop": 1}], [{"restart": "no"}],
                               ["default"], [{}, {}], [{"ranges": [[1, 2]]}],
                               [{"space": "nosuchspace"}])):
                    err, res = c.call("repair", *params)
                    self.assertIsNotNone(err, "repair %r answered %r" % (params, res))
                    self.assertEqual(err[0], "BAD_REQUEST", "repair %r: %r" % (params, err))
                    key = "still-%d" % i
                    err, res = c.call("put", key, "serving", {"w": "all"})
                    self.assertIsNone(err, "after repair %r: put %r" % (params, err))
                    err, res = c.call("get", key)
                    self.assertIsNone(err, err)
                    self.assertEqual(res["values"], ["serving"])
            finally:
                c.close()
            print("\n  15 malformed repair requests: BAD_REQUEST each, the node kept serving")

            # The CLI refuses bad options itself.
            for args in (["--range", "1"], ["--range", "a:b"], ["--stop", "--restart"],
                         ["--timeout", "0"], ["--bogus"], ["--space"]):
                rc, out, err = moor_repair(n1, *args, timeout=30)
                self.assertEqual(rc, 2, "moor repair %r exited %d: %s" % (args, rc, err))
            # ... and shows the node's answer for a range that is not one of its own.
            rc, out, err = moor_repair(n1, "--range", "1:2", timeout=30)
            self.assertEqual(rc, 1, err)
            self.assertIn("BAD_REQUEST", err)

            lone = moortest.Node(BUILD, os.path.join(cl.tmp, "lone"), "lone")
            lone.write_config("")
            lone.start()
            err, res = call(lone, "repair")
            self.assertIsNotNone(err, res)
            self.assertEqual(err[0], "UNAVAILABLE", err)
            rc, out, errout = moor_repair(lone, timeout=30)
            self.assertEqual(rc, 1, errout)
            self.assertIn("UNAVAILABLE", errout)
            print("  a lone node: UNAVAILABLE (moor repair exits 1)")
        except BaseException:
            sys.stderr.write(cl.logs())
            raise
        finally:
            if lone:
                lone.cleanup()
            cl.cleanup()


def main():
    global BUILD, NO_NETNS, CLIENT_HOST
    args, rest = moortest.parse_args(BUILD)
    BUILD = args.build
    outer = os.environ.get(NS_ENV)
    if outer is None:
        NO_NETNS = namespace_problem()
        if NO_NETNS is None:
            env = dict(os.environ)
            env[NS_ENV] = netns_id()
            sys.stdout.flush()
            sys.stderr.flush()
            unshare = find_tool("unshare")
            os.execve(unshare, [unshare, "--net", "--", sys.executable,
                                os.path.abspath(__file__)] + sys.argv[1:], env)
        print("SKIP (case b only): repair_test: %s" % NO_NETNS)
    else:
        if outer == netns_id():     # never run iptables in a namespace this script did not make
            sys.exit("repair_test: %s is set but this is not a new network namespace" % NS_ENV)
        r = subprocess.run([find_tool("ip"), "link", "set", "lo", "up"], capture_output=True,
                           text=True, timeout=30)
        if r.returncode != 0:
            sys.exit("repair_test: ip link set lo up: %s" % r.stderr.strip())
        CLIENT_HOST = "127.0.0.10"
    t0 = time.time()
    ok = moortest.run_unittest(rest)
    print("repair_test: %.1f s" % (time.time() - t0))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
