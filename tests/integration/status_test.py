#!/usr/bin/python3
"""status_test.py -- the HTTP port (http_listen) of a real three-node
cluster: /metrics, bad HTTP input, `moor top`, and the status page seen by
headless Chromium with one node down.

Three moord on 127.0.0.1 .. 127.0.0.3, each with http_listen.  The tests
run in name order on one cluster (the last one kills a node):

 1. /metrics parsed strictly as the Prometheus text format (every line a
    comment, a HELP/TYPE line or a valid sample; one TYPE per family,
    before its samples; no sample twice); request counters move by exactly
    the requests made; every histogram's buckets are cumulative, in
    ascending le, and its +Inf bucket equals its _count; `info` on the same
    node shows the same request counts (info.requests.by_method).
 2. Bad HTTP input: an oversized head gets 431, garbage 400, POST 405, an
    unknown path 404, HEAD a body-less answer; pipelined requests get their
    answers in order; past 64 connections the next is closed unanswered;
    a client that sends a head a byte at a time is closed by the deadline;
    every time the node keeps serving.
 3. `moor top --count 2 --json` prints two JSON objects listing the three
    members, all reachable, req/s unknown on the first refresh and a number
    on the second.
 4. With all up, a screenshot of the page has (almost) no red inside the
    ring; after n3 is killed and both others see it down, the page's ring
    has a large red arc (pixels counted with PIL), and the DOM (chromium
    --dump-dom) has n3's arc and table row with status down.

Chromium (Debian's `chromium`) is required: without it the test fails,
unless MOOR_TEST_ALLOW_SKIP is set (then test 4 is skipped).  Every moord
and chromium this script starts is killed when it exits.

usage: status_test.py --build BUILD_DIR [-k NAME]
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

import moortest

BUILD = moortest.DEFAULT_BUILD
DOWN_RGB = (0xd6, 0x20, 0x20)  # the status page's color of a down member
CHROMIUM_S = 90                # bound on one chromium run

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*"'
SAMPLE = re.compile(r"^(%s)(\{(?:%s(?:,%s)*)?\})? (\S+)( -?\d+)?$" % (NAME, LABEL, LABEL))
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\\\|\\"|\\n)*)"')


def parse_value(s):
    if s in ("+Inf", "Inf"):
        return float("inf")
    if s == "-Inf":
        return float("-inf")
    if s == "NaN":
        return float("nan")
    if not re.match(r"^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$", s):
        raise AssertionError("bad value %r" % s)
    return float(s)


def parse_metrics(text):
    """Strict parse: {family: {"type", "help", "samples": [(name, labels
    dict, value)]}}; raises AssertionError naming the first bad line."""
    fams, typed = {}, set()
    seen = set()
    assert text.endswith("\n"), "the text must end with a newline"
    for ln, line in enumerate(text.split("\n")[:-1], 1):
        if line.startswith("#"):
            m = re.match(r"^# (HELP|TYPE) (%s) (.*)$" % NAME, line)
            if not m:
                assert line.startswith("# ") or line == "#", "line %d: %r" % (ln, line)
                continue
            kind, name, rest = m.groups()
            f = fams.setdefault(name, {"type": None, "help": None, "samples": []})
            if kind == "TYPE":
                assert rest in ("counter", "gauge", "histogram", "summary", "untyped"), line
                assert name not in typed, "line %d: second TYPE for %s" % (ln, name)
                assert not f["samples"], "line %d: TYPE after samples of %s" % (ln, name)
                typed.add(name)
                f["type"] = rest
            else:
                f["help"] = rest
            continue
        m = SAMPLE.match(line)
        assert m, "line %d is not a valid sample: %r" % (ln, line)
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        lab = dict(LABEL_RE.findall(labels))
        key = (name, tuple(sorted(lab.items())))
        assert key not in seen, "line %d: sample %s%s twice" % (ln, name, labels)
        seen.add(key)
        fam = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[: -len(suffix)] in fams and \
                    fams[name[: -len(suffix)]]["type"] == "histogram":
                fam = name[: -len(suffix)]
        assert fam in fams and fams[fam]["type"], "line %d: %s has no TYPE before it" % (ln, name)
        fams[fam]["samples"].append((name, lab, parse_value(value)))
    for name, f in fams.items():
        if f["type"] == "counter":
            assert name.endswith("_total"), "counter %s does not end in _total" % name
    return fams


def check_histograms(fams):
    """Every histogram: per label set, buckets cumulative in ascending le,
    +Inf == _count.  Returns how many series were checked."""
    n = 0
    for name, f in fams.items():
        if f["type"] != "histogram":
            continue
        series = {}
        for sname, lab, v in f["samples"]:
            base = tuple(sorted((k, x) for k, x in lab.items() if k != "le"))
            s = series.setdefault(base, {"buckets": [], "count": None, "sum": None})
            if sname == name + "_bucket":
                s["buckets"].append((parse_value(lab["le"]), v))
            elif sname == name + "_count":
                s["count"] = v
            elif sname == name + "_sum":
                s["sum"] = v
        for base, s in series.items():
            les = [le for le, _ in s["buckets"]]
            assert les == sorted(les) and les[-1] == float("inf"), (name, base, les)
            counts = [c for _, c in s["buckets"]]
            assert all(a <= b for a, b in zip(counts, counts[1:])), (name, base, counts)
            assert counts[-1] == s["count"], (name, base, counts[-1], s["count"])
            assert s["sum"] is not None and s["sum"] >= 0
            n += 1
    return n


def total(fams, name, **want):
    """Sum of the samples called name (a family's, or a histogram's
    _count/_sum/_bucket) whose labels hold want."""
    return sum(v for f in fams.values() for sname, lab, v in f["samples"]
               if sname == name and all(lab.get(k) == x for k, x in want.items()))


def http(host, port, path, timeout=10):
    """(status, headers, body) of a GET."""
    try:
        r = urllib.request.urlopen("http://%s:%d%s" % (host, port, path), timeout=timeout)
        return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def raw(host, port, data, timeout=10, pace=None):
    """Sends data (a byte at a time, pace seconds apart, when pace) and
    reads until the server closes or timeout; returns (bytes, closed)."""
    s = socket.create_connection((host, port), timeout=timeout)
    got = b""
    deadline = time.time() + timeout
    try:
        if pace:
            for i in range(len(data)):
                try:
                    s.sendall(data[i:i + 1])
                except OSError:
                    return got, True
                time.sleep(pace)
                if time.time() > deadline:
                    return got, False
        else:
            s.sendall(data)
        while time.time() < deadline:
            s.settimeout(max(0.1, deadline - time.time()))
            try:
                b = s.recv(65536)
            except socket.timeout:
                return got, False
            except ConnectionResetError:
                return got, True
            if not b:
                return got, True
            got += b
        return got, False
    finally:
        s.close()


def chromium():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


class StatusTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        c = moortest.Cluster(BUILD, 3, prefix="moor-status-")
        for n in c.nodes:
            n.http = moortest.free_port(n.host)
            n.resp = moortest.free_port(n.host)
            n.write_config('http_listen = "%s:%d", resp_listen = "%s:%d",'
                           % (n.host, n.http, n.host, n.resp),
                           [m.addr for m in c.nodes], c.secret)
        c.start()
        c.wait_converged()
        cls.c = c

    def node(self, i):
        return self.c.nodes[i]

    def scrape(self, n):
        st, hdr, body = http(n.host, n.http, "/metrics")
        self.assertEqual(st, 200)
        self.assertIn("version=0.0.4", hdr.get("Content-Type", ""))
        return parse_metrics(body.decode())

    def test_1_metrics(self):
        n = self.node(0)
        before = self.scrape(n)
        puts0 = total(before, "moor_requests_total", method="put", space="default")
        gets0 = total(before, "moor_requests_total", method="get")
        conn = n.conn()
        for i in range(20):
            err, _ = conn.call("put", "m%d" % i, "v")
            self.assertIsNone(err)
        for i in range(5):
            conn.call("get", "m%d" % i)
        err, _ = conn.call("get", "x", {"space": "no-such-space"})
        self.assertIsNotNone(err)
        after = self.scrape(n)
        self.assertEqual(total(after, "moor_requests_total", method="put", space="default"),
                         puts0 + 20)
        self.assertEqual(total(after, "moor_requests_total", method="get"), gets0 + 6)
        self.assertGreaterEqual(total(after, "moor_request_errors_total", method="get",
                                      space="other"), 1)
        self.assertGreaterEqual(check_histograms(after), 2)
        self.assertEqual(total(after, "moor_request_duration_seconds_count", method="put"),
                         total(after, "moor_requests_total", method="put"))
        # the collected figures are there, by their documented names
        for fam in ("moor_engine_disk_bytes", "moor_cluster_members", "moor_hints_pending",
                    "moor_peer_requests_total", "moor_lua_handler_calls_total",
                    "moor_transfer_state", "moor_engine_level_tables"):
            self.assertIn(fam, after)
        self.assertEqual(total(after, "moor_cluster_members", status="up"), 3)
        # info agrees (no requests in between but info's own)
        info = n.info()
        bm = info["requests"]["by_method"]
        self.assertEqual(bm["put"]["count"], total(after, "moor_requests_total", method="put"))
        self.assertEqual(bm["get"]["errors"],
                         total(after, "moor_request_errors_total", method="get"))
        # RESP commands count too, as the method of their kind
        puts1 = total(after, "moor_requests_total", method="put", space="default")
        s = socket.create_connection((n.host, n.resp), 10)
        s.settimeout(10)
        s.sendall(b"*3\r\n$3\r\nSET\r\n$2\r\nr1\r\n$1\r\nv\r\n*2\r\n$4\r\nINCR\r\n$2\r\nr1\r\n")
        got = b""
        while got.count(b"\r\n") < 2:
            b = s.recv(4096)
            self.assertTrue(b, "the RESP port closed")
            got += b
        s.close()
        self.assertTrue(got.startswith(b"+OK\r\n-ERR"), got)
        after = self.scrape(n)
        self.assertEqual(total(after, "moor_requests_total", method="put", space="default"),
                         puts1 + 2)  # SET, INCR
        # INCR of a value that is not an integer: an error of a put
        self.assertEqual(total(after, "moor_request_errors_total", method="put", code="ERR"), 1)
        # the `metrics` method: the same registry as a map
        err, res = conn.call("metrics")
        self.assertIsNone(err)
        names = {f["name"] for f in res["families"]}
        self.assertIn("moor_request_duration_seconds", names)
        self.assertEqual(res["node"], n.id)
        conn.close()

    def test_2_bad_http_input(self):
        n = self.node(1)
        h, p = n.host, n.http
        got, closed = raw(h, p, b"GET / HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n")
        self.assertTrue(got.startswith(b"HTTP/1.1 431 "), got[:80])
        self.assertTrue(closed)
        got, closed = raw(h, p, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n")
        self.assertTrue(got.startswith(b"HTTP/1.1 400 "), got[:80])
        self.assertTrue(closed)
        got, _ = raw(h, p, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        self.assertTrue(got.startswith(b"HTTP/1.1 405 "), got[:80])
        self.assertIn(b"Allow: GET, HEAD", got)
        self.assertEqual(http(h, p, "/nope")[0], 404)
        got, _ = raw(h, p, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertTrue(got.startswith(b"HTTP/1.1 200 "), got[:80])
        self.assertTrue(got.endswith(b"\r\n\r\n"), got)  # no body
        self.assertIn(b"Content-Length: 3", got)
        # two pipelined requests, answered in order on one connection
        got, _ = raw(h, p, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                           b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertEqual(got.count(b"HTTP/1.1 "), 2, got)
        self.assertLess(got.index(b"200 OK"), got.index(b"404 Not Found"))
        # 64 connections at most: the 65th is closed at once, unanswered
        held = [socket.create_connection((h, p), timeout=10) for _ in range(64)]
        try:
            time.sleep(0.3)
            got, closed = raw(h, p, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", timeout=5)
            self.assertTrue(closed and got == b"", got)
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.3)
        self.assertEqual(http(h, p, "/healthz")[2], b"ok\n")
        # a head a byte every 0.5 s: closed by the deadline (10 s), not kept
        # alive by the trickle; the node serves meanwhile
        t0 = time.time()
        got, closed = raw(h, p, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 60,
                          timeout=40, pace=0.5)
        self.assertTrue(closed, "a slow client was not closed")
        self.assertEqual(got, b"")
        print("\nstatus: a slow client was closed after %.1f s" % (time.time() - t0),
              file=sys.stderr)
        self.assertEqual(http(h, p, "/healthz")[2], b"ok\n")
        self.assertEqual(n.info()["node"], n.id)

    def test_3_top(self):
        n = self.node(0)
        r = subprocess.run([os.path.join(BUILD, "moor"), "-h", n.addr, "top", "--count", "2",
                            "--json", "--interval", "0.5"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.strip().split("\n")
        self.assertEqual(len(lines), 2, r.stdout)
        first, second = (json.loads(x) for x in lines)
        for snap in (first, second):
            self.assertEqual(sorted(m["node"] for m in snap["nodes"]), ["n1", "n2", "n3"])
            for m in snap["nodes"]:
                self.assertTrue(m["reachable"], m)
                self.assertEqual(m["status"], "up")
                self.assertIsInstance(m["disk_bytes"], int)
                self.assertIsInstance(m["hints"], int)
                self.assertIsInstance(m["p99_ms"], float)
        self.assertTrue(all(m["req_s"] is None for m in first["nodes"]))
        self.assertTrue(all(isinstance(m["req_s"], float) for m in second["nodes"]))
        # without a terminal: plain lines, no escape codes
        r = subprocess.run([os.path.join(BUILD, "moor"), "-h", n.addr, "top", "--count", "1"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("\033", r.stdout)
        self.assertIn("NODE", r.stdout)
        self.assertEqual(subprocess.run([os.path.join(BUILD, "moor"), "top", "--count", "0"],
                                        capture_output=True, timeout=30).returncode, 2)

    def shoot(self, n, tag):
        """(red pixels inside the ring's area, the DOM) of n's page."""
        from PIL import Image
        tmp = tempfile.mkdtemp(prefix="moor-chromium-", dir=self.c.tmp)
        png = os.path.join(tmp, "%s.png" % tag)
        url = "http://%s:%d/" % (n.host, n.http)
        base = [chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                "--user-data-dir=%s" % os.path.join(tmp, "profile")]
        r = subprocess.run(base + ["--screenshot=%s" % png, "--window-size=1200,900", url],
                           capture_output=True, timeout=CHROMIUM_S, preexec_fn=moortest.die_with_parent)
        self.assertTrue(os.path.exists(png), r.stderr[-2000:])
        dom = subprocess.run(base + ["--dump-dom", url], capture_output=True, text=True,
                             timeout=CHROMIUM_S, preexec_fn=moortest.die_with_parent).stdout
        img = Image.open(png).convert("RGB")
        # the ring: the SVG's box on the page (x 16..676, y 80..560)
        red = 0
        px = img.load()
        for y in range(80, min(560, img.size[1])):
            for x in range(16, min(676, img.size[0])):
                p = px[x, y]
                if all(abs(a - b) <= 12 for a, b in zip(p, DOWN_RGB)):
                    red += 1
        return red, dom

    def test_4_status_page_shows_down_node(self):
        if not chromium():
            if os.environ.get("MOOR_TEST_ALLOW_SKIP"):
                self.skipTest("chromium is not installed")
            self.fail("chromium is not installed (scripts/deps.sh installs it)")
        n1, n2, n3 = self.c.nodes
        red_up, dom_up = self.shoot(n1, "all-up")
        self.assertIn('data-id="n3" data-status="up"', dom_up)
        n3.kill9()
        deadline = time.time() + 40
        while time.time() < deadline:
            views = [{m["id"]: m["status"] for m in self.c.ring(o)["nodes"]} for o in (n1, n2)]
            if all(v.get("n3") == "down" for v in views):
                break
            time.sleep(0.2)
        else:
            self.fail("n1 and n2 did not see n3 down within 40 s")
        red_down, dom = self.shoot(n1, "n3-down")
        print("\nstatus: red pixels in the ring: %d with all up, %d with n3 down"
              % (red_up, red_down), file=sys.stderr)
        self.assertLess(red_up, 100)
        self.assertGreater(red_down, 3000)
        # n3's arc and its table row, both down
        self.assertRegex(dom, r'<g class="member" data-id="n3" data-status="down">')
        self.assertRegex(dom, r'<tr data-id="n3" data-status="down"><td>n3</td>'
                              r'<td class="st-down">down</td>')
        self.assertRegex(dom, r"n3 \(down")
        st = json.loads(http(n1.host, n1.http, "/status.json")[2])
        self.assertEqual({m["id"]: m["status"] for m in st["ring"]["nodes"]}["n3"], "down")


def main():
    global BUILD
    args, rest = moortest.parse_args(BUILD)
    BUILD = args.build
    sys.exit(0 if moortest.run_unittest(rest) else 1)


if __name__ == "__main__":
    main()
