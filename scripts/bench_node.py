#!/usr/bin/python3
"""bench_node.py -- one Moor node against Redis, one client for both.

Starts moord (sync=interval, fsync every 1000 ms) with its RESP port
(resp_listen), redis-server 7 (appendonly yes, appendfsync everysec: the
same durability) and resp_null (tests/bench/resp_null.c: a RESP server
that stores nothing, the client's ceiling) on free ports in a temporary
directory.  One client, redis-benchmark (-c 50 -d 100 -r KEYS -n N), runs
SET then GET at -P 1 and -P 16 against all three; `moor bench` runs the
same workloads over MessagePack-RPC at the same settings.  Prints ops/s,
p50 and p99 for each, the Moor/Redis ratios (ops/s, p99), Moor's
MessagePack-RPC figure over its own RESP one, and each server's share of
the ceiling; then one JSON line per row.

usage: bench_node.py [--build DIR] [--requests N] [--conns N] [--keys N] [--duration S]
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
    port, rport = free_port(), free_port()
    conf = os.path.join(tmp, "bench.lua")
    with open(conf, "w") as f:
        f.write('moor.cfg{ node = "bench", listen = "127.0.0.1:%d", data_dir = "%s/moor",\n'
                '  resp_listen = "127.0.0.1:%d",\n'
                '  engine = { sync = "interval", sync_ms = 1000, memtable_mb = 64,'
                ' cache_mb = 64 }, log = { level = "warn" } }\n' % (port, tmp, rport))
    proc = subprocess.Popen([os.path.join(build, "moord"), conf], stdout=subprocess.DEVNULL,
                            env=dict(os.environ, MOOR_ROOT=ROOT))
    wait_port(port, proc, "moord")
    wait_port(rport, proc, "moord (RESP)")
    return proc, port, rport


def start_null(build):
    port = free_port()
    exe = os.path.join(build, "resp_null")
    if not os.path.exists(exe):
        sys.exit("%s not found (built with -DMOOR_BENCH=ON)" % exe)
    proc = subprocess.Popen([exe, str(port)], stdout=subprocess.DEVNULL)
    wait_port(port, proc, "resp_null")
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
    if ratio == 0:
        cmd.append("--overwrite")  # the write RESP SET makes: no siblings pile up
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 60)
    if out.returncode != 0:
        sys.exit("moor bench failed: %s" % out.stderr)
    line = [l for l in out.stdout.splitlines() if l.startswith("{")][-1]
    r = json.loads(line)
    return {"ops": r["ops_per_sec"], "p50": r["p50_us"], "p99": r["p99_us"],
            "errors": r["errors"] + r["lost"]}


def redis_bench(port, args, test, pipeline):
    cmd = ["redis-benchmark", "-p", str(port), "-t", test, "-c", str(args.conns), "-P",
           str(pipeline), "-d", "100", "-r", str(args.keys), "-n", str(args.requests), "--csv"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        sys.exit("redis-benchmark failed: %s" % out.stderr)
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    r = rows[0]
    return {"ops": float(r["rps"]), "p50": float(r["p50_latency_ms"]) * 1000,
            "p99": float(r["p99_latency_ms"]) * 1000, "errors": 0}


def ratio(a, b):
    return a / b if b else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--requests", type=int, default=200000, help="redis-benchmark -n")
    ap.add_argument("--duration", type=int, default=5, help="seconds per moor bench run")
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--keys", type=int, default=100000)
    args = ap.parse_args()
    for tool in ("redis-server", "redis-benchmark"):
        if not shutil.which(tool):
            sys.exit("%s not found (scripts/deps.sh installs redis-server and redis-tools)"
                     % tool)
    tmp = tempfile.mkdtemp(prefix="moor-bench-node-")
    procs = []
    rows = []
    try:
        mp, mport, mrport = start_moor(args.build, tmp)
        procs.append(mp)
        rp, rport = start_redis(tmp)
        procs.append(rp)
        np_, nport = start_null(args.build)
        procs.append(np_)
        print("bench_node: redis-benchmark -c %d -d 100 -r %d -n %d for every RESP server; "
              "moor bench (MessagePack-RPC) %d s at the same settings"
              % (args.conns, args.keys, args.requests, args.duration))
        print("Moor sync=interval (fsync 1 s), Redis appendonly yes + appendfsync everysec; "
              "null = resp_null, a server that stores nothing (the client's ceiling)\n")
        print("%-4s %-4s %-10s %12s %10s %10s" % ("test", "pipe", "server", "ops/s", "p50 us",
                                                  "p99 us"))
        for test, moor_ratio in (("set", 0.0), ("get", 1.0)):   # sets first: gets then hit
            for pipeline in (1, 16):
                fig = {
                    "null": redis_bench(nport, args, test, pipeline),
                    "redis": redis_bench(rport, args, test, pipeline),
                    "moor": redis_bench(mrport, args, test, pipeline),
                    "moor-rpc": moor_bench(args.build, mport, args, moor_ratio, pipeline),
                }
                for server in ("null", "redis", "moor", "moor-rpc"):
                    x = fig[server]
                    print("%-4s %-4d %-10s %12.0f %10.1f %10.1f" % (test, pipeline, server,
                                                                   x["ops"], x["p50"], x["p99"]))
                    rows.append({"test": test, "pipeline": pipeline, "server": server,
                                 "client": "moor bench" if server == "moor-rpc"
                                 else "redis-benchmark",
                                 "ops": round(x["ops"], 1), "p50_us": round(x["p50"], 1),
                                 "p99_us": round(x["p99"], 1), "errors": x["errors"]})
                m, r, n, mr = fig["moor"], fig["redis"], fig["null"], fig["moor-rpc"]
                summary = {
                    "test": test, "pipeline": pipeline,
                    "moor_redis_ops": round(ratio(m["ops"], r["ops"]), 3),
                    "moor_redis_p99": round(ratio(m["p99"], r["p99"]), 3),
                    "rpc_resp_ops": round(ratio(mr["ops"], m["ops"]), 3),
                    "redis_ceiling": round(ratio(r["ops"], n["ops"]), 3),
                    "moor_ceiling": round(ratio(m["ops"], n["ops"]), 3),
                }
                print("  %s -P %d: moor/redis %.2fx ops/s, p99 %.2fx; moor MessagePack-RPC/RESP "
                      "%.2fx ops/s; of the ceiling: redis %.2f, moor %.2f"
                      % (test, pipeline, summary["moor_redis_ops"], summary["moor_redis_p99"],
                         summary["rpc_resp_ops"], summary["redis_ceiling"],
                         summary["moor_ceiling"]))
                rows.append(dict(summary, server="ratios"))
        print()
        for r in rows:
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
