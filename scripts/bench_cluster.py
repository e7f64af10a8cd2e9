#!/usr/bin/python3
"""bench_cluster.py -- one standalone node against a three-node cluster.

Runs the same `moor bench` commands, at pipeline 1 and at pipeline 16 (a
put-only pass, then a get-only pass of keys that exist), against:
  single   one moord with no seeds (one copy of every key);
  cluster  three moords on 127.0.0.1, 127.0.0.2 and 127.0.0.3, each
           seeding all three, default space n=3 r=2 w=2, the client
           talking to node 1 (which coordinates or forwards every request).
Every node has the same engine settings (sync=interval, fsync every
1000 ms) and the same keyspaces, all n=3 r=2 w=2: the puts of each
pipeline depth go to a space of their own (w1, w16), since every blind
put adds a sibling and the second pass would otherwise write over the
first's; the gets read the space `reads`, whose keys key:0 .. key:N-1 are
written once beforehand (moorload.py, through node 1), so every get finds
one value in both setups.  Before the cluster run, the `ring` of each node must list the
three members, all up (bounded wait).  Prints ops/s, p50 and p99 per
workload, pipeline depth and setup, and the cluster/single ratios of ops/s
and p99 with issue 12's targets (>= 0.6x at pipeline 1, where latency
bounds the rate; >= 0.33x at pipeline 16, where the cores do: three
replicas' work on the same two cores).

Client, nodes and replicas all share this machine's cores: the figures
show what replication costs on one box (each write is applied three times
and each read asks three replicas), not what three machines would do.

Every moord this script starts is killed when it exits, whatever happens.

usage: bench_cluster.py [--build DIR] [--duration S] [--conns N]
                        [--pipelines 1,16] [--keys N] [--value-size B]
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
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import moortest                         # noqa: E402  (the shared node harness)
import moorload                         # noqa: E402
from moortest import Failed             # noqa: E402

CONVERGE_S = 60  # bound on the cluster agreeing on three up members
SETTINGS = ('engine = { sync = "interval", sync_ms = 1000, memtable_mb = 64, cache_mb = 64 },\n'
            '  log = { level = "warn" }')
SPACES = "".join('moor.space("%s", { n = 3, r = 2, w = 2 })\n' % s
                 for s in ("default", "w1", "w16", "reads"))
TARGETS = {1: 0.6, 16: 0.33}   # cluster/single ops/s, issue 12


def on_signal(signum, frame):
    sys.exit("bench_cluster: signal %d, stopping" % signum)  # atexit kills the nodes


def moor(build, addr, *args, timeout=30):
    return subprocess.run([os.path.join(build, "moor"), "-h", addr] + list(args),
                          capture_output=True, text=True, timeout=timeout)


def bench(build, addr, args, ratio, pipeline, space):
    cmd = ["bench", "--conns", str(args.conns), "--pipeline", str(pipeline),
           "--keys", str(args.keys), "--value-size", str(args.value_size),
           "--ratio", str(ratio), "--duration", str(args.duration), "--space", space]
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
    when given, fills `reads`, runs put then get at each pipeline depth
    against the first, stops them.  {(workload, pipeline): result}."""
    try:
        for n in nodes:
            n.start()
        if cluster:
            try:
                cluster.wait_converged(CONVERGE_S)
            except AssertionError as e:
                raise Failed("the cluster did not converge: %s" % e)
        moorload.load((nodes[0].host, nodes[0].port), args.keys, args.value_size,
                      space="reads")
        out = {}
        for p in args.pipelines:
            out[("put", p)] = bench(build, nodes[0].addr, args, 0.0, p, "w%d" % p)
            out[("get", p)] = bench(build, nodes[0].addr, args, 1.0, p, "reads")
        return out
    except (Failed, moorload.LoadError):
        for n in nodes:
            sys.stderr.write("---- %s log (tail) ----\n%s\n" % (n.id, n.logtail(3000)))
        raise
    finally:
        for n in nodes:
            n.stop(timeout=30, check=False)


def print_table(results, pipelines):
    print("%-8s %-4s %8s %12s %10s %10s %8s" % ("setup", "op", "pipeline", "ops/s", "p50 us",
                                                "p99 us", "errors"))
    for setup in ("single", "cluster"):
        for p in pipelines:
            for op in ("put", "get"):
                x = results.get(setup, {}).get((op, p))
                if x:
                    print("%-8s %-4s %8d %12.0f %10.1f %10.1f %8d"
                          % (setup, op, p, x["ops"], x["p50"], x["p99"],
                             x["errors"] + x["lost"]))
    for setup, ops in results.items():
        for (op, p), x in ops.items():
            if x["first_error"]:
                print("  %s %s P%d: errors are counted in ops/s; first: %s"
                      % (setup, op, p, x["first_error"]))
    if "single" in results and "cluster" in results:
        print()
        for p in pipelines:
            for op in ("put", "get"):
                s, c = results["single"].get((op, p)), results["cluster"].get((op, p))
                if not s or not c:
                    continue
                ratio = c["ops"] / s["ops"] if s["ops"] else 0.0
                target = TARGETS.get(p)
                verdict = ("" if target is None else ", target >= %.2fx: %s"
                           % (target, "met" if ratio >= target else "NOT met"))
                print("%-4s pipeline %2d cluster/single: ops/s %.2fx, p99 %.2fx%s" % (
                    op, p, ratio, c["p99"] / s["p99"] if s["p99"] else 0.0, verdict))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--duration", type=int, default=10, help="seconds per moor bench run")
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--pipelines", default="1,16", help="comma-separated pipeline depths")
    ap.add_argument("--keys", type=int, default=100000)
    ap.add_argument("--value-size", type=int, default=100)
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    args.pipelines = [int(p) for p in args.pipelines.split(",")]
    for exe in ("moord", "moor"):
        if not os.access(os.path.join(args.build, exe), os.X_OK):
            sys.exit("bench_cluster: %s not built in %s" % (exe, args.build))
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    print("bench_cluster: moor bench --conns %d --pipeline %s --keys %d --value-size %d, "
          "%d s per run (puts into a space per depth, then gets of keys written once), "
          "against node 1;"
          % (args.conns, "/".join(str(p) for p in args.pipelines), args.keys, args.value_size,
             args.duration))
    print("every node sync=interval (fsync 1 s), every space n=3 r=2 w=2; cluster: 3 nodes on "
          "127.0.0.1-3; client and nodes share this machine\n")
    sys.stdout.flush()
    tmp = tempfile.mkdtemp(prefix="moor-bench-single-")
    results, failed = {}, None
    try:
        single = moortest.Node(args.build, os.path.join(tmp, "s1"), "s1")
        single.write_config(SETTINGS, script=SPACES)
        results["single"] = run_setup(args.build, args, [single])
        cl = moortest.Cluster(args.build, 3, "moor-bench-cluster-", settings=SETTINGS,
                              script=SPACES)
        results["cluster"] = run_setup(args.build, args, cl.nodes, cl)
    except Failed as e:
        failed = str(e)
    finally:
        moortest.cleanup_all()     # every moord, and the cluster's directory
        shutil.rmtree(tmp, ignore_errors=True)
    print_table(results, args.pipelines)
    print()
    for setup, ops in results.items():
        for (op, p), x in ops.items():
            print(json.dumps(dict(setup=setup, op=op, pipeline=p, **x)))
    if failed:
        sys.exit("bench_cluster: %s" % failed)


if __name__ == "__main__":
    main()
