#!/usr/bin/python3
"""profile_node.py -- where a node's CPU time goes per request.

Starts one moord (sync=interval, fsync every 1000 ms, as bench_node.py),
fills it with `moor bench --ratio 0`, then samples it with
`perf record -e cpu-clock` while `moor bench` drives one workload, and
prints each category's share of the node's CPU and its microseconds of
CPU per request:

  syscalls   kernel time (socket reads and writes, the log's write(2), page
             faults: anything in [k])
  parsing    MessagePack framing and decoding of requests (rpc, mp, fields)
  alloc      malloc, free, realloc and their internals
  skiplist   the memtable's skiplist search (inserts of new keys, and
             lookups the memtable's hash slots cannot answer)
  lookup     engine reads: memtable, tables, blocks, cache, bloom
  write      engine writes: memtable inserts, the log, batches
  codec      the record codec: decode, merge, write, encode of versions
  coord      the coordinator and the node's request plumbing
  server     connections, reply buffers, libuv
  background flushes and compactions (zstd, table building)
  other      the rest (libc copies and compares, Lua, ...)

usage: profile_node.py [--build DIR] [--moord PATH] [--before PATH [--rounds N]]
                       [--ratio R] [--pipeline N] [--duration S] [--keys N] [--top N]
--moord profiles another build's moord with this build's client; --before
OLD profiles OLD and then --moord (the build's) in turn, --rounds times,
and prints both and their ratios: a before/after in one run.  Needs perf (linux-perf); software events
only.
"""
import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CATEGORIES = [
    ("background", r"compact|build_tables|builder_|ZSTD|zstd|HUF_|FSE_|bg_main"),
    ("parsing", r"^moor_rpc|^moor_mp_(read|skip|peek)|^moor_fields|^header$|frame_len|"
                r"^conn_take_frame|^resp_"),
    ("alloc", r"malloc|^_int_free|^free$|realloc|calloc|unlink_chunk|consolidate|"
              r"^cfree|tcache"),
    ("skiplist", r"^find_ge$|^find_prev$|^node_cmp$"),
    ("lookup", r"memtable_get|^moor_engine_get|version_get|table_get|"
               r"table_seek|block_|cache_|bloom|iter_next|iter_land|entry_decode"),
    ("write", r"memtable_add|replace_newest|find_prev|wal_|batch_|engine_write|crc"),
    ("codec", r"^moor_record_|decode_sibling|vclock|^merge_into|moor_coord_merge"),
    ("coord", r"coord|^op_|kv_call|kv_done|^do_|^store_|drain_done|write_|get_|"
              r"moor_node_|hlc"),
    ("server", r"^conn_|^srv_|moor_srv|^uv_|^uv__|reply|moor_buf|^mp_buf|moor_mp_buf"),
]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit("moord exited with %d" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("moord did not listen within %ds" % timeout)


def category(sym):
    if sym.startswith("[k]"):
        return "syscalls"
    name = (sym[4:] if sym.startswith("[.] ") else sym).split()[0] if sym.strip() else sym
    for cat, pat in CATEGORIES:
        if re.search(pat, name):
            return cat
    return "other"


def bench(moor, port, ratio, pipeline, duration, keys):
    out = subprocess.run([moor, "-h", "127.0.0.1:%d" % port, "bench", "--ratio", str(ratio),
                          "--pipeline", str(pipeline), "--duration", str(duration),
                          "--keys", str(keys), "--conns", "50"],
                         capture_output=True, text=True, timeout=duration + 60)
    if out.returncode:
        sys.exit("moor bench failed: %s" % out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def profile_once(moord, moor, a):
    """One moord: fill, then profile a.duration seconds of the workload.
    (bench result, {category: samples}, [(samples, symbol)])."""
    tmp = tempfile.mkdtemp(prefix="moor-prof-")
    port = free_port()
    conf = os.path.join(tmp, "node.lua")
    with open(conf, "w") as f:
        f.write('moor.cfg{ node = "prof", listen = "127.0.0.1:%d", data_dir = "%s/data",\n'
                '  engine = { sync = "interval", sync_ms = 1000, memtable_mb = 64,'
                ' cache_mb = 64 }, log = { level = "warn" } }\n' % (port, tmp))
    proc = subprocess.Popen([moord, conf], stdout=subprocess.DEVNULL,
                            env=dict(os.environ, MOOR_ROOT=ROOT))
    try:
        wait_port(port, proc)
        bench(moor, port, 0, 16, max(2.0, a.duration / 2), a.keys)  # fill
        data = os.path.join(tmp, "perf.data")
        perf = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "2000",
                                 "-p", str(proc.pid), "-o", data],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        res = bench(moor, port, a.ratio, a.pipeline, a.duration, a.keys)
        perf.send_signal(2)
        perf.wait(timeout=60)
        rep = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort",
                              "symbol", "--stdio", "-F", "sample,sym", "-g", "none"],
                             capture_output=True, text=True, timeout=300).stdout
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    samples = {}
    syms = []
    for line in rep.splitlines():
        m = re.match(r"\s*(\d+)\s+(\[.\] .*?)\s*$", line)
        if not m:
            continue
        n, sym = int(m.group(1)), m.group(2)
        syms.append((n, sym))
        samples[category(sym)] = samples.get(category(sym), 0) + n
    return res, samples, syms


ORDER = ["syscalls", "parsing", "alloc", "skiplist", "lookup", "write", "codec", "coord",
         "server", "background", "other"]


def us_per_req(res, samples):
    return sum(samples.values()) / 2000.0 * 1e6 / max(1, res["ops"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--moord", help="the moord to profile (default: the build's)")
    ap.add_argument("--before", help="another moord (an older build) to profile in turn with "
                    "--moord, round after round, for a before/after in one run")
    ap.add_argument("--rounds", type=int, default=1, help="with --before: rounds of each")
    ap.add_argument("--ratio", type=float, default=0.0, help="get fraction (0: puts)")
    ap.add_argument("--pipeline", type=int, default=16)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--keys", type=int, default=100000)
    ap.add_argument("--top", type=int, default=12, help="symbols to list")
    a = ap.parse_args()
    if not shutil.which("perf"):
        sys.exit("profile_node.py needs perf (apt-get install linux-perf)")
    moord = a.moord or os.path.join(a.build, "moord")
    moor = os.path.join(a.build, "moor")
    kind = "puts" if a.ratio == 0 else "gets" if a.ratio == 1 else "%.0f%% gets" % (a.ratio * 100)
    runs = {"after": []}
    if a.before:
        runs["before"] = []
    for _ in range(a.rounds if a.before else 1):
        for which in (["before", "after"] if a.before else ["after"]):
            runs[which].append(profile_once(a.before if which == "before" else moord, moor, a))
    summary = {}
    for which, rs in runs.items():
        # the round with the median CPU per request stands for the build
        rs.sort(key=lambda r: us_per_req(r[0], r[1]))
        res, samples, syms = rs[len(rs) // 2]
        total = sum(samples.values()) or 1
        per = us_per_req(res, samples)
        summary[which] = (res, samples, per)
        print("%s%s, pipeline %d, 50 conns: %.0f ops/s, p99 %.0f us; node CPU %.2f us per "
              "request (median of %d)" % ("%s: " % which if a.before else "", kind, a.pipeline,
                                           res["ops_per_sec"], res["p99_us"], per, len(rs)))
        print("%-11s %6s %9s" % ("category", "share", "us/req"))
        for cat in ORDER:
            n = samples.get(cat, 0)
            print("%-11s %5.1f%% %9.2f" % (cat, 100.0 * n / total, per * n / total))
        print("top symbols:")
        for n, sym in sorted(syms, reverse=True)[:a.top]:
            print("  %5.1f%%  %-10s %s" % (100.0 * n / total, category(sym), sym))
        print(json.dumps({"profile": kind, "build": which, "pipeline": a.pipeline,
                          "ops_per_sec": res["ops_per_sec"], "p99_us": res["p99_us"],
                          "us_per_req": per,
                          "shares": {c: samples.get(c, 0) / total for c in ORDER}}))
        print()
    if a.before:
        b, f = summary["before"], summary["after"]
        print("after/before: ops/s %.2fx, CPU per request %.2fx, p99 %.2fx" % (
            f[0]["ops_per_sec"] / max(1e-9, b[0]["ops_per_sec"]), f[2] / max(1e-9, b[2]),
            f[0]["p99_us"] / max(1e-9, b[0]["p99_us"])))
        print("%-11s %10s %10s" % ("us/req", "before", "after"))
        for cat in ORDER:
            bt = sum(b[1].values()) or 1
            ft = sum(f[1].values()) or 1
            print("%-11s %10.2f %10.2f" % (cat, b[2] * b[1].get(cat, 0) / bt,
                                           f[2] * f[1].get(cat, 0) / ft))


if __name__ == "__main__":
    main()
