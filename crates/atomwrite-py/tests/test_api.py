"""write / open / copy / Batch / publish: results, the with-block rules, file-object behaviour."""

from __future__ import annotations

import csv
import datetime
import hashlib
import io
import json
import os
import pathlib
import pickle
import shutil
import stat
import subprocess
import sys

import pytest

import atomwrite
from conftest import entries, temps


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_write_bytes_str_and_paths_of_every_kind(d: str) -> None:
    p = os.path.join(d, "a", "b", "out.txt")
    r = atomwrite.write(p, b"one\n")  # parents created
    assert open(p, "rb").read() == b"one\n"
    assert (r.path, r.size, r.sha256, r.durability) == (p, 4, sha(b"one\n"), "full")
    assert r.written_at.tzinfo is datetime.timezone.utc
    atomwrite.write(pathlib.Path(p), "héllo")  # str: UTF-8 by default
    assert open(p, "rb").read() == "héllo".encode()
    atomwrite.write(os.fsencode(p), "héllo", encoding="latin-1")
    assert open(p, "rb").read() == "héllo".encode("latin-1")
    atomwrite.write(p, bytearray(b"ba"))
    atomwrite.write(p, memoryview(b"xmvx")[1:3])
    assert open(p, "rb").read() == b"mv"
    with pytest.raises(TypeError):
        atomwrite.write(p, b"x", encoding="utf-8")
    with pytest.raises(ValueError):
        atomwrite.write(p, b"x", durability="fast")  # type: ignore[arg-type]
    assert temps(os.path.dirname(p)) == []


def test_large_write_hash_matches_and_manifest_agrees(d: str) -> None:
    p = os.path.join(d, "big.bin")
    data = os.urandom(1 << 20) * 9  # past the size where the hash runs on a helper thread
    r = atomwrite.write(p, data, manifest=True)
    assert r.sha256 == sha(data) and r.size == len(data)
    assert atomwrite.verify(p).ok


def test_checksum_false_skips_the_hash(d: str) -> None:
    p = os.path.join(d, "nohash")
    for data in (b"small", os.urandom(9 << 20)):
        r = atomwrite.write(p, data, checksum=False)
        assert r.sha256 is None and r.size == len(data)
        with atomwrite.open(p, "wb", checksum=False) as f:
            f.write(data)
        assert f.receipt is not None and f.receipt.sha256 is None
    r = atomwrite.write(p, b"x", checksum=False, manifest=True)  # a manifest needs the hash
    assert r.sha256 == sha(b"x") and atomwrite.verify(p).ok


def test_every_durability_level_is_atomic_and_reported(d: str) -> None:
    p = os.path.join(d, "x")
    for level in ("full", "integrity", "none"):
        r = atomwrite.write(p, level, durability=level)  # type: ignore[arg-type]
        assert r.durability == level
        assert open(p).read() == level


def test_new_file_gets_umask_mode_not_0600_and_mode_is_exact(d: str) -> None:
    old = os.umask(0o022)
    try:
        p = os.path.join(d, "new")
        atomwrite.write(p, b"x")
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o644
        atomwrite.write(p, b"y", mode=0o600)
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
        os.chmod(p, 0o640)
        atomwrite.write(p, b"z")  # a replaced file keeps its mode
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o640
        with atomwrite.open(p, "wb") as f:
            f.write(b"w")
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o640
        q = os.path.join(d, "exact")
        atomwrite.write(q, b"x", mode=0o4755)  # explicit: exact, set-id included
        assert stat.S_IMODE(os.stat(q).st_mode) == 0o4755
        with pytest.raises(ValueError):
            atomwrite.write(q, b"x", mode=0o17777)
    finally:
        os.umask(old)


def test_no_clobber_is_create_only(d: str) -> None:
    p = os.path.join(d, "once")
    atomwrite.write(p, b"first", no_clobber=True)
    with pytest.raises(FileExistsError) as e:
        atomwrite.write(p, b"second", no_clobber=True)
    assert e.value.errno == 17 and e.value.filename == p
    assert open(p, "rb").read() == b"first"
    with pytest.raises(FileExistsError):
        with atomwrite.open(p, "x") as f:
            f.write("second")
    assert open(p, "rb").read() == b"first"
    assert entries(d) == ["once"]


def test_open_text_commits_on_exit_with_receipt(d: str) -> None:
    p = os.path.join(d, "state.json")
    with atomwrite.open(p, "w") as f:
        assert isinstance(f, io.TextIOBase)
        json.dump({"step": 1, "name": "é"}, f)
        assert not os.path.exists(p)  # nothing visible before the commit
        assert f.receipt is None
    assert json.load(open(p, encoding="utf-8")) == {"step": 1, "name": "é"}
    assert f.closed
    data = open(p, "rb").read()
    assert f.receipt is not None and f.receipt.size == len(data)
    assert f.receipt.sha256 == sha(data)
    assert entries(d) == ["state.json"]


def test_exception_in_with_keeps_old_file_and_leaves_no_temp(d: str) -> None:
    p = os.path.join(d, "cfg")
    atomwrite.write(p, b"old contents")
    for mode in ("w", "wb"):
        with pytest.raises(KeyError, match="boom"):
            with atomwrite.open(p, mode) as f:
                f.write("new" if mode == "w" else b"new" * 100_000)  # type: ignore[arg-type]
                f.flush()
                raise KeyError("boom")
        assert open(p, "rb").read() == b"old contents"
        assert entries(d) == ["cfg"], "no temp may remain"
        assert f.closed and f.receipt is None


def test_exception_leaves_no_named_temp_on_the_portable_path(d: str) -> None:
    # The portable path uses a named temp (`.cfg.RANDOM.tmp`): prove it is removed too.
    code = (
        "import atomwrite, sys\n"
        "p = sys.argv[1]\n"
        "try:\n"
        "    with atomwrite.open(p, 'wb') as f:\n"
        "        f.write(b'new')\n"
        "        f.flush()\n"
        "        assert f.temp_path is not None, 'portable path names its temp'\n"
        "        raise RuntimeError('x')\n"
        "except RuntimeError:\n"
        "    pass\n"
        "f = atomwrite.open(p, 'wb'); f.write(b'gc'); t = f.temp_path; del f\n"
        "import os; assert not os.path.exists(t), t\n"
    )
    p = os.path.join(d, "cfg")
    atomwrite.write(p, b"old")
    env = dict(os.environ, ATOMWRITE_PORTABLE="1")
    subprocess.run([sys.executable, "-c", code, p], env=env, check=True)
    assert open(p, "rb").read() == b"old"
    assert entries(d) == ["cfg"]


def test_close_commits_and_garbage_collection_discards(d: str) -> None:
    p = os.path.join(d, "c")
    f = atomwrite.open(p, "wb")
    f.write(b"closed")
    f.close()
    assert open(p, "rb").read() == b"closed"
    assert f.receipt is not None
    f.close()  # idempotent
    g = atomwrite.open(p, "w")
    g.write("abandoned")
    del g  # never committed
    assert open(p, "rb").read() == b"closed"
    h = atomwrite.open(p, "wb")
    h.write(b"discarded")
    h.discard()
    assert open(p, "rb").read() == b"closed"
    assert h.receipt is None
    with pytest.raises(ValueError):
        h.write(b"more")
    assert entries(d) == ["c"]


def test_file_object_protocol(d: str) -> None:
    p = os.path.join(d, "f.bin")
    with atomwrite.open(p, "wb") as f:
        assert f.writable() and not f.readable() and f.seekable()
        with pytest.raises(io.UnsupportedOperation):
            f.fileno()
        f.write(b"hello world")
        assert f.tell() == 11
        f.seek(0)
        f.write(b"J")
        f.seek(0, io.SEEK_END)
        f.writelines([b"!", b"?"])
        assert f.truncate(12) == 12
        f.seek(12)
        big = b"z" * (1 << 20)
        f.write(big)  # large bytes bypass the buffer
        assert f.tell() == 12 + len(big)
        f.write(b"end")
    want = b"Jello world!" + big + b"end"
    assert open(p, "rb").read() == want
    assert f.receipt is not None
    assert f.receipt.sha256 == sha(want), "hash recomputed after seeking back"
    assert f.name == p and "committed" in repr(f)
    with pytest.raises(ValueError):
        atomwrite.open(p, "r")  # type: ignore[call-overload]
    with pytest.raises(ValueError):
        atomwrite.open(p, "wb", encoding="utf-8")  # type: ignore[call-overload]


def test_text_mode_newline_and_encoding(d: str) -> None:
    p = os.path.join(d, "t.csv")
    with atomwrite.open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "name"])
        w.writerow([1, "Zoë"])
    assert open(p, "rb").read() == "id,name\r\n1,Zoë\r\n".encode()
    with atomwrite.open(p, "w", encoding="utf-16", newline="\r\n") as f:
        f.write("a\nb")
    assert open(p, "rb").read() == "a\r\nb".encode("utf-16")


def test_shutil_copyfileobj_and_copy(d: str) -> None:
    src = os.path.join(d, "src.bin")
    payload = os.urandom(3 << 20)
    open(src, "wb").write(payload)
    os.chmod(src, 0o751)
    dst = os.path.join(d, "dst.bin")
    with open(src, "rb") as s, atomwrite.open(dst, "wb") as f:
        shutil.copyfileobj(s, f)
    assert open(dst, "rb").read() == payload
    c = os.path.join(d, "copy.bin")
    r = atomwrite.copy(src, c, checksum=True)
    assert open(c, "rb").read() == payload and r.sha256 == sha(payload)
    assert stat.S_IMODE(os.stat(c).st_mode) == 0o751 & ~_umask()
    r = atomwrite.copy(src, os.path.join(d, "fast.bin"))  # reflink / copy_file_range
    assert r.sha256 is None and r.size == len(payload)
    with pytest.raises(FileExistsError):
        atomwrite.copy(src, c, no_clobber=True)
    with pytest.raises(IsADirectoryError):
        atomwrite.copy(d, os.path.join(d, "x"))
    with pytest.raises(FileNotFoundError):
        atomwrite.copy(os.path.join(d, "missing"), os.path.join(d, "x"))
    assert not os.path.exists(os.path.join(d, "x"))
    assert temps(d) == []


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_manifest_and_verify(d: str) -> None:
    p = os.path.join(d, "data.csv")
    r = atomwrite.write(p, b"id\n1\n", manifest=True)
    assert r.manifest == p + ".manifest.json"
    v = atomwrite.verify(p)
    assert v.ok and v.status == "ok" and v.sha256 == r.sha256 and v
    # A torn pair (new data beside the old manifest) is reported, never "ok".
    open(p, "wb").write(b"id\n2\n")
    v = atomwrite.verify(p)
    assert v.status == "mismatch" and not v.ok
    assert atomwrite.verify(os.path.join(d, "none")).status in ("missing_manifest", "missing_data")
    with atomwrite.open(p, "wb", manifest=True) as f:
        f.write(b"streamed")
    assert atomwrite.verify(p).ok


def test_batch_commits_all_with_one_barrier(d: str) -> None:
    with atomwrite.Batch() as b:
        for i in range(20):
            b.write(os.path.join(d, f"part-{i:02}.csv"), f"row {i}\n")
        assert len(b) == 20
        assert entries(d) == [], "nothing visible before the commit"
    assert len(b.receipts) == 20 and b.dir_syncs == 1
    assert open(os.path.join(d, "part-07.csv")).read() == "row 7\n"
    assert b.receipts[7].path == os.path.join(d, "part-07.csv")


def test_batch_discards_everything_on_exception(d: str) -> None:
    atomwrite.write(os.path.join(d, "keep"), b"old")
    with pytest.raises(RuntimeError):
        with atomwrite.Batch() as b:
            b.write(os.path.join(d, "keep"), b"new")
            b.write(os.path.join(d, "other"), b"new")
            raise RuntimeError("stop")
    assert entries(d) == ["keep"] and open(os.path.join(d, "keep"), "rb").read() == b"old"


def test_batch_error_reports_replaced_and_not_replaced(d: str) -> None:
    a, z = os.path.join(d, "a"), os.path.join(d, "z")
    b = atomwrite.Batch(no_clobber=True)
    b.write(a, b"new a")
    b.write(z, b"new z")
    atomwrite.write(z, b"taken")  # appears before the commit: the create-only rename refuses
    with pytest.raises(FileExistsError) as e:
        b.commit()
    err = e.value
    assert err.replaced == [a] and err.not_replaced == [z]  # type: ignore[attr-defined]
    assert open(a, "rb").read() == b"new a" and open(z, "rb").read() == b"taken"
    assert temps(d) == []


def test_publish_versions_latest_and_conflict(d: str) -> None:
    p = os.path.join(d, "report.csv")
    assert atomwrite.latest(p) is None
    r1 = atomwrite.publish(p, b"v1\n", expect=0)
    assert (r1.version, r1.previous) == (1, 0)
    r2 = atomwrite.publish(p, "v2\n", expect=1)
    assert r2.version == 2 and open(p).read() == "v2\n"
    with pytest.raises(atomwrite.ConflictError) as e:
        atomwrite.publish(p, b"stale", expect=1)
    assert (e.value.expected, e.value.actual) == (1, 2)
    assert isinstance(e.value, FileExistsError) and e.value.errno == 17
    assert e.value.filename == p
    assert open(p).read() == "v2\n"
    lt = atomwrite.latest(p)
    assert lt is not None and lt.version == 2 and lt.current
    src = os.path.join(d, "src.txt")
    open(src, "w").write("v3\n")
    r3 = atomwrite.publish(p, from_path=src, keep=2)
    assert r3.removed and r3.removed[0].endswith("v0000000001.csv")
    tree = os.path.join(d, "tree")
    os.makedirs(os.path.join(tree, "sub"))
    open(os.path.join(tree, "sub", "f"), "w").write("inside")
    site = os.path.join(d, "site")
    atomwrite.publish(site, dir=tree)
    assert open(os.path.join(site, "sub", "f")).read() == "inside"
    assert atomwrite.latest(site).kind == "directory"  # type: ignore[union-attr]
    vs = atomwrite.versions(p)
    assert [v.version for v in vs.versions] == [2, 3] and vs.current == 3
    assert vs.versions[-1].current and vs.versions[0].sha256 == sha(b"v2\n")
    assert atomwrite.verify(p).ok
    with pytest.raises(TypeError):
        atomwrite.publish(p)
    with pytest.raises(TypeError):
        atomwrite.publish(p, b"x", from_path=src)
    rep = atomwrite.clean(p)
    assert rep.leftovers == ()


def test_publish_wait_timeout_is_a_blocking_error(d: str) -> None:
    import fcntl

    p = os.path.join(d, "out")
    atomwrite.publish(p, b"1")
    lock = os.open(os.path.join(d, "out.versions", ".lock"), os.O_RDWR)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another publisher holds the lock
        with pytest.raises(BlockingIOError) as e:
            atomwrite.publish(p, b"2", wait_timeout=0.2)
        assert e.value.errno == 11
    finally:
        os.close(lock)
    assert atomwrite.latest(p).version == 1  # type: ignore[union-attr]


def test_clean_removes_only_dead_temps(d: str) -> None:
    dead = os.path.join(d, ".x.abcdefghijklmnop.tmp")
    open(dead, "wb").write(b"left by a crash")
    other = os.path.join(d, "x.tmp")
    open(other, "wb").write(b"not ours")
    rep = atomwrite.clean(d, older_than=3600, dry_run=True)
    assert rep.removed == () and rep.young != ()
    assert os.path.exists(dead)
    rep = atomwrite.clean(d, older_than=0)
    assert rep.removed == (dead,) and rep.bytes == len(b"left by a crash")
    assert entries(d) == ["x.tmp"], "another tool's temp is left alone"


def test_results_are_frozen_picklable_and_repr(d: str) -> None:
    p = os.path.join(d, "r")
    r = atomwrite.write(p, b"x", manifest=True)
    pub = atomwrite.publish(os.path.join(d, "v"), b"1")
    objs = [
        r,
        pub,
        atomwrite.latest(os.path.join(d, "v")),
        atomwrite.versions(os.path.join(d, "v")),
        atomwrite.verify(p),
        atomwrite.clean(d),
    ]
    for o in objs:
        assert pickle.loads(pickle.dumps(o)) == o
        assert repr(o).startswith(type(o).__name__ + "(")
    with pytest.raises(AttributeError):
        r.size = 3  # type: ignore[misc]
    assert hash(r) == hash(pickle.loads(pickle.dumps(r)))
    try:
        atomwrite.publish(os.path.join(d, "v"), b"2", expect=7)
    except atomwrite.ConflictError as e:
        e2 = pickle.loads(pickle.dumps(e))
        assert type(e2) is atomwrite.ConflictError
        assert (e2.expected, e2.actual, e2.errno, e2.filename) == (7, 1, 17, e.filename)


def test_urls_are_dispatched_not_written_as_local_files(
    d: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(d)
    with pytest.raises(ValueError, match="s3://bucket/k"):
        atomwrite.write("s3:/bucket/k", b"x")  # a typo, never a local file named `s3:`
    for fn in (
        lambda: atomwrite.open("memory:///k", "wb"),
        lambda: atomwrite.copy(os.path.join(d, "x"), "memory:///k"),
        lambda: atomwrite.Batch().write("memory:///k", b"x"),
        lambda: atomwrite.clean("memory:///k"),
    ):
        with pytest.raises(NotImplementedError):
            fn()
    assert entries(d) == []
    atomwrite.write("./s3:/k", b"x")  # the escape hatch: a local directory named `s3:`
    assert open(os.path.join(d, "s3:", "k"), "rb").read() == b"x"


@pytest.mark.skipif(not atomwrite._native.OBJECT_STORE, reason="built without object-store")
def test_object_store_urls_write_publish_latest_versions_verify(d: str) -> None:
    for base in ("file://" + d, "memory://"):
        url = base + "/obj.txt"
        r = atomwrite.write(url, "hello", manifest=True)
        assert (r.size, r.sha256) == (5, sha(b"hello")) and r.path.endswith("obj.txt")
        assert atomwrite.verify(url).ok
        with pytest.raises(FileExistsError) as e:
            atomwrite.write(url, b"again", no_clobber=True)
        assert e.value.errno == 17 and e.value.filename == url
        pub = base + "/model.bin"
        assert atomwrite.latest(pub) is None
        p1 = atomwrite.publish(pub, b"v1", expect=0)
        p2 = atomwrite.publish(pub, b"v2", expect=1, keep=5)
        assert (p1.version, p2.version, p2.previous, p2.sha256) == (1, 2, 1, sha(b"v2"))
        with pytest.raises(atomwrite.ConflictError) as c:
            atomwrite.publish(pub, b"stale", expect=1)
        assert (c.value.expected, c.value.actual) == (1, 2)
        lt = atomwrite.latest(pub)
        assert lt is not None and lt.version == 2 and lt.current
        vs = atomwrite.versions(pub)
        assert [v.version for v in vs.versions] == [1, 2] and vs.current == 2
        assert atomwrite.verify(pub).ok
    assert open(os.path.join(d, "obj.txt"), "rb").read() == b"hello"
