#!/usr/bin/python3
"""install_test.py -- `cmake --install` into a scratch prefix, then use
what was installed, with no help from the source or build tree.

The installed moord runs WITHOUT MOOR_ROOT: it must find lua/ and
plugins/ in PREFIX/share/moor (a probe plugin that exists only there
proves it did not fall back to the source tree).  Then the installed
`moor` CLI, Python client (PREFIX/lib/python3/dist-packages), Lua client
(PREFIX/share/lua/5.1) and C client library (pkg-config moor) talk to
it.  Every wait is bounded; the node is killed and the prefix removed.

usage: install_test.py --build BUILD_DIR [-k NAME]
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import moortest

BUILD = moortest.DEFAULT_BUILD
PROBE = 'return function() return "from-share-moor" end\n'

C_PROGRAM = r'''
#include <stdio.h>
#include "net/client.h"

int main(int argc, char **argv)
{
    moor_client_t *c;
    moor_client_reply_t r;
    if (argc != 2 || moor_client_connect(argv[1], 5000, &c))
        return 3;
    int rc = moor_client_call(c, "ping", "", 0, 0, &r);
    if (rc == 0 && !r.error_code)
        printf("c-ping-ok\n");
    moor_client_close(c);
    return rc || r.error_code;
}
'''


def env_without(*names):
    env = dict(os.environ)
    for n in names:
        env.pop(n, None)
    return env


class InstallTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="moor-install-")
        cls.prefix = os.path.join(cls.tmp, "prefix")
        subprocess.run(["cmake", "--install", BUILD, "--prefix", cls.prefix],
                       check=True, stdout=subprocess.DEVNULL, timeout=120)
        # Only in the installed root: loading it proves moord used share/moor.
        with open(os.path.join(cls.prefix, "share/moor/plugins/handlers/install_probe.lua"),
                  "w") as f:
            f.write(PROBE)
        cls.port = moortest.free_port()
        cls.addr = "127.0.0.1:%d" % cls.port
        conf = os.path.join(cls.tmp, "node.lua")
        with open(conf, "w") as f:
            f.write('moor.cfg{ node = "i1", listen = "%s", data_dir = "%s",\n'
                    '  log = { level = "warn" },\n'
                    '  plugins = { "handlers.incr", "handlers.install_probe" } }\n'
                    % (cls.addr, os.path.join(cls.tmp, "data")))
        cls.log = open(os.path.join(cls.tmp, "moord.log"), "wb")
        # cwd is the scratch directory, not the source tree.
        cls.proc = subprocess.Popen([os.path.join(cls.prefix, "bin/moord"), conf],
                                    stdout=cls.log, stderr=cls.log, cwd=cls.tmp,
                                    env=env_without("MOOR_ROOT", "LUA_PATH", "LUA_CPATH"),
                                    preexec_fn=moortest.die_with_parent)
        moortest.PROCS.append(cls.proc)
        deadline = time.time() + 20
        while True:
            if cls.proc.poll() is not None:
                raise AssertionError("installed moord exited %d:\n%s"
                                     % (cls.proc.returncode, cls.read_log()))
            if cls.moor("ping").returncode == 0:
                break
            if time.time() >= deadline:
                raise AssertionError("installed moord not answering:\n" + cls.read_log())
            time.sleep(0.2)

    @classmethod
    def tearDownClass(cls):
        if cls.proc.poll() is None:
            cls.proc.terminate()
            try:
                cls.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                cls.proc.kill()
                cls.proc.wait()
        cls.log.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def read_log(cls):
        with open(os.path.join(cls.tmp, "moord.log"), "rb") as f:
            return f.read().decode(errors="replace")

    @classmethod
    def moor(cls, *args):
        return subprocess.run([os.path.join(cls.prefix, "bin/moor"), "-h", cls.addr] + list(args),
                              capture_output=True, text=True, timeout=30, cwd=cls.tmp)

    def test_layout(self):
        for rel in ["bin/moord", "bin/moor", "lib/libmoorclient.a", "lib/pkgconfig/moor.pc",
                    "include/moor/net/client.h", "include/moor/util/buf.h",
                    "include/moor/util/limits.h", "lib/python3/dist-packages/moor_client.py",
                    "share/lua/5.1/moor/client.lua", "share/lua/5.1/moor/msgpack.lua",
                    "share/moor/lua/moor/config.lua", "share/moor/plugins/handlers/incr.lua",
                    "share/moor/plugins/resolvers/lww.lua", "share/man/man1/moor.1",
                    "share/man/man1/moord.1", "lib/systemd/system/moord@.service"]:
            self.assertTrue(os.path.exists(os.path.join(self.prefix, rel)), rel)
        with open(os.path.join(self.prefix, "lib/systemd/system/moord@.service")) as f:
            unit = f.read()
        self.assertIn("ExecStart=%s/bin/moord /etc/moor/%%i.lua" % self.prefix, unit)
        with open(os.path.join(self.prefix, "lib/pkgconfig/moor.pc")) as f:
            self.assertIn("prefix=%s\n" % self.prefix, f.read())

    def test_cli_put_get_and_plugins(self):
        r = self.moor("put", "greeting", '"hello"')
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.moor("get", "greeting", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["values"], ["hello"])
        r = self.moor("call", "incr", '"visits"')
        self.assertEqual(r.returncode, 0, r.stderr)
        first = json.loads(r.stdout)
        r = self.moor("call", "incr", '"visits"')
        self.assertEqual(json.loads(r.stdout), first + 1)
        r = self.moor("call", "install_probe")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout), "from-share-moor")

    def test_python_client(self):
        script = ("from moor_client import MoorClient\n"
                  "c = MoorClient(%r, timeout=5)\n"
                  "c.put('py', 'from-python')\n"
                  "print(c.get('py')['values'][0])\n" % self.addr)
        env = env_without("PYTHONPATH")
        env["PYTHONPATH"] = os.path.join(self.prefix, "lib/python3/dist-packages")
        r = subprocess.run(["/usr/bin/python3", "-c", script], capture_output=True, text=True,
                           timeout=30, cwd=self.tmp, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "from-python")

    def test_lua_client(self):
        if subprocess.run(["luajit", "-e", "require('socket')"], capture_output=True,
                          timeout=10).returncode != 0:
            self.skipTest("LuaSocket (lua-socket) not installed")
        script = ('local c = assert(require("moor.client").connect("%s", {timeout = 5}))\n'
                  'assert(c:put("lua", "from-lua"))\n'
                  'print(c:get("lua").values[1])\n' % self.addr)
        env = env_without("LUA_PATH", "LUA_CPATH")
        env["LUA_PATH"] = os.path.join(self.prefix, "share/lua/5.1/?.lua") + ";;"
        r = subprocess.run(["luajit", "-e", script], capture_output=True, text=True,
                           timeout=30, cwd=self.tmp, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "from-lua")

    def test_c_client_via_pkg_config(self):
        env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(self.prefix, "lib/pkgconfig"))
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "moor"], capture_output=True,
                               text=True, timeout=30, env=env, check=True).stdout.split()
        src = os.path.join(self.tmp, "ping.c")
        exe = os.path.join(self.tmp, "ping")
        with open(src, "w") as f:
            f.write(C_PROGRAM)
        r = subprocess.run(["cc", "-std=c11", "-o", exe, src] + flags, capture_output=True,
                           text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = subprocess.run([exe, self.addr], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "c-ping-ok")


if __name__ == "__main__":
    args, rest = moortest.parse_args()
    BUILD = args.build
    sys.exit(0 if moortest.run_unittest(rest) else 1)
