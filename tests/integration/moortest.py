"""moortest.py -- the harness shared by the integration tests and scripts.

Raw MessagePack-RPC connections (Debian's python3-msgpack), free ports,
moord processes in throwaway directories (Node), and clusters of them on
127.0.0.1, 127.0.0.2, ... (Cluster).  Every moord started through this
module is killed when the process exits (atexit; and by the kernel when
the process itself is killed: PR_SET_PDEATHSIG), and every wait is bounded.

Used by node_test.py, cluster_test.py, partition_test.py (same directory)
and scripts/bench_cluster.py.
"""
import argparse
import atexit
import ctypes
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import warnings

import msgpack

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_BUILD = os.path.join(ROOT, "build")
CONVERGE_S = 30     # bound on a cluster agreeing on its members
PROCS = []          # every moord started, killed at exit whatever happens
CLUSTERS = []       # every Cluster made, removed at exit


class Failed(RuntimeError):
    """A moord that did not start (or stop) as it should."""


def kill_all():
    for p in PROCS:
        if p.poll() is None:
            p.kill()
            p.wait()


def cleanup_all():
    for c in CLUSTERS:
        c.cleanup()
    kill_all()


atexit.register(cleanup_all)


def die_with_parent():
    """preexec_fn: the child gets SIGKILL if this script dies, even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG


def free_port(host="127.0.0.1"):
    s = socket.socket()
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def retry(fn, timeout, what):
    """fn() until it returns a result whose error is None, within timeout."""
    deadline = time.time() + timeout
    while True:
        err, res = fn()
        if err is None:
            return res
        if time.time() >= deadline:
            raise AssertionError("%s still failing after %ss: %r" % (what, timeout, err))
        time.sleep(0.2)


def poll(check, timeout, interval=0.2):
    """check() until it returns a false value (nothing left to wait for)
    or timeout has passed; returns check()'s last value."""
    deadline = time.time() + timeout
    while True:
        left = check()
        if not left or time.time() >= deadline:
            return left
        time.sleep(interval)


def parse_args(build=DEFAULT_BUILD, more=None):
    """--build (made absolute) and whatever more(parser) adds; the
    arguments argparse does not know are returned for unittest."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=build)
    if more:
        more(ap)
    args, rest = ap.parse_known_args()
    args.build = os.path.abspath(args.build)
    return args, rest


def run_unittest(rest):
    """unittest.main on the __main__ module with rest as its arguments; on
    failure the logs of every Cluster are printed.  Removes the clusters,
    kills every moord and returns whether every test passed."""
    warnings.simplefilter("ignore", ResourceWarning)  # sockets die with their test
    prog = unittest.main(argv=[sys.argv[0]] + rest, verbosity=2, exit=False)
    ok = prog.result.wasSuccessful()
    if not ok:
        for c in CLUSTERS:
            sys.stderr.write("\nnode logs (tails):\n%s\n" % c.logs())
    cleanup_all()
    return ok


class Conn:
    """Minimal pipelining MessagePack-RPC connection; every socket operation
    is bounded by timeout, and the connection comes from source (a host
    address) when given."""

    def __init__(self, addr, timeout=15, source=None):
        self.sock = socket.create_connection(addr, timeout,
                                             source_address=(source, 0) if source else None)
        self.unpacker = msgpack.Unpacker(raw=False)
        self.msgid = 0

    def send(self, method, *params):
        self.msgid += 1
        self.sock.sendall(msgpack.packb([0, self.msgid, method, list(params)],
                                        use_bin_type=True))
        return self.msgid

    def recv(self):
        while True:
            for msg in self.unpacker:
                return msg
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed by the node")
            self.unpacker.feed(data)

    def poll(self, timeout):
        """Every message that arrives within timeout (maybe none)."""
        out = list(self.unpacker)
        if out:
            return out
        ready, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if ready:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed by the node")
            self.unpacker.feed(data)
            out = list(self.unpacker)
        return out

    def call(self, method, *params):
        mid = self.send(method, *params)
        msg = self.recv()
        assert msg[0] == 1 and msg[1] == mid, msg
        return msg[2], msg[3]

    def close(self):
        self.sock.close()


def pipelined(conn, requests, window=256):
    """Sends (method, params...) tuples on conn keeping window in flight;
    returns the answers [(err, result)] in order."""
    out = [None] * len(requests)
    ids = {}
    sent = done = 0
    while done < len(requests):
        while sent < len(requests) and sent - done < window:
            ids[conn.send(*requests[sent])] = sent
            sent += 1
        msg = conn.recv()
        out[ids.pop(msg[1])] = (msg[2], msg[3])
        done += 1
    return out


class Node:
    """One moord: its config file, data directory (dir/data), log
    (dir/moord.log) and process.  Connections to it come from source."""

    def __init__(self, build, dir, node_id, host="127.0.0.1", port=None, source=None):
        self.build, self.id, self.host, self.source = build, node_id, host, source
        self.port = port or free_port(host)
        self.addr = "%s:%d" % (host, self.port)
        self.dir = dir
        os.makedirs(dir, exist_ok=True)
        self.conf = os.path.join(dir, "node.lua")
        self.data = os.path.join(dir, "data")
        self.logpath = os.path.join(dir, "moord.log")
        self.proc = None

    def write_config(self, settings, seeds=(), secret=None, script=""):
        """moor.cfg{} with node, listen and data_dir, seeds and
        cluster_secret when given, then settings (Lua table fields); then
        script (Lua statements)."""
        cluster = ""
        if seeds:
            cluster += "  seeds = { %s },\n" % ", ".join('"%s"' % s for s in seeds)
        if secret:
            cluster += '  cluster_secret = "%s",\n' % secret
        with open(self.conf, "w") as f:
            f.write('moor.cfg{ node = "%s", listen = "%s", data_dir = "%s",\n%s  %s }\n%s'
                    % (self.id, self.addr, self.data, cluster, settings, script))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def listening(self, offset):
        """Whether the log has moord's "listening" line past offset."""
        with open(self.logpath, "rb") as f:
            f.seek(offset)
            return b"moord: node %s listening on " % self.id.encode() in f.read()

    def start(self, timeout=15):
        """Starts moord and waits for its "listening" line; returns self."""
        offset = os.path.getsize(self.logpath) if os.path.exists(self.logpath) else 0
        with open(self.logpath, "ab") as log:
            self.proc = subprocess.Popen([os.path.join(self.build, "moord"), self.conf],
                                         stdout=log, stderr=log, preexec_fn=die_with_parent,
                                         env=dict(os.environ, MOOR_ROOT=ROOT))
        PROCS.append(self.proc)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise Failed("%s exited with %d:\n%s" % (self.id, self.proc.returncode,
                                                        self.logtail()))
            if self.listening(offset):
                return self
            time.sleep(0.05)
        raise Failed("%s did not listen on %s within %ss" % (self.id, self.addr, timeout))

    def stop(self, sig=signal.SIGTERM, timeout=20, check=True):
        """Sends sig and waits for the exit; past timeout kills it (and
        raises Failed when check).  Returns the exit status (None if never
        started)."""
        if self.alive():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                if check:
                    raise Failed("%s did not stop within %ss" % (self.id, timeout))
        return self.proc.returncode if self.proc else None

    def kill9(self):
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def cleanup(self):
        """Kills it and removes its directory."""
        self.kill9()
        shutil.rmtree(self.dir, ignore_errors=True)

    def wipe_data(self):
        """Deletes the node's data but not its membership (data_dir/MEMBERS
        and HLC): it comes back as the same member with an empty store, the
        case anti-entropy repair refills (a node whose whole data directory
        is gone comes back as a new member and streams its ranges in)."""
        for name in os.listdir(self.data):
            if name in ("MEMBERS", "HLC"):
                continue
            path = os.path.join(self.data, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)

    def conn(self, timeout=15):
        return Conn((self.host, self.port), timeout, self.source)

    def info(self):
        """The node's info map, over a connection of its own."""
        c = self.conn(10)
        try:
            err, res = c.call("info")
        finally:
            c.close()
        assert err is None, err
        return res

    def logtail(self, n=4000):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode(errors="replace")[-n:]
        except OSError:
            return "(no log)"


class Cluster:
    """size moords n1, n2, ... on 127.0.0.1, 127.0.0.2, ... (free ports),
    each seeding all of them, in a temporary directory; settings and script
    go into every config (see Node.write_config).  A node with seeds needs
    a cluster_secret: one is made up when none is given.  Not started:
    start()."""

    def __init__(self, build, size=3, prefix="moor-cluster-", secret=None, settings="",
                 script="", source=None):
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        self.secret = secret or "secret-%s" % os.urandom(12).hex()
        CLUSTERS.append(self)
        self.nodes = [Node(build, os.path.join(self.tmp, "n%d" % i), "n%d" % i,
                           "127.0.0.%d" % i, source=source) for i in range(1, size + 1)]
        for n in self.nodes:
            n.write_config(settings, [m.addr for m in self.nodes], self.secret, script)

    def start(self):
        for n in self.nodes:
            n.start()

    def ring(self, node):
        c = node.conn(5)
        try:
            err, res = c.call("ring")
        finally:
            c.close()
        if err is not None:
            raise AssertionError("ring on %s answered %r" % (node.id, err))
        return res

    def converged(self):
        """None when every node runs and lists every node, all up; else why not."""
        want = sorted((n.id, n.addr) for n in self.nodes)
        for n in self.nodes:
            if not n.alive():
                return "%s is not running" % n.id
            try:
                r = self.ring(n)
            except (OSError, ConnectionError) as e:
                return "ring on %s: %s" % (n.id, e)
            got = sorted((m["id"], m["addr"]) for m in r["nodes"])
            if got != want:
                return "%s lists %r" % (n.id, got)
            down = [(m["id"], m["status"]) for m in r["nodes"] if m["status"] != "up"]
            if down:
                return "%s sees %r" % (n.id, down)
        return None

    def wait_converged(self, timeout=CONVERGE_S):
        why = poll(self.converged, timeout)
        if why:
            raise AssertionError("no convergence within %ss: %s" % (timeout, why))

    def stop(self):
        for n in self.nodes:
            n.kill9()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def logs(self):
        return "\n".join("---- %s (%s)\n%s" % (n.id, n.logpath, n.logtail()) for n in self.nodes)

