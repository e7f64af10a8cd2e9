#!/usr/bin/python3
"""bench_cluster.py -- one standalone node against a three-node cluster.

Runs the same `moor bench` commands (a put-only pass, then a get-only pass
that finds the keys the puts wrote) against:
  single   one moord with no seeds (one copy of every key);
  cluster  three moords on 127.0.0.1, 127.0.0.2 and 127.0.0.3, each
           seeding all three, default space n=3 r=2 w=2, the client
           talking to node 1 (which coordinates or forwards every request).
Every node has the same engine settings (sync=interval, fsync every
1000 ms).  Before the cluster run, the `ring` of each node must list the
three members, all up (bounded wait).  Prints ops/s, p50 and p99 per
workload and setup, and the cluster/single ratios of ops/s and p99.

Client, nodes and replicas all share this machine's cores: the figures
show what replication costs on one box (each write is applied three times
and each read asks three replicas), not what three machines would do.

Every moord this script starts is killed when it exits, whatever happens.

usage: bench_cluster.py [--build DIR] [--duration S] [--conns N]
                        [--pipeline N] [--keys N] [--value-size B]
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import moortest                         # noqa: E402  (the shared node harness)
from moortest import Failed             # noqa: E402

CONVERGE_S = 60  # bound on the cluster agreeing on three up members
SETTINGS = ('engine = { sync = "interval", sync_ms = 1000, memtable_mb = 64, cache_mb = 64 },\n'
            '  log = { level = "warn" }')


def on_signal(signum, frame):
    sys.exit("bench_cluster: signal %d, stopping" % signum)  # atexit kills the nodes


def moor(build, addr, *args, timeout=30):
    return subprocess.run([os.path.join(build, "moor"), "-h", addr] + list(args),
                          capture_output=True, text=True, timeout=timeout)


def bench(build, addr, args, ratio):
    cmd = ["bench", "--conns", str(args.conns), "--pipeline", str(args.pipeline),
           "--keys", str(args.keys), "--value-size", str(args.value_size),
           "--ratio", str(ratio), "--duration", str(args.duration)]
    r = moor(build, addr, *cmd, timeout=args.duration + 120)
    lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
    if r.returncode != 0 or not lines:
        raise Failed("moor bench against %s failed (exit %d): %s" % (addr, r.returncode,
                                                                    r.stderr.strip()[-2000:]))
    x = json.loads(lines[-1])
    first = [l.split(":", 1)[1].strip() for l in r.stdout.splitlines()
             if l.strip().startswith("first error:")]
    return {"ops": x["ops_per_sec"], "p50": x["p50_us"], "p99": x["p99_us"],
            "errors": x["errors"], "lost": x["lost"], "first_error": first[0] if first else ""}


def run_setup(build, args, nodes, cluster=None):
    """Starts nodes (their configs written), waits for the cluster's ring
    when given, runs put then get against the first, stops them.
    {workload: result}."""
    try:
        for n in nodes:
            n.start()
        if cluster:
            try:
                cluster.wait_converged(CONVERGE_S)
            except AssertionError as e:
                raise Failed("the cluster did not converge: %s" % e)
        return {"put": bench(build, nodes[0].addr, args, 0.0),
                "get": bench(build, nodes[0].addr, args, 1.0)}
    except Failed:
        for n in nodes:
            sys.stderr.write("---- %s log (tail) ----\n%s\n" % (n.id, n.logtail(3000)))
        raise
    finally:
        for n in nodes:
            n.stop(timeout=30, check=False)


def print_table(results):
    print("%-8s %-4s %12s %10s %10s %8s" % ("setup", "op", "ops/s", "p50 us", "p99 us",
                                            "errors"))
    for setup in ("single", "cluster"):
        for op in ("put", "get"):
            x = results.get(setup, {}).get(op)
            if x:
                print("%-8s %-4s %12.0f %10.1f %10.1f %8d" % (setup, op, x["ops"], x["p50"],
                                                              x["p99"],
                                                              x["errors"] + x["lost"]))
    for setup, ops in results.items():
        for op, x in ops.items():
            if x["first_error"]:
                print("  %s %s: errors are counted in ops/s; first: %s" % (setup, op,
                                                                         x["first_error"]))
    if "single" in results and "cluster" in results:
        print()
        for op in ("put", "get"):
            s, c = results["single"][op], results["cluster"][op]
            print("%-4s cluster/single: ops/s %.2fx, p99 %.2fx" % (
                op, c["ops"] / s["ops"] if s["ops"] else 0.0,
                c["p99"] / s["p99"] if s["p99"] else 0.0))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--duration", type=int, default=15, help="seconds per moor bench run")
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--pipeline", type=int, default=1)
    ap.add_argument("--keys", type=int, default=100000)
    ap.add_argument("--value-size", type=int, default=100)
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    for exe in ("moord", "moor"):
        if not os.access(os.path.join(args.build, exe), os.X_OK):
            sys.exit("bench_cluster: %s not built in %s" % (exe, args.build))
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    print("bench_cluster: moor bench --conns %d --pipeline %d --keys %d --value-size %d, "
          "%d s per run (puts, then gets of the same keys), against node 1;"
          % (args.conns, args.pipeline, args.keys, args.value_size, args.duration))
    print("every node sync=interval (fsync 1 s); cluster: 3 nodes on 127.0.0.1-3, "
          "n=3 r=2 w=2; client and nodes share this machine\n")
    sys.stdout.flush()
    tmp = tempfile.mkdtemp(prefix="moor-bench-single-")
    results, failed = {}, None
    try:
        single = moortest.Node(args.build, os.path.join(tmp, "s1"), "s1")
        single.write_config(SETTINGS)
        results["single"] = run_setup(args.build, args, [single])
        cl = moortest.Cluster(args.build, 3, "moor-bench-cluster-", settings=SETTINGS,
                              script='moor.space("default", { n = 3, r = 2, w = 2 })\n')
        results["cluster"] = run_setup(args.build, args, cl.nodes, cl)
    except Failed as e:
        failed = str(e)
    finally:
        moortest.cleanup_all()     # every moord, and the cluster's directory
        shutil.rmtree(tmp, ignore_errors=True)
    print_table(results)
    print()
    for setup, ops in results.items():
        for op, x in ops.items():
            print(json.dumps(dict(setup=setup, op=op, **x)))
    if failed:
        sys.exit("bench_cluster: %s" % failed)


if __name__ == "__main__":
    main()
