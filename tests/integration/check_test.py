#!/usr/bin/python3
"""check_test.py -- `moord CONFIG --check` and its resolver law checks.

--check validates the config and runs every resolver it registers
(moor.resolver and resolvers.* plugins) through lua/moor/laws.lua inside
the node's Lua host (core/lua/laws.c): exit 0 when every resolver is
commutative, associative and idempotent (or the laws its check options
name), 1 when one is not -- its line names the law and the failing
siblings -- and 2 for a broken config.  Each case writes a config into a
temporary directory and runs moord with a bounded timeout; nothing is
started that outlives its subprocess.run.

usage: check_test.py --build BUILD_DIR [-k NAME]
"""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import moortest
from moortest import ROOT

BUILD = moortest.DEFAULT_BUILD
RUN_S = 120  # bound on one moord --check

HEAD = """moor.cfg{ node = "n1", listen = "127.0.0.1:7799", data_dir = "%s/data" %s }
"""

MAX = """
moor.resolver("max", function(siblings)
  local best
  for _, s in ipairs(siblings) do
    if not s.tombstone and (best == nil or s.value > best) then best = s.value end
  end
  return best
end%s)
"""


class CheckTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="moor-check-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def check(self, body, cfg_extra="", args=()):
        conf = os.path.join(self.dir, "conf.lua")
        with open(conf, "w") as f:
            f.write(HEAD % (self.dir, cfg_extra) + body)
        r = subprocess.run([os.path.join(BUILD, "moord"), conf, "--check"] + list(args),
                           capture_output=True, text=True, timeout=RUN_S,
                           env=dict(os.environ, MOOR_ROOT=ROOT))
        return r.returncode, r.stdout, r.stderr

    def lines(self, out, name):
        return [l for l in out.splitlines() if l.startswith("resolver '%s': " % name)]

    def test_plugins_and_a_lawful_resolver_pass(self):
        code, out, err = self.check(
            MAX % ', { values = "number" }',
            ', plugins = { "resolvers.lww", "resolvers.set_union", "resolvers.counter" }')
        self.assertEqual(code, 0, out + err)
        for name in ("counter", "lww", "max", "set_union"):
            got = self.lines(out, name)
            self.assertEqual(len(got), 1, out)
            self.assertIn("ok (commutative, associative, idempotent; 200 runs)", got[0])
        self.assertIn("is valid (node n1", out)

    def test_not_commutative(self):
        code, out, err = self.check(
            'moor.resolver("first", function(s) return s[1].value end, { values = "integer" })\n')
        self.assertEqual(code, 1, out + err)
        line = self.lines(out, "first")[0]
        self.assertIn("not commutative: siblings {{value = ", line)
        self.assertIn("but in the order {{", line)
        self.assertIn("moord: 1 of 1 resolver breaks a law: 'first'", out)

    def test_not_associative(self):
        code, out, err = self.check("""
moor.resolver("mean", function(siblings)
  local sum, n = 0, 0
  for _, s in ipairs(siblings) do
    if not s.tombstone then sum, n = sum + s.value, n + 1 end
  end
  if n > 0 then return sum / n end
end, { values = "integer", laws = { "commutative", "associative" } })
""")
        self.assertEqual(code, 1, out + err)
        line = self.lines(out, "mean")
        self.assertEqual(len(line), 1, out)
        self.assertIn("not associative: ", line[0])
        self.assertIn("{value = ", line[0])

    def test_not_idempotent_and_laws_narrow_the_check(self):
        body = """
moor.resolver("sum", function(siblings)
  local t = 0
  for _, s in ipairs(siblings) do if not s.tombstone then t = t + s.value end end
  return t
end, { values = "integer"%s })
"""
        code, out, err = self.check(body % "")
        self.assertEqual(code, 1, out + err)
        line = self.lines(out, "sum")[0]
        self.assertIn("not idempotent: the same sibling twice, {{value = ", line)
        # a sum is commutative and associative: checked for those only, it passes
        code, out, err = self.check(body % ', laws = { "commutative", "associative" }')
        self.assertEqual(code, 0, out + err)
        self.assertIn("ok (commutative, associative; 200 runs)", self.lines(out, "sum")[0])

    def test_errors_and_budgets_are_failures_with_the_input(self):
        code, out, err = self.check(MAX % "" + """
moor.resolver("spin", function() while true do end end, { runs = 5 })
moor.resolver("fn", function() return function() end end, { runs = 5 })
""")
        self.assertEqual(code, 1, out + err)
        # the default values mix strings and numbers: max compares them
        self.assertIn("raised an error: ", self.lines(out, "max")[0])
        self.assertIn("attempt to compare", self.lines(out, "max")[0])
        self.assertIn("; siblings: {{", self.lines(out, "max")[0])
        self.assertIn("over its instruction budget; siblings: {{", self.lines(out, "spin")[0])
        self.assertIn("cannot be encoded", self.lines(out, "fn")[0])
        self.assertIn("3 of 3 resolvers break a law", out)

    def test_deterministic(self):
        body = 'moor.resolver("first", function(s) return s[1].value end)\n'
        a = self.check(body)
        b = self.check(body)
        self.assertEqual(a, b)

    def test_broken_config_and_bad_check_options_exit_2(self):
        code, out, err = self.check("", ", lisen = 1")
        self.assertEqual(code, 2, out + err)
        self.assertIn("unknown key 'lisen'", err)
        code, out, err = self.check(MAX % ', { values = "numbers" }')
        self.assertEqual(code, 2, out + err)
        self.assertIn("moor.resolver('max'): values must be one of any, number", err)
        code, out, err = self.check(MAX % ', { laws = { "transitive" } }')
        self.assertEqual(code, 2, out + err)
        self.assertIn("laws[1] must be one of commutative, associative, idempotent", err)

    def test_shipped_configs_pass(self):
        for conf, args in (("conf/node.lua", []), ("conf/cluster.lua", ["--node", "n1"])):
            r = subprocess.run([os.path.join(BUILD, "moord"), os.path.join(ROOT, conf), "--check"]
                               + args, capture_output=True, text=True, timeout=RUN_S, cwd=ROOT,
                               env=dict(os.environ, MOOR_ROOT=ROOT))
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertNotIn("break", r.stdout)


def main():
    global BUILD
    args, rest = moortest.parse_args(BUILD)
    BUILD = args.build
    sys.exit(0 if moortest.run_unittest(rest) else 1)


if __name__ == "__main__":
    main()
