#!/usr/bin/python3
"""resp_test.py -- integration tests of moord's Redis-protocol (RESP2) port.

Starts moord with `resp_listen` (one node; one with an auth_token and
small limits; a three-node cluster on 127.0.0.1..3), and drives it with
redis-cli, redis-benchmark and a RESP client written here on raw sockets:
every command, pipelining and reply order, inline commands, the
cross-protocol view (RESP writes read over MessagePack-RPC and the other
way round), siblings, AUTH, SELECT, and bad input (wrong lengths, huge
bulk lengths, over-long inline lines, binary garbage), after which the
node must still serve.  Every wait is bounded and every moord started
here is killed when the script exits (moortest).

usage: resp_test.py --build BUILD_DIR [-k NAME]
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

import msgpack

import moortest
from moortest import free_port, retry

BUILD = moortest.DEFAULT_BUILD
REDIS_CLI = "/usr/bin/redis-cli"
REDIS_BENCHMARK = "/usr/bin/redis-benchmark"
TOKEN = "resp-test-token"


class RespError(Exception):
    """A RESP error reply (-...)."""


class Resp:
    """A RESP2 client on a raw socket: commands as multibulk arrays or raw
    bytes; replies parsed into str (status), RespError, int, bytes or
    None (bulk), list (array)."""

    def __init__(self, port, host="127.0.0.1", timeout=15):
        self.sock = socket.create_connection((host, port), timeout)
        self.buf = b""

    @staticmethod
    def encode(*args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            elif isinstance(a, int):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, *args):
        self.sock.sendall(self.encode(*args))

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed by the node")
        self.buf += data

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RespError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise AssertionError("not a RESP reply: %r" % line)

    def call(self, *args):
        self.send(*args)
        r = self.read()
        if isinstance(r, RespError):
            raise r
        return r

    def closed(self, timeout=10):
        """Whether the node closes the connection within timeout (replies
        still in flight are read and dropped)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


def resp_node(tmp, name, settings="", script=""):
    """A node with a RESP port (resp_databases default, s1); returns it
    with .resp_port set (not started)."""
    node = moortest.Node(BUILD, os.path.join(tmp, name), name)
    node.resp_port = free_port()
    node.write_config(
        'resp_listen = "127.0.0.1:%d", resp_databases = { "default", "s1" },\n'
        '  engine = { sync = "interval", memtable_mb = 4, cache_mb = 8 },\n  %s'
        % (node.resp_port, settings), script='moor.space("s1", {})\n' + script)
    return node


def redis_cli(port, *args, host="127.0.0.1", timeout=30):
    r = subprocess.run([REDIS_CLI, "-h", host, "-p", str(port)] + list(args),
                       capture_output=True, text=True, timeout=timeout)
    return r.stdout.rstrip("\n")


def ping_ok(port):
    c = Resp(port, timeout=10)
    try:
        return c.call("PING") == "PONG"
    finally:
        c.close()


TMP = None
NODE = None


def setUpModule():
    global TMP, NODE
    TMP = tempfile.mkdtemp(prefix="moor-resp-")
    NODE = resp_node(TMP, "n1", 'limits = { value_max_mb = 1, max_frame_mb = 4 }').start()


def tearDownModule():
    if NODE:
        NODE.stop()
    shutil.rmtree(TMP, ignore_errors=True)


class Commands(unittest.TestCase):
    def setUp(self):
        self.c = Resp(NODE.resp_port)

    def tearDown(self):
        self.c.close()

    def test_ping_echo(self):
        self.assertEqual(self.c.call("PING"), "PONG")
        self.assertEqual(self.c.call("ping", "hi"), b"hi")
        self.assertEqual(self.c.call("ECHO", b"a\r\nb\x00"), b"a\r\nb\x00")

    def test_set_get_del_exists(self):
        c = self.c
        self.assertEqual(c.call("SET", "k1", b"v\x00\xff1"), "OK")
        self.assertEqual(c.call("GET", "k1"), b"v\x00\xff1")
        self.assertEqual(c.call("SET", "k1", "second"), "OK")   # overwrites: no sibling
        self.assertEqual(c.call("GET", "k1"), b"second")
        self.assertIsNone(c.call("GET", "missing-k1"))
        self.assertEqual(c.call("SET", "k2", ""), "OK")
        self.assertEqual(c.call("GET", "k2"), b"")
        self.assertEqual(c.call("EXISTS", "k1", "k2", "missing-k1", "k1"), 3)
        self.assertEqual(c.call("DEL", "k1", "missing-k1", "k2"), 2)
        self.assertEqual(c.call("EXISTS", "k1", "k2"), 0)
        self.assertIsNone(c.call("GET", "k1"))
        self.assertEqual(c.call("DEL", "k1"), 0)

    def test_mset_mget(self):
        c = self.c
        self.assertEqual(c.call("MSET", "m1", "a", "m2", "b", "m3", "c"), "OK")
        self.assertEqual(c.call("MGET", "m1", "nope", "m3", "m2"), [b"a", None, b"c", b"b"])
        with self.assertRaisesRegex(RespError, "wrong number of arguments for 'mset'"):
            c.call("MSET", "m1", "a", "m2")
        # more keys than the node is asked for at once (64): order kept
        args = []
        for i in range(0, 300, 2):
            args += ["mm%d" % i, "v%d" % i]
        self.assertEqual(c.call("MSET", *args), "OK")
        keys = ["mm%d" % i for i in range(300)]
        self.assertEqual(c.call("MGET", *keys),
                         [b"v%d" % i if i % 2 == 0 else None for i in range(300)])
        self.assertEqual(c.call("EXISTS", *keys), 150)

    def test_set_options(self):
        c = self.c
        # expiry (ttl_test.py has the rest): bad times are refused, nothing written
        with self.assertRaisesRegex(RespError, "^ERR invalid expire time in 'set' command"):
            c.call("SET", "o1", "v", "EX", "0")
        with self.assertRaisesRegex(RespError, "^ERR value is not an integer"):
            c.call("SET", "o1", "v", "px", "ten")
        with self.assertRaisesRegex(RespError, "^ERR KEEPTTL is not supported"):
            c.call("SET", "o1", "v", "KEEPTTL")
        self.assertIsNone(c.call("GET", "o1"))
        self.assertIsNone(c.call("SET", "o1", "v", "XX"))
        self.assertIsNone(c.call("GET", "o1"))
        self.assertEqual(c.call("SET", "o1", "first", "NX"), "OK")
        self.assertIsNone(c.call("SET", "o1", "second", "NX"))
        self.assertEqual(c.call("GET", "o1"), b"first")
        self.assertEqual(c.call("SET", "o1", "third", "XX"), "OK")
        self.assertEqual(c.call("GET", "o1"), b"third")
        with self.assertRaisesRegex(RespError, "syntax error"):
            c.call("SET", "o1", "v", "NX", "XX")
        with self.assertRaisesRegex(RespError, "syntax error"):
            c.call("SET", "o1", "v", "BOGUS")

    def test_incr(self):
        c = self.c
        self.assertEqual(c.call("INCR", "i1"), 1)
        self.assertEqual(c.call("INCRBY", "i1", "41"), 42)
        self.assertEqual(c.call("DECR", "i1"), 41)
        self.assertEqual(c.call("DECRBY", "i1", "-9"), 50)
        self.assertEqual(c.call("GET", "i1"), b"50")
        c.call("SET", "i2", "abc")
        with self.assertRaisesRegex(RespError, "not an integer"):
            c.call("INCR", "i2")
        with self.assertRaisesRegex(RespError, "not an integer"):
            c.call("INCRBY", "i1", "x")
        c.call("SET", "i3", "9223372036854775807")
        with self.assertRaisesRegex(RespError, "overflow"):
            c.call("INCR", "i3")

    def test_select(self):
        c = self.c
        c.call("SET", "sel", "db0")
        self.assertEqual(c.call("SELECT", "1"), "OK")
        self.assertIsNone(c.call("GET", "sel"))
        c.call("SET", "sel", "db1")
        self.assertEqual(c.call("GET", "sel"), b"db1")
        with self.assertRaisesRegex(RespError, "DB index is out of range"):
            c.call("SELECT", "2")
        self.assertEqual(c.call("SELECT", "0"), "OK")
        self.assertEqual(c.call("GET", "sel"), b"db0")
        m = NODE.conn()
        try:
            err, res = m.call("get", "sel", {"space": "s1"})
            self.assertIsNone(err)
            self.assertEqual(res["values"], [b"db1"])
        finally:
            m.close()

    def test_errors(self):
        c = self.c
        with self.assertRaisesRegex(RespError, "^ERR unknown command 'FLUSHALL'"):
            c.call("FLUSHALL")
        with self.assertRaisesRegex(RespError, "^ERR unknown command 'foo', with args beginning "
                                               "with: 'a' 'b'"):
            c.call("foo", "a", "b")
        with self.assertRaisesRegex(RespError, "wrong number of arguments for 'get'"):
            c.call("GET")
        with self.assertRaisesRegex(RespError, "wrong number of arguments for 'get'"):
            c.call("GET", "a", "b")
        with self.assertRaisesRegex(RespError, "^KEY_TOO_LARGE|^BAD_REQUEST"):
            c.call("GET", "")
        self.assertEqual(c.call("PING"), "PONG")   # still usable

    def test_value_limit(self):
        # Within the bulk limit (value_max) but over value_max once packed:
        # the node's own check answers; over the bulk limit the connection
        # closes.
        with self.assertRaisesRegex(RespError, "^VALUE_TOO_LARGE"):
            self.c.call("SET", "big", b"x" * (1 << 20))
        c = Resp(NODE.resp_port)
        try:   # the node may answer and close before all of it is sent
            c.send("SET", "big", b"x" * ((1 << 20) + 1))
        except OSError:
            pass
        try:
            r = c.read()
            self.assertIsInstance(r, RespError)
            self.assertIn("Protocol error", str(r))
        except (ConnectionError, OSError):
            pass
        self.assertTrue(c.closed())
        c.close()
        self.assertTrue(ping_ok(NODE.resp_port))

    def test_hello_command_config_info(self):
        c = self.c
        h = c.call("HELLO")
        self.assertEqual(dict(zip(h[0::2], h[1::2]))[b"proto"], 2)
        h = c.call("HELLO", "2")
        self.assertEqual(h[0], b"server")
        with self.assertRaisesRegex(RespError, "^NOPROTO .*RESP2 only"):
            c.call("HELLO", "3")
        self.assertGreaterEqual(c.call("COMMAND", "COUNT"), 19)
        cmds = c.call("COMMAND")
        self.assertIn(b"get", [e[0] for e in cmds])
        docs = c.call("COMMAND", "DOCS", "get")
        self.assertEqual(docs[0], b"get")
        self.assertEqual(c.call("CONFIG", "GET", "save"), [b"save", b""])
        self.assertEqual(c.call("CONFIG", "GET", "appendonly"), [b"appendonly", b"no"])
        self.assertEqual(c.call("CONFIG", "GET", "nothing-like-this"), [])
        with self.assertRaisesRegex(RespError, "only CONFIG GET"):
            c.call("CONFIG", "SET", "save", "")
        info = c.call("INFO").decode()
        for sec in ("# Server", "# Clients", "# Stats", "# Keyspace", "# Moor_engine"):
            self.assertIn(sec + "\r\n", info)
        self.assertIn("moor_node:n1\r\n", info)
        self.assertIn("db1:space=s1\r\n", info)
        server = c.call("INFO", "server").decode()
        self.assertIn("# Server", server)
        self.assertNotIn("# Keyspace", server)

    def test_quit(self):
        c = self.c
        c.send("SET", "q1", "v")
        c.send("QUIT")
        c.send("SET", "q1", "not-run")
        self.assertEqual(c.read(), "OK")
        self.assertEqual(c.read(), "OK")
        self.assertTrue(c.closed())
        d = Resp(NODE.resp_port)
        self.assertEqual(d.call("GET", "q1"), b"v")
        d.close()


class Pipelining(unittest.TestCase):
    def test_order(self):
        c = Resp(NODE.resp_port)
        n = 600
        reqs = []
        for i in range(n):
            reqs.append(Resp.encode("SET", "p%d" % i, "v%d" % i))
            reqs.append(Resp.encode("GET", "p%d" % i))
            reqs.append(Resp.encode("INCR", "pcount"))
            reqs.append(Resp.encode("ECHO", "e%d" % i))
        c.send_raw(b"".join(reqs))   # one write: the node answers in order
        for i in range(n):
            self.assertEqual(c.read(), "OK")
            self.assertEqual(c.read(), b"v%d" % i)
            self.assertEqual(c.read(), i + 1)
            self.assertEqual(c.read(), b"e%d" % i)
        c.close()

    def test_inline(self):
        c = Resp(NODE.resp_port)
        c.send_raw(b"SET inl  hello\r\nGET inl\nPING\r\n\r\nECHO  x\tINCR\n")
        self.assertEqual(c.read(), "OK")
        self.assertEqual(c.read(), b"hello")
        self.assertEqual(c.read(), "PONG")
        r = c.read()
        self.assertIsInstance(r, RespError)   # ECHO with two arguments
        self.assertEqual(c.call("PING"), "PONG")
        c.close()

    def test_byte_by_byte(self):
        c = Resp(NODE.resp_port)
        data = Resp.encode("SET", "bb", "x" * 100) + Resp.encode("GET", "bb")
        for i in range(len(data)):
            c.send_raw(data[i:i + 1])
        self.assertEqual(c.read(), "OK")
        self.assertEqual(c.read(), b"x" * 100)
        c.close()


class CrossProtocol(unittest.TestCase):
    def setUp(self):
        self.r = Resp(NODE.resp_port)
        self.m = NODE.conn()

    def tearDown(self):
        self.r.close()
        self.m.close()

    def mget(self, key):
        err, res = self.m.call("get", key)
        self.assertIsNone(err)
        return res

    def test_resp_write_reads_as_bin(self):
        self.r.call("SET", "x1", "text")
        res = self.mget("x1")
        self.assertEqual(res["values"], [b"text"])
        # bin, not str: python-msgpack (raw=False) gives bytes for bin only
        self.assertIsInstance(res["values"][0], bytes)

    def test_msgpack_write_reads_over_resp(self):
        self.assertIsNone(self.m.call("put", "x2", "a str")[0])
        self.assertEqual(self.r.call("GET", "x2"), b"a str")
        self.assertIsNone(self.m.call("put", "x3", b"\x00bin")[0])
        self.assertEqual(self.r.call("GET", "x3"), b"\x00bin")
        self.assertIsNone(self.m.call("put", "x4", {"a": [1, 2]})[0])
        self.assertEqual(self.r.call("GET", "x4"), msgpack.packb({"a": [1, 2]}))
        self.assertIsNone(self.m.call("put", "x5", 41)[0])
        self.assertEqual(self.r.call("GET", "x5"), msgpack.packb(41))
        self.assertEqual(self.r.call("INCR", "x5"), 42)
        self.assertEqual(self.mget("x5")["values"], [42])   # an integer stays an integer

    def test_siblings(self):
        self.assertIsNone(self.m.call("put", "sib", "one")[0])
        self.assertIsNone(self.m.call("put", "sib", "two")[0])   # no ctx: a sibling
        with self.assertRaisesRegex(RespError, "^ERR key has 2 siblings \\(unresolved concurrent "
                                               "writes\\); read it over MessagePack-RPC or give "
                                               "the keyspace a resolver"):
            self.r.call("GET", "sib")
        self.assertIsInstance(self.r.call("MGET", "sib")[0], RespError)
        self.assertEqual(self.r.call("SET", "sib", "three"), "OK")   # overwrite descends both
        self.assertEqual(self.r.call("GET", "sib"), b"three")
        self.assertEqual(self.mget("sib")["values"], [b"three"])


class BadInput(unittest.TestCase):
    """Each case on its own connection: an error reply and/or a closed
    connection, and the node serving on."""

    def expect_error_close(self, data, what):
        c = Resp(NODE.resp_port)
        c.send_raw(data)
        try:
            r = c.read()
            self.assertIsInstance(r, RespError, what)
            self.assertIn("Protocol error", str(r), what)
        except (ConnectionError, OSError):
            pass   # closed straight away is fine too
        self.assertTrue(c.closed(), what)
        c.close()
        self.assertTrue(ping_ok(NODE.resp_port), what)

    def test_wrong_lengths(self):
        self.expect_error_close(b"*1\r\n$3\r\nabcdef\r\n", "bulk longer than announced")
        self.expect_error_close(b"*2\r\n$3\r\nGET\r\n:5\r\n", "not a bulk")
        self.expect_error_close(b"*1\r\n$-5\r\n", "negative bulk length")
        self.expect_error_close(b"*x\r\n", "multibulk length not a number")
        self.expect_error_close(b"*1\r\n$3abc\r\n", "bulk length not a number")

    def test_huge_lengths(self):
        self.expect_error_close(b"*1\r\n$99999999999\r\n", "huge bulk length")
        self.expect_error_close(b"*1\r\n$2147483648\r\n", "bulk length over 2 GiB")
        self.expect_error_close(b"*999999999\r\n", "huge argument count")
        self.expect_error_close(b"*2\r\n$3\r\nSET\r\n$4194304\r\n", "bulk past max_frame")

    def test_inline_too_long(self):
        self.expect_error_close(b"A" * (70 * 1024), "inline line without a newline")

    def test_pipeline_then_error(self):
        c = Resp(NODE.resp_port)
        c.send_raw(Resp.encode("SET", "pe", "1") + Resp.encode("GET", "pe") + b"*1\r\n$x\r\n")
        self.assertEqual(c.read(), "OK")
        self.assertEqual(c.read(), b"1")
        self.assertIn("Protocol error", str(c.read()))
        self.assertTrue(c.closed())
        c.close()

    def test_binary_garbage(self):
        rnd = __import__("random").Random(12)
        for i in range(30):
            c = Resp(NODE.resp_port)
            data = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(1, 3000)))
            if i % 3 == 0:
                data = b"*3\r\n" + data
            try:
                c.send_raw(data)
                c.sock.shutdown(socket.SHUT_WR)
                c.closed(10)   # errors for inline lines, maybe a protocol error
            except OSError:
                pass
            c.close()
        self.assertTrue(ping_ok(NODE.resp_port))
        self.assertIn("protocol_errors:", redis_cli(NODE.resp_port, "info", "stats"))


class RedisTools(unittest.TestCase):
    def test_redis_cli(self):
        p = NODE.resp_port
        self.assertEqual(redis_cli(p, "set", "cli1", "hello world"), "OK")
        self.assertEqual(redis_cli(p, "get", "cli1"), "hello world")
        self.assertEqual(redis_cli(p, "incr", "cli2"), "1")
        self.assertEqual(redis_cli(p, "mget", "cli1", "cli2", "cli3"), "hello world\n1")
        self.assertEqual(redis_cli(p, "-n", "1", "get", "cli1"), "")
        self.assertEqual(redis_cli(p, "ping"), "PONG")
        self.assertIn("unknown command", redis_cli(p, "lpush", "l", "a"))
        self.assertIn("# Server", redis_cli(p, "info"))
        # interactive-style input through stdin (redis-cli reads commands)
        r = subprocess.run([REDIS_CLI, "-p", str(p)], input="set cli4 v4\nget cli4\n",
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.stdout.split(), ["OK", "v4"])

    def test_redis_benchmark(self):
        r = subprocess.run([REDIS_BENCHMARK, "-p", str(NODE.resp_port), "-t", "set,get",
                            "-n", "20000", "-c", "10", "-P", "16", "-q"],
                           capture_output=True, text=True, timeout=180)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout.replace("\r", "\n")
        self.assertIn("SET:", out)
        self.assertIn("GET:", out)
        self.assertIn("requests per second", out)
        self.assertTrue(ping_ok(NODE.resp_port))


class Auth(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = resp_node(TMP, "auth", 'auth_token = "%s",\n'
                             '  limits = { auth_timeout_ms = 3000, max_inflight = 4 }' % TOKEN)
        cls.node.start()

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()

    def test_auth(self):
        c = Resp(self.node.resp_port)
        with self.assertRaisesRegex(RespError, "^NOAUTH"):
            c.call("GET", "a")
        with self.assertRaisesRegex(RespError, "^NOAUTH"):
            c.call("PING")
        with self.assertRaisesRegex(RespError, "^NOAUTH"):
            c.call("HELLO", "2")
        with self.assertRaisesRegex(RespError, "^WRONGPASS"):
            c.call("AUTH", "wrong")
        self.assertEqual(c.call("AUTH", TOKEN), "OK")
        self.assertEqual(c.call("SET", "a", "1"), "OK")
        c.close()
        c = Resp(self.node.resp_port)
        self.assertEqual(c.call("AUTH", "anyuser", TOKEN), "OK")
        self.assertEqual(c.call("GET", "a"), b"1")
        c.close()
        c = Resp(self.node.resp_port)
        h = c.call("HELLO", "2", "AUTH", "default", TOKEN)
        self.assertEqual(h[0], b"server")
        self.assertEqual(c.call("GET", "a"), b"1")
        c.close()
        self.assertEqual(redis_cli(self.node.resp_port, "-a", TOKEN, "--no-auth-warning",
                                   "get", "a"), "1")

    def test_auth_deadline(self):
        c = Resp(self.node.resp_port)
        self.assertTrue(c.closed(15))   # auth_timeout_ms 3000
        c.close()

    def test_small_inflight_pipeline(self):
        # max_inflight 4: a pipeline of 500 is read as answers go out.
        c = Resp(self.node.resp_port)
        c.call("AUTH", TOKEN)
        c.send_raw(b"".join(Resp.encode("INCR", "inflight") for _ in range(500)))
        self.assertEqual([c.read() for _ in range(500)], list(range(1, 501)))
        c.close()


class Limits(unittest.TestCase):
    """max_conns and idle_timeout_ms hold on the RESP port as on the
    MessagePack one."""

    @classmethod
    def setUpClass(cls):
        cls.node = resp_node(TMP, "limits", 'limits = { max_conns = 2, idle_timeout_ms = 1500 }')
        cls.node.start()

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()

    def test_max_conns_and_idle(self):
        a, b = Resp(self.node.resp_port), Resp(self.node.resp_port)
        self.assertEqual(a.call("PING"), "PONG")
        self.assertEqual(b.call("PING"), "PONG")
        c = Resp(self.node.resp_port)
        self.assertTrue(c.closed(10))   # over max_conns: closed at accept
        c.close()
        self.assertEqual(a.call("SET", "lim", "1"), "OK")
        self.assertTrue(a.closed(15))   # idle for 1.5 s
        self.assertTrue(b.closed(15))
        a.close()
        b.close()
        self.assertTrue(ping_ok(self.node.resp_port))


class Config(unittest.TestCase):
    def check(self, settings, script=""):
        d = os.path.join(TMP, "cfg")
        node = moortest.Node(BUILD, d, "c1")
        node.write_config(settings, script=script)
        return subprocess.run([os.path.join(BUILD, "moord"), node.conf, "--check"],
                              capture_output=True, text=True, timeout=30,
                              env=dict(os.environ, MOOR_ROOT=moortest.ROOT))

    def test_bad_configs(self):
        r = self.check('resp_listen = "nope"')
        self.assertEqual(r.returncode, 2)
        self.assertIn("resp_listen must be 'host:port'", r.stderr)
        r = self.check('resp_listen = "127.0.0.1:0", resp_databases = { "default", "ghost" }')
        self.assertEqual(r.returncode, 2)
        self.assertIn("resp_databases[2] names keyspace 'ghost'", r.stderr)
        r = self.check('resp_listen = "127.0.0.1:0", resp_databases = {}')
        self.assertEqual(r.returncode, 2)
        r = self.check('resp_listen = "127.0.0.1:0", resp_databases = { "default", "x" }',
                       'moor.space("x", {})\n')
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_busy_port(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        node = moortest.Node(BUILD, os.path.join(TMP, "busy"), "b1")
        node.write_config('resp_listen = "127.0.0.1:%d"' % s.getsockname()[1])
        with self.assertRaises(moortest.Failed):
            node.start(10)
        self.assertEqual(node.proc.returncode, 2)
        self.assertIn("resp_listen", node.logtail())
        s.close()


class ClusterResp(unittest.TestCase):
    """Three nodes (N=3, R=W=2), each with a RESP port."""

    @classmethod
    def setUpClass(cls):
        cls.cl = moortest.Cluster(BUILD, 3, "moor-resp-cluster-")
        for n in cls.cl.nodes:
            n.resp_port = free_port(n.host)
            n.write_config('resp_listen = "%s:%d",\n'
                           '  engine = { sync = "interval", memtable_mb = 4, cache_mb = 8 }'
                           % (n.host, n.resp_port), [m.addr for m in cls.cl.nodes],
                           cls.cl.secret, 'moor.space("default", { n = 3, r = 2, w = 2 })\n')
        cls.cl.start()
        cls.cl.wait_converged()
        for n in cls.cl.nodes:
            c = n.conn(5)
            try:
                retry(lambda: c.call("get", "ready-probe", {"r": "all", "timeout_ms": 2000}),
                      20, "get r=all through %s" % n.id)
            finally:
                c.close()

    @classmethod
    def tearDownClass(cls):
        cls.cl.cleanup()

    def resp(self, i):
        n = self.cl.nodes[i]
        return Resp(n.resp_port, n.host)

    def test_cluster_commands(self):
        a, b, c = self.resp(0), self.resp(1), self.resp(2)
        for i in range(50):
            self.assertEqual(a.call("SET", "ck%d" % i, "v%d" % i), "OK")
        for i in range(50):
            self.assertEqual(b.call("GET", "ck%d" % i), b"v%d" % i)
        self.assertEqual(c.call("SET", "ck0", "new"), "OK")
        self.assertEqual(a.call("GET", "ck0"), b"new")
        self.assertEqual(a.call("INCR", "cc"), 1)
        self.assertEqual(b.call("INCRBY", "cc", "9"), 10)
        self.assertEqual(c.call("MGET", "ck1", "cc", "nope"), [b"v1", b"10", None])
        self.assertEqual(c.call("DEL", "ck1", "ck2", "nope"), 2)
        self.assertEqual(a.call("EXISTS", "ck1", "ck2", "ck3"), 1)
        m = self.cl.nodes[2].conn()
        err, res = m.call("get", "ck3")
        self.assertIsNone(err)
        self.assertEqual(res["values"], [b"v3"])
        self.assertIsNone(m.call("put", "cm", "from msgpack")[0])
        m.close()
        self.assertEqual(a.call("GET", "cm"), b"from msgpack")
        self.assertIn("redis_mode:cluster", a.call("INFO", "server").decode())
        for x in (a, b, c):
            x.close()

    def test_cluster_redis_cli_and_pipeline(self):
        n = self.cl.nodes[1]
        self.assertEqual(redis_cli(n.resp_port, "set", "cli", "x", host=n.host), "OK")
        self.assertEqual(redis_cli(self.cl.nodes[2].resp_port, "get", "cli",
                                   host=self.cl.nodes[2].host), "x")
        c = self.resp(0)
        c.send_raw(b"".join(Resp.encode("SET", "cp%d" % i, "v%d" % i) + Resp.encode("GET", "cp%d" % i)
                            for i in range(200)))
        for i in range(200):
            self.assertEqual(c.read(), "OK")
            self.assertEqual(c.read(), b"v%d" % i)
        c.close()
        r = subprocess.run([REDIS_BENCHMARK, "-h", n.host, "-p", str(n.resp_port), "-t",
                            "set,get", "-n", "5000", "-c", "10", "-P", "16", "-q"],
                           capture_output=True, text=True, timeout=180)
        self.assertEqual(r.returncode, 0, r.stderr)


def main():
    global BUILD
    args, rest = moortest.parse_args(BUILD)
    BUILD = args.build
    sys.exit(0 if moortest.run_unittest(rest) else 1)


if __name__ == "__main__":
    main()
