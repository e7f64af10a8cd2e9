#!/usr/bin/python3
"""bench_repair.py -- anti-entropy repair (`moor repair`) on a three-node cluster.

Three moords on 127.0.0.1-3, the default space n=3 r=2 w=2, no background
pass (anti_entropy.interval_s = 0), the other anti_entropy settings at
their defaults (rate_kb_s 8192, build_kb_s 32768, concurrency 2).  --keys
keys of --value-size bytes are written with w=all (pipelined), then:
  (i)   identical replicas: `moor repair` on node 1 -- the time of the
        full pass (info.repair.last_full_pass_s) and keys/s (keys each
        replica holds / that time);
  (ii)  a wiped replica: node 3 stopped, its data directory deleted,
        started again; `moor repair` on it: time, keys repaired/s and MB/s
        received;
  (iii) bytes on the wire per differing key in (ii) (sent + received by
        node 3 / keys repaired), beside the mean record size (`_get` on
        node 1) and their ratio;
  (iv)  the cost of a repair going on: more data is written (--bg-keys of
        --bg-value-size bytes, so that the repair outlasts the run), then
        node 3 is wiped again, then the keyspace `bench` is filled with
        the keys `moor bench` uses (key:<n>, n < --keys); `moor bench
        --space bench` (mixed, half gets, half puts) against node 1 for
        --duration seconds with no repair, then the same run while `moor
        repair --space default --no-wait` rebuilds node 3 (so the runs
        differ only by the repair: the clients' keys are never missing);
        ops/s and p99 of both and their ratios (targets: ops/s >= 0.9x,
        p99 <= 1.3x: printed, not asserted), and how much of the second
        run the repair covered.

Client, nodes and replicas share this machine's cores.  Every moord this
script starts is killed when it exits, whatever happens.

usage: bench_repair.py [--build DIR] [--keys N] [--value-size B] [--bg-keys N]
                       [--bg-value-size B] [--duration S] [--conns N] [--pipeline N]
                       [--rate-kb-s KB]   (anti_entropy.rate_kb_s; default the node's)
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import moortest                         # noqa: E402  (the shared node harness)
from moortest import Failed, pipelined, poll  # noqa: E402

CONVERGE_S = 60
TREES_S = 300     # bound on a node's trees being built
REPAIR_S = 1800   # bound on one `moor repair`
PIPELINE = 256
SETTINGS = ('engine = { sync = "interval", sync_ms = 1000, memtable_mb = 64, cache_mb = 64 },\n'
            '  anti_entropy = { interval_s = 0%s },\n'
            '  log = { level = "warn" }')


def on_signal(signum, frame):
    sys.exit("bench_repair: signal %d, stopping" % signum)  # atexit kills the nodes



def load(node, prefix, count, size, space="default", fmt="%s%07d"):
    """count keys prefix<n> (fmt) of size-byte values at w=all; seconds taken."""
    t0 = time.time()
    c = node.conn(60)
    try:
        for lo in range(0, count, 10000):
            reqs = [("put", fmt % (prefix, i), ("%07d" % i) + "x" * max(0, size - 7),
                     {"w": "all", "space": space}) for i in range(lo, min(count, lo + 10000))]
            bad = [a for a in pipelined(c, reqs, PIPELINE) if a[0] is not None]
            if bad:
                raise Failed("puts at w=all failed: %r" % bad[:3])
    finally:
        c.close()
    return time.time() - t0


def bench_space(args, node):
    """One `moor bench` run (mixed) on the keyspace `bench`, parsed as
    bench_cluster does."""
    cmd = ["bench", "--conns", str(args.conns), "--pipeline", str(args.pipeline),
           "--keys", str(args.keys), "--value-size", str(args.value_size),
           "--ratio", "0.5", "--duration", str(args.duration), "--space", "bench"]
    r = moor(args.build, node, *cmd, timeout=args.duration + 120)
    lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
    if r.returncode != 0 or not lines:
        raise Failed("moor bench against %s failed (exit %d): %s"
                     % (node.addr, r.returncode, r.stderr.strip()[-2000:]))
    x = json.loads(lines[-1])
    return {"ops": x["ops_per_sec"], "p50": x["p50_us"], "p99": x["p99_us"],
            "errors": x["errors"], "lost": x["lost"]}


def record_bytes(node, secret, prefix, count):
    """Sum of the records' sizes node holds for the keys prefix<n>."""
    c = node.conn(60)
    total = 0
    try:
        err, _ = c.call("_auth", {"secret": secret, "proto": 1})
        if err is not None:
            raise Failed("_auth: %r" % (err,))
        for lo in range(0, count, 10000):
            reqs = [("_get", {"space": "default", "key": "%s%07d" % (prefix, i)})
                    for i in range(lo, min(count, lo + 10000))]
            total += sum(len(r) for e, r in pipelined(c, reqs, PIPELINE) if e is None and r)
    finally:
        c.close()
    return total


def moor(build, node, *args, timeout=REPAIR_S):
    cmd = [os.path.join(build, "moor"), "-h", node.addr, "--timeout", "30000"] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 60)


def repair(build, node):
    """`moor repair --json` on node, waited for: (wall seconds, info.repair)."""
    t0 = time.time()
    r = moor(build, node, "repair", "--json", "--timeout", str(REPAIR_S))
    took = time.time() - t0
    if r.returncode != 0:
        raise Failed("moor repair on %s exited %d: %s %s" % (node.id, r.returncode,
                                                             r.stdout, r.stderr))
    return took, json.loads(r.stdout)


def info(node):
    return node.info()["repair"]


def wait_trees(node):
    why = poll(lambda: None if info(node)["trees_ready"] else "not built", TREES_S, 0.5)
    if why:
        raise Failed("trees of %s not built within %d s" % (node.id, TREES_S))


def wipe(cl, node):
    node.stop(timeout=60)
    node.wipe_data()
    node.start()
    try:
        cl.wait_converged(CONVERGE_S)
    except AssertionError as e:
        raise Failed("no convergence after the wipe: %s" % e)
    wait_trees(node)


def mb(n):
    return n / (1024.0 * 1024.0)


def run(args, cl, out):
    cl.start()
    try:
        cl.wait_converged(CONVERGE_S)
    except AssertionError as e:
        raise Failed("the cluster did not converge: %s" % e)
    n1, n2, n3 = cl.nodes
    for n in cl.nodes:
        wait_trees(n)
    t = load(n1, "r:", args.keys, args.value_size)
    print("loaded %d keys of %d B at w=all in %.1f s" % (args.keys, args.value_size, t))
    sys.stdout.flush()

    # (i) identical replicas
    for n in cl.nodes:   # trees saved by a clean stop are reloaded: settle first
        wait_trees(n)
    wall, x = repair(args.build, n1)
    secs = x["last_full_pass_s"] or wall
    out["identical"] = dict(keys=args.keys, ranges=x["ranges_total"], pass_s=secs, wall_s=wall,
                            keys_per_s=args.keys / secs if secs else 0.0,
                            bytes=x["bytes_sent"] + x["bytes_received"],
                            keys_compared=x["keys_compared"])
    print("(i)   identical replicas: full pass of %d ranges in %.3f s (moor repair %.2f s "
          "wall): %.0f keys/s; %d B on the wire, %d keys compared"
          % (x["ranges_total"], secs, wall, out["identical"]["keys_per_s"],
             out["identical"]["bytes"], x["keys_compared"]))
    sys.stdout.flush()

    # (ii) a wiped replica
    rec = record_bytes(n1, cl.secret, "r:", args.keys)
    wipe(cl, n3)
    wall, x = repair(args.build, n3)
    secs = x["last_full_pass_s"] or wall
    wire = x["bytes_sent"] + x["bytes_received"]
    out["wiped"] = dict(keys=args.keys, pass_s=secs, wall_s=wall,
                        keys_repaired=x["keys_repaired"],
                        keys_per_s=x["keys_repaired"] / secs if secs else 0.0,
                        mb_received=mb(x["bytes_received"]),
                        mb_per_s=mb(x["bytes_received"]) / secs if secs else 0.0,
                        bytes_sent=x["bytes_sent"], bytes_received=x["bytes_received"],
                        record_bytes=rec)
    print("(ii)  wiped replica: %d keys repaired in %.2f s (moor repair %.2f s wall): "
          "%.0f keys/s, %.1f MB received, %.2f MB/s"
          % (x["keys_repaired"], secs, wall, out["wiped"]["keys_per_s"],
             out["wiped"]["mb_received"], out["wiped"]["mb_per_s"]))
    # (iii) bytes per differing key
    per_key = wire / x["keys_repaired"] if x["keys_repaired"] else 0.0
    mean_rec = rec / args.keys
    out["per_key"] = dict(wire_bytes_per_key=per_key, mean_record_bytes=mean_rec,
                          ratio=per_key / mean_rec if mean_rec else 0.0)
    print("(iii) bytes on the wire per differing key: %.1f (sent + received by the wiped "
          "node), mean record %.1f B: %.2fx the record"
          % (per_key, mean_rec, out["per_key"]["ratio"]))
    sys.stdout.flush()

    # (iv) a repair going on under load.  The clients use a keyspace of
    # their own, filled beforehand and never wiped, and node 3 is wiped
    # before the first run: the two runs differ only by the repair going
    # on (not by reads of keys a wiped replica lacks, which would cost
    # notfound waits and read repairs whether or not a repair ran).
    t = load(n1, "bg:", args.bg_keys, args.bg_value_size)
    print("loaded %d more keys of %d B at w=all in %.1f s (%.0f MB a replica must receive "
          "when wiped)" % (args.bg_keys, args.bg_value_size, t,
                           mb(args.bg_keys * args.bg_value_size + args.keys * args.value_size)))
    wipe(cl, n3)
    t = load(n1, "key:", args.keys, args.value_size, space="bench", fmt="%s%d")
    print("node 3 wiped; then the clients' keyspace `bench` filled (%d keys key:<n> of %d B) "
          "in %.1f s" % (args.keys, args.value_size, t))
    sys.stdout.flush()
    base = bench_space(args, n1)
    r = moor(args.build, n3, "repair", "--space", "default", "--no-wait", timeout=60)
    if r.returncode != 0:
        raise Failed("moor repair --no-wait on n3: %s %s" % (r.stdout, r.stderr))
    t0 = time.time()
    during = bench_space(args, n1)
    bench_end = time.time()
    x = info(n3)
    if x["running"]:
        covered = 1.0
        why = poll(lambda: info(n3)["running"], REPAIR_S, 0.5)
        if why:
            raise Failed("the repair on n3 still runs after %d s" % REPAIR_S)
        x = info(n3)
    else:
        covered = min(1.0, x["last_full_pass_s"] / max(1e-9, bench_end - t0))
    # A-B-A: the same run again once the repair is over, so that what the
    # first run left behind (memtables to flush, compactions) is not
    # charged to the repair: the base is the mean of the two runs without.
    after = bench_space(args, n1)
    base0 = base
    base = dict(base0)
    base["ops"] = (base0["ops"] + after["ops"]) / 2
    base["p99"] = (base0["p99"] + after["p99"]) / 2
    out["under_load_runs"] = dict(before=base0, after=after)
    out["under_load"] = dict(base=base, during=during, covered=covered,
                             repair_s=x["last_full_pass_s"],
                             repair_mb_received=mb(x["bytes_received"]),
                             ops_ratio=during["ops"] / base["ops"] if base["ops"] else 0.0,
                             p99_ratio=during["p99"] / base["p99"] if base["p99"] else 0.0)
    u = out["under_load"]
    print("(iv)  moor bench --space bench --ratio 0.5 --keys %d --conns %d --pipeline %d, "
          "%d s against node 1, node 3 wiped before both runs:"
          % (args.keys, args.conns, args.pipeline, args.duration))
    print("        no repair, before: %8.0f ops/s  p99 %8.1f us; after: %8.0f ops/s  p99 %8.1f us"
          % (base0["ops"], base0["p99"], after["ops"], after["p99"]))
    print("        no repair (mean): %9.0f ops/s  p50 %8.1f us  p99 %8.1f us  errors %d"
          % (base["ops"], base["p50"], base["p99"], base["errors"] + base["lost"]))
    print("        wiped n3 repair:  %9.0f ops/s  p50 %8.1f us  p99 %8.1f us  errors %d"
          % (during["ops"], during["p50"], during["p99"], during["errors"] + during["lost"]))
    print("        repair (rate_kb_s %d): %.1f MB received in %.1f s, running for %.0f%% "
          "of the run" % (args.rate_kb_s or 8192, u["repair_mb_received"], u["repair_s"],
                          100 * covered))
    print("        with/without: ops/s %.2fx (target >= 0.9x), p99 %.2fx (target <= 1.3x)"
          % (u["ops_ratio"], u["p99_ratio"]))
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--keys", type=int, default=50000)
    ap.add_argument("--value-size", type=int, default=100)
    ap.add_argument("--bg-keys", type=int, default=60000)
    ap.add_argument("--bg-value-size", type=int, default=2000)
    ap.add_argument("--duration", type=int, default=10, help="seconds per moor bench run")
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--pipeline", type=int, default=1)
    ap.add_argument("--rate-kb-s", type=int, default=0,
                    help="anti_entropy.rate_kb_s of every node (default: the node's, 8192)")
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    for exe in ("moord", "moor"):
        if not os.access(os.path.join(args.build, exe), os.X_OK):
            sys.exit("bench_repair: %s not built in %s" % (exe, args.build))
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    rate = args.rate_kb_s or 8192
    print("bench_repair: 3 nodes on 127.0.0.1-3, n=3 r=2 w=2, anti_entropy rate_kb_s %d%s, "
          "build_kb_s 32768 and concurrency 2 (defaults), no background pass; "
          "client and nodes share this machine\n"
          % (rate, "" if args.rate_kb_s else " (the default)"))
    sys.stdout.flush()
    settings = SETTINGS % (", rate_kb_s = %d" % args.rate_kb_s if args.rate_kb_s else "")
    cl = moortest.Cluster(args.build, 3, "moor-bench-repair-", settings=settings,
                          script='moor.space("default", { n = 3, r = 2, w = 2 })\n'
                                 'moor.space("bench", { n = 3, r = 2, w = 2 })\n')
    out, failed = {}, None
    try:
        run(args, cl, out)
    except Failed as e:
        failed = str(e)
        for n in cl.nodes:
            sys.stderr.write("---- %s log (tail) ----\n%s\n" % (n.id, n.logtail(3000)))
    finally:
        moortest.cleanup_all()
    print()
    print(json.dumps(out))
    if failed:
        sys.exit("bench_repair: %s" % failed)


if __name__ == "__main__":
    main()
