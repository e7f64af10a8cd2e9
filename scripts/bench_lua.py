#!/usr/bin/python3
"""bench_lua.py -- a trivial Lua handler against the native get it wraps.

One moord (sync=interval, fsync every 1000 ms, the same engine settings as
bench_cluster.py) whose config has

    moor.handle("get1", function(k) return moor.get(k) end)

is filled with key:0 .. key:N-1 (each written once, 100-byte values; see
moorload.py for why not `moor bench --ratio 0`), then driven by the same
client at the same settings (50 connections; pipeline 1 and 16):
  get    moor bench --ratio 1           (the native get)
  call   moor bench --call get1         (call "get1" key: the handler's get)
Each pair of runs is made back to back, `--rounds` times; every run is
printed, and the ratio reported is total call ops over total get ops of
all rounds, so noise from other load on the machine averages out instead
of a lucky round being picked.  Beside ops/s,
p50 and p99 it prints moord's CPU time per request (utime + stime from
/proc/PID/stat over the run divided by the requests answered): on a shared
machine that is steadier than throughput.

Target (issue 12): call >= 0.8x the ops/s of get at each pipeline depth.

Every moord this script starts is killed when it exits, whatever happens.

usage: bench_lua.py [--build DIR] [--duration S] [--conns N] [--keys N]
                    [--value-size B] [--pipelines 1,16] [--rounds N]
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

SETTINGS = ('engine = { sync = "interval", sync_ms = 1000, memtable_mb = 64, cache_mb = 64 },\n'
            '  log = { level = "warn" }')
SCRIPT = 'moor.handle("get1", function(k) return moor.get(k) end)\n'
TARGET = 0.8


def on_signal(signum, frame):
    sys.exit("bench_lua: signal %d, stopping" % signum)  # atexit kills the node


def cpu_s(pid):
    """utime + stime of pid, seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench(args, node, pipeline, what):
    cmd = [os.path.join(args.build, "moor"), "-h", node.addr, "bench", "--conns",
           str(args.conns), "--pipeline", str(pipeline), "--keys", str(args.keys),
           "--duration", str(args.duration)]
    cmd += ["--ratio", "1"] if what == "get" else ["--call", "get1"]
    c0 = cpu_s(node.proc.pid)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 120)
    c1 = cpu_s(node.proc.pid)
    lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
    if r.returncode != 0 or not lines:
        raise Failed("moor bench (%s) failed (exit %d): %s" % (what, r.returncode,
                                                             (r.stdout + r.stderr)[-2000:]))
    x = json.loads(lines[-1])
    if x["errors"] or x["lost"]:
        raise Failed("moor bench (%s): %d errors, %d lost:\n%s" % (what, x["errors"], x["lost"],
                                                                 r.stdout[-2000:]))
    return {"op": what, "pipeline": pipeline, "ops": x["ops"], "ops_per_sec": x["ops_per_sec"],
            "p50_us": x["p50_us"], "p99_us": x["p99_us"],
            "cpu_us_per_op": (c1 - c0) * 1e6 / x["ops"] if x["ops"] else 0.0}


def check_hits(node, keys):
    """The handler answers the value the loader wrote (not nil)."""
    c = node.conn()
    try:
        for k in (0, keys // 2, keys - 1):
            err, res = c.call("call", "get1", "key:%d" % k)
            if err is not None or not res or len(res.get("values", [])) != 1:
                raise Failed("get1 of key:%d answered %r, %r" % (k, err, res))
    finally:
        c.close()


def report(rows, pipelines):
    print("%-5s %8s %12s %10s %10s %12s" % ("op", "pipeline", "ops/s", "p50 us", "p99 us",
                                           "cpu us/op"))
    for x in rows:
        print("%-5s %8d %12.0f %10.1f %10.1f %12.2f" % (x["op"], x["pipeline"], x["ops_per_sec"],
                                                      x["p50_us"], x["p99_us"],
                                                      x["cpu_us_per_op"]))
    print()
    summary = []
    for p in pipelines:
        g = [x for x in rows if x["pipeline"] == p and x["op"] == "get"]
        c = [x for x in rows if x["pipeline"] == p and x["op"] == "call"]
        gops, cops = sum(x["ops"] for x in g), sum(x["ops"] for x in c)
        ratio = cops / gops if gops else 0.0
        gcpu = sum(x["cpu_us_per_op"] * x["ops"] for x in g) / gops if gops else 0.0
        ccpu = sum(x["cpu_us_per_op"] * x["ops"] for x in c) / cops if cops else 0.0
        p99 = (max(x["p99_us"] for x in c) / max(x["p99_us"] for x in g)) if g and c else 0.0
        print("pipeline %2d  call/get: ops/s %.2fx (target >= %.1fx: %s), p99 %.2fx, "
              "moord cpu per request %.2f / %.2f us (%.2fx)"
              % (p, ratio, TARGET, "met" if ratio >= TARGET else "NOT met", p99, ccpu, gcpu,
                 ccpu / gcpu if gcpu else 0.0))
        summary.append({"pipeline": p, "ratio": round(ratio, 3), "target": TARGET,
                        "cpu_get_us": round(gcpu, 2), "cpu_call_us": round(ccpu, 2)})
    return summary


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--duration", type=float, default=10, help="seconds per moor bench run")
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--keys", type=int, default=100000)
    ap.add_argument("--value-size", type=int, default=100)
    ap.add_argument("--pipelines", default="1,16")
    ap.add_argument("--rounds", type=int, default=2, help="get/call pairs per pipeline depth")
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    pipelines = [int(p) for p in args.pipelines.split(",")]
    for exe in ("moord", "moor"):
        if not os.access(os.path.join(args.build, exe), os.X_OK):
            sys.exit("bench_lua: %s not built in %s" % (exe, args.build))
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    print("bench_lua: one moord (sync=interval), handler get1 = "
          "function(k) return moor.get(k) end;")
    print("%d keys of %d bytes written once; then moor bench --conns %d --keys %d, %g s per run, "
          "--ratio 1 (get) and --call get1 (call) back to back, %d round(s) per pipeline\n"
          % (args.keys, args.value_size, args.conns, args.keys, args.duration, args.rounds))
    sys.stdout.flush()
    tmp = tempfile.mkdtemp(prefix="moor-bench-lua-")
    rows, failed, node = [], None, None
    try:
        node = moortest.Node(args.build, os.path.join(tmp, "l1"), "l1")
        node.write_config(SETTINGS, script=SCRIPT)
        node.start()
        moorload.load((node.host, node.port), args.keys, args.value_size)
        check_hits(node, args.keys)
        for p in pipelines:
            for _ in range(args.rounds):
                rows.append(bench(args, node, p, "get"))
                rows.append(bench(args, node, p, "call"))
    except (Failed, moorload.LoadError) as e:
        failed = str(e)
        if node:
            sys.stderr.write("---- moord log (tail) ----\n%s\n" % node.logtail(3000))
    finally:
        moortest.cleanup_all()
        shutil.rmtree(tmp, ignore_errors=True)
    summary = report(rows, pipelines) if rows else []
    print()
    for x in rows:
        print(json.dumps(x))
    for s in summary:
        print(json.dumps(dict(summary="call/get", **s)))
    if failed:
        sys.exit("bench_lua: %s" % failed)


if __name__ == "__main__":
    main()
