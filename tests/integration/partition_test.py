#!/usr/bin/python3
"""partition_test.py -- network partitions of a real three-node moord cluster.

The script re-executes itself inside a throwaway network namespace
(`unshare --net`), brings its loopback up and starts three moord processes
on 127.0.0.1, 127.0.0.2 and 127.0.0.3 there (free ports, a cluster_secret,
the default space n=3 r=2 w=2, request_timeout_ms = 1000).  moord binds its
outgoing peer sockets to its own listen address, so iptables rules keyed on
source and destination address cut exactly the node-to-node paths chosen;
they live in the chain MOORPART (hooked into INPUT on lo) and healing
flushes it.  The test's own connections come from 127.0.0.10, which no rule
names.  Nothing touches the host's network: the namespace vanishes with the
process.

Scenarios: a node isolated from both others (DROP: timeouts, not resets);
concurrent writes on both sides of a partition, kept as siblings after
healing and read repair; a one-way partition; random loss on every
node-to-node path while puts go on (no acknowledged write lost); and, on
a cluster of four, a node cut off from the others: its writes go to
fallbacks as hints, and after healing the hints carry them across (read
from the node's own store, with no read repair involved).

Without root, unshare or iptables the script prints a SKIP line and exits 0.
Every wait is bounded and every moord is killed when the script exits.
The harness (RPC client, nodes, clusters) is moortest.py, beside this file.

usage: partition_test.py --build BUILD_DIR [-k NAME]
"""
import os
import shutil
import subprocess
import sys
import time
import unittest

import msgpack

import moortest
from moortest import poll, retry

BUILD = moortest.DEFAULT_BUILD
NS_ENV = "MOOR_PARTITION_OUTER_NETNS"   # set (to the outer namespace) once re-executed
SECRET = "partition-test-secret-%d" % os.getpid()
CLIENT_HOST = "127.0.0.10"  # the test's source address: no partition rule names it
CHAIN = "MOORPART"
REQUEST_TIMEOUT_MS = 1000   # the nodes' default deadline of a get/put
HEAL_S = 30         # bound on every path working again after healing (TCP
                    # retransmission back-off on the old connections, reconnect back-off)
REPAIR_S = 15       # bound on background read repair reaching a replica
LOSS_S = 5.0        # how long random loss stays on
LOSS_PUTS = 200


def netns_id():
    return os.readlink("/proc/self/ns/net")


# ---- the namespace -----------------------------------------------------------

def find_tool(name):
    return shutil.which(name) or next(
        (p for p in ("/usr/sbin/" + name, "/sbin/" + name) if os.access(p, os.X_OK)), None)


def skip(why):
    print("SKIP: partition_test: %s" % why)
    sys.stdout.flush()
    sys.exit(0)


def enter_namespace():
    """Outside the namespace: checks what the test needs and re-executes
    this script under `unshare --net` (exec: the process stays the same one,
    so whoever started it still owns it).  Exits 0 with SKIP when it cannot."""
    if os.geteuid() != 0:
        skip("needs root (unshare --net, iptables)")
    tools = {n: find_tool(n) for n in ("unshare", "iptables", "ip")}
    missing = [n for n, p in tools.items() if p is None]
    if missing:
        skip("%s not installed" % ", ".join(missing))
    probe = ("{ip} link set lo up && {ipt} -w 10 -N P && {ipt} -w 10 -A INPUT -i lo -j P && "
             "{ipt} -w 10 -A P -s 127.0.0.1 -d 127.0.0.2 -m statistic --mode random "
             "--probability 0.3 -j DROP").format(ip=tools["ip"], ipt=tools["iptables"])
    try:
        r = subprocess.run([tools["unshare"], "--net", "sh", "-c", probe],
                           capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        skip("unshare --net / iptables probe did not finish within 30 s")
    if r.returncode != 0:
        skip("unshare --net with iptables does not work here: %s" %
             (r.stderr.strip() or r.stdout.strip() or "exit %d" % r.returncode))
    env = dict(os.environ)
    env[NS_ENV] = netns_id()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(tools["unshare"], [tools["unshare"], "--net", "--", sys.executable,
                                 os.path.abspath(__file__)] + sys.argv[1:], env)


class Firewall:
    """iptables in this namespace: one chain hooked into INPUT on lo."""

    def __init__(self):
        self.ipt = find_tool("iptables")
        self.before_heal = "(no rule yet)"
        self.run("-N", CHAIN)
        self.run("-I", "INPUT", "-i", "lo", "-j", CHAIN)

    def run(self, *args):
        r = subprocess.run([self.ipt, "-w", "10"] + list(args), capture_output=True, text=True,
                           timeout=30)
        if r.returncode != 0:
            raise RuntimeError("iptables %s: %s" % (" ".join(args), r.stderr.strip()))
        return r.stdout

    def drop(self, src, dst, *match):
        """Drops packets from src to dst (host addresses), only those that
        also match `match` (extra iptables arguments) when given."""
        self.run("-A", CHAIN, "-i", "lo", "-s", src, "-d", dst, *match, "-j", "DROP")

    def cut(self, a, b):
        """Both directions between a and b."""
        self.drop(a, b)
        self.drop(b, a)

    def heal(self):
        rules = self.listing()
        if len(rules.splitlines()) > 2:     # more than the header: keep for the failure report
            self.before_heal = rules
        self.run("-F", CHAIN)

    def dropped(self):
        """Packets the chain's rules dropped since they were added."""
        out = self.run("-L", CHAIN, "-v", "-n", "-x")
        return sum(int(line.split()[0]) for line in out.splitlines()
                   if line.split()[2:3] == ["DROP"])

    def listing(self):
        try:
            return self.run("-L", CHAIN, "-v", "-n")
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            return "(iptables -L failed: %s)" % e


# ---- the cluster ---------------------------------------------------------------

class Cluster(moortest.Cluster):
    """n1, n2, n3 with a cluster_secret and request_timeout_ms; the test's
    connections come from CLIENT_HOST.  fw: the Firewall, once made."""

    def __init__(self):
        super().__init__(
            BUILD, 3, "moor-partition-", secret=SECRET, source=CLIENT_HOST, settings=
            'vnodes = 64,\n'
            '  request_timeout_ms = %d,\n'
            '  engine = { sync = "interval", memtable_mb = 4, cache_mb = 8 },\n'
            '  log = { level = "info" }' % REQUEST_TIMEOUT_MS,
            script='moor.space("default", { n = 3, r = 2, w = 2 })\n')
        self.fw = None

    def wait_ready(self, timeout=HEAL_S):
        """Until a get with r = "all" works through every node: each node's
        connections to both others carry requests and answers again (after
        a partition, TCP retransmits on its own back-off)."""
        deadline = time.time() + timeout
        for n in self.nodes:
            if not n.alive():
                raise AssertionError("%s is not running:\n%s" % (n.id, n.logtail()))
            c = n.conn(5)
            try:
                retry(lambda: c.call("get", "ready-probe", {"r": "all"}),
                      max(0.0, deadline - time.time()), "get r=all through %s" % n.id)
            finally:
                c.close()

    def logs(self):
        fw = ("now:\n%s\nbefore the last heal:\n%s" % (self.fw.listing(), self.fw.before_heal)
              if self.fw else "")
        return "---- iptables %s\n%s\n" % (CHAIN, fw) + super().logs()


CLUSTER = None


def setUpModule():
    global CLUSTER
    CLUSTER = Cluster()     # removed at exit (moortest)
    CLUSTER.fw = Firewall()
    CLUSTER.start()
    CLUSTER.wait_converged()


def tearDownModule():
    if CLUSTER is not None:
        CLUSTER.stop()    # main() prints the logs on failure, then removes the directory


def read_record(peer, key):
    """The record node `peer` (an _auth'ed connection) holds for key in the
    default space: None or (clock, [(value, ts, tombstone), ...],
    [(dot_id, dot_counter), ...]) -- the record's context, its siblings and
    their dots."""
    err, rec = peer.call("_get", {"space": "default", "key": key})
    if err is not None:
        raise AssertionError("_get %s answered %r" % (key, err))
    if rec is None:
        return None
    assert isinstance(rec, bytes), rec
    ver, clock, siblings = msgpack.unpackb(rec, raw=False)   # format v2
    assert ver == 2, ver
    return clock, [tuple(s[2:]) for s in siblings], [(s[0], s[1]) for s in siblings]


class PartitionTest(unittest.TestCase):
    """Test names are ordered a..d: each starts healed, with every path working."""

    def setUp(self):
        self.c = CLUSTER
        self.fw = CLUSTER.fw
        self.n1, self.n2, self.n3 = self.c.nodes
        self.fw.heal()
        self.c.wait_ready()
        self.addCleanup(self.fw.heal)
        self.noted = False

    def note(self, line):
        """A line for the verbose output, under the test's name."""
        if not self.noted:
            self.noted = True
            self.addCleanup(sys.stderr.write, "\n  ")
        sys.stderr.write("\n  " + line)

    def connect(self, node):
        """A connection to node, closed when the test ends."""
        c = node.conn()
        self.addCleanup(c.close)
        return c

    def peer(self, node):
        """A connection to node that passed _auth: it may call _get."""
        c = self.connect(node)
        err, _ = c.call("_auth", {"secret": SECRET, "proto": 1})
        self.assertIsNone(err, "_auth on %s: %r" % (node.id, err))
        return c

    def isolate(self, node):
        for other in self.c.nodes:
            if other is not node:
                self.fw.cut(node.host, other.host)

    def assertQuorumLost(self, err, what):
        """A call through the isolated node: QUORUM_FAILED (its own replica
        only: "1 of 3") or TIMEOUT."""
        self.assertIsNotNone(err, "%s succeeded with the node isolated" % what)
        self.note("%s: %s %s" % (what, err[0], err[1]))
        self.assertIn(err[0], ("QUORUM_FAILED", "TIMEOUT"), "%s: %r" % (what, err))
        if err[0] == "QUORUM_FAILED":
            self.assertIn("1 of 3", err[1], "%s: %r" % (what, err))

    def heal_and_wait(self):
        self.fw.heal()
        self.c.wait_ready()

    def test_a_isolated_node(self):
        c1, c3 = self.connect(self.n1), self.connect(self.n3)
        # Known everywhere before the partition (w = all: n3 holds it too).
        err, res = c1.call("put", "a-known", "v0", {"w": "all"})
        self.assertIsNone(err, err)
        ctx0 = res["ctx"]
        self.isolate(self.n3)
        # The majority side goes on: W = 2 and R = 2 from n1 + n2.
        for i in range(10):
            err, _ = c1.call("put", "a-%d" % i, ["maj", i])
            self.assertIsNone(err, "put a-%d through n1 with n3 isolated: %r" % (i, err))
        for i in range(10):
            err, res = c1.call("get", "a-%d" % i)
            self.assertIsNone(err, "get a-%d through n1 with n3 isolated: %r" % (i, err))
            self.assertEqual(res["values"], [["maj", i]])
        err, _ = c1.call("put", "a-known", "v1", {"ctx": ctx0})
        self.assertIsNone(err, "put a-known through n1 with n3 isolated: %r" % (err,))
        err, res = c1.call("get", "a-known")
        self.assertIsNone(err, err)
        self.assertEqual(res["values"], ["v1"])
        # The isolated node cannot reach a quorum, blind or with a ctx.
        err, _ = c3.call("put", "a-minority", "lonely")
        self.assertQuorumLost(err, "blind put through n3")
        err, _ = c3.call("put", "a-known", "v3", {"ctx": ctx0})
        self.assertQuorumLost(err, "put with ctx through n3")
        err, _ = c3.call("get", "a-known", {"r": 2})
        self.assertQuorumLost(err, "get r=2 through n3")
        err, _ = c3.call("get", "a-0")
        self.assertQuorumLost(err, "get (r=2 by default) through n3")
        # r = 1 answers n3's own copy: stale (v1 never reached it), and
        # holding the failed put's version beside it.
        err, res = c3.call("get", "a-0", {"r": 1})
        self.assertIsNone(err, "get r=1 through n3: %r" % (err,))
        self.assertIsNone(res, "n3 has a-0, written only while it was isolated")
        err, res = c3.call("get", "a-minority", {"r": 1})
        self.assertIsNone(err, "get r=1 through n3: %r" % (err,))
        self.assertEqual(res["values"], ["lonely"])
        err, res = c3.call("get", "a-known", {"r": 1})
        self.assertIsNone(err, "get r=1 through n3: %r" % (err,))
        self.assertNotIn("v1", res["values"])
        self.assertEqual(res["values"], ["v3"])     # its ctx descended v0 there
        # The other nodes never saw n3's writes.
        p2 = self.peer(self.n2)
        self.assertIsNone(read_record(p2, "a-minority"))
        self.assertEqual([s[0] for s in read_record(p2, "a-known")[1]], ["v1"])

    def test_b_both_sides_kept_after_heal(self):
        c1, c3 = self.connect(self.n1), self.connect(self.n3)
        self.isolate(self.n3)
        err, _ = c1.call("put", "split", "left")
        self.assertIsNone(err, "put split through n1 with n3 isolated: %r" % (err,))
        err, _ = c3.call("put", "split", "right")
        self.assertQuorumLost(err, "put split through n3")
        err, res = c3.call("get", "split", {"r": 1})
        self.assertIsNone(err, err)
        self.assertEqual(res["values"], ["right"], "n3 did not keep its own write")
        err, res = c1.call("get", "split")
        self.assertIsNone(err, err)
        self.assertEqual(res["values"], ["left"])
        self.fw.heal()
        # Peers reconnect (or their TCP retransmits) after a back-off.
        retry(lambda: c3.call("put", "b-probe", "after-heal"), HEAL_S, "put through n3 after heal")
        res = retry(lambda: c1.call("get", "split", {"r": "all"}), HEAL_S,
                    "get split r=all through n1 after heal")
        self.assertEqual(sorted(res["values"]), ["left", "right"],
                         "a write of one side was lost")
        # Read repair gives n3 both siblings (n1 and n2 may also have had
        # n3's _put retransmitted by TCP: the same merge either way).
        p3 = self.peer(self.n3)
        deadline = time.time() + REPAIR_S
        while True:
            rec = read_record(p3, "split")
            got = sorted(s[0] for s in rec[1] if not s[2]) if rec else []
            if got == ["left", "right"] or time.time() >= deadline:
                break
            time.sleep(0.2)
        self.assertEqual(got, ["left", "right"], "n3 not repaired within %ss" % REPAIR_S)
        # Its siblings' dots name both writers: n1 (left) and n3 (right).
        self.assertEqual(sorted(d[0] for d in rec[2]), [b"n1", b"n3"], rec[2])
        for n in self.c.nodes:
            c = self.connect(n)
            err, res = c.call("get", "split", {"r": "all"})
            self.assertIsNone(err, err)
            self.assertEqual(sorted(res["values"]), ["left", "right"], "through %s" % n.id)

    def test_c_one_way(self):
        c1 = self.connect(self.n1)
        self.fw.drop(self.n1.host, self.n2.host)   # n1 -> n2 only
        keys = ["c-%d" % i for i in range(10)]
        for i, k in enumerate(keys):
            err, _ = c1.call("put", k, {"one-way": i})
            self.assertIsNone(err, "put %s through n1 with n1 -> n2 dropped: %r" % (k, err))
        for i, k in enumerate(keys):
            err, res = c1.call("get", k)
            self.assertIsNone(err, "get %s through n1 with n1 -> n2 dropped: %r" % (k, err))
            self.assertEqual(res["values"], [{"one-way": i}])
        self.assertGreater(self.fw.dropped(), 0, "nothing from n1 to n2 was dropped")
        self.heal_and_wait()
        c2 = self.connect(self.n2)
        for i, k in enumerate(keys):
            res = retry(lambda: c2.call("get", k, {"r": "all"}), HEAL_S,
                        "get %s r=all through n2" % k)
            self.assertEqual(res["values"], [{"one-way": i}], k)
        # n2 holds every key now (read repair, or TCP's late delivery of
        # n1's _put: either way the same version).
        p2 = self.peer(self.n2)

        def missing_on_n2():
            missing = []
            for i, k in enumerate(keys):
                rec = read_record(p2, k)
                if rec is None:
                    missing.append(k)
                else:
                    self.assertEqual([(s[0], s[2]) for s in rec[1]], [({"one-way": i}, False)])
            return missing
        missing = poll(missing_on_n2, REPAIR_S)
        self.assertEqual(missing, [], "not on n2 within %ss" % REPAIR_S)

    def test_d_random_loss(self):
        c1 = self.connect(self.n1)
        items = [("d-%03d" % i, {"i": i, "pad": "x" * (i % 50)}) for i in range(LOSS_PUTS)]
        for a in self.c.nodes:
            for b in self.c.nodes:
                if a is not b:
                    self.fw.drop(a.host, b.host, "-m", "statistic", "--mode", "random",
                                 "--probability", "0.3")
        start = time.time()
        # Paced over most of the loss period, pipelined (at most 64
        # unanswered): sequential puts that each wait out a lost packet
        # would not fit in it.
        spread, window = LOSS_S * 0.8, 64
        bound = LOSS_S + 10 * REQUEST_TIMEOUT_MS / 1000.0
        pending, results, sent = {}, {}, 0
        while len(results) < len(items):
            now = time.time()
            self.assertLess(now, start + bound, "%d of %d puts unanswered after %ss" %
                            (len(items) - len(results), len(items), bound))
            while (sent < len(items) and len(pending) < window
                   and now >= start + sent * spread / len(items)):
                key, value = items[sent]
                pending[c1.send("put", key, value)] = key
                sent += 1
            wake = start + sent * spread / len(items) if sent < len(items) else now + 0.5
            for msg in c1.poll(min(wake, start + bound) - time.time()):
                self.assertEqual(msg[0], 1, msg)
                self.assertIn(msg[1], pending, msg)
                results[pending.pop(msg[1])] = (msg[2], msg[3])
        rest = start + LOSS_S - time.time()
        if rest > 0:
            time.sleep(rest)
        counters, dropped = self.fw.listing(), self.fw.dropped()
        self.heal_and_wait()
        acked = [k for k, (err, _) in results.items() if err is None]
        failed = {k: err for k, (err, _) in results.items() if err is not None}
        self.note("random loss: %d packets dropped, %d of %d puts acknowledged, failures: %r" %
                  (dropped, len(acked), len(items), sorted(set(e[0] for e in failed.values()))))
        self.assertGreater(dropped, 0, "the loss rules dropped nothing:\n%s" % counters)
        self.assertTrue(acked, "no put succeeded under 30%% loss:\n%s" % counters)
        for err in failed.values():
            self.assertIn(err[0], ("QUORUM_FAILED", "TIMEOUT"), err)
        value_of = dict(items)
        for k in sorted(results):
            res = retry(lambda: c1.call("get", k, {"r": "all"}), HEAL_S,
                        "get %s r=all after the loss" % k)
            if k in failed:     # may or may not have reached replicas; never garbage
                if res is not None:
                    self.assertEqual(res["values"], [value_of[k]], "failed put %s" % k)
            else:
                self.assertIsNotNone(res, "acknowledged put %s lost" % k)
                self.assertEqual(res["values"], [value_of[k]], "acknowledged put %s" % k)


class PartitionWithHintsTest(unittest.TestCase):
    """Runs after PartitionTest (unittest orders classes by name): its own
    four nodes, so a fallback exists for every key while one node is cut
    off; the three-node cluster is stopped first (its addresses are reused)."""

    def test_e_hints_carry_writes_across(self):
        if CLUSTER is not None:
            CLUSTER.stop()      # the three-node cluster: its addresses are reused
        cl = moortest.Cluster(
            BUILD, 4, "moor-partition-hints-", secret=SECRET, source=CLIENT_HOST, settings=
            'vnodes = 64,\n'
            '  request_timeout_ms = %d,\n'
            '  engine = { sync = "interval", memtable_mb = 4, cache_mb = 8 },\n'
            '  log = { level = "info" }' % REQUEST_TIMEOUT_MS,
            script='moor.space("default", { n = 3, r = 2, w = 2 })\n')
        fw = CLUSTER.fw if CLUSTER is not None else Firewall()
        fw.heal()
        self.addCleanup(fw.heal)
        try:
            self.run_case(cl, fw)
        except BaseException:
            sys.stderr.write(cl.logs())
            raise
        finally:
            cl.cleanup()

    def run_case(self, cl, fw):
        cl.start()
        cl.wait_converged()
        n1, n4 = cl.nodes[0], cl.nodes[3]
        for other in cl.nodes[:3]:
            fw.cut(n4.host, other.host)
        t0 = time.time()

        def cut_off():
            for n in cl.nodes[:3]:
                st = {m["id"]: m["status"] for m in cl.ring(n)["nodes"]}
                if st.get(n4.id) != "down":
                    return "%s sees n4 %s" % (n.id, st.get(n4.id))
            return None

        why = poll(cut_off, HEAL_S)
        self.assertIsNone(why, why)
        sys.stderr.write("\n  n4 down on the others %.1f s after the cut " % (time.time() - t0))
        c = n1.conn()
        self.addCleanup(c.close)
        owned = []
        for i in range(100):
            key = "e-%d" % i
            err, res = c.call("put", key, ["e", i], {"w": 2, "receipt": True})
            self.assertIsNone(err, "put %s with n4 cut off: %r" % (key, err))
            if any(r.get("fallback_for") == n4.id and r["status"] == "ok"
                   for r in res["receipt"]):
                owned.append(key)
        self.assertTrue(owned, "no write of n4's went to a fallback")
        fw.heal()
        why = poll(lambda: cl.converged(), HEAL_S)
        self.assertIsNone(why, why)

        def drained():
            left = sum(n.info()["hints"]["pending"] for n in cl.nodes)
            return "%d hints pending" % left if left else None

        why = poll(drained, HEAL_S * 2, 0.5)
        self.assertIsNone(why, why)
        # n4's own store has every write it owned (read without any repair).
        p4 = n4.conn()
        self.addCleanup(p4.close)
        err, _ = p4.call("_auth", {"secret": SECRET, "proto": 1})
        self.assertIsNone(err, err)
        for key in owned:
            err, rec = p4.call("_get", {"space": "default", "key": key})
            self.assertIsNone(err, err)
            self.assertIsNotNone(rec, "%s: the hint never reached n4" % key)
            _, _, siblings = msgpack.unpackb(rec, raw=False)
            self.assertEqual([s[2] for s in siblings], [["e", int(key[2:])]])
        sys.stderr.write("(%d of n4's writes handed off across the healed partition) "
                         % len(owned))


def main():
    global BUILD
    args, rest = moortest.parse_args(BUILD)
    BUILD = args.build
    outer = os.environ.get(NS_ENV)
    if outer is None:
        enter_namespace()       # does not return: re-executes inside the namespace, or skips
    if outer == netns_id():     # never run iptables in a namespace this script did not make
        sys.exit("partition_test: %s is set but this is not a new network namespace" % NS_ENV)
    r = subprocess.run([find_tool("ip"), "link", "set", "lo", "up"], capture_output=True,
                       text=True, timeout=30)
    if r.returncode != 0:
        sys.exit("partition_test: ip link set lo up: %s" % r.stderr.strip())
    t0 = time.time()
    ok = moortest.run_unittest(rest)
    print("partition_test: %.1f s" % (time.time() - t0))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
