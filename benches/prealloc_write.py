"""Buffered sequential writes into a new file, plain against into blocks reserved first with
fallocate(FALLOC_FL_KEEP_SIZE), alternating. Usage: python3 benches/prealloc_write.py [DIR]
(default: /tmp). Writes 1 GiB per run in 128 KiB pwrites; the fallocate is not timed."""
import ctypes
import os
import sys
import time

SIZE = 1 << 30
CHUNK = 128 << 10
FALLOC_FL_KEEP_SIZE = 1
libc = ctypes.CDLL("libc.so.6", use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]


def run(directory, reserve):
    path = os.path.join(directory, "prealloc-write.bin")
    if os.path.exists(path):
        os.unlink(path)
    os.sync()
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if reserve and libc.fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, SIZE) != 0:
            sys.exit(f"fallocate: {os.strerror(ctypes.get_errno())}")
        buf = b"x" * CHUNK
        started = time.perf_counter()
        for offset in range(0, SIZE, CHUNK):
            os.pwrite(fd, buf, offset)
        return SIZE / (time.perf_counter() - started) / 1e6
    finally:
        os.close(fd)
        os.unlink(path)


directory = sys.argv[1] if len(sys.argv) > 1 else "/tmp"
for round_ in range(6):
    for reserve in ([False, True] if round_ % 2 else [True, False]):
        print("reserved" if reserve else "plain   ", f"{run(directory, reserve):,.0f} MB/s", flush=True)
