#!/usr/bin/python3
"""bench_failover.py -- a five-node cluster that loses a node mid-run.

Five moords on 127.0.0.1-5, the default space n=3 r=2 w=2, the client
(`moor bench`, mixed: half gets, half puts) talking to node 1.  Four runs
of --duration seconds each:
  before   all five up;
  kill     node 5 is killed with SIGKILL a third of the way into the run
           (the failure detector declares it down, writes for its ranges
           go to fallbacks as hints);
  down     node 5 stays down for the whole run;
  back     node 5 restarted before the run; its hints are replayed to it
           while the run goes on.
Prints ops/s, p50, p99 and errors per run, the time from the kill to
node 5 being `down` on every live node and from the restart to `up`
everywhere, and the hint replay: hints pending when node 5 came back,
the time until every node's hints drained, and the replay rate in
hints/s and KB/s.

Client, nodes and replicas share this machine's cores.  Every moord this
script starts is killed when it exits, whatever happens.

usage: bench_failover.py [--build DIR] [--duration S] [--conns N]
                         [--pipeline N] [--keys N] [--value-size B]
"""
import argparse
import json
import os
import signal
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import moortest                         # noqa: E402  (the shared node harness)
from moortest import Failed, poll       # noqa: E402
from bench_cluster import bench as bench_run  # noqa: E402  (one `moor bench` run, parsed)

CONVERGE_S = 60
DETECT_S = 60
DRAIN_S = 300
SETTINGS = ('engine = { sync = "interval", sync_ms = 1000, memtable_mb = 64, cache_mb = 64 },\n'
            '  log = { level = "warn" }')


def on_signal(signum, frame):
    sys.exit("bench_failover: signal %d, stopping" % signum)  # atexit kills the nodes


def bench(build, addr, args):
    """One mixed run (half gets, half puts); errors counts lost answers too."""
    x = bench_run(build, addr, args, 0.5)
    x["errors"] += x.pop("lost")
    return x


def statuses(cl, node):
    return {m["id"]: m["status"] for m in cl.ring(node)["nodes"]}


def wait_status(cl, live, who, want, bound):
    """Seconds until every live node sees who as want (None past bound)."""
    t0 = time.time()

    def check():
        for n in live:
            try:
                if statuses(cl, n).get(who.id) != want:
                    return "no"
            except (OSError, ConnectionError, AssertionError):
                return "no"
        return None

    return None if poll(check, bound, 0.05) else time.time() - t0


def hints(nodes):
    tot = {"pending": 0, "bytes": 0, "delivered": 0}
    for n in nodes:
        h = n.info()["hints"]
        for k in tot:
            tot[k] += h[k]
    return tot


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--duration", type=int, default=12, help="seconds per run")
    ap.add_argument("--conns", type=int, default=20)
    ap.add_argument("--pipeline", type=int, default=1)
    ap.add_argument("--keys", type=int, default=100000)
    ap.add_argument("--value-size", type=int, default=100)
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print("bench_failover: 5 nodes on 127.0.0.1-5, n=3 r=2 w=2; moor bench --ratio 0.5 "
          "--conns %d --pipeline %d --keys %d --value-size %d, %d s per run, against node 1"
          % (args.conns, args.pipeline, args.keys, args.value_size, args.duration))
    sys.stdout.flush()
    cl = moortest.Cluster(args.build, 5, "moor-bench-failover-", settings=SETTINGS,
                          script='moor.space("default", { n = 3, r = 2, w = 2 })\n')
    victim, live = cl.nodes[4], cl.nodes[:4]
    results, figures = {}, {}
    try:
        cl.start()
        cl.wait_converged(CONVERGE_S)
        results["before"] = bench(args.build, cl.nodes[0].addr, args)

        def kill_later():
            time.sleep(args.duration / 3.0)
            victim.kill9()
            figures["down_s"] = wait_status(cl, live, victim, "down", DETECT_S)

        killer = threading.Thread(target=kill_later)
        killer.start()
        results["kill"] = bench(args.build, cl.nodes[0].addr, args)
        killer.join()
        results["down"] = bench(args.build, cl.nodes[0].addr, args)
        pending = hints(live)
        figures.update(hints_pending=pending["pending"], hint_bytes=pending["bytes"])
        t0 = time.time()
        victim.start()

        def drain():
            left = poll(lambda: hints(cl.nodes)["pending"] or None, DRAIN_S, 0.1)
            figures["drain_s"] = None if left else time.time() - t0

        drainer = threading.Thread(target=drain)
        drainer.start()
        figures["up_s"] = wait_status(cl, live, victim, "up", DETECT_S)
        results["back"] = bench(args.build, cl.nodes[0].addr, args)
        drainer.join()
    except Failed as e:
        sys.stderr.write(cl.logs())
        sys.exit("bench_failover: %s" % e)
    finally:
        moortest.cleanup_all()
    print("%-8s %12s %10s %10s %8s" % ("run", "ops/s", "p50 us", "p99 us", "errors"))
    for run in ("before", "kill", "down", "back"):
        x = results[run]
        print("%-8s %12.0f %10.1f %10.1f %8d" % (run, x["ops"], x["p50"], x["p99"],
                                                  x["errors"]))
    for run, x in results.items():
        if x["first_error"]:
            print("  %s: first error: %s" % (run, x["first_error"]))
    b = results["before"]["ops"] or 1.0
    print("\nops/s against before: kill %.2fx, down %.2fx, back %.2fx"
          % (results["kill"]["ops"] / b, results["down"]["ops"] / b, results["back"]["ops"] / b))

    def secs(v):
        return "not within the bound" if v is None else "%.2f s" % v

    print("node 5 down on every live node %s after the kill; up %s after the restart"
          % (secs(figures.get("down_s")), secs(figures.get("up_s"))))
    if figures.get("drain_s"):
        d = figures["drain_s"]
        print("hint replay: %d hints (%.0f KB) pending at the restart, drained in %.2f s "
              "(%.0f hints/s, %.0f KB/s, while the back run went on)"
              % (figures["hints_pending"], figures["hint_bytes"] / 1024.0, d,
                 figures["hints_pending"] / d, figures["hint_bytes"] / 1024.0 / d))
    else:
        print("hint replay: %d hints pending at the restart did not drain within %d s"
              % (figures["hints_pending"], DRAIN_S))
    print(json.dumps(dict(results=results, **figures)))


if __name__ == "__main__":
    main()
