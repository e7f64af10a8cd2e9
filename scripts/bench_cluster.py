#!/usr/bin/python3
"""bench_cluster.py -- one standalone node against a three-node cluster.

Runs the same `moor bench` commands (a put-only pass, then a get-only pass
that finds the keys the puts wrote) against:
  single   one moord with no seeds (one copy of every key);
  cluster  three moords on 127.0.0.1, 127.0.0.2 and 127.0.0.3, each
           seeding all three, default space n=3 r=2 w=2, the client
           talking to node 1 (which coordinates or forwards every request).
Every node has the same engine settings (sync=interval, fsync every
1000 ms).  Before the cluster run, `moor ring --json` on each node must
list three members, all up (bounded wait).  Prints ops/s, p50 and p99 per
workload and setup, and the cluster/single ratios of ops/s and p99.

Client, nodes and replicas all share this machine's cores: the figures
show what replication costs on one box (each write is applied three times
and each read asks three replicas), not what three machines would do.

Every moord this script starts is killed when it exits, whatever happens.

usage: bench_cluster.py [--build DIR] [--duration S] [--conns N]
                        [--pipeline N] [--keys N] [--value-size B]
"""
import argparse
import atexit
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
PROCS = []  # every moord started; killed at exit
CONVERGE_S = 60  # bound on the cluster agreeing on three up members
ENGINE = 'engine = { sync = "interval", sync_ms = 1000, memtable_mb = 64, cache_mb = 64 }'


def kill_all():
    for p in PROCS:
        if p.poll() is None:
            p.kill()
            p.wait()


atexit.register(kill_all)


def on_signal(signum, frame):
    sys.exit("bench_cluster: signal %d, stopping" % signum)  # atexit kills the nodes


class Failed(Exception):
    pass


def free_port(host):
    s = socket.socket()
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Node:
    """One moord: its config file, data directory, log and process."""

    def __init__(self, build, tmp, node_id, host, seeds):
        self.build, self.id, self.host = build, node_id, host
        self.port = free_port(host)
        self.addr = "%s:%d" % (host, self.port)
        self.dir = os.path.join(tmp, node_id)
        os.makedirs(self.dir)
        self.conf = os.path.join(self.dir, "node.lua")
        self.logpath = os.path.join(self.dir, "moord.log")
        self.seeds = seeds
        self.proc = None

    def write_config(self, seeds):
        cluster = ""
        if seeds:
            cluster = "  seeds = { %s },\n" % ", ".join('"%s"' % s for s in seeds)
        with open(self.conf, "w") as f:
            f.write('moor.cfg{ node = "%s", listen = "%s", data_dir = "%s",\n%s'
                    '  %s,\n  log = { level = "warn" } }\n'
                    % (self.id, self.addr, os.path.join(self.dir, "data"), cluster, ENGINE))
            if seeds:
                f.write('moor.space("default", { n = 3, r = 2, w = 2 })\n')

    def start(self, timeout=15):
        with open(self.logpath, "ab") as log:
            self.proc = subprocess.Popen([os.path.join(self.build, "moord"), self.conf],
                                         stdout=log, stderr=log,
                                         env=dict(os.environ, MOOR_ROOT=ROOT))
        PROCS.append(self.proc)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise Failed("%s exited with %d:\n%s" % (self.id, self.proc.returncode,
                                                        self.logtail()))
            try:
                socket.create_connection((self.host, self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise Failed("%s did not listen on %s within %ss" % (self.id, self.addr, timeout))

    def stop(self, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def logtail(self, n=3000):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode(errors="replace")[-n:]
        except OSError:
            return "(no log)"


def moor(build, addr, *args, timeout=30):
    return subprocess.run([os.path.join(build, "moor"), "-h", addr] + list(args),
                          capture_output=True, text=True, timeout=timeout)


def ring_state(build, node):
    """None when `moor ring` on node lists three members, all up; else why not."""
    r = moor(build, node.addr, "ring", "--json", timeout=10)
    if r.returncode != 0:
        return "ring on %s: exit %d: %s" % (node.id, r.returncode, r.stderr.strip())
    ring = json.loads(r.stdout)
    members = [(m.get("id"), m.get("status")) for m in ring.get("nodes", [])]
    if not ring.get("cluster") or len(members) != 3 or any(s != "up" for _, s in members):
        return "%s sees cluster=%s %r" % (node.id, ring.get("cluster"), members)
    return None


def wait_ring(build, nodes, timeout=CONVERGE_S):
    deadline = time.time() + timeout
    while True:
        why = next((w for w in (ring_state(build, n) for n in nodes) if w), None)
        if why is None:
            return
        if time.time() >= deadline:
            raise Failed("the cluster did not converge within %ss: %s" % (timeout, why))
        time.sleep(0.5)


def bench(build, addr, args, ratio):
    cmd = ["bench", "--conns", str(args.conns), "--pipeline", str(args.pipeline),
           "--keys", str(args.keys), "--value-size", str(args.value_size),
           "--ratio", str(ratio), "--duration", str(args.duration)]
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


def run_setup(build, args, nodes):
    """Starts nodes, waits for their ring (cluster), runs put then get
    against the first, stops them.  {workload: result}."""
    try:
        for n in nodes:
            n.write_config(n.seeds)
            n.start()
        if len(nodes) > 1:
            wait_ring(build, nodes)
        return {"put": bench(build, nodes[0].addr, args, 0.0),
                "get": bench(build, nodes[0].addr, args, 1.0)}
    except Failed:
        for n in nodes:
            sys.stderr.write("---- %s log (tail) ----\n%s\n" % (n.id, n.logtail()))
        raise
    finally:
        for n in nodes:
            n.stop()


def print_table(results):
    print("%-8s %-4s %12s %10s %10s %8s" % ("setup", "op", "ops/s", "p50 us", "p99 us",
                                            "errors"))
    for setup in ("single", "cluster"):
        for op in ("put", "get"):
            x = results.get(setup, {}).get(op)
            if x:
                print("%-8s %-4s %12.0f %10.1f %10.1f %8d" % (setup, op, x["ops"], x["p50"],
                                                              x["p99"],
                                                              x["errors"] + x["lost"]))
    for setup, ops in results.items():
        for op, x in ops.items():
            if x["first_error"]:
                print("  %s %s: errors are counted in ops/s; first: %s" % (setup, op,
                                                                         x["first_error"]))
    if "single" in results and "cluster" in results:
        print()
        for op in ("put", "get"):
            s, c = results["single"][op], results["cluster"][op]
            print("%-4s cluster/single: ops/s %.2fx, p99 %.2fx" % (
                op, c["ops"] / s["ops"] if s["ops"] else 0.0,
                c["p99"] / s["p99"] if s["p99"] else 0.0))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--duration", type=int, default=15, help="seconds per moor bench run")
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--pipeline", type=int, default=1)
    ap.add_argument("--keys", type=int, default=100000)
    ap.add_argument("--value-size", type=int, default=100)
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    for exe in ("moord", "moor"):
        if not os.access(os.path.join(args.build, exe), os.X_OK):
            sys.exit("bench_cluster: %s not built in %s" % (exe, args.build))
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    print("bench_cluster: moor bench --conns %d --pipeline %d --keys %d --value-size %d, "
          "%d s per run (puts, then gets of the same keys), against node 1;"
          % (args.conns, args.pipeline, args.keys, args.value_size, args.duration))
    print("every node sync=interval (fsync 1 s); cluster: 3 nodes on 127.0.0.1-3, "
          "n=3 r=2 w=2; client and nodes share this machine\n")
    sys.stdout.flush()
    tmp = tempfile.mkdtemp(prefix="moor-bench-cluster-")
    results, failed = {}, None
    try:
        single = [Node(args.build, os.path.join(tmp, "single"), "s1", "127.0.0.1", [])]
        results["single"] = run_setup(args.build, args, single)
        hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
        cl = [Node(args.build, os.path.join(tmp, "cluster"), "n%d" % (i + 1), h, None)
              for i, h in enumerate(hosts)]
        for n in cl:
            n.seeds = [m.addr for m in cl]
        results["cluster"] = run_setup(args.build, args, cl)
    except Failed as e:
        failed = str(e)
    finally:
        kill_all()
        shutil.rmtree(tmp, ignore_errors=True)
    print_table(results)
    print()
    for setup, ops in results.items():
        for op, x in ops.items():
            print(json.dumps(dict(setup=setup, op=op, **x)))
    if failed:
        sys.exit("bench_cluster: %s" % failed)


if __name__ == "__main__":
    main()
