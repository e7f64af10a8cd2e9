"""moorload.py -- a deterministic loader for the benchmark scripts.

Writes key:0 .. key:N-1 (the names `moor bench` uses) exactly once each,
with one bin value of a given size, over raw MessagePack-RPC (Debian's
python3-msgpack): requests are packed in batches, each batch sent with one
write, and up to `window` batches are in flight, so a million puts take
seconds rather than minutes.  `moor bench --ratio 0` cannot stand in: it
draws keys at random, so some are never written and others are written
several times, and every write without a ctx adds a sibling.

Every answer is checked; the first error stops the load (LoadError).
"""
import socket

import msgpack


class LoadError(RuntimeError):
    """The node answered a put with an error, or the connection failed."""


def load(addr, keys, value_size, batch=1000, window=8, timeout=60, first=0, space=None):
    """Puts key:first .. key:first+keys-1 on addr ((host, port)) with a
    value of value_size bytes (bin), into space (None: the default one).
    Returns the number written."""
    value = bytes((ord("a") + i % 26) for i in range(value_size))
    sock = socket.create_connection(addr, timeout)
    unpacker = msgpack.Unpacker(raw=False)
    sent = done = 0
    msgid = 0
    try:
        while done < keys:
            while sent < keys and sent - done < batch * window:
                n = min(batch, keys - sent)
                buf = bytearray()
                for i in range(first + sent, first + sent + n):
                    msgid += 1
                    params = ["key:%d" % i, value] + ([{"space": space}] if space else [])
                    buf += msgpack.packb([0, msgid, "put", params], use_bin_type=True)
                sock.sendall(buf)
                sent += n
            data = sock.recv(1 << 20)
            if not data:
                raise LoadError("the node closed the connection after %d puts" % done)
            unpacker.feed(data)
            for msg in unpacker:
                if msg[2] is not None:
                    raise LoadError("put answered an error: %r" % (msg[2],))
                done += 1
    finally:
        sock.close()
    return done
