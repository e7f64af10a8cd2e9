#!/usr/bin/python3
"""disk_test.py -- a real moord against a damaged commit log and a full disk.

Damage in the middle of the log: 3,000 pipelined puts with
engine.sync = "always", kill -9, one byte flipped in the middle of the
log, restart.  Every acknowledged put reads back but the one in the
damaged record (found by parsing the log here), the node's log has an
ERROR naming the file and the offset, and info.engine counts the damage
(wal_damaged, wal_damaged_bytes, wal_lost_writes).  With
engine.wal_recovery = "stop" moord refuses to start on the same image
(exit 2, a message naming the file, the offset and the option) and leaves
the log as it was; a torn tail never stops it.

A full disk: data_dir on a small tmpfs, filled by a file beside it (a
snapshot that does not fit is NO_SPACE and leaves nothing).  Puts
until one is refused: the code is NO_SPACE, never READ_ONLY; gets keep
working; info.engine.no_space is true.  The filler is removed: puts
succeed again with no restart.  A restart later, every acknowledged put
reads back.  The script re-executes itself under `unshare --mount` so the
tmpfs vanishes with it; without root or unshare the full-disk tests print
SKIP and pass.

Every wait is bounded and every moord is killed when the script exits.
The harness (RPC client, nodes) is moortest.py, beside this file.

usage: disk_test.py --build BUILD_DIR [-k NAME]
"""
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

import moortest
from moortest import poll

BUILD = moortest.DEFAULT_BUILD
NS_ENV = "MOOR_DISK_TEST_OUTER_MNTNS"   # set (to the outer namespace) once re-executed
MOUNT_OK = False                        # inside a mount namespace of our own, as root
NPUTS = 3000
WINDOW = 64                             # puts in flight on the connection
WAL_SEGMENT_HEADER = 16
WAL_HEADER = 17


def find_tool(name):
    return shutil.which(name) or next(
        (p for p in ("/usr/bin/" + name, "/bin/" + name) if os.access(p, os.X_OK)), None)


def mntns_id():
    return os.readlink("/proc/self/ns/mnt")


def enter_namespace():
    """Re-executes this script under `unshare --mount` (private propagation)
    when that is possible, so the tmpfs of the full-disk tests dies with the
    process; else returns and those tests skip."""
    unshare = find_tool("unshare")
    if os.geteuid() != 0 or unshare is None:
        return
    r = subprocess.run([unshare, "--mount", "--propagation", "private", "true"],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        return
    env = dict(os.environ)
    env[NS_ENV] = mntns_id()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(unshare, [unshare, "--mount", "--propagation", "private", "--", sys.executable,
                        os.path.abspath(__file__)] + sys.argv[1:], env)


def value_of(i):
    return "value-%06d-" % i + "x" * (i % 50)


def wal_files(data):
    return sorted(f for f in os.listdir(data) if f.startswith("wal-") and f.endswith(".log"))


def wal_records(path):
    """(offset, length of the whole record, payload) of every record."""
    with open(path, "rb") as f:
        img = f.read()
    out, off = [], WAL_SEGMENT_HEADER
    while off + WAL_HEADER <= len(img):
        n = struct.unpack_from("<I", img, off + 4)[0]
        out.append((off, WAL_HEADER + n, img[off + WAL_HEADER:off + WAL_HEADER + n]))
        off += WAL_HEADER + n
    assert off == len(img), "%s: records end at %d, file at %d" % (path, off, len(img))
    return out


def batch_keys(payload):
    """The engine keys of a write batch (count u32 | (type | varint klen |
    key | varint vlen | value)*)."""
    def varint(p):
        v = shift = 0
        while True:
            b = payload[p]
            p += 1
            v |= (b & 0x7f) << shift
            shift += 7
            if b < 0x80:
                return v, p
    count = struct.unpack_from("<I", payload, 0)[0]
    p, keys = 4, []
    for _ in range(count):
        p += 1
        klen, p = varint(p)
        keys.append(payload[p:p + klen])
        p += klen
        vlen, p = varint(p)
        p += vlen
    return keys


class Node(moortest.Node):
    """moord "d1" in its own temporary directory."""

    def __init__(self, engine, data=None):
        super().__init__(BUILD, tempfile.mkdtemp(prefix="moor-disk-"), "d1")
        if data:
            self.data = data
        self.engine = engine
        self.configure(engine)

    def configure(self, engine):
        self.write_config('engine = { %s },\n  log = { level = "info" }' % engine)

    def exit_status(self, timeout=30):
        """Starts moord expecting it to refuse: its exit status and output."""
        offset = os.path.getsize(self.logpath) if os.path.exists(self.logpath) else 0
        with open(self.logpath, "ab") as log:
            p = subprocess.Popen([os.path.join(self.build, "moord"), self.conf], stdout=log,
                                 stderr=log, preexec_fn=moortest.die_with_parent,
                                 env=dict(os.environ, MOOR_ROOT=moortest.ROOT))
        moortest.PROCS.append(p)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise AssertionError("moord did not refuse to start within %ss" % timeout)
        with open(self.logpath, "rb") as f:
            f.seek(offset)
            return p.returncode, f.read().decode(errors="replace")


def put_all(c, keys):
    """Pipelined puts (WINDOW in flight); the keys whose put was answered ok."""
    acked, inflight, it = [], {}, iter(keys)
    pending = True
    while pending or inflight:
        while pending and len(inflight) < WINDOW:
            try:
                k = next(it)
            except StopIteration:
                pending = False
                break
            inflight[c.send("put", k, value_of(int(k[1:])))] = k
        if inflight:
            msg = c.recv()
            k = inflight.pop(msg[1])
            if msg[2] is None:
                acked.append(k)
    return acked


class WalDamageTest(unittest.TestCase):
    def setUp(self):
        self.node = Node('sync = "always"').start()

    def tearDown(self):
        self.node.cleanup()

    def crash_image(self):
        """3,000 acknowledged puts, then kill -9: everything is in the log."""
        c = self.node.conn(30)
        keys = ["k%05d" % i for i in range(NPUTS)]
        acked = put_all(c, keys)
        c.close()
        self.assertEqual(len(acked), NPUTS)
        self.node.kill9()
        logs = wal_files(self.node.data)
        self.assertTrue(logs)
        return keys, os.path.join(self.node.data, logs[-1])

    def flip_middle(self, path):
        """Flips the byte in the middle of the log; returns the damaged
        record's offset, length and user keys."""
        size = os.path.getsize(path)
        at = size // 2
        rec = next(r for r in wal_records(path) if r[0] <= at < r[0] + r[1])
        with open(path, "r+b") as f:
            f.seek(at)
            b = f.read(1)
            f.seek(at)
            f.write(bytes([b[0] ^ 0x5a]))
        return rec[0], rec[1], batch_keys(rec[2])

    def test_flip_in_the_middle_keeps_the_rest(self):
        keys, path = self.crash_image()
        size = os.path.getsize(path)
        off, length, engine_keys = self.flip_middle(path)
        lost = {k for k in keys if any(ek.endswith(k.encode()) for ek in engine_keys)}
        self.assertEqual(len(lost), 1, "one put per record: %r" % engine_keys)
        # wal_recovery = "stop" refuses the image and leaves it as it was
        with open(path, "rb") as f:
            before = f.read()
        self.node.configure('sync = "always", wal_recovery = "stop"')
        status, out = self.node.exit_status()
        self.assertEqual(status, 2, out)
        self.assertIn("is damaged at offset %d " % off, out)
        self.assertIn(os.path.basename(path), out)
        self.assertIn("wal_recovery = stop", out)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), before)
        # the default keeps every record after the damaged one
        self.node.configure('sync = "always"')
        self.node.start()
        log = self.node.logtail(100000)
        self.assertIn("ERROR", log)
        self.assertIn("%s is damaged at offset %d " % (os.path.basename(path), off), log)
        eng = self.node.info()["engine"]
        self.assertEqual(eng["wal_damaged"], 1, eng)
        self.assertEqual(eng["wal_damaged_bytes"], length, eng)
        self.assertEqual(eng["wal_lost_writes"], 1, eng)
        c = self.node.conn(30)
        missing = []
        for k in keys:
            err, res = c.call("get", k)
            self.assertIsNone(err, err)
            if res is None:
                missing.append(k)
            else:
                self.assertEqual(res["values"], [value_of(int(k[1:]))])
        c.close()
        print("flip at byte %d of a %d-byte log: lost %r, kept %d of %d" %
              (size // 2, size, missing, NPUTS - len(missing), NPUTS))
        self.assertEqual(set(missing), lost)

    def test_cluster_node_marks_itself_for_repair(self):
        # In a cluster, a node whose log lost acknowledged writes says so:
        # data_dir/REPAIR holds the reason, info.cluster.needs_repair is
        # true, and the mark outlives a restart (a repair clears it).
        keys, path = self.crash_image()
        self.flip_middle(path)
        cluster = ('engine = { sync = "always" },\n  log = { level = "info" }',
                   [self.node.addr], "disk-test-secret",
                   'moor.space("default", { n = 1, r = 1, w = 1 })\n')
        self.node.write_config(*cluster)
        # The first start fails after the engine recovered (and deleted the
        # damaged segments): the mark must already be on disk.
        busy = socket.socket()
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind((self.node.host, self.node.port))
        busy.listen(1)
        status, out = self.node.exit_status()
        busy.close()
        self.assertEqual(status, 2, out)
        self.assertTrue(os.path.exists(os.path.join(self.node.data, "REPAIR")), out)
        for run in (1, 2):
            self.node.start()
            c = self.node.conn(10)
            err, info = c.call("info")
            c.close()
            self.assertIsNone(err, err)
            self.assertIs(info["cluster"]["needs_repair"], True, info["cluster"])
            self.assertIn("commit log was damaged", info["cluster"]["repair_reason"])
            with open(os.path.join(self.node.data, "REPAIR")) as f:
                self.assertIn("1 write(s) lost", f.read())
            self.assertIn("needs a repair", self.node.logtail(100000))
            self.node.stop()

    def test_torn_tail_never_stops(self):
        keys, path = self.crash_image()
        last = wal_records(path)[-1]
        with open(path, "r+b") as f:
            f.truncate(last[0] + last[1] - 3)
        self.node.configure('sync = "always", wal_recovery = "stop"')
        self.node.start()
        eng = self.node.info()["engine"]
        self.assertEqual(eng["wal_damaged"], 0, eng)
        self.assertEqual(eng["wal_torn_bytes"], last[1] - 3, eng)
        c = self.node.conn(30)
        absent = [k for k in keys if c.call("get", k)[1] is None]
        c.close()
        self.assertEqual(len(absent), 1, absent)   # the torn record's put, never acknowledged


class DiskFullTest(unittest.TestCase):
    def setUp(self):
        if not MOUNT_OK:
            self.skipTest("needs root and unshare --mount for a tmpfs")
        self.tmp = tempfile.mkdtemp(prefix="moor-diskfull-")
        self.disk = os.path.join(self.tmp, "disk")
        os.makedirs(self.disk)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", self.disk],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            self.skipTest("mount tmpfs: %s" % r.stderr.strip())
        self.node = Node('sync = "always", memtable_mb = 1',
                         data=os.path.join(self.disk, "data"))
        self.node.start()

    def tearDown(self):
        self.node.cleanup()
        subprocess.run(["umount", "-l", self.disk], capture_output=True, timeout=30)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def fill(self, room):
        """Fills the tmpfs with disk/filler, leaving about room bytes."""
        st = os.statvfs(self.disk)
        left = st.f_bavail * st.f_frsize - room
        with open(os.path.join(self.disk, "filler"), "wb") as f:
            chunk = b"\xaa" * 65536
            while left > 0:
                try:
                    f.write(chunk[:min(left, len(chunk))])
                    f.flush()
                except OSError:
                    break
                left -= len(chunk)

    def test_no_space_then_space_again(self):
        c = self.node.conn(30)
        big = "v" * 4000
        self.fill(600 * 1024)
        acked, refused = [], None
        for i in range(20000):
            err, _ = c.call("put", "f%06d" % i, big)
            if err is None:
                acked.append(i)
                continue
            refused = (i, err)
            break
        self.assertIsNotNone(refused, "the disk never filled")
        self.assertEqual(refused[1][0], "NO_SPACE", refused)
        for _ in range(5):          # refused at once while full, never READ_ONLY
            err, _ = c.call("put", "again", big)
            self.assertIsNotNone(err)
            self.assertEqual(err[0], "NO_SPACE", err)
        self.assertTrue(self.node.info()["engine"]["no_space"])
        self.assertFalse(self.node.info()["engine"]["read_only"])
        for i in acked:             # reads go on
            err, res = c.call("get", "f%06d" % i)
            self.assertIsNone(err, err)
            self.assertEqual(res["values"], [big], i)
        os.unlink(os.path.join(self.disk, "filler"))
        deadline, tries = time.time() + 20, 0
        while True:                 # the node notices by itself: no restart
            tries += 1
            err, _ = c.call("put", "again", big)
            if err is None:
                break
            self.assertEqual(err[0], "NO_SPACE", err)
            self.assertLess(time.time(), deadline, "still NO_SPACE 20 s after space was freed")
            time.sleep(0.05)
        more = list(range(refused[0] + 1, refused[0] + 200))
        for i in more:
            err, _ = c.call("put", "f%06d" % i, big)
            self.assertIsNone(err, err)
        self.assertFalse(poll(lambda: self.node.info()["engine"]["no_space"], 10))
        c.close()
        print("disk full after %d puts; writes again after %d tries" % (len(acked), tries))
        self.assertEqual(self.node.stop(), 0)
        self.node.start()
        c = self.node.conn(30)
        for i in acked + more:
            err, res = c.call("get", "f%06d" % i)
            self.assertIsNone(err, err)
            self.assertIsNotNone(res, "acknowledged put %d lost" % i)
            self.assertEqual(res["values"], [big], i)
        c.close()
        self.assertNotIn("READ_ONLY", self.node.logtail(100000))

    def test_snapshot_on_a_full_disk(self):
        """A snapshot that does not fit answers NO_SPACE and leaves nothing
        behind; once space is back the next one is whole (README
        "Snapshots and restore")."""
        c = self.node.conn(30)
        keys = ["s%05d" % i for i in range(300)]
        for err, _ in moortest.pipelined(c, [("put", k, "v" * 2000) for k in keys]):
            self.assertIsNone(err, err)
        self.fill(96 * 1024)        # the memtable's ~600 KB of log cannot be copied
        err, _ = c.call("snapshot", {"tag": "full"})
        self.assertIsNotNone(err)
        self.assertEqual(err[0], "NO_SPACE", err)
        self.assertEqual(os.listdir(os.path.join(self.node.data, "snapshots")), [])
        self.assertEqual(c.call("snapshot", {"op": "list"}), (None, []))
        self.assertIsNone(c.call("get", keys[0])[0])   # the node serves on
        os.unlink(os.path.join(self.disk, "filler"))
        err, snap = c.call("snapshot", {"tag": "room"})
        self.assertIsNone(err, err)
        self.assertEqual([s["name"] for s in c.call("snapshot", {"op": "list"})[1]],
                         [snap["name"]])
        c.close()


def main():
    global BUILD, MOUNT_OK
    args, rest = moortest.parse_args(BUILD)
    BUILD = args.build
    outer = os.environ.get(NS_ENV)
    if outer is None:
        enter_namespace()   # returns only when it cannot: the full-disk tests then skip
    elif outer != mntns_id():
        MOUNT_OK = True
    t0 = time.time()
    ok = moortest.run_unittest(rest)
    print("disk_test: %.1f s" % (time.time() - t0))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
