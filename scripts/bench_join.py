#!/usr/bin/python3
"""bench_join.py -- a node joining a loaded 3-node cluster: join time, stream rate, client cost.

Three moords on 127.0.0.1-3 (default space n=3 r=2 w=2, keyspace `bench`
for the client), --keys keys of --value-size bytes written with w=all into
`default`.  Then:
  (i)   the disk: a sequential write of --disk-mb MiB with fdatasync in
        the nodes' directory (dd), MB/s -- the ceiling a stream could reach;
  (ii)  `moor bench` (mixed, half gets, half puts) against node 1 for
        --duration seconds: ops/s and p99 with three members;
  (iii) a 4th node starts with the three as seeds (transfer.rate_mb_s
        --rate-mb-s, default 1000: unthrottled) while the same `moor bench`
        runs again; printed: the join time (start to `up`), the keys and
        MB it received against the ideal (3/4 of the keys of both
        keyspaces: N replicas over four members), its stream rate (MB received / the time of the
        transfer) against the disk's rate, and the client's ops/s and p99
        during the join against (ii).
A run where the join outlasts the second bench reports it (the bench
covered only part of the join).

Client, nodes and streams share this machine's cores.  Every moord this
script starts is killed when it exits, whatever happens.

usage: bench_join.py [--build DIR] [--keys N] [--value-size B] [--duration S]
                     [--conns N] [--pipeline N] [--rate-mb-s X] [--disk-mb N]
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import moortest                         # noqa: E402
from moortest import Failed, pipelined, poll  # noqa: E402

PIPELINE = 256
SETTINGS = ('engine = { sync = "interval", sync_ms = 1000, memtable_mb = 64, cache_mb = 64 },\n'
            '  anti_entropy = { interval_s = 0 },\n'
            '  transfer = { rate_mb_s = %g, concurrency = 2, settle_ms = 1000 },\n'
            '  log = { level = "warn" }')
SCRIPT = ('moor.space("default", { n = 3, r = 2, w = 2 })\n'
          'moor.space("bench", { n = 3, r = 2, w = 2 })\n')


def on_signal(signum, frame):
    sys.exit("bench_join: signal %d, stopping" % signum)



def load(node, count, size, space):
    c = node.conn(60)
    try:
        for lo in range(0, count, 10000):
            reqs = [("put", "key:%d" % i, ("%07d" % i) + "x" * max(0, size - 7),
                     {"w": "all", "space": space}) for i in range(lo, min(count, lo + 10000))]
            bad = [a for a in pipelined(c, reqs, PIPELINE) if a[0] is not None]
            if bad:
                raise Failed("puts at w=all failed: %r" % bad[:3])
    finally:
        c.close()


def bench(args, node):
    cmd = [os.path.join(args.build, "moor"), "-h", node.addr, "--timeout", "30000", "bench",
           "--conns", str(args.conns), "--pipeline", str(args.pipeline),
           "--keys", str(min(args.keys, 100000)), "--value-size", str(args.value_size),
           "--ratio", "0.5", "--duration", str(args.duration), "--space", "bench"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 120)
    lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
    if r.returncode != 0 or not lines:
        raise Failed("moor bench failed (exit %d): %s" % (r.returncode, r.stderr[-2000:]))
    x = json.loads(lines[-1])
    return {"ops": x["ops_per_sec"], "p99": x["p99_us"], "errors": x["errors"]}


def disk_rate(path, mb):
    f = os.path.join(path, "dd.bin")
    t0 = time.time()
    subprocess.run(["dd", "if=/dev/zero", "of=" + f, "bs=1M", "count=%d" % mb,
                    "conv=fdatasync"], capture_output=True, check=True, timeout=600)
    took = time.time() - t0
    os.unlink(f)
    return mb * 1.048576 / took


def status_of(cl, via, nid):
    for m in cl.ring(via)["nodes"]:
        if m["id"] == nid:
            return m["status"]
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=moortest.DEFAULT_BUILD)
    ap.add_argument("--keys", type=int, default=100000)
    ap.add_argument("--value-size", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--pipeline", type=int, default=4)
    ap.add_argument("--rate-mb-s", type=float, default=1000)
    ap.add_argument("--disk-mb", type=int, default=256)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, on_signal)

    cl = moortest.Cluster(args.build, 3, prefix="moor-benchjoin-",
                          settings=SETTINGS % args.rate_mb_s, script=SCRIPT)
    cl.start()
    cl.wait_converged(60)
    n1 = cl.nodes[0]
    t0 = time.time()
    load(n1, args.keys, args.value_size, "default")
    load(n1, min(args.keys, 100000), 100, "bench")
    print("bench_join: %d keys of %d B written (w=all) in %.1f s"
          % (args.keys, args.value_size, time.time() - t0))
    disk = disk_rate(cl.tmp, args.disk_mb)
    print("disk: sequential write with fdatasync %.0f MB/s (dd, %d MiB)" % (disk, args.disk_mb))

    before = bench(args, n1)
    print("before the join: %.0f ops/s, p99 %.0f us, %d errors (moor bench, %d conns x "
          "pipeline %d, 50%% gets, %gs)"
          % (before["ops"], before["p99"], before["errors"], args.conns, args.pipeline,
             args.duration))

    n4 = moortest.Node(args.build, os.path.join(cl.tmp, "n4"), "n4", "127.0.0.4")
    n4.write_config(SETTINGS % args.rate_mb_s, [m.addr for m in cl.nodes], cl.secret, SCRIPT)
    during = {}
    th = threading.Thread(target=lambda: during.update(bench(args, n1)))
    th.start()
    time.sleep(0.5)
    t_start = time.time()
    n4.start()
    cl.nodes.append(n4)
    why = poll(lambda: None if status_of(cl, n4, "n4") == "up" else "joining", 1800, 0.1)
    if why:
        raise Failed("n4 did not finish joining")
    join_s = time.time() - t_start
    th.join()
    tr = n4.info()["transfer"]
    mb = tr["bytes_received"] / 1e6
    stream_s = max(join_s - 1.0, 0.001)  # the settle wait is not streaming
    rate = mb / stream_s
    ideal = (args.keys + min(args.keys, 100000)) * 3 // 4  # both keyspaces
    print("join: n4 up in %.2f s (1.0 s of it the settle wait); received %d keys (ideal %d, "
          "%.2fx), %.1f MB in %d ranges" % (join_s, tr["keys_received"], ideal,
                                            tr["keys_received"] / max(ideal, 1), mb,
                                            tr["ranges_done"]))
    print("stream rate: %.1f MB/s = %.2fx the disk's sequential write rate (%.0f MB/s)"
          % (rate, rate / disk, disk))
    print("during the join: %.0f ops/s (%.2fx before), p99 %.0f us (%.2fx), %d errors%s"
          % (during["ops"], during["ops"] / before["ops"], during["p99"],
             during["p99"] / max(before["p99"], 1), during["errors"],
             "" if join_s < args.duration else
             " (the join outlasted the bench: it covered the first %.0f s)" % args.duration))
    cl.cleanup()


if __name__ == "__main__":
    try:
        main()
    except Failed as e:
        sys.exit("bench_join: %s" % e)
