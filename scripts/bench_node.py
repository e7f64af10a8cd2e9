#!/usr/bin/python3
"""bench_node.py -- one Moor node against Redis, in the same run.

Starts moord (sync=interval, fsync every 1000 ms) and redis-server 7
(appendonly yes, appendfsync everysec: the same durability) on free ports
in a temporary directory, drives Moor with `moor bench` and Redis with
redis-benchmark at the same concurrency, pipeline depth and value size,
prints ops/s, p50 and p99 per workload and the Moor/Redis ratio, then stops
both.  The clients differ (moor bench vs redis-benchmark), and so do the
protocols (MessagePack-RPC vs RESP): read the ratios with that in mind.

usage: bench_node.py [--build DIR] [--duration S] [--conns N] [--keys N]
"""
import argparse
import csv
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, what, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit("%s exited with %d" % (what, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("%s did not listen within %ds" % (what, timeout))


def start_moor(build, tmp):
    port = free_port()
    conf = os.path.join(tmp, "bench.lua")
    with open(conf, "w") as f:
        f.write('moor.cfg{ node = "bench", listen = "127.0.0.1:%d", data_dir = "%s/moor",\n'
                '  engine = { sync = "interval", sync_ms = 1000, memtable_mb = 64,'
                ' cache_mb = 64 }, log = { level = "warn" } }\n' % (port, tmp))
    proc = subprocess.Popen([os.path.join(build, "moord"), conf], stdout=subprocess.DEVNULL,
                            env=dict(os.environ, MOOR_ROOT=ROOT))
    wait_port(port, proc, "moord")
    return proc, port


def start_redis(tmp):
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
                             "--dir", tmp, "--logfile", os.path.join(tmp, "redis.log")],
                            stdout=subprocess.DEVNULL)
    wait_port(port, proc, "redis-server")
    return proc, port


def moor_bench(build, port, args, ratio, pipeline):
    cmd = [os.path.join(build, "moor"), "-h", "127.0.0.1:%d" % port, "bench",
           "--conns", str(args.conns), "--pipeline", str(pipeline), "--keys", str(args.keys),
           "--value-size", "100", "--ratio", str(ratio), "--duration", str(args.duration)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 60)
    if out.returncode != 0:
        sys.exit("moor bench failed: %s" % out.stderr)
    line = [l for l in out.stdout.splitlines() if l.startswith("{")][-1]
    r = json.loads(line)
    return {"ops": r["ops_per_sec"], "p50": r["p50_us"], "p99": r["p99_us"],
            "errors": r["errors"] + r["lost"]}


def redis_bench(port, args, test, pipeline, rate_hint):
    # Enough requests for about --duration seconds at the expected rate.
    n = max(20000, int(rate_hint * args.duration))
    cmd = ["redis-benchmark", "-p", str(port), "-t", test, "-c", str(args.conns), "-P",
           str(pipeline), "-d", "100", "-r", str(args.keys), "-n", str(n), "--csv"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration * 10 + 60)
    if out.returncode != 0:
        sys.exit("redis-benchmark failed: %s" % out.stderr)
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    r = rows[0]
    return {"ops": float(r["rps"]), "p50": float(r["p50_latency_ms"]) * 1000,
            "p99": float(r["p99_latency_ms"]) * 1000, "errors": 0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--keys", type=int, default=100000)
    args = ap.parse_args()
    for tool in ("redis-server", "redis-benchmark"):
        if not shutil.which(tool):
            sys.exit("%s not found (scripts/deps.sh installs redis-server and redis-tools)"
                     % tool)
    tmp = tempfile.mkdtemp(prefix="moor-bench-node-")
    procs = []
    results = []
    try:
        mp, mport = start_moor(args.build, tmp)
        procs.append(mp)
        rp, rport = start_redis(tmp)
        procs.append(rp)
        print("bench_node: %d connections, 100-byte values, %d keys, %d s per Moor run; "
              "Moor sync=interval (fsync 1 s), Redis appendonly yes + appendfsync everysec"
              % (args.conns, args.keys, args.duration))
        print("clients differ: `moor bench` (MessagePack-RPC) vs redis-benchmark (RESP)\n")
        print("%-10s %-4s %-6s %12s %10s %10s" % ("workload", "pipe", "server", "ops/s",
                                                  "p50 us", "p99 us"))
        # puts first so the gets find their keys
        for name, ratio, test in (("put", 0.0, "set"), ("get", 1.0, "get"),
                                  ("50/50", 0.5, None)):
            for pipeline in (1, 16):
                m = moor_bench(args.build, mport, args, ratio, pipeline)
                if test:
                    r = redis_bench(rport, args, test, pipeline, m["ops"])
                else:
                    s = redis_bench(rport, args, "set", pipeline, m["ops"])
                    g = redis_bench(rport, args, "get", pipeline, m["ops"])
                    r = {"ops": (s["ops"] + g["ops"]) / 2, "p50": (s["p50"] + g["p50"]) / 2,
                         "p99": max(s["p99"], g["p99"]), "errors": 0}
                for server, x in (("moor", m), ("redis", r)):
                    print("%-10s %-4d %-6s %12.0f %10.1f %10.1f" % (name, pipeline, server,
                                                                   x["ops"], x["p50"], x["p99"]))
                ratio_ops = m["ops"] / r["ops"] if r["ops"] else 0
                print("  %-20s moor/redis %.2fx ops/s%s" % (
                    "%s pipeline %d" % (name, pipeline), ratio_ops,
                    "" if test else "  (redis: mean of separate SET and GET runs: "
                    "redis-benchmark has no mixed workload)"))
                results.append({"workload": name, "pipeline": pipeline, "moor": m, "redis": r,
                                "ratio": ratio_ops})
        print()
        for r in results:
            print(json.dumps(r))
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
