#!/usr/bin/python3
"""bench_test.py -- `moor bench` against a real moord, so the load
generator (and the handler path it drives) cannot break silently.

One node with a trivial handler (`get1`: moor.get of its argument) and one
that always fails (`boom`); short runs (1 s) of `moor bench` with puts,
gets and `--call`, each checked for ops > 0 and no errors (or, for `boom`,
every answer counted as an error and a non-zero exit).  No assertion on
speed.  Every wait is bounded; the node is killed at the end.

usage: bench_test.py --build BUILD_DIR [-k NAME]
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

import moortest

BUILD = moortest.DEFAULT_BUILD

SCRIPT = ('moor.handle("get1", function(k) return moor.get(k) end)\n'
          'moor.handle("boom", function(k) error("boom " .. k) end)\n')


def bench(node, *args):
    """(exit status, the JSON summary or None, stdout) of one moor bench run."""
    r = subprocess.run([os.path.join(BUILD, "moor"), "-h", node.addr, "bench"] + list(args),
                       capture_output=True, text=True, timeout=60)
    lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
    return r.returncode, json.loads(lines[-1]) if lines else None, r.stdout + r.stderr


class BenchTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = moortest.Node(BUILD, tempfile.mkdtemp(prefix="moor-bench-test-"), "b1")
        cls.node.write_config('engine = { sync = "interval", memtable_mb = 4 },\n'
                              '  log = { level = "warn" }', script=SCRIPT)
        cls.node.start()
        # Every key the runs below touch exists, so get1 answers found values.
        c = cls.node.conn()
        try:
            for err, _ in moortest.pipelined(c, [("put", "key:%d" % i, b"v" * 100)
                                                 for i in range(100)]):
                assert err is None, err
        finally:
            c.close()

    @classmethod
    def tearDownClass(cls):
        cls.node.cleanup()

    def check_ok(self, *args, keys="100"):
        rc, x, out = bench(self.node, "--conns", "4", "--keys", keys, "--duration", "1", *args)
        self.assertEqual(rc, 0, out)
        self.assertIsNotNone(x, out)
        self.assertGreater(x["ops"], 0, out)
        self.assertEqual(x["errors"], 0, out)
        self.assertEqual(x["lost"], 0, out)
        return x, out

    def test_put_get(self):
        # Blind puts add a sibling each: a key space far larger than a
        # second's puts stays under sibling_max.
        self.check_ok("--ratio", "0", "--pipeline", "4", keys="10000000")
        self.check_ok("--ratio", "1", "--pipeline", "4")

    def test_overwrite(self):
        # Overwriting puts on a small key space: no sibling piles up, so
        # thousands of puts on 5 keys never reach sibling_max.
        self.check_ok("--ratio", "0", "--pipeline", "8", "--overwrite", keys="5")
        c = self.node.conn()
        try:
            err, res = c.call("get", "key:0")
            self.assertIsNone(err, err)
            self.assertEqual(len(res["values"]), 1, res)
        finally:
            c.close()
        rc, _, out = bench(self.node, "--call", "get1", "--overwrite")
        self.assertEqual(rc, 2, out)
        self.assertIn("--overwrite does not apply to --call", out)

    def test_call(self):
        for pipeline in ("1", "16"):
            x, out = self.check_ok("--call", "get1", "--pipeline", pipeline)
            self.assertEqual(x["call"], "get1")
            self.assertIn("calls of handler 'get1'", out)

    def test_call_errors_counted(self):
        rc, x, out = bench(self.node, "--conns", "2", "--pipeline", "2", "--keys", "10",
                           "--duration", "0.5", "--call", "boom")
        self.assertEqual(rc, 1, out)                # every answer was an error
        self.assertGreater(x["ops"], 0, out)
        self.assertEqual(x["errors"], x["ops"], out)
        self.assertIn("HANDLER_ERROR", out)
        rc, x, out = bench(self.node, "--duration", "0.5", "--call", "nosuch")
        self.assertEqual(rc, 1, out)
        self.assertEqual(x["errors"], x["ops"], out)

    def test_call_usage(self):
        rc, _, out = bench(self.node, "--call", "get1", "--space", "default")
        self.assertEqual(rc, 2, out)
        self.assertIn("--space does not apply to --call", out)
        rc, _, out = bench(self.node, "--call")
        self.assertEqual(rc, 2, out)
        self.assertIn("--call needs a value", out)


if __name__ == "__main__":
    args, rest = moortest.parse_args()
    BUILD = args.build
    sys.exit(0 if moortest.run_unittest(rest) else 1)
