#!/usr/bin/python3
"""bench_memory.py -- bytes of memory (and disk) per key, Moor beside Redis.

Loads the same N keys (key:0 .. key:N-1, default 1,000,000) with the same
100-byte values, each written exactly once, into:
  moor   one moord, sync = "interval" and otherwise the default engine
         settings, over MessagePack-RPC with a pipelined loader
         (moorload.py);
  redis  redis-server 7 on a free port, appendonly yes, appendfsync
         everysec (the durability of bench_node.py), over RESP with a
         pipelined writer on a raw socket (SET key value).
Then prints, per key: moord's resident memory (VmRSS from /proc/PID/status)
right after the fill and again once its flushes have settled (no new flush
for 3 s, at most 60 s), the same figures less moord's RSS before the fill,
Redis's used_memory_rss and used_memory (INFO memory) likewise, and Moor's
bytes on disk (its data directory) beside Redis's AOF.

Every process this script starts is killed when it exits, whatever happens.

usage: bench_memory.py [--build DIR] [--keys N] [--value-size B]
"""
import argparse
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
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import moortest                         # noqa: E402  (the shared node harness)
import moorload                         # noqa: E402
from moortest import Failed             # noqa: E402

SETTINGS = 'engine = { sync = "interval" },\n  log = { level = "warn" }'
SETTLE_S, SETTLE_MAX_S = 3, 60


def on_signal(signum, frame):
    sys.exit("bench_memory: signal %d, stopping" % signum)  # atexit kills the servers


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise Failed("no VmRSS for pid %d" % pid)


def dir_bytes(path):
    total = 0
    for d, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(d, name))
            except OSError:
                pass  # a file the engine removed meanwhile
    return total


def settle(node):
    """Waits until the node's flush count has not moved for SETTLE_S."""
    deadline = time.time() + SETTLE_MAX_S
    last, since = None, time.time()
    while time.time() < deadline:
        flushes = node.info()["engine"]["flushes"]
        if flushes != last:
            last, since = flushes, time.time()
        elif time.time() - since >= SETTLE_S:
            return
        time.sleep(0.5)


def measure_moor(args, tmp):
    node = moortest.Node(args.build, os.path.join(tmp, "m1"), "m1")
    node.write_config(SETTINGS)
    node.start()
    pid = node.proc.pid
    base = rss_bytes(pid)
    t0 = time.time()
    moorload.load((node.host, node.port), args.keys, args.value_size)
    load_s = time.time() - t0
    filled = rss_bytes(pid)
    settle(node)
    settled = rss_bytes(pid)
    info = node.info()["engine"]
    disk = dir_bytes(node.data)
    node.stop(timeout=60, check=False)
    return {"base": base, "filled": filled, "settled": settled, "disk": disk,
            "engine_disk_bytes": info["disk_bytes"], "memtable_bytes": info["memtable_bytes"],
            "load_s": load_s}


def redis_cmd(*words):
    out = b"*%d\r\n" % len(words)
    for w in words:
        w = w if isinstance(w, bytes) else w.encode()
        out += b"$%d\r\n%s\r\n" % (len(w), w)
    return out


def redis_info(sock):
    sock.sendall(redis_cmd("INFO", "memory"))
    data = b""
    while b"\r\n" not in data:
        data += sock.recv(65536)
    head, rest = data.split(b"\r\n", 1)
    need = int(head[1:]) + 2
    while len(rest) < need:
        rest += sock.recv(65536)
    fields = {}
    for line in rest[:need].decode().splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            fields[k] = v
    return fields


def redis_load(sock, keys, value_size, batch=1000):
    value = bytes((ord("a") + i % 26) for i in range(value_size))
    for start in range(0, keys, batch):
        n = min(batch, keys - start)
        sock.sendall(b"".join(redis_cmd("SET", "key:%d" % i, value)
                              for i in range(start, start + n)))
        want, got = 5 * n, b""           # n times "+OK\r\n"
        while len(got) < want:
            chunk = sock.recv(65536)
            if not chunk:
                raise Failed("redis closed the connection")
            got += chunk
            if got.startswith(b"-") or b"\r\n-" in got:
                raise Failed("redis answered an error: %r" % got[:200])


def measure_redis(args, tmp):
    port = moortest.free_port()
    rdir = os.path.join(tmp, "redis")
    os.makedirs(rdir)
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
                             "--dir", rdir, "--logfile", os.path.join(rdir, "redis.log")],
                            stdout=subprocess.DEVNULL, preexec_fn=moortest.die_with_parent)
    moortest.PROCS.append(proc)
    deadline = time.time() + 15
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), 1)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                raise Failed("redis-server did not start")
            time.sleep(0.05)
    sock.settimeout(60)
    base = redis_info(sock)
    t0 = time.time()
    redis_load(sock, args.keys, args.value_size)
    load_s = time.time() - t0
    filled = redis_info(sock)
    time.sleep(SETTLE_S)             # the AOF's everysec fsync
    settled = redis_info(sock)
    sock.close()
    disk = dir_bytes(rdir)
    proc.terminate()
    proc.wait(30)
    return {"base": int(base["used_memory_rss"]), "filled": int(filled["used_memory_rss"]),
            "settled": int(settled["used_memory_rss"]),
            "used_memory": int(settled["used_memory"]),
            "used_memory_base": int(base["used_memory"]), "disk": disk, "load_s": load_s}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--keys", type=int, default=1000000)
    ap.add_argument("--value-size", type=int, default=100)
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    if not os.access(os.path.join(args.build, "moord"), os.X_OK):
        sys.exit("bench_memory: moord not built in %s" % args.build)
    if not shutil.which("redis-server"):
        sys.exit("bench_memory: redis-server not found (scripts/deps.sh installs it)")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    print("bench_memory: %d keys (key:0 .. key:%d) of %d-byte values, each written once;"
          % (args.keys, args.keys - 1, args.value_size))
    print("moord sync=interval, default engine settings; redis-server appendonly yes, "
          "appendfsync everysec\n")
    sys.stdout.flush()
    tmp = tempfile.mkdtemp(prefix="moor-bench-memory-")
    try:
        moor = measure_moor(args, tmp)
        redis = measure_redis(args, tmp)
    except (Failed, moorload.LoadError) as e:
        sys.exit("bench_memory: %s" % e)
    finally:
        moortest.cleanup_all()
        shutil.rmtree(tmp, ignore_errors=True)
    k = float(args.keys)
    print("%-34s %14s %14s" % ("bytes per key", "Moor", "Redis"))
    rows = [
        ("RSS after the fill", moor["filled"] / k, redis["filled"] / k),
        ("RSS after the fill, less idle RSS", (moor["filled"] - moor["base"]) / k,
         (redis["filled"] - redis["base"]) / k),
        ("RSS settled (flushes / fsync)", moor["settled"] / k, redis["settled"] / k),
        ("RSS settled, less idle RSS", (moor["settled"] - moor["base"]) / k,
         (redis["settled"] - redis["base"]) / k),
        ("on disk (data dir / AOF)", moor["disk"] / k, redis["disk"] / k),
    ]
    for name, m, r in rows:
        print("%-34s %14.1f %14.1f" % (name, m, r))
    print("%-34s %14s %14.1f" % ("Redis used_memory (allocator)", "",
                                 (redis["used_memory"] - redis["used_memory_base"]) / k))
    print("\nMoor/Redis RSS per key after the fill: %.2fx; settled: %.2fx"
          % (moor["filled"] / redis["filled"], moor["settled"] / redis["settled"]))
    print("load: Moor %.1f s, Redis %.1f s (one pipelined Python client each; not a throughput "
          "figure)\n" % (moor["load_s"], redis["load_s"]))
    print(json.dumps({"keys": args.keys, "value_size": args.value_size,
                      "moor": moor, "redis": redis}))


if __name__ == "__main__":
    main()
