"""Shared conventions of the Python client helpers, mirrored in tests/support/mod.rs.

Message i of a generated stream has key `k{i % keys}` (no key when keys is 0) and value
`v{i}-` padded to `size` bytes with the letter `a + i % 26`. Output is one record per line,
tab-separated, so the Rust side can parse it without a JSON library:

    ack  <partition> <offset> <i>             a delivery report (producers)
    err  <i> <error>                          a failed delivery (producers)
    msg  <partition> <offset> <key-hex|-> <value-hex> <timestamp-ms>   (consumers)

Anything unexpected exits non-zero with the reason on stderr: the tests fail loudly.
"""

import sys


def key(i, keys):
    if keys <= 0:
        return None
    return ("k%d" % (i % keys)).encode()


def value(i, size):
    head = ("v%d-" % i).encode()
    if size <= len(head):
        return head
    return head + bytes([ord("a") + i % 26]) * (size - len(head))


def emit(*fields):
    sys.stdout.write("\t".join(str(f) for f in fields) + "\n")


def emit_message(partition, offset, k, v, timestamp_ms):
    emit("msg", partition, offset, k.hex() if k is not None else "-", v.hex() if v is not None else "-", timestamp_ms)


def fail(message):
    sys.stdout.flush()
    sys.stderr.write("error: %s\n" % message)
    sys.exit(1)
