#!/usr/bin/python3
"""scripts/scaler.py -- a local scaler for moor.autoscale{} (README
"Automatic scaling"): starts and stops moord processes on 127.0.0.x of
this machine.  Normally run through scripts/scaler.sh by the evaluating
node, which sets MOOR_SEEDS, MOOR_CONFIG, MOOR_NODE and MOOR_REASON.

  scaler.py add          start one more node: the next free 127.0.0.x, the
                         next node id never used in this state directory
  scaler.py remove [ID]  (ID defaults to $MOOR_NODE) `moor leave` on node ID, wait until the cluster
                         shows it `left`, then stop its process (if this
                         scaler started it)
  scaler.py list         the nodes this scaler started, and their state
  scaler.py stop-all     SIGTERM (then SIGKILL) every node it started

Environment:
  MOOR_SEEDS             comma-separated addresses of the up members
  MOOR_CONFIG            the config file to start the new node with: it is
                         run as `moord CONFIG --node ID --set listen=HOST:PORT
                         --set data_dir=DIR --set seeds=A,B,...`, so it
                         should read moor.arg.node, .listen, .data_dir and
                         .seeds (conf/autoscale.lua does);
                         MOOR_SCALER_CONFIG overrides it
  MOOR_SCALER_SECRET     without any config: one is generated with this
                         cluster_secret (then required)
  MOOR_SCALER_DIR        state: data/scaler by default (ids ever used,
                         each node's pid, address, log and data)
  MOOR_SCALER_PREFIX     node id prefix, "n" (ids are prefix + number)
  MOOR_SCALER_PORT       port of new nodes; default 7700 + x on 127.0.0.x
  MOOR_SCALER_LEAVE_S    bound on waiting for `left` (600)
  MOOR_BUILD             where moord and moor are (build/ of the repo)

Node ids are never reused: ids that were used once (recorded in
MOOR_SCALER_DIR/ids) or that the cluster's ring lists are skipped, so a
node that left never comes back under its old id.  Exit 0 on success, 1 on
failure (with a message on stderr), 2 on bad usage.
"""
import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("MOOR_BUILD") or os.path.join(ROOT, "build")
STATE = os.path.abspath(os.environ.get("MOOR_SCALER_DIR") or os.path.join(ROOT, "data", "scaler"))
PREFIX = os.environ.get("MOOR_SCALER_PREFIX", "n")
START_S = 20


def say(msg):
    sys.stderr.write("scaler: %s\n" % msg)
    sys.stderr.flush()


def fail(msg):
    say(msg)
    sys.exit(1)


def seeds():
    return [s for s in os.environ.get("MOOR_SEEDS", "").split(",") if s]


def moor(addr, *args, timeout=10):
    """Runs the moor CLI against addr; (exit code, stdout, stderr)."""
    try:
        p = subprocess.run([os.path.join(BUILD, "moor"), "-h", addr, "--timeout",
                            str(timeout * 1000)] + list(args), capture_output=True, text=True,
                           timeout=timeout + 5)
    except subprocess.TimeoutExpired:
        return 3, "", "timed out"
    return p.returncode, p.stdout, p.stderr


def ring(addrs):
    """The member list of the first node of addrs that answers `ring`."""
    for a in addrs:
        rc, out, _ = moor(a, "ring", "--json", timeout=5)
        if rc == 0:
            try:
                return json.loads(out)["nodes"]
            except (ValueError, KeyError):
                continue
    return None


def listening(host, port):
    s = socket.socket()
    s.settimeout(0.5)
    try:
        s.connect((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def port_free(host, port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def node_dir(nid):
    return os.path.join(STATE, "nodes", nid)


def read(path, default=None):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def used_ids():
    ids = set((read(os.path.join(STATE, "ids"), "") or "").split())
    if os.path.isdir(os.path.join(STATE, "nodes")):
        ids.update(os.listdir(os.path.join(STATE, "nodes")))
    return ids


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    cmd = read("/proc/%d/cmdline" % pid, "") or ""
    return "moord" in cmd


def started_nodes():
    """{id: {addr, pid, alive, state}} of the nodes this scaler started."""
    out = {}
    base = os.path.join(STATE, "nodes")
    for nid in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        d = node_dir(nid)
        pid = int(read(os.path.join(d, "pid"), "0") or 0)
        out[nid] = {"addr": read(os.path.join(d, "addr")), "pid": pid,
                    "alive": pid > 0 and pid_alive(pid),
                    "state": read(os.path.join(d, "state"), "started")}
    return out


def next_id(members):
    """prefix + (largest number ever used or in the ring) + 1."""
    taken = used_ids() | {m["id"] for m in members or []}
    best = 0
    for i in taken:
        m = re.match(r"^%s(\d+)$" % re.escape(PREFIX), i)
        if m:
            best = max(best, int(m.group(1)))
    return "%s%d" % (PREFIX, best + 1)


def next_addr(members):
    """The first 127.0.0.x (x >= 2) no member, seed or started node uses,
    whose port is free."""
    hosts = set()
    for a in seeds() + [m["addr"] for m in members or []] + \
            [n["addr"] or "" for n in started_nodes().values()]:
        hosts.add(a.rsplit(":", 1)[0])
    fixed = os.environ.get("MOOR_SCALER_PORT")
    for x in range(2, 255):
        host = "127.0.0.%d" % x
        port = int(fixed) if fixed else 7700 + x
        if host in hosts or not port_free(host, port):
            continue
        return host, port
    fail("no free address on 127.0.0.2..254")


def config_for(nid, d):
    conf = os.environ.get("MOOR_SCALER_CONFIG") or os.environ.get("MOOR_CONFIG")
    if conf:
        return os.path.abspath(conf)
    secret = os.environ.get("MOOR_SCALER_SECRET")
    if not secret:
        fail("no config: set MOOR_CONFIG or MOOR_SCALER_CONFIG, or MOOR_SCALER_SECRET to "
             "generate one")
    path = os.path.join(d, "node.lua")
    write(path, """-- generated by scripts/scaler.py for node %s
local seeds = {}
for s in (moor.arg.seeds or ""):gmatch("[^,]+") do seeds[#seeds + 1] = s end
moor.cfg{ node = moor.arg.node, listen = moor.arg.listen, data_dir = moor.arg.data_dir,
  seeds = seeds, cluster_secret = %s, log = { level = "info" } }
""" % (nid, json.dumps(secret)))
    return path


def add():
    members = ring(seeds())
    if not seeds():
        fail("MOOR_SEEDS is empty: nothing to join")
    os.makedirs(os.path.join(STATE, "nodes"), exist_ok=True)
    nid = next_id(members)
    host, port = next_addr(members)
    d = node_dir(nid)
    os.makedirs(d, exist_ok=True)
    # recorded before anything can fail: this id is never handed out again
    with open(os.path.join(STATE, "ids"), "a") as f:
        f.write(nid + "\n")
    addr = "%s:%d" % (host, port)
    write(os.path.join(d, "addr"), addr)
    conf = config_for(nid, d)
    cmd = [os.path.join(BUILD, "moord"), conf, "--node", nid, "--set", "listen=" + addr,
           "--set", "data_dir=" + os.path.join(d, "data"), "--set", "seeds=" + ",".join(seeds())]
    with open(os.path.join(d, "moord.log"), "ab") as log:
        p = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                             start_new_session=True, env=dict(os.environ, MOOR_ROOT=ROOT))
    write(os.path.join(d, "pid"), str(p.pid))
    write(os.path.join(d, "state"), "started")
    say("starting %s on %s (pid %d, reason: %s)" % (nid, addr, p.pid,
                                                     os.environ.get("MOOR_REASON", "")))
    deadline = time.time() + START_S
    while time.time() < deadline:
        if p.poll() is not None:
            write(os.path.join(d, "state"), "failed")
            fail("%s exited with %d; see %s" % (nid, p.returncode, os.path.join(d, "moord.log")))
        if listening(host, port):
            say("%s listens on %s" % (nid, addr))
            print(nid)
            return 0
        time.sleep(0.1)
    stop_pid(p.pid, nid)  # not left behind to join later, after this add counted as failed
    write(os.path.join(d, "state"), "failed")
    fail("%s did not listen on %s within %d s" % (nid, addr, START_S))


def status_of(nid, addrs):
    members = ring(addrs)
    for m in members or []:
        if m["id"] == nid:
            return m["status"]
    return None if members is None else "gone"


def stop_pid(pid, nid):
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.time() + 20
    while time.time() < deadline and pid_alive(pid):
        time.sleep(0.1)
    if pid_alive(pid):
        say("%s (pid %d) did not stop within 20 s: SIGKILL" % (nid, pid))
        os.kill(pid, signal.SIGKILL)


def remove(nid):
    mine = started_nodes().get(nid)
    addr = mine["addr"] if mine else None
    if not addr:
        for m in ring(seeds()) or []:
            if m["id"] == nid:
                addr = m["addr"]
    if not addr:
        fail("%s: no such member (MOOR_SEEDS=%s)" % (nid, os.environ.get("MOOR_SEEDS", "")))
    say("%s (%s) leaves (reason: %s)" % (nid, addr, os.environ.get("MOOR_REASON", "")))
    rc, out, err = moor(addr, "leave", timeout=30)
    if rc != 0:
        fail("`moor -h %s leave` failed (exit %d): %s" % (addr, rc, (err or out).strip()))
    if mine:
        write(os.path.join(node_dir(nid), "state"), "leaving")
    limit = int(os.environ.get("MOOR_SCALER_LEAVE_S", "600"))
    deadline = time.time() + limit
    others = [a for a in seeds() if a != addr]
    st = None
    while time.time() < deadline:
        st = status_of(nid, [addr] + others)
        if st in ("left", "gone"):
            break
        time.sleep(0.5)
    else:
        fail("%s still %s after %d s: not stopped" % (nid, st, limit))
    say("%s is %s" % (nid, st))
    # the others must know before the process goes, or they only see it down
    wait_until = time.time() + 30
    while time.time() < wait_until:
        behind = [a for a in others if status_of(nid, [a]) not in ("left", "gone", None)]
        if not behind:
            break
        time.sleep(0.5)
    else:
        say("%s: %s still do not see it left after 30 s" % (nid, ",".join(behind)))
    if mine and mine["alive"]:
        stop_pid(mine["pid"], nid)
        say("%s stopped" % nid)
    elif not mine:
        say("%s was not started by this scaler: its process is left running" % nid)
    if mine:
        write(os.path.join(node_dir(nid), "state"), "left")
    return 0


def list_nodes():
    for nid, n in started_nodes().items():
        print("%s %s pid=%d %s %s" % (nid, n["addr"], n["pid"],
                                      "running" if n["alive"] else "stopped", n["state"]))
    return 0


def stop_all():
    for nid, n in started_nodes().items():
        if n["alive"]:
            stop_pid(n["pid"], nid)
            say("%s stopped" % nid)
    return 0


def locked(fn, *args):
    """fn(*args) holding STATE/lock: two scalers at once (an operator and
    the autoscaler) never pick the same id or address."""
    os.makedirs(STATE, exist_ok=True)
    with open(os.path.join(STATE, "lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        return fn(*args)


def main(argv):
    if len(argv) == 2 and argv[1] == "add":
        return locked(add)
    if len(argv) == 3 and argv[1] == "remove":
        return locked(remove, argv[2])
    if len(argv) == 2 and argv[1] == "remove" and os.environ.get("MOOR_NODE"):
        return locked(remove, os.environ["MOOR_NODE"])
    if len(argv) == 2 and argv[1] == "list":
        return list_nodes()
    if len(argv) == 2 and argv[1] == "stop-all":
        return stop_all()
    sys.stderr.write("usage: scaler.py add | remove ID | list | stop-all\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
