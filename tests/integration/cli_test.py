#!/usr/bin/python3
"""cli_test.py -- the `moor` command line against a real moord (README
"Clients", "The moor CLI").

Values from a file (@FILE) and from stdin (-), 200 KB each, read back
byte for byte; --raw (str) and --bin (bin) values, get --raw/--bin bare
bytes and get --out FILE; a binary key given as --key-hex and as
{"$bin": base64} (the same key); put twice leaves one value and del
removes it (put and del read the ctx first); --blind twice makes
siblings, get says so on stderr with a merge command line that works
as printed; the ctx get prints is what `call cas` and --ctx take
unchanged (and a bare base64 --ctx still is); --json makes every command
print one JSON value; people's output (PONG, key: value, tables); bad
input (missing file, bad hex, bad base64, bad JSON, options that exclude
each other) exits 2 with a message; a value over the node's value_max
exits 1 with VALUE_TOO_LARGE.

One node on 127.0.0.1 (harness: moortest.py); every command is bounded by
a timeout and the node is killed at exit.

usage: cli_test.py --build BUILD_DIR [-k NAME]
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import moortest

BUILD = moortest.DEFAULT_BUILD
NODE = None
TMP = None


def setUpModule():
    global NODE, TMP
    TMP = tempfile.mkdtemp(prefix="moor-cli-")
    NODE = moortest.Node(BUILD, os.path.join(TMP, "node"), "c1")
    NODE.write_config('engine = { sync = "interval", memtable_mb = 4 },\n'
                      '  log = { level = "warn" }, limits = { value_max_mb = 1 },\n'
                      '  plugins = { "handlers.cas" }',
                      script='moor.handle("echo", function(...) return {...} end)\n')
    NODE.start()


def tearDownModule():
    NODE.cleanup()
    shutil.rmtree(TMP, ignore_errors=True)


def moor(*args, stdin=None, text=True):
    """Runs moor against the node: (exit status, stdout, stderr)."""
    r = subprocess.run([os.path.join(BUILD, "moor"), "-h", NODE.addr] + list(args),
                       input=stdin, capture_output=True, text=text, timeout=60)
    return r.returncode, r.stdout, r.stderr


def jmoor(*args, stdin=None):
    """moor ... --json, which must succeed: its stdout parsed."""
    rc, out, err = moor(*(list(args) + ["--json"]), stdin=stdin)
    assert rc == 0, "moor %s: exit %d: %s" % (" ".join(args), rc, err)
    return json.loads(out)


def path(name):
    return os.path.join(TMP, name)


class Values(unittest.TestCase):
    def test_200kb_from_file_and_stdin(self):
        text = "".join(chr(0x41 + i % 26) for i in range(200 * 1024))
        with open(path("big.json"), "w") as f:
            json.dump({"text": text}, f)
        jmoor("put", "big-file", "@" + path("big.json"))
        self.assertEqual(jmoor("get", "big-file")["values"], [{"text": text}])
        # stdin, as JSON and as a raw string
        jmoor("put", "big-stdin", "-", stdin=json.dumps([text]))
        self.assertEqual(jmoor("get", "big-stdin")["values"], [[text]])
        jmoor("put", "big-raw", "-", "--raw", stdin=text)
        rc, out, err = moor("get", "big-raw", "--raw")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, text + "\n")

    def test_binary_value_bin_and_out(self):
        data = bytes((i * 131 + 7) % 256 for i in range(200 * 1024))  # NULs, bad UTF-8
        with open(path("big.bin"), "wb") as f:
            f.write(data)
        jmoor("put", "bin-file", "@" + path("big.bin"), "--bin")
        rc, out, err = moor("get", "bin-file", "--out", path("out.bin"))
        self.assertEqual(rc, 0, err)
        self.assertIn("bytes: %d" % len(data), out)
        with open(path("out.bin"), "rb") as f:
            self.assertEqual(f.read(), data)
        rc, out, err = moor("get", "bin-file", "--bin", text=False)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, data + b"\n")
        # stdin as bin, and the JSON form of bin
        rc, out, err = moor("put", "bin-stdin", "-", "--bin", stdin=b"\x00\x01\xff", text=False)
        self.assertEqual(rc, 0, err)
        self.assertEqual(jmoor("get", "bin-stdin")["values"], [{"$bin": "AAH/"}])
        res = jmoor("get", "bin-file", "--out", path("out2.bin"))
        self.assertEqual(res["bytes"], len(data))
        self.assertIn("$bin", res["ctx"])

    def test_literal_at_and_raw(self):
        jmoor("put", "at", "@@home", "--raw")
        self.assertEqual(jmoor("get", "at")["values"], ["@home"])
        jmoor("put", "at2", '@@@"', "--raw")
        self.assertEqual(jmoor("get", "at2")["values"], ['@@"'])

    def test_over_value_max(self):
        with open(path("2mb.bin"), "wb") as f:
            f.write(b"x" * (2 << 20))
        rc, out, err = moor("put", "huge", "@" + path("2mb.bin"), "--bin")
        self.assertEqual(rc, 1, out + err)
        self.assertIn("VALUE_TOO_LARGE", err)


class Keys(unittest.TestCase):
    def test_binary_key_both_forms(self):
        jmoor("put", "--key-hex", "00ff10", '"by-hex"')
        self.assertEqual(jmoor("get", '{"$bin": "AP8Q"}')["values"], ["by-hex"])
        jmoor("put", '{"$bin":"AP8Q"}', '"by-b64"')
        res = jmoor("get", "--key-hex", "00FF10")
        self.assertEqual(res["values"], ["by-b64"])     # replaced: one key both ways
        self.assertEqual(jmoor("where", "--key-hex", "00ff10")["replicas"], ["c1"])
        jmoor("del", "--key-hex", "00ff10")
        self.assertIsNone(jmoor("get", '{"$bin":"AP8Q"}'))
        # the text key that spells the same characters is another key
        self.assertIsNone(jmoor("get", "AP8Q"))


class Writes(unittest.TestCase):
    def test_put_twice_one_value_then_del(self):
        jmoor("put", "w1", '{"v": 1}')
        jmoor("put", "w1", '{"v": 2}')
        res = jmoor("get", "w1")
        self.assertEqual(res["values"], [{"v": 2}])
        self.assertEqual(list(res["ctx"]), ["$bin"])
        rc, out, err = moor("get", "w1")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.splitlines()[0], '{"v":2}')
        self.assertEqual(out.splitlines()[1], 'ctx: ' + json.dumps(res["ctx"], separators=(",", ":")))
        self.assertEqual(err, "")
        rc, out, err = moor("del", "w1")
        self.assertEqual((rc, out), (0, "deleted\n"), err)
        self.assertIsNone(jmoor("get", "w1"))
        rc, out, err = moor("get", "w1")
        self.assertEqual((rc, out), (0, "(not found)\n"), err)
        self.assertEqual(moor("get", "w1", "--raw"), (0, "", "(not found)\n"))

    def test_blind_siblings_and_merge(self):
        jmoor("put", "s1", '"a"', "--blind")
        jmoor("put", "s1", '"b"', "--blind")
        res = jmoor("get", "s1")
        self.assertEqual(sorted(res["siblings"]), ["a", "b"])
        self.assertIn("clock", res)
        rc, out, err = moor("get", "s1")
        self.assertEqual(rc, 0, err)
        self.assertIn('"a"\n', out)
        self.assertIn('"b"\n', out)
        m = re.search(r"^2 siblings \(concurrent writes\)\. To merge: moor put s1 VALUE "
                      r"--ctx '(\{\"\$bin\":\"[A-Za-z0-9+/=]+\"\})' writes one value over all of "
                      r"them, or configure a resolver for the space \(README \"Resolvers\"\)$",
                      err, re.M)
        self.assertTrue(m, err)
        self.assertEqual(json.loads(m.group(1)), res["ctx"])
        # the printed line, as printed
        jmoor("put", "s1", '"merged"', "--ctx", m.group(1))
        self.assertEqual(jmoor("get", "s1")["values"], ["merged"])
        # --blind del leaves a tombstone beside the value; the default del removes it all
        jmoor("put", "s1", '"c"', "--blind")
        jmoor("del", "s1")
        self.assertIsNone(jmoor("get", "s1"))

    def test_space_in_merge_hint(self):
        jmoor("put", "key with space", "1", "--blind")
        jmoor("put", "key with space", "2", "--blind")
        rc, out, err = moor("get", "key with space")
        self.assertIn("moor put 'key with space' VALUE --ctx", err)
        jmoor("put", "--key-hex", "0102", "1", "--blind")
        jmoor("put", "--key-hex", "0102", "2", "--blind")
        rc, out, err = moor("get", "--key-hex", "0102")
        self.assertIn("moor put --key-hex 0102 VALUE --ctx", err)

    def test_ctx_forms(self):
        ctx = jmoor("put", "c1", '"one"')["ctx"]
        # call cas takes the ctx JSON as printed, unchanged
        cas = jmoor("call", "cas", '"c1"', json.dumps(ctx), '"two"')
        self.assertTrue(cas["ok"], cas)
        self.assertEqual(jmoor("get", "c1")["values"], ["two"])
        # --ctx: the {"$bin"} form and (as before) bare base64
        ctx = jmoor("get", "c1")["ctx"]
        jmoor("put", "c1", '"three"', "--ctx", ctx["$bin"])
        self.assertEqual(jmoor("get", "c1")["values"], ["three"])
        rec = jmoor("put", "c1", '"four"', "--receipt")
        self.assertEqual(rec["receipt"][0]["status"], "ok")
        self.assertEqual(list(rec["ctx"]), ["$bin"])


class Output(unittest.TestCase):
    def test_json_everywhere(self):
        jmoor("put", "j", "[1, 2.5, null]")
        self.assertEqual(jmoor("get", "j")["values"], [[1, 2.5, None]])
        self.assertEqual(jmoor("ping"), {"pong": True, "node": "c1"})
        self.assertEqual(jmoor("info")["node"], "c1")
        self.assertEqual(jmoor("ring")["nodes"][0]["id"], "c1")
        self.assertEqual(jmoor("load")["nodes"][0]["id"], "c1")
        self.assertEqual(jmoor("where", "j"), {"replicas": ["c1"], "fallbacks": []})
        self.assertEqual(jmoor("call", "echo", '"x"', "2"), ["x", 2])
        self.assertIs(jmoor("del", "j"), True)
        rc, out, err = moor("bench", "--duration", "0.2", "--conns", "1", "--keys", "10",
                            "--json")
        self.assertEqual(rc, 0, err)
        self.assertGreater(json.loads(out)["ops"], 0)

    def test_people(self):
        self.assertEqual(moor("ping")[:2], (0, "PONG from c1\n"))
        rc, out, err = moor("info")
        self.assertEqual(rc, 0, err)
        self.assertIn("node: c1\n", out)
        self.assertRegex(out, r"\nengine\.[a-z_]+: ")
        self.assertEqual(moor("where", "x")[:2], (0, "replicas: c1\nfallbacks: -\n"))
        rc, out, err = moor("load")
        self.assertEqual(rc, 0, err)
        self.assertTrue(out.startswith("id "), out)
        self.assertIn(" status ", out.splitlines()[0])
        self.assertTrue(out.splitlines()[1].startswith("c1 "), out)
        rc, out, err = moor("ring")
        self.assertIn("* c1", out)
        rc, out, err = moor("put", "p", '"v"')
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r'^OK\nctx: \{"\$bin":"[^"]+"\}\n$')

    def test_help(self):
        rc, out, err = moor("--help")
        self.assertEqual(rc, 0)
        for word in ("--raw", "--bin", "@FILE", "--key-hex", "--blind", "--json", "--out",
                     "@@TEXT", "not atomic"):
            self.assertIn(word, err)


class BadInput(unittest.TestCase):
    def bad(self, *args, want):
        rc, out, err = moor(*args)
        self.assertEqual(rc, 2, "%s: %s %s" % (args, out, err))
        self.assertIn(want, err)
        self.assertEqual(out, "")

    def test_bad_words(self):
        self.bad("put", "k", "@" + path("missing"), want="cannot open: No such file")
        self.bad("get", "--key-hex", "0g", want="--key-hex: hex: not a hex digit")
        self.bad("get", "--key-hex", "abc", want="odd number")
        self.bad("get", '{"$bin":"!!"}', want="KEY: JSON: bad base64")
        self.bad("put", "k", "1", "--ctx", '{"$bin":"@@"}', want="--ctx: JSON: bad base64")
        self.bad("put", "k", "1", "--ctx", "not base64!", want="--ctx")
        self.bad("put", "k", "{bad", want="VALUE: JSON")
        self.bad("put", "k", "1", "--raw", "--bin", want="exclude each other")
        self.bad("put", "k", "1", "--ctx", "AAAA", "--blind", want="exclude each other")
        self.bad("get", "k", "--raw", "--json", want="not with --json")
        self.bad("where", "k", "--blind", want="does not apply")
        self.bad("get", "--key-hex", "00", "extra", want="besides --key-hex")


def main():
    global BUILD
    args, rest = moortest.parse_args(BUILD)
    BUILD = args.build
    sys.exit(0 if moortest.run_unittest(rest) else 1)


if __name__ == "__main__":
    main()
