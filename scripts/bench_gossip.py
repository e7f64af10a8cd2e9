#!/usr/bin/python3
"""bench_gossip.py -- failure-detection times of a real five-node cluster.

Starts five moord on 127.0.0.1..5 at the default moor.gossip{} parameters
and, `--rounds` times (default 3), SIGKILLs one node (a different one each
round), measures how long until every other node's `ring` shows it `down`,
restarts it and measures how long until every node shows it `up` again
(from the exec of the new process).  Prints one line per round, the
median and worst over the rounds, and one JSON object.  Run by
`make bench`; times are wall clock on a shared machine, read them loosely.

usage: bench_gossip.py --build BUILD_DIR [--rounds N]
"""
import json
import os
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import moortest                      # noqa: E402  (the shared node harness)
from gossip_test import measure_kill_restart  # noqa: E402


def main():
    args, _ = moortest.parse_args(more=lambda ap: ap.add_argument("--rounds", type=int, default=3))
    c = moortest.Cluster(args.build, 5, "moor-bench-gossip-", settings='log = { level = "info" }')
    downs, ups = [], []
    try:
        c.start()
        c.wait_converged()
        for r in range(args.rounds):
            victim = c.nodes[(r + 2) % 5]
            down, up, false_downs = measure_kill_restart(c, victim)
            if len(down) < 4 or len(up) < 5:
                raise moortest.Failed("round %d: %s not detected everywhere: down %r up %r"
                                      % (r + 1, victim.id, down, up))
            downs.append(max(down.values()))
            ups.append(max(up.values()))
            print("gossip bench: round %d: kill %s -> down on all 4 others in %.2f s "
                  "(first %.2f s); restart -> up on all 5 in %.2f s; healthy seen down: %d"
                  % (r + 1, victim.id, downs[-1], min(down.values()), ups[-1],
                     len(false_downs)))
            c.wait_converged()
        print("gossip bench: 5 nodes, defaults, %d rounds: kill -> down everywhere median "
              "%.2f s, worst %.2f s (target 5 s); restart -> up everywhere median %.2f s, "
              "worst %.2f s (target 5 s)"
              % (len(downs), statistics.median(downs), max(downs), statistics.median(ups),
                 max(ups)))
        print(json.dumps({"bench": "gossip", "nodes": 5, "rounds": len(downs),
                          "down_s": [round(x, 3) for x in downs],
                          "up_s": [round(x, 3) for x in ups]}))
    finally:
        c.cleanup()
        moortest.cleanup_all()


if __name__ == "__main__":
    main()
