#!/usr/bin/python3
"""reload_test.py -- `moor reload` and SIGHUP on a real moord (issue 13).

Under a steady load (several pipelining connections doing put, get and
call for the whole test), a handler's body changes in the config file and
is reloaded through the method and through SIGHUP: calls made after the
reload answered see the new body, no request fails and no connection is
dropped.  A keyspace's r, w and resolver and the log level change live
(info.config and a get over siblings show it).  A config with a syntax
error, one that raises, one that changes listen or data_dir, and one that
never ends are refused with the reason while the old handlers keep
answering; the endless one also stops moord at start (exit 2, the budget
message).  Concurrent reloads are serialized: every one is answered OK.
On a 3-node cluster a reload changes the gossip tunables and a space's
levels on every node while the cluster stays converged.

Nothing here asserts a duration: waits are bounded, outcomes are counted.
Uses the shared harness moortest.py.

usage: reload_test.py --build BUILD_DIR [-k NAME]
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import moortest
from moortest import ROOT

BUILD = moortest.DEFAULT_BUILD
WAIT_S = 30  # bound on every wait for the node to act


def handlers(version):
    """The handlers of every config here: `ver` answers version; `slow`
    makes 20 puts (each waits for the commit log, so it is in flight
    across a reload) and answers the version it started on."""
    return ('moor.handle("ver", function() return %d end)\n'
            'moor.handle("slow", function(k)\n'
            '  for i = 1, 20 do assert(moor.put(k .. i, i, { overwrite = true })) end\n'
            '  return %d\n'
            'end)\n' % (version, version))


class Load(threading.Thread):
    """conns connections, each sending batches of put/get/call(ver)/
    call(slow) pipelined until stop(); counts answers, errors and
    connections lost, and keeps the last `ver` answer per connection."""

    def __init__(self, node, conns=4, batch=32):
        super().__init__(daemon=True)
        self.node, self.nconns, self.batch = node, conns, batch
        self.answers = self.errors = self.dropped = 0
        self.first_errors = []
        self.last_ver = {}
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.conns = [node.conn(20) for _ in range(conns)]

    def run(self):
        i = 0
        while not self.halt.is_set():
            for ci, c in enumerate(self.conns):
                if c is None:
                    continue
                reqs = []
                for j in range(self.batch):
                    k = "load-%d-%d" % (ci, (i + j) % 500)
                    reqs.append([("put", k, i + j, {"overwrite": True}), ("get", k), ("call", "ver"),
                                 ("call", "slow", "s%d-" % ci)][j % 4])
                try:
                    out = moortest.pipelined(c, reqs, window=self.batch)
                except (OSError, ConnectionError) as e:
                    with self.lock:
                        self.dropped += 1
                        self.first_errors.append("connection %d: %s" % (ci, e))
                    self.conns[ci] = None
                    continue
                with self.lock:
                    for req, (err, res) in zip(reqs, out):
                        self.answers += 1
                        if err is not None:
                            self.errors += 1
                            if len(self.first_errors) < 5:
                                self.first_errors.append("%r: %r" % (req, err))
                        elif req == ("call", "ver"):
                            self.last_ver[ci] = res
            i += self.batch

    def wait_answers(self, more, timeout=WAIT_S):
        """Waits until `more` answers beyond the current count have come."""
        with self.lock:
            want = self.answers + more
        why = moortest.poll(lambda: None if self.answers >= want or not self.is_alive()
                            else "%d answers of %d" % (self.answers, want), timeout)
        if why:
            raise AssertionError("load stalled: " + why)

    def stop(self):
        self.halt.set()
        self.join(WAIT_S)
        for c in self.conns:
            if c is not None:
                c.close()


class ReloadTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="moor-reload-")
        self.node = moortest.Node(BUILD, os.path.join(self.tmp, "n1"), "n1")
        self.settings = 'log = { level = "info" }'
        self.script = handlers(1)
        self.write()
        self.node.start()
        self.ctl = self.node.conn(20)

    def tearDown(self):
        # a clean stop: every host (retired ones too) is freed, and a
        # sanitizer build reports what it found in the log
        self.ctl.close()
        status = self.node.stop()
        log = self.node.logtail(100000)
        self.node.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.assertEqual(status, 0, log[-3000:])
        self.assertNotIn("Sanitizer", log)

    def write(self, settings=None, script=None, raw=None):
        """Writes the config (moor.cfg{node, listen, data_dir, settings}
        then script), or raw text as the whole file."""
        if raw is not None:
            with open(self.node.conf, "w") as f:
                f.write(raw)
            return
        self.node.write_config(self.settings if settings is None else settings, script=(
            self.script if script is None else script))

    def read_conf(self):
        with open(self.node.conf) as f:
            return f.read()

    def reload(self):
        err, res = self.ctl.call("reload")
        return err, res

    def reload_ok(self):
        err, res = self.reload()
        self.assertIsNone(err, err)
        self.assertIs(res["ok"], True)
        return res

    def call_ver(self):
        err, res = self.ctl.call("call", "ver")
        self.assertIsNone(err, err)
        return res

    def log_count(self, text):
        with open(self.node.logpath, "rb") as f:
            return f.read().count(text.encode())

    def log_has(self, text):
        with open(self.node.logpath, "rb") as f:
            return text.encode() in f.read()

    def test_handler_changes_under_load(self):
        load = Load(self.node)
        load.start()
        try:
            load.wait_answers(2000)
            # through the method
            self.write(script=handlers(2))
            res = self.reload_ok()
            self.assertIn("handlers.ver", res["changed"])
            self.assertIn("handlers.slow", res["changed"])
            self.assertEqual(res["handlers"], 2)
            self.assertEqual(res["warnings"], [])
            self.assertEqual(self.call_ver(), 2)
            load.wait_answers(2000)
            with load.lock:
                self.assertEqual(set(load.last_ver.values()), {2}, load.last_ver)
            # through SIGHUP
            self.write(script=handlers(3))
            self.node.proc.send_signal(signal.SIGHUP)
            why = moortest.poll(lambda: None if self.call_ver() == 3 else "still the old one",
                                WAIT_S)
            self.assertIsNone(why, why)
            self.assertTrue(self.log_has("changed: handlers."))
            load.wait_answers(2000)
            with load.lock:
                self.assertEqual(set(load.last_ver.values()), {3}, load.last_ver)
        finally:
            load.stop()
        info = self.node.info()
        print("  %d answers under load, %d errors, %d connections dropped; info.lua %r"
              % (load.answers, load.errors, load.dropped, info["lua"]), flush=True)
        self.assertEqual(load.errors, 0, load.first_errors)
        self.assertEqual(load.dropped, 0, load.first_errors)
        self.assertTrue(self.node.alive())
        self.assertEqual(info["config"]["reloads"], 2)
        # the retired hosts are freed once their calls are done
        why = moortest.poll(lambda: None if self.node.info()["lua"]["hosts_retiring"] == 0
                            else "hosts still retiring", WAIT_S)
        self.assertIsNone(why, why)

    def test_call_in_flight_finishes_on_the_old_host(self):
        # sync = always: each put of `slow` waits for an fdatasync, so the
        # call is still suspended in a put when the reload is taken
        self.write(settings='engine = { sync = "always" }, log = { level = "info" }')
        self.node.stop()
        self.node.start()
        self.ctl.close()
        self.ctl = self.node.conn(20)
        a = self.node.conn(20)
        try:
            for attempt in range(1, 6):
                self.write(settings='engine = { sync = "always" }, log = { level = "info" }',
                           script=handlers(10 + attempt))
                mid = a.send("call", "slow", "inflight-%d-" % attempt)
                self.reload_ok()
                early = a.poll(0)
                pending = not early
                msg = early[0] if early else a.recv()
                self.assertEqual(msg[1], mid)
                self.assertIsNone(msg[2], msg[2])
                # started on the host of handlers(10 + attempt - 1), finished there
                self.assertEqual(msg[3], 10 + attempt - 1 if attempt > 1 else 1)
                self.assertEqual(self.call_ver(), 10 + attempt)
                if pending:
                    print("  a call in flight across the reload (attempt %d) answered from "
                          "the old host" % attempt, flush=True)
                    break
            self.assertTrue(pending, "the slow call was never in flight across a reload")
        finally:
            a.close()

    def test_limits_and_budgets_live(self):
        spin = 'moor.handle("spin", function() local i = 0 while true do i = i + 1 end end)\n'
        self.write(script=handlers(1) + spin)
        self.reload_ok()
        err, _ = self.ctl.call("call", "spin")
        self.assertEqual(err[0], "HANDLER_TIMEOUT")
        self.assertIn("10000000 instructions", err[1])
        held = [self.node.conn(20) for _ in range(3)]  # with ctl: 4 open
        try:
            for c in held:  # accepted by the node, not only by the kernel
                self.assertEqual(c.call("ping")[0], None)
            self.write(settings='log = { level = "info" }, handler = { instructions = 100000 },'
                       ' limits = { max_conns = 3 }', script=handlers(1) + spin)
            res = self.reload_ok()
            self.assertEqual(sorted(res["changed"]),
                             ["handler.instructions", "limits.max_conns"])
            err, _ = self.ctl.call("call", "spin")
            self.assertEqual(err[0], "HANDLER_TIMEOUT")
            self.assertIn("over its budget of 100000 instructions", err[1])
            # open connections stay; a new one is over the limit
            for c in held:
                self.assertEqual(c.call("ping")[0], None)
            refused = self.ctl.call("info")[1]["server"]["refused"]
            extra = self.node.conn(20)
            with self.assertRaises((ConnectionError, OSError)):
                extra.call("ping")
            extra.close()
            self.assertEqual(self.ctl.call("info")[1]["server"]["refused"], refused + 1)
            self.write(settings='log = { level = "info" }', script=handlers(1) + spin)
            self.assertEqual(sorted(self.reload_ok()["changed"]),
                             ["handler.instructions", "limits.max_conns"])
            extra = self.node.conn(20)
            self.assertEqual(extra.call("ping")[0], None)
            extra.close()
        finally:
            for c in held:
                c.close()

    def siblings(self, key):
        for v in ("a", "b"):  # blind writes: concurrent, so siblings
            err, _ = self.ctl.call("put", key, v, {"space": "carts"})
            self.assertIsNone(err, err)
        err, res = self.ctl.call("get", key, {"space": "carts"})
        self.assertIsNone(err, err)
        return sorted(res["values"])

    def test_space_levels_resolver_and_log_level(self):
        # the set of keyspaces is restart-only: declared from the start
        self.write(script=handlers(1) + 'moor.space("carts", { n = 3, r = 2, w = 2 })\n')
        self.node.stop()
        self.node.start()
        self.ctl.close()
        self.ctl = self.node.conn(20)
        sp = self.node.info()["config"]["spaces"]["carts"]
        self.assertEqual((sp["n"], sp["r"], sp["w"], sp["resolver"]), (3, 2, 2, None))
        self.assertEqual(self.siblings("k1"), ["a", "b"])
        self.assertFalse(self.log_has(" DEBUG "))
        self.write(settings='log = { level = "debug" }',
                   script=handlers(1) + 'moor.space("carts", { n = 3, r = 1, w = "all",\n'
                   '  resolver = "first" })\n'
                   'moor.resolver("first", function(s)\n'
                   '  local best\n'
                   '  for _, x in ipairs(s) do\n'
                   '    if not x.tombstone and (best == nil or x.value < best) then\n'
                   '      best = x.value\n'
                   '    end\n'
                   '  end\n'
                   '  return best\n'
                   'end, { values = "string" })\n')
        res = self.reload_ok()
        self.assertEqual(sorted(res["changed"]),
                         ["log.level", "resolvers.first", "spaces.carts.r",
                          "spaces.carts.resolver", "spaces.carts.w"])
        self.assertEqual(res["resolvers"], 1)
        cfg = self.node.info()["config"]
        sp = cfg["spaces"]["carts"]
        self.assertEqual((sp["n"], sp["r"], sp["w"], sp["resolver"]), (3, 1, 3, "first"))
        self.assertEqual(cfg["log_level"], "debug")
        self.assertEqual(self.siblings("k2"), ["a"])  # resolved now
        why = moortest.poll(lambda: None if self.log_has(" DEBUG ") else "no debug line", WAIT_S)
        self.assertIsNone(why, why)

    def test_bad_configs_keep_the_running_one(self):
        good = self.read_conf()
        cases = [
            (good + "moor.handle('x', function() return 1 end\n",
             "node.lua:9: ')' expected (to close '(' at line 8)"),  # syntax
            (good + "error('boom in the config')\n", "node.lua:8: boom in the config"),
            (good + "local t = nil; t.x = 1\n", "node.lua:8: attempt to index"),
            (good.replace('"info"', '"loud"'), "log.level"),
        ]
        for text, want in cases:
            self.write(raw=text)
            err, res = self.reload()
            self.assertIsNotNone(err, "reload of a bad config answered %r" % (res,))
            self.assertEqual(err[0], "BAD_REQUEST")
            self.assertIn(want, err[1])
            self.assertEqual(self.call_ver(), 1)
        self.assertTrue(self.log_has("node.lua:8: boom in the config"))
        # and SIGHUP with a bad config: logged as an error, the node serves on
        failed = self.log_count("ERROR")
        self.assertEqual(failed, len(cases))
        self.node.proc.send_signal(signal.SIGHUP)
        why = moortest.poll(lambda: None if self.log_count("ERROR") == failed + 1
                            else "not logged", WAIT_S)
        self.assertIsNone(why, why)
        self.assertTrue(self.log_has("reload failed: " + err[1]))
        self.assertTrue(self.node.alive())
        self.assertEqual(self.call_ver(), 1)
        self.assertEqual(self.node.info()["config"]["reloads"], 0)

    def test_resolver_breaking_a_law_is_refused(self):
        # a changed resolver goes live only once its laws hold (README
        # "Resolvers": the law checks); the running config stays otherwise
        good = self.read_conf()
        first = ("moor.resolver('first', function(siblings)\n"
                 "  return siblings[1].value\nend)\n")
        self.write(raw=good + first)
        err, res = self.reload()
        self.assertIsNotNone(err, "a resolver that is not commutative went live: %r" % (res,))
        self.assertEqual(err[0], "BAD_REQUEST")
        self.assertIn("first", err[1])
        self.assertIn("not commutative", err[1])
        self.assertIn("the running config stays", err[1])
        self.assertEqual(self.call_ver(), 1)
        self.assertEqual(self.node.info()["config"]["reloads"], 0)
        # a lawful one is taken, and a reload that leaves it unchanged is
        # not checked again
        lawful = ("moor.resolver('biggest', function(siblings)\n"
                  "  local best\n"
                  "  for _, s in ipairs(siblings) do\n"
                  "    if not s.tombstone and (best == nil or tostring(s.value) > tostring(best)) then\n"
                  "      best = s.value\n"
                  "    end\n"
                  "  end\n"
                  "  return best\nend, { values = 'string' })\n")
        self.write(raw=good + lawful)
        res = self.reload_ok()
        self.assertIn("resolvers.biggest", res["changed"])
        self.write(raw=(good + lawful).replace('"info"', '"warn"'))
        res = self.reload_ok()
        self.assertNotIn("resolvers.biggest", res["changed"])
        # its check options alone changed: a change, checked again
        self.write(raw=(good + lawful).replace('"info"', '"warn"').replace(
            "values = 'string' }", "values = 'string', runs = 50 }"))
        res = self.reload_ok()
        self.assertIn("resolvers.biggest", res["changed"])

    def test_restart_only_settings_refused(self):
        good = self.read_conf()
        port = moortest.free_port()
        for text, want in [
                (good.replace(self.node.addr, "127.0.0.1:%d" % port),
                 "listen cannot change without a restart"),
                (good.replace(self.node.data, self.node.data + "2"),
                 "data_dir cannot change without a restart"),
                (good.replace(self.node.addr, "127.0.0.1:%d" % port)
                 .replace(self.node.data, self.node.data + "2"),
                 "listen, data_dir cannot change without a restart"),
                (good.replace('node = "n1"', 'node = "n9"'), "node cannot change"),
                (good.replace('log = {', 'engine = { memtable_mb = 8 }, log = {'),
                 "engine.memtable_mb cannot change"),
                (good + 'moor.space("extra", {})\n', "spaces cannot change"),
        ]:
            self.write(raw=text.replace("return 1", "return 5"))
            err, _ = self.reload()
            self.assertIsNotNone(err)
            self.assertEqual(err[0], "BAD_REQUEST")
            self.assertIn(want, err[1])
            self.assertEqual(self.call_ver(), 1)  # nothing taken, handlers included
        self.assertFalse(os.path.exists(self.node.data + "2"))

    def test_endless_config(self):
        good = self.read_conf()
        self.write(raw=good + "while true do end\n")
        err, _ = self.reload()
        self.assertEqual(err[0], "BAD_REQUEST")
        self.assertIn("config exceeded its budget", err[1])
        self.assertEqual(self.call_ver(), 1)
        self.assertTrue(self.node.alive())
        # at start (and --check): exit 2 with the message, in bounded time
        for extra in ([], ["--check"]):
            p = subprocess.run([os.path.join(BUILD, "moord"), self.node.conf] + extra,
                               capture_output=True, timeout=60,
                               env=dict(os.environ, MOOR_ROOT=ROOT))
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn(b"config exceeded its budget", p.stderr)

    def test_concurrent_reloads_are_serialized(self):
        # both answered OK: a reload runs to its end on the loop before
        # the next request is read (README "Hot reload")
        self.write(script=handlers(4))
        conns = [self.node.conn(20) for _ in range(4)]
        try:
            ids = [c.send("reload") for c in conns]
            self.node.proc.send_signal(signal.SIGHUP)
            for c, mid in zip(conns, ids):
                msg = c.recv()
                self.assertEqual(msg[1], mid)
                self.assertIsNone(msg[2], msg[2])
                self.assertIs(msg[3]["ok"], True)
        finally:
            for c in conns:
                c.close()
        why = moortest.poll(lambda: None if self.node.info()["config"]["reloads"] == 5
                            else "reloads: %r" % self.node.info()["config"]["reloads"], WAIT_S)
        self.assertIsNone(why, why)
        self.assertEqual(self.call_ver(), 4)

    def test_reload_needs_auth_and_cli(self):
        self.write(settings='auth_token = "tok", log = { level = "info" }')
        self.node.stop()
        self.node.start()
        self.ctl.close()
        self.ctl = self.node.conn(20)
        err, _ = self.reload()
        self.assertEqual(err[0], "NOAUTH")
        self.assertEqual(self.ctl.call("auth", "tok"), (None, True))
        self.assertIs(self.reload_ok()["ok"], True)
        moor = os.path.join(BUILD, "moor")
        self.write(settings='auth_token = "tok", log = { level = "info" }', script=handlers(6))
        p = subprocess.run([moor, "-h", self.node.addr, "-a", "tok", "reload"],
                           capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"reloaded: 2 handlers, 0 resolvers; changed: handlers.", p.stdout)
        self.write(raw="moor.cfg{")
        p = subprocess.run([moor, "-h", self.node.addr, "-a", "tok", "reload", "--json"],
                           capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"BAD_REQUEST", p.stderr)
        self.assertEqual(self.call_ver(), 6)


class ClusterReloadTest(unittest.TestCase):
    def test_gossip_and_levels_on_a_cluster(self):
        c = moortest.Cluster(BUILD, 3, "moor-reload-cl-",
                             script=handlers(1) + 'moor.space("s", { n = 3, r = 2, w = 2 })\n'
                             'moor.gossip{ period_ms = 500, probe_timeout_ms = 200 }\n')
        try:
            c.start()
            c.wait_converged()
            load = Load(c.nodes[0], conns=2, batch=16)
            load.start()
            try:
                load.wait_answers(500)
                for n in c.nodes:
                    n.write_config("", [m.addr for m in c.nodes], c.secret,
                                   handlers(2) + 'moor.space("s", { n = 3, r = 1, w = 3 })\n'
                                   'moor.gossip{ period_ms = 300, probe_timeout_ms = 100 }\n')
                    conn = n.conn(20)
                    try:
                        err, res = conn.call("reload")
                    finally:
                        conn.close()
                    self.assertIsNone(err, err)
                    self.assertEqual(sorted(x for x in res["changed"] if not
                                            x.startswith("handlers.")),
                                     ["gossip.period_ms", "gossip.probe_timeout_ms",
                                      "spaces.s.r", "spaces.s.w"])
                    sp = n.info()["config"]["spaces"]["s"]
                    self.assertEqual((sp["n"], sp["r"], sp["w"]), (3, 1, 3))
                load.wait_answers(500)
            finally:
                load.stop()
            self.assertEqual(load.errors, 0, load.first_errors)
            self.assertEqual(load.dropped, 0, load.first_errors)
            c.wait_converged()
            conn = c.nodes[1].conn(20)
            try:
                self.assertEqual(conn.call("call", "ver"), (None, 2))
                self.assertIsNone(conn.call("put", "ks", "v", {"space": "s"})[0])
            finally:
                conn.close()
        finally:
            c.cleanup()


def main():
    global BUILD
    args, rest = moortest.parse_args(BUILD)
    BUILD = args.build
    sys.exit(0 if moortest.run_unittest(rest) else 1)


if __name__ == "__main__":
    main()
