"""moor_client -- a small Python client for a Moor node.

Speaks MessagePack-RPC over TCP with Debian's python3-msgpack
(run it with /usr/bin/python3).  One connection, not thread-safe.

    from moor_client import MoorClient, MoorError
    with MoorClient("127.0.0.1:7700", timeout=5) as c:
        w = c.put("k", {"any": ["msgpack", b"value"]})   # {"ctx": bytes}
        r = c.get("k")                                   # {"values": [...], "ctx": bytes} or None
        c.put("k", "new", ctx=r["ctx"])                  # replaces the versions r saw
        c.delete("k", ctx=...)                           # "del" is a Python keyword
        n = c.call("incr", "counter", 1)
        page = c.scan(limit=100)                          # {"keys": [...], "cursor": bytes or None}
        for key in c.scan_all(prefix="user:"): ...       # every page until the cursor is None

Keys are str or bytes (bytes travel as MessagePack bin).  Values are any
msgpack-able object and come back as the node stored them: str as str,
bytes as bytes, ExtType as ExtType.  A failed call raises
MoorError(code, message): the node's code (NOAUTH, HANDLER_ERROR, ...) or
the client's own: CONNECT, TIMEOUT, CLOSED, PROTOCOL.

Pipelining: send(method, *params) returns a msgid without waiting;
recv() returns (msgid, result, error) for the next answer in the order
the node sends them (error is a MoorError or None).  Blocking calls can be
mixed with pipelined ones: answers are matched by msgid, and answers read
while waiting for another are kept for recv().  After TIMEOUT the
connection stays usable (the late answer is dropped); after CLOSED or
PROTOCOL it is broken.
"""

import socket
import time
from collections import OrderedDict

import msgpack

__all__ = ["MoorClient", "MoorError"]

_MSGID_LIMIT = 2 ** 32
# The largest answer taken: MOOR_LIMIT_MAX_ANSWER (core/util/limits.h), as
# the C client; a get answers every sibling, so more than any request.
_MAX_FRAME = 128 * 1024 * 1024


class MoorError(Exception):
    """An error answer from the node, or a transport failure."""

    def __init__(self, code, message):
        super().__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message


def _parse_addr(addr):
    host, sep, port = addr.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise MoorError("CONNECT", "bad address %r (expected host:port)" % (addr,))
    return host, int(port)


def _opts(**kw):
    """The non-None keyword arguments as an opts map, or None when empty."""
    o = {k: v for k, v in kw.items() if v is not None}
    if "ctx" in o and isinstance(o["ctx"], str):
        o["ctx"] = o["ctx"].encode("utf-8", "surrogateescape")
    return o or None


class MoorClient:
    def __init__(self, addr="127.0.0.1:7700", timeout=5.0, token=None, max_frame=_MAX_FRAME):
        self.addr = addr
        self.timeout = timeout
        host, port = _parse_addr(addr)
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as e:
            raise MoorError("CONNECT", "cannot connect to %s: %s" % (addr, e)) from None
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._packer = msgpack.Packer(use_bin_type=True)
        self._max_frame = max_frame
        self._unpacker = msgpack.Unpacker(raw=False, strict_map_key=False,
                                          max_buffer_size=max_frame)
        self._next_id = 0
        self._pending = {}          # msgid -> True (awaited) or False (abandoned)
        self._ready = OrderedDict()  # msgid -> (result, error), not yet taken
        self._broken = None
        if token is not None:
            try:
                self.auth(token)
            except MoorError:
                self.close()
                raise

    # -- plumbing ---------------------------------------------------------

    def close(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._broken is None:
            self._broken = MoorError("CLOSED", "the client was closed")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _break(self, code, message):
        err = MoorError(code, message)
        self._broken = err
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        return err

    def _alloc_msgid(self):
        for _ in range(16):
            msgid = self._next_id
            self._next_id = (msgid + 1) % _MSGID_LIMIT
            if msgid not in self._pending and msgid not in self._ready:
                return msgid
        raise MoorError("CLIENT", "too many requests in flight")

    def send(self, method, *params):
        """Sends [0, msgid, method, params]; returns the msgid."""
        if self._broken is not None:
            raise self._broken
        msgid = self._alloc_msgid()
        try:
            frame = self._packer.pack([0, msgid, method, list(params)])
        except (TypeError, ValueError, OverflowError) as e:
            raise MoorError("ENCODE", str(e)) from None
        try:
            self._sock.settimeout(self.timeout)
            self._sock.sendall(frame)
        except socket.timeout:
            raise self._break("TIMEOUT", "could not send to %s within %s s"
                              % (self.addr, self.timeout)) from None
        except OSError as e:
            raise self._break("CLOSED", "send to %s failed: %s" % (self.addr, e)) from None
        self._pending[msgid] = True
        return msgid

    def _next_frame(self, deadline):
        while True:
            try:
                return next(self._unpacker)
            except StopIteration:
                pass
            except (ValueError, msgpack.UnpackException) as e:
                raise self._break("PROTOCOL", "bad MessagePack from %s: %s"
                                  % (self.addr, e)) from None
            left = deadline - time.monotonic()
            if left <= 0:
                raise MoorError("TIMEOUT", "no answer from %s within %s s"
                                % (self.addr, self.timeout))
            try:
                self._sock.settimeout(left)
                data = self._sock.recv(65536)
            except socket.timeout:
                raise MoorError("TIMEOUT", "no answer from %s within %s s"
                                % (self.addr, self.timeout)) from None
            except OSError as e:
                raise self._break("CLOSED", "receive from %s failed: %s"
                                  % (self.addr, e)) from None
            if not data:
                raise self._break("CLOSED", "%s closed the connection" % (self.addr,))
            try:
                self._unpacker.feed(data)
            except msgpack.BufferFull:
                raise self._break("PROTOCOL", "answer larger than the %d-byte limit"
                                  % (self._max_frame,)) from None

    def _read_answer(self, deadline):
        """(msgid, result, error) for the next awaited answer, or None for
        one that is dropped (notification, abandoned)."""
        f = self._next_frame(deadline)
        if isinstance(f, list) and len(f) == 3 and f[0] == 2:
            return None  # a notification: nothing here listens to them
        if not (isinstance(f, list) and len(f) == 4 and f[0] == 1
                and isinstance(f[1], int) and f[1] in self._pending):
            raise self._break("PROTOCOL", "unexpected frame from %s: %.80r" % (self.addr, f))
        msgid = f[1]
        awaited = self._pending.pop(msgid)
        if not awaited:
            return None
        err = None
        if f[2] is not None:
            e = f[2]
            if isinstance(e, list) and len(e) >= 2:
                err = MoorError(str(e[0]), str(e[1]))
            else:
                err = MoorError("ERROR", repr(e))
        return msgid, f[3], err

    def recv(self):
        """(msgid, result, error) of the next answer, in arrival order."""
        if self._ready:
            msgid, (result, err) = self._ready.popitem(last=False)
            return msgid, result, err
        if self._broken is not None:
            raise self._broken
        if not any(self._pending.values()):
            raise MoorError("CLIENT", "nothing in flight to receive")
        deadline = time.monotonic() + self.timeout
        while True:
            got = self._read_answer(deadline)
            if got is not None:
                return got

    def _wait(self, msgid):
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                got = self._read_answer(deadline)
            except MoorError:
                if msgid in self._pending:
                    self._pending[msgid] = False
                raise
            if got is None:
                continue
            gid, result, err = got
            if gid != msgid:
                self._ready[gid] = (result, err)
                continue
            if err is not None:
                raise err
            return result

    def request(self, method, *params):
        """Sends one request and waits for its answer."""
        return self._wait(self.send(method, *params))

    def inflight(self):
        return sum(1 for v in self._pending.values() if v) + len(self._ready)

    # -- the protocol's methods --------------------------------------------

    @staticmethod
    def _key(key):
        if not isinstance(key, (str, bytes)):
            raise TypeError("key must be str or bytes, not %s" % type(key).__name__)
        return key

    def get(self, key, space=None, r=None, timeout_ms=None):
        """{"values": [...], "ctx": bytes}, or None when the key is missing;
        with "expires_ms" when a value returned expires."""
        o = _opts(space=space, r=r, timeout_ms=timeout_ms)
        params = [self._key(key)] + ([o] if o else [])
        return self.request("get", *params)

    def put(self, key, value, ctx=None, space=None, w=None, timeout_ms=None, ttl_ms=None):
        """{"ctx": bytes}.  With ctx, replaces the versions that ctx saw;
        without, a write to an existing key becomes a sibling.  With
        ttl_ms, the value expires that many ms after the write."""
        o = _opts(ctx=ctx, space=space, w=w, timeout_ms=timeout_ms, ttl_ms=ttl_ms)
        params = [self._key(key), value] + ([o] if o else [])
        return self.request("put", *params)

    def delete(self, key, ctx=None, space=None, w=None, timeout_ms=None):
        """The protocol's "del".  True."""
        o = _opts(ctx=ctx, space=space, w=w, timeout_ms=timeout_ms)
        params = [self._key(key)] + ([o] if o else [])
        return self.request("del", *params)

    def scan(self, space=None, prefix=None, limit=None, cursor=None, values=None, r=None,
             timeout_ms=None):
        """One page of the keyspace's keys: {"keys": [...], "values": [...]
        (with values=True: each as get answers it), "cursor": bytes or None
        (None: the scan is done)}.  Pass the cursor back for the next page.
        Keys come in ring order, not key order, as str (bytes when they are
        not UTF-8); a page may be short or empty with a cursor."""
        o = _opts(space=space, prefix=prefix, limit=limit, cursor=cursor, values=values, r=r,
                  timeout_ms=timeout_ms)
        return self.request("scan", o or {})

    def scan_all(self, space=None, prefix=None, limit=None, values=False, r=None,
                 timeout_ms=None):
        """Every key of the scan, page by page (limit keys a page): yields
        key, or (key, value) with values=True.  Raises MoorError when a page
        fails."""
        cursor = None
        while True:
            page = self.scan(space, prefix, limit, cursor, values or None, r, timeout_ms)
            if values:
                yield from zip(page["keys"], page["values"])
            else:
                yield from page["keys"]
            cursor = page["cursor"]
            if cursor is None:
                return

    def call(self, name, *args):
        """Runs server-side handler `name`; returns what it returned."""
        return self.request("call", name, *args)

    def ping(self):
        return self.request("ping")

    def info(self):
        return self.request("info")

    def auth(self, token):
        return self.request("auth", token)
