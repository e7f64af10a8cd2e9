#!/usr/bin/python3
"""rejoin_test.py -- a node down longer than the tombstone grace.

A one-node cluster (seeds = itself) with tombstone_grace_s = 60 runs once,
so its data directory holds data_dir/HLC; the test then writes an HLC mark
from an hour ago (the mark a node that stopped an hour ago left), and
moord must refuse to start, saying why and what to do; with
--force-rejoin it starts, and a fresh data directory starts too.  Every
moord started is killed at exit; every wait is bounded.

usage: rejoin_test.py --build BUILD_DIR [-k NAME]
"""
import os
import shutil
import struct
import subprocess
import sys
import time
import unittest

import moortest

BUILD = moortest.DEFAULT_BUILD


def crc32c(data):
    """CRC-32C (Castagnoli), as util/crc32c.c computes it."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def write_hlc(path, micros):
    v = struct.pack("<Q", micros)
    with open(path, "wb") as f:
        f.write(v + struct.pack("<I", crc32c(v)))


class RejoinTest(unittest.TestCase):
    def test_refuses_past_the_grace(self):
        cl = moortest.Cluster(BUILD, 1, settings="tombstone_grace_s = 60,",
                              script='moor.space("default", {n = 1})\n')
        node = cl.nodes[0]
        node.start()
        c = node.conn(15)
        self.assertIsNone(c.call("put", "k", "v")[0])
        c.close()
        self.assertEqual(node.stop(), 0)
        hlc = os.path.join(node.data, "HLC")
        self.assertTrue(os.path.exists(hlc))
        write_hlc(hlc, int((time.time() - 3600) * 1e6))
        out = subprocess.run([os.path.join(BUILD, "moord"), node.conf], capture_output=True,
                             timeout=30, env=dict(os.environ, MOOR_ROOT=moortest.ROOT))
        text = (out.stdout + out.stderr).decode(errors="replace")
        print("moord without --force-rejoin exited %d: %s" % (out.returncode, text.strip()[-300:]))
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("longer than the tombstone grace (60 s)", text)
        self.assertIn("--force-rejoin", text)
        # --force-rejoin: it starts and serves what it held
        proc = subprocess.Popen([os.path.join(BUILD, "moord"), node.conf, "--force-rejoin"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                preexec_fn=moortest.die_with_parent,
                                env=dict(os.environ, MOOR_ROOT=moortest.ROOT))
        moortest.PROCS.append(proc)
        try:
            deadline = time.time() + 15
            while True:
                try:
                    c = node.conn(2)
                    err, res = c.call("get", "k")
                    c.close()
                    break
                except OSError:
                    self.assertLess(time.time(), deadline, "moord --force-rejoin did not listen")
                    time.sleep(0.1)
            self.assertIsNone(err, err)
            self.assertEqual(res["values"], ["v"])
        finally:
            proc.terminate()
            proc.wait(20)
        # a wiped data directory starts as a new replica
        write_hlc(hlc, int((time.time() - 3600) * 1e6))
        shutil.rmtree(node.data)
        node.start()
        self.assertEqual(node.stop(), 0)


def main():
    global BUILD
    args, rest = moortest.parse_args()
    BUILD = args.build
    sys.exit(0 if moortest.run_unittest(rest) else 1)


if __name__ == "__main__":
    main()
