"""Errors (errno per class), symlink policy, owners, threads and the GIL, asyncio, checkpoints."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import pickle
import stat
import subprocess
import threading
import time
from typing import Iterator, List

import numpy as np
import pytest

import atomwrite
from conftest import NOBODY, as_nobody, entries, require_root, temps


# ---------------------------------------------------------------------------------------------
# errno mapping: every failure is the builtin OSError subclass open() would raise, with errno
# and filename set; the destination is unchanged and no temp remains.


def _unchanged(path: str, before: bytes) -> None:
    assert open(path, "rb").read() == before
    assert temps(os.path.dirname(path)) == []


def test_eexist_is_file_exists_error(d: str) -> None:
    p = os.path.join(d, "f")
    atomwrite.write(p, b"old")
    with pytest.raises(FileExistsError) as e:
        atomwrite.write(p, b"new", no_clobber=True)
    assert (e.value.errno, e.value.filename) == (errno.EEXIST, p)
    assert "create-only" in str(e.value)
    _unchanged(p, b"old")


def test_eisdir_is_is_a_directory_error(d: str) -> None:
    p = os.path.join(d, "dir")
    os.mkdir(p)
    with pytest.raises(IsADirectoryError) as e:
        atomwrite.write(p, b"x")
    assert e.value.errno == errno.EISDIR and e.value.filename == p
    with pytest.raises(IsADirectoryError):
        atomwrite.open(p + "/", "wb")
    assert os.path.isdir(p) and entries(d) == ["dir"]


def test_enotdir_is_not_a_directory_error(d: str) -> None:
    f = os.path.join(d, "file")
    atomwrite.write(f, b"plain")
    with pytest.raises(NotADirectoryError) as e:
        atomwrite.write(os.path.join(f, "child"), b"x")
    assert e.value.errno == errno.ENOTDIR and e.value.filename
    _unchanged(f, b"plain")


def test_enoent_is_file_not_found_error(d: str) -> None:
    with pytest.raises(FileNotFoundError) as e:
        atomwrite.copy(os.path.join(d, "missing"), os.path.join(d, "dst"))
    assert e.value.errno == errno.ENOENT and e.value.filename == os.path.join(d, "missing")
    assert entries(d) == []


def test_enametoolong(d: str) -> None:
    with pytest.raises(OSError) as e:
        atomwrite.write(os.path.join(d, "n" * 300), b"x")
    assert e.value.errno == errno.ENAMETOOLONG
    assert "255" in str(e.value) and e.value.filename == os.path.join(d, "n" * 300)
    assert entries(d) == []


def test_eacces_is_permission_error_for_another_user(d: str) -> None:
    require_root("a second uid (65534) writes into a directory it may not write")
    p = os.path.join(d, "f")
    atomwrite.write(p, b"root's")
    os.chmod(d, 0o755)

    def child() -> int:
        try:
            atomwrite.write(p, b"nobody's")
        except PermissionError as e:
            ok = e.errno == errno.EACCES and e.filename is not None and "permission" in str(e)
            return 0 if ok else 2
        return 1

    assert as_nobody(child) == 0
    _unchanged(p, b"root's")


def _tmpfs(path: str, opts: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", path], check=True)


@contextlib.contextmanager
def mounted(path: str, opts: str) -> Iterator[None]:
    _tmpfs(path, opts)
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", path], check=False)


def test_enospc_leaves_destination_and_no_temp(d: str) -> None:
    require_root("mounts a 1 MiB tmpfs")
    m = os.path.join(d, "small")
    os.mkdir(m)
    with mounted(m, "size=1m"):
        p = os.path.join(m, "f")
        atomwrite.write(p, b"old")
        for named in (False, True):
            with pytest.raises(OSError) as e:
                if named:
                    with atomwrite.open(p, "wb") as f:
                        for _ in range(4):
                            f.write(b"x" * (1 << 20))
                else:
                    atomwrite.write(p, b"x" * (4 << 20))
            assert e.value.errno == errno.ENOSPC and e.value.filename
            _unchanged(p, b"old")
        assert entries(m) == ["f"]


def test_erofs(d: str) -> None:
    require_root("mounts a read-only tmpfs")
    m = os.path.join(d, "ro")
    os.mkdir(m)
    with mounted(m, "size=1m"):
        atomwrite.write(os.path.join(m, "f"), b"old")
        subprocess.run(["mount", "-o", "remount,ro", m], check=True)
        with pytest.raises(OSError) as e:
            atomwrite.write(os.path.join(m, "f"), b"new")
        assert e.value.errno == errno.EROFS and "read-only" in str(e.value)
        _unchanged(os.path.join(m, "f"), b"old")


# ---------------------------------------------------------------------------------------------
# symlinks


def test_symlink_followed_by_default_and_replaced_with_follow_symlinks_false(d: str) -> None:
    target = os.path.join(d, "target")
    link = os.path.join(d, "link")
    atomwrite.write(target, b"old")
    os.symlink("target", link)
    r = atomwrite.write(link, b"through the link")
    assert r.path == target and os.readlink(link) == "target"
    assert open(target, "rb").read() == b"through the link"
    r = atomwrite.write(link, b"link replaced", follow_symlinks=False)
    assert r.path == link and not os.path.islink(link)
    assert open(link, "rb").read() == b"link replaced"
    assert open(target, "rb").read() == b"through the link", "target untouched"
    os.symlink("nowhere/x", os.path.join(d, "dangling"))
    with pytest.raises(FileNotFoundError):  # a followed link never creates directories
        atomwrite.write(os.path.join(d, "dangling"), b"x")
    assert not os.path.exists(os.path.join(d, "nowhere"))


@pytest.fixture
def sticky(d: str) -> str:
    """A world-writable sticky directory (like /tmp) owned by a third uid."""
    require_root("builds a sticky directory owned by another uid with a file of a second uid")
    s = os.path.join(d, "shared")
    os.mkdir(s)
    os.chown(s, 4242, 4242)
    os.chmod(s, 0o1777)
    return s


def test_sticky_rule_refuses_another_users_symlink(d: str, sticky: str) -> None:
    secret = os.path.join(d, "secret")
    atomwrite.write(secret, b"root only")
    os.chmod(secret, 0o600)
    link = os.path.join(sticky, "report.txt")
    os.symlink(secret, link)
    os.lchown(link, NOBODY, NOBODY)  # planted by another user
    for fn in (
        lambda: atomwrite.write(link, b"pwned"),
        lambda: atomwrite.open(link, "wb").close(),
        lambda: atomwrite.copy(secret, link),
    ):
        with pytest.raises(PermissionError) as e:
            fn()
        assert e.value.errno == errno.EACCES
        assert str(NOBODY) in str(e.value)
    assert open(secret, "rb").read() == b"root only"
    assert os.path.islink(link) and entries(sticky) == ["report.txt"]
    # Replacing the link itself is no redirect: allowed.
    atomwrite.write(link, b"mine", follow_symlinks=False)
    assert open(secret, "rb").read() == b"root only"


def test_sticky_rule_refuses_another_users_file(sticky: str) -> None:
    p = os.path.join(sticky, "data")
    open(p, "wb").write(b"nobody's")
    os.chown(p, NOBODY, NOBODY)
    with pytest.raises(PermissionError):
        atomwrite.write(p, b"root's")
    assert open(p, "rb").read() == b"nobody's" and os.stat(p).st_uid == NOBODY
    assert entries(sticky) == ["data"]


# ---------------------------------------------------------------------------------------------
# modes and owners


def test_owner_group_and_mode_preserved(d: str) -> None:
    require_root("chown to uid 65534")
    p = os.path.join(d, "owned")
    atomwrite.write(p, b"old")
    os.chown(p, NOBODY, NOBODY)
    os.chmod(p, 0o640)
    for write in (
        lambda: atomwrite.write(p, b"new"),
        lambda: _open_write(p, b"newer"),
        lambda: _batch_write(p, b"newest"),
    ):
        r = write()
        st = os.stat(p)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY, NOBODY, 0o640)
        assert r.owner_changed is None


def _open_write(p: str, b: bytes) -> atomwrite.Receipt:
    with atomwrite.open(p, "wb") as f:
        f.write(b)
    assert f.receipt is not None
    return f.receipt


def _batch_write(p: str, b: bytes) -> atomwrite.Receipt:
    with atomwrite.Batch() as batch:
        batch.write(p, b)
    return batch.receipts[0]


def test_unprivileged_writer_reports_owner_change_and_drops_setid(d: str) -> None:
    require_root("a second uid (65534) replaces root's set-uid file in a directory it may write")
    os.chmod(d, 0o777)
    p = os.path.join(d, "tool")
    atomwrite.write(p, b"#!/bin/sh\n", mode=0o4755)
    out = os.path.join(d, "receipt.pickle")

    def child() -> int:
        r = atomwrite.write(p, b"#!/bin/sh\necho replaced\n")
        open(out, "wb").write(pickle.dumps(r))
        return 0

    assert as_nobody(child) == 0
    r = pickle.loads(open(out, "rb").read())
    st = os.stat(p)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (NOBODY, 0o755)
    assert r.owner_changed == atomwrite.OwnerChange(0, 0, NOBODY, NOBODY, True)


def test_copy_preserve(d: str) -> None:
    require_root("cp -p keeps another uid's ownership")
    src = os.path.join(d, "src")
    open(src, "wb").write(b"data")
    os.chown(src, NOBODY, NOBODY)
    os.chmod(src, 0o2750)
    atomwrite.copy(src, os.path.join(d, "plain"))
    st = os.stat(os.path.join(d, "plain"))
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) & 0o7000 == 0, "never set-id without -p"
    atomwrite.copy(src, os.path.join(d, "kept"), preserve=True)
    st = os.stat(os.path.join(d, "kept"))
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY, NOBODY, 0o2750)


# ---------------------------------------------------------------------------------------------
# threads, the GIL, asyncio


def test_threads_write_concurrently(d: str) -> None:
    shared = os.path.join(d, "shared")
    payloads = [bytes([i]) * (256 << 10) for i in range(8)]
    errors: List[BaseException] = []

    def worker(i: int) -> None:
        try:
            for k in range(5):
                atomwrite.write(os.path.join(d, f"own-{i}"), payloads[i] + bytes([k]))
                atomwrite.write(shared, payloads[i])
                with atomwrite.open(os.path.join(d, f"stream-{i}"), "wb") as f:
                    f.write(payloads[i][:1000])
                    f.write(payloads[i][1000:])
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert open(shared, "rb").read() in payloads
    for i in range(8):
        assert open(os.path.join(d, f"own-{i}"), "rb").read() == payloads[i] + b"\x04"
        assert open(os.path.join(d, f"stream-{i}"), "rb").read() == payloads[i]
    assert temps(d) == []


def test_one_file_object_shared_by_threads(d: str) -> None:
    # Several threads write whole chunks into one file object (large chunks go straight to the
    # native layer, small ones through the buffer) while another polls it: no deadlock between
    # the GIL and the file's lock, every chunk lands whole, the receipt counts them all.
    p = os.path.join(d, "shared.bin")
    chunks = {i: bytes([i]) * ((64 << 10) if i % 2 else 100) for i in range(1, 9)}
    f = atomwrite.open(p, "wb", durability="none")
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            f.closed, f.temp_path  # noqa: B018

    def worker(i: int) -> None:
        for _ in range(50):
            f.write(chunks[i])

    poller = threading.Thread(target=poll)
    poller.start()
    threads = [threading.Thread(target=worker, args=(i,)) for i in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "deadlock"
    stop.set()
    poller.join()
    f.close()
    data = open(p, "rb").read()
    assert len(data) == 50 * sum(len(c) for c in chunks.values())
    assert f.receipt is not None and f.receipt.size == len(data)
    pos = 0
    while pos < len(data):  # a concatenation of whole chunks
        c = chunks[data[pos]]
        assert data[pos : pos + len(c)] == c, f"torn chunk at {pos}"
        pos += len(c)


def test_gil_is_released_while_waiting_for_another_publisher(d: str) -> None:
    # Deterministic: the publisher thread blocks inside the library until this thread (which
    # needs the GIL to run at all) releases the lock. A GIL held during the wait would
    # deadlock, and the join below would time out.
    p = os.path.join(d, "out")
    atomwrite.publish(p, b"1")
    lock = os.open(os.path.join(d, "out.versions", ".lock"), os.O_RDWR)
    fcntl.flock(lock, fcntl.LOCK_EX)
    result: List[int] = []
    t = threading.Thread(target=lambda: result.append(atomwrite.publish(p, b"2").version))
    t.start()
    spins = 0
    while spins < 200 and t.is_alive():  # this thread runs while the other waits
        spins += 1
        time.sleep(0.005)
    assert t.is_alive(), "the publisher must still be waiting for the lock"
    os.close(lock)
    t.join(timeout=60)
    assert not t.is_alive() and result == [2]


def test_gil_is_released_during_writes_and_fsync(d: str) -> None:
    # A ticker thread that needs the GIL for every step counts while the main thread is inside
    # one long native call. With the GIL held for the call it could not make a single step
    # inside it (at most one before the call starts and one after it ends).
    count = [0]
    stop = threading.Event()

    def ticker() -> None:
        while not stop.is_set():
            count[0] += 1
            time.sleep(0.0005)

    big = os.urandom(1 << 20) * 192  # 192 MiB: sha256 + write + fsync take a while anywhere
    t = threading.Thread(target=ticker)
    t.start()
    try:
        time.sleep(0.01)
        c0 = count[0]
        atomwrite.write(os.path.join(d, "big"), big, durability="full")
        c1 = count[0]
        with atomwrite.open(os.path.join(d, "big2"), "wb") as f:
            f.write(big)
            c2 = count[0]
        c3 = count[0]
    finally:
        stop.set()
        t.join()
    assert c1 - c0 >= 10, f"write: the ticker made {c1 - c0} steps"
    assert c2 - c1 >= 10, f"open().write: the ticker made {c2 - c1} steps"
    assert c3 - c2 >= 3, f"commit: the ticker made {c3 - c2} steps"


def test_works_under_asyncio_to_thread(d: str) -> None:
    async def main() -> List[atomwrite.Receipt]:
        return list(
            await asyncio.gather(
                *(
                    asyncio.to_thread(atomwrite.write, os.path.join(d, f"a{i}"), f"{i}")
                    for i in range(16)
                ),
                asyncio.to_thread(atomwrite.publish, os.path.join(d, "pub"), b"p"),  # type: ignore[arg-type]
            )
        )[:16]

    rs = asyncio.run(main())
    assert [open(r.path).read() for r in rs] == [str(i) for i in range(16)]
    assert atomwrite.latest(os.path.join(d, "pub")).version == 1  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------------
# ML checkpoints, torch-free: pickle and numpy


def test_checkpoint_round_trip_with_pickle_and_numpy(d: str) -> None:
    rng = np.random.default_rng(7)
    state = {
        "step": 1200,
        "weights": {"w1": rng.standard_normal((64, 32)), "b1": np.zeros(32)},
        "optimizer": [rng.standard_normal(100).astype(np.float32)],
    }
    ckpt = os.path.join(d, "ckpt", "model.pkl")
    with atomwrite.open(ckpt, "wb") as f:
        pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)
    back = pickle.load(open(ckpt, "rb"))
    assert back["step"] == 1200
    np.testing.assert_array_equal(back["weights"]["w1"], state["weights"]["w1"])
    np.testing.assert_array_equal(back["optimizer"][0], state["optimizer"][0])

    npy = os.path.join(d, "ckpt", "w.npy")
    with atomwrite.open(npy, "wb") as f:
        np.save(f, state["weights"]["w1"])
    np.testing.assert_array_equal(np.load(npy), state["weights"]["w1"])

    npz = os.path.join(d, "ckpt", "all.npz")  # zipfile: seeks back to patch headers
    with atomwrite.open(npz, "wb") as f:
        np.savez_compressed(f, **state["weights"])
    with np.load(npz) as z:
        np.testing.assert_array_equal(z["w1"], state["weights"]["w1"])
    assert f.receipt is not None
    import hashlib

    assert f.receipt.sha256 == hashlib.sha256(open(npz, "rb").read()).hexdigest()

    # A crash while saving (an exception mid-pickle) keeps the previous checkpoint.
    class Unpicklable:
        def __reduce__(self) -> str:
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError):
        with atomwrite.open(ckpt, "wb") as f:
            pickle.dump({"step": 1300, "bad": Unpicklable()}, f)
    assert pickle.load(open(ckpt, "rb"))["step"] == 1200
    assert temps(os.path.dirname(ckpt)) == []

