#!/usr/bin/python3
"""bench_scan.py -- a full key scan of one Moor node against Redis's SCAN.

Starts moord (sync=interval) and redis-server 7 (no persistence: only the
scan is measured) on free ports in a temporary directory, writes the same
KEYS keys ("key:<n>", 16-byte values) into both, then times, best of
--runs, a full listing by each one's own command-line client printing one
key per line into a pipe the script counts:
  moor   `moor scan --limit KEYS` (pages of 1,000 keys, the node's largest)
  redis  `redis-cli --scan` (SCAN with redis-cli's own COUNT: 7.0 has no
         option to change it)
and checks that each listed every key exactly once.  Prints keys/s for
both and the Moor/Redis ratio, then one JSON line.  A scan's cost is
reading every entry of the keyspace (README "Scanning keys"); the machine
is shared, so the figures are ratios within one run, not absolutes.

usage: bench_scan.py [--build DIR] [--keys N] [--runs N]
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import moortest  # noqa: E402  (the harness: nodes on free ports, killed at exit)


def start_redis(tmp):
    port = moortest.free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", tmp],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=moortest.die_with_parent)
    moortest.PROCS.append(proc)
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    sys.exit("bench_scan: redis-server did not listen within 15 s")


def fill_redis(port, keys):
    """keys SETs through redis-cli --pipe (the raw protocol)."""
    out = []
    for i in range(keys):
        k, v = "key:%d" % i, "v" * 16
        out.append("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v))
    subprocess.run(["redis-cli", "-p", str(port), "--pipe"], input="".join(out).encode(),
                   stdout=subprocess.DEVNULL, check=True, timeout=300)


def fill_moor(node, keys):
    c = node.conn(60)
    for start in range(0, keys, 10000):
        out = moortest.pipelined(c, [("put", "key:%d" % i, "v" * 16)
                                     for i in range(start, min(keys, start + 10000))])
        bad = [e for e, _ in out if e is not None]
        if bad:
            sys.exit("bench_scan: puts failed: %r" % bad[:3])
    c.close()


def timed_listing(cmd, keys):
    """Seconds for cmd to list the keys; every key exactly once."""
    t0 = time.perf_counter()
    out = subprocess.run(cmd, stdout=subprocess.PIPE, check=True, timeout=600).stdout
    secs = time.perf_counter() - t0
    lines = out.split(b"\n")[:-1]
    if len(lines) != keys or len(set(lines)) != keys:
        sys.exit("bench_scan: %s listed %d keys (%d distinct), not %d"
                 % (cmd[0], len(lines), len(set(lines)), keys))
    return secs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--keys", type=int, default=100000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    for tool in ("redis-server", "redis-cli"):
        if not shutil.which(tool):
            sys.exit("bench_scan: %s not found (scripts/deps.sh installs it)" % tool)
    tmp = tempfile.mkdtemp(prefix="moor-bench-scan-")
    try:
        node = moortest.Node(args.build, os.path.join(tmp, "moor"), "scan1")
        node.write_config('engine = { sync = "interval", sync_ms = 1000, memtable_mb = 64 },\n'
                          '  log = { level = "warn" }')
        node.start()
        _, rport = start_redis(tmp)
        fill_moor(node, args.keys)
        fill_redis(rport, args.keys)
        moor_cmd = [os.path.join(args.build, "moor"), "-h", node.addr, "--timeout", "30000",
                    "scan", "--limit", str(args.keys)]
        redis_cmd = ["redis-cli", "-p", str(rport), "--scan"]
        moor_s = min(timed_listing(moor_cmd, args.keys) for _ in range(args.runs))
        redis_s = min(timed_listing(redis_cmd, args.keys) for _ in range(args.runs))
        moor_kps, redis_kps = args.keys / moor_s, args.keys / redis_s
        print("full scan of %d keys, best of %d:" % (args.keys, args.runs))
        print("  moor scan         %10.0f keys/s  (%.3f s)" % (moor_kps, moor_s))
        print("  redis-cli --scan  %10.0f keys/s  (%.3f s)" % (redis_kps, redis_s))
        print("  scan moor/redis   %10.2f" % (moor_kps / redis_kps))
        print(json.dumps({"bench": "scan", "keys": args.keys, "moor_keys_s": round(moor_kps),
                          "redis_keys_s": round(redis_kps),
                          "ratio": round(moor_kps / redis_kps, 3)}))
        node.stop()
    finally:
        moortest.kill_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
