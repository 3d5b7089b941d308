"""Helpers for the SIGKILL test: self-checking payloads, a reader and a killer.

``python crashkit.py reader PATH STOPFILE``: reads PATH in a loop until STOPFILE exists;
exits 0 printing the number of reads, or 1 at the first missing or invalid file.

``python crashkit.py killer PATH N SEED``: N times, forks a Python writer that loops writing
PATH (``write`` and ``open`` at each durability level), lets it run 0-4 ms, SIGKILLs it, and
checks PATH; exits 0 printing ``kills=N``, or 1 at the first missing or invalid file.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import struct
import sys
import time

MAGIC = b"AWPY"


def payload(i: int) -> bytes:
    """A file that proves its own completeness: magic, index, length, body, sha256."""
    n = 1024 + (i * 7919) % (256 << 10)
    block = hashlib.sha256(str(i).encode()).digest()
    body = (block * (n // 32 + 1))[:n]
    head = MAGIC + struct.pack("<QQ", i, n)
    return head + body + hashlib.sha256(head + body).digest()


def check(data: bytes) -> str:
    """'' when `data` is one complete payload, else what is wrong."""
    if len(data) < 52 or data[:4] != MAGIC:
        return f"bad header ({len(data)} bytes)"
    _, n = struct.unpack("<QQ", data[4:20])
    if len(data) != 20 + n + 32:
        return f"torn: {len(data)} bytes, header says {20 + n + 32}"
    if hashlib.sha256(data[:-32]).digest() != data[-32:]:
        return "mixed contents: checksum mismatch"
    return ""


def writer(path: str, start: int) -> None:  # pragma: no cover - runs in the forked child
    import atomwrite

    i = start
    while True:
        i += 1
        data = payload(i)
        kind = i % 4
        if kind == 0:
            atomwrite.write(path, data, durability="none")
        elif kind == 1:
            atomwrite.write(path, data, durability="full")
        else:
            with atomwrite.open(path, "wb", durability="integrity" if kind == 2 else "none") as f:
                for off in range(0, len(data), 8192):
                    f.write(data[off : off + 8192])
                    f.flush()


def read_checked(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return check(f.read())
    except FileNotFoundError:
        return "missing"


def main() -> int:
    cmd = sys.argv[1]
    if cmd == "reader":
        path, stop = sys.argv[2], sys.argv[3]
        reads = 0
        while not os.path.exists(stop):
            why = read_checked(path)
            if why:
                print(f"reader: {why} after {reads} reads", flush=True)
                return 1
            reads += 1
        print(f"reads={reads}", flush=True)
        return 0
    if cmd == "killer":
        path, n, seed = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        import atomwrite  # imported before forking: each child starts writing at once

        atomwrite.write(path, payload(0))
        rng = random.Random(seed)
        for k in range(n):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - child
                try:
                    writer(path, k * 1_000_000)
                finally:
                    os._exit(0)
            time.sleep(rng.uniform(0, 0.004))
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            if not os.WIFSIGNALED(status):
                print(f"killer: writer {k} ended by itself ({status})", flush=True)
                return 1
            why = read_checked(path)
            if why:
                print(f"killer: after kill {k}: {why}", flush=True)
                return 1
        print(f"kills={n}", flush=True)
        return 0
    raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    sys.exit(main())
