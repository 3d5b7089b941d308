"""Python benchmark: atomwrite against atomicwrites 1.4.1, safer and the careful hand recipe.

Same method as the Rust benchmark (BENCHMARKS.md): one run, one filesystem, contenders
interleaved round-robin (the order rotates every round), equal durability within each table,
every output verified (contents read back, no leftover temp files), ``sync`` before every
sample (untimed) so no contender pays for another's dirty data, medians and ratios reported.
Device flushes per operation are read from the block device's own counter when available.

    python bench/bench.py [--dir DIR] [--quick] [--json OUT]

Tables:
  full-4k / full-64m  durability "full" (data fsync before the rename, directory fsync after):
                      atomwrite.write, atomwrite.open, atomwrite.write(checksum=False),
                      atomicwrites 1.4.1, the hand recipe.
  none-4k / none-64m  no fsync at all (safer never fsyncs): atomwrite durability="none" (with
                      and without its sha256), safer.open(temp_file=True), the hand recipe
                      without its fsyncs.
  atomwrite computes a sha256 of every write by default (the receipt carries it); no peer
  does, hence the checksum=False rows: the same work as the peers.
  batch-1000          1,000 new 4 KiB files, durability full: atomwrite.Batch vs a loop of
                      the fastest full-durability single-file contender other than atomwrite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from typing import Callable, Dict, List, Optional, Tuple

import atomicwrites
import safer

import atomwrite

Writer = Callable[[str, bytes], None]


# --- contenders --------------------------------------------------------------------------------


def aw_write(path: str, data: bytes) -> None:
    atomwrite.write(path, data)


def aw_open(path: str, data: bytes) -> None:
    with atomwrite.open(path, "wb") as f:
        f.write(data)


def aw_write_nohash(path: str, data: bytes) -> None:
    atomwrite.write(path, data, checksum=False)


def aw_write_none(path: str, data: bytes) -> None:
    atomwrite.write(path, data, durability="none")


def aw_write_none_nohash(path: str, data: bytes) -> None:
    atomwrite.write(path, data, durability="none", checksum=False)


def atomicwrites_write(path: str, data: bytes) -> None:
    # fsyncs the file before the rename and the directory after it (1.4.1 on Linux).
    with atomicwrites.atomic_write(path, mode="wb", overwrite=True) as f:
        f.write(data)


def hand_recipe(path: str, data: bytes) -> None:
    """The careful recipe: temp in the same directory, write, flush, fsync, replace, fsync dir."""
    d = os.path.dirname(path) or "."
    with tempfile.NamedTemporaryFile(dir=d, delete=False) as f:
        try:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        except BaseException:
            os.unlink(f.name)
            raise
    os.replace(f.name, path)
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def hand_recipe_nosync(path: str, data: bytes) -> None:
    d = os.path.dirname(path) or "."
    with tempfile.NamedTemporaryFile(dir=d, delete=False) as f:
        f.write(data)
    os.replace(f.name, path)


def safer_write(path: str, data: bytes) -> None:
    # temp_file=True: a temp in the directory and os.replace at close (no fsync anywhere).
    with safer.open(path, "wb", temp_file=True) as f:
        f.write(data)


FULL: Dict[str, Writer] = {
    "atomwrite.write": aw_write,
    "atomwrite.open": aw_open,
    "atomwrite.write(checksum=False)": aw_write_nohash,
    "atomicwrites 1.4.1": atomicwrites_write,
    "hand recipe": hand_recipe,
}
NONE: Dict[str, Writer] = {
    "atomwrite.write(none)": aw_write_none,
    "atomwrite.write(none, checksum=False)": aw_write_none_nohash,
    "safer 6 (temp_file)": safer_write,
    "hand recipe (no fsync)": hand_recipe_nosync,
}


# --- measurement -------------------------------------------------------------------------------


def flush_counter(path: str) -> Optional[Callable[[], int]]:
    """The block device's flush count (field 16 of /sys/dev/block/M:m/stat), if readable."""
    st = os.stat(path)
    stat = f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}/stat"
    try:
        fields = open(stat).read().split()
        if len(fields) < 16:
            return None
    except OSError:
        return None
    return lambda: int(open(stat).read().split()[15])


def fresh(i: int, size: int) -> bytes:
    """Distinct contents for every sample (a fixed random block, stamped)."""
    block: bytes = fresh.block  # type: ignore[attr-defined]
    stamp = i.to_bytes(8, "little", signed=True)
    if size <= len(block):
        return stamp + block[8:size]
    return (stamp + block * (size // len(block) + 1))[:size]


fresh.block = os.urandom(1 << 20)  # type: ignore[attr-defined]


def summary(xs: List[float]) -> Dict[str, float]:
    s = sorted(xs)
    p90 = s[min(len(s) - 1, max(0, int(round(0.9 * len(s))) - 1))]
    return {"median": statistics.median(s), "p90": p90, "min": s[0], "n": float(len(s))}


def verify(dirpath: str, expect: Dict[str, bytes]) -> None:
    names = set(os.listdir(dirpath))
    extra = names - set(expect)
    if extra:
        raise SystemExit(f"leftover files in {dirpath}: {sorted(extra)[:5]}")
    for name, data in expect.items():
        with open(os.path.join(dirpath, name), "rb") as f:
            if f.read() != data:
                raise SystemExit(f"wrong contents in {name}")


def single(
    base: str, table: str, contenders: Dict[str, Writer], size: int, rounds: int
) -> Dict[str, Dict[str, float]]:
    dirs = {}
    for k, name in enumerate(contenders):
        dirs[name] = os.path.join(base, f"{table}-{k}")
        os.mkdir(dirs[name])
    flushes = flush_counter(base)
    times: Dict[str, List[float]] = {n: [] for n in contenders}
    fl: Dict[str, List[int]] = {n: [] for n in contenders}
    names = list(contenders)
    for r in range(-2, rounds):  # two untimed warm-up rounds
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            path = os.path.join(dirs[name], "out.bin")
            data = fresh(r + 10, size)
            os.sync()  # untimed: start clean
            f0 = flushes() if flushes else 0
            t0 = time.perf_counter()
            contenders[name](path, data)
            dt = time.perf_counter() - t0
            f1 = flushes() if flushes else 0
            verify(dirs[name], {"out.bin": data})
            if r >= 0:
                times[name].append(dt)
                fl[name].append(f1 - f0)
    out = {}
    for n in names:
        s = summary(times[n])
        s["flushes"] = statistics.median(fl[n]) if flushes else float("nan")
        out[n] = s
    return out


def batch(base: str, rounds: int, files: int, loop_name: str, loop: Writer) -> Dict[str, Dict[str, float]]:
    def aw_batch(d: str, datas: List[bytes]) -> None:
        with atomwrite.Batch() as b:
            for i, data in enumerate(datas):
                b.write(os.path.join(d, f"f{i:04}"), data)

    def peer_loop(d: str, datas: List[bytes]) -> None:
        for i, data in enumerate(datas):
            loop(os.path.join(d, f"f{i:04}"), data)

    contenders: Dict[str, Callable[[str, List[bytes]], None]] = {
        "atomwrite.Batch": aw_batch,
        f"loop of {loop_name}": peer_loop,
    }
    flushes = flush_counter(base)
    times: Dict[str, List[float]] = {n: [] for n in contenders}
    fl: Dict[str, List[int]] = {n: [] for n in contenders}
    names = list(contenders)
    for r in range(-1, rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            d = os.path.join(base, f"batch-{r}-{names.index(name)}")
            os.mkdir(d)
            datas = [fresh(r * files + i, 4096) for i in range(files)]
            os.sync()
            f0 = flushes() if flushes else 0
            t0 = time.perf_counter()
            contenders[name](d, datas)
            dt = time.perf_counter() - t0
            f1 = flushes() if flushes else 0
            verify(d, {f"f{i:04}": x for i, x in enumerate(datas)})
            shutil.rmtree(d)
            if r >= 0:
                times[name].append(dt)
                fl[name].append(f1 - f0)
    out = {}
    for n in names:
        s = summary(times[n])
        s["flushes"] = statistics.median(fl[n]) if flushes else float("nan")
        out[n] = s
    return out


def fmt_t(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.3f} s"


def table(title: str, res: Dict[str, Dict[str, float]], ours: str, per: int = 1) -> str:
    base = res[ours]["median"]
    peers = [n for n in res if not n.startswith("atomwrite")]
    fastest_peer = min(res[n]["median"] for n in peers) if peers else float("nan")
    lines = [
        f"#### {title}",
        "",
        "| contender | median | p90 | min | n | device flushes/op | speed vs fastest peer |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, s in res.items():
        lines.append(
            f"| {n} | {fmt_t(s['median'])} | {fmt_t(s['p90'])} | {fmt_t(s['min'])} | {int(s['n'])} "
            f"| {s['flushes'] / per:.1f} | {fastest_peer / s['median']:.2f}× |"
        )
    lines.append("")
    lines.append(
        f"**{ours}: {fastest_peer / base:.2f}× the speed of the fastest peer** "
        f"(fastest peer median / {ours} median; > 1 = faster than every peer)."
    )
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=os.environ.get("TEST_DIR"))
    ap.add_argument("--quick", action="store_true", help="few rounds: a smoke run")
    ap.add_argument("--json", help="also write the raw numbers here")
    a = ap.parse_args()
    root = a.dir or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "target")
    os.makedirs(root, exist_ok=True)
    base = tempfile.mkdtemp(prefix="atomwrite-py-bench-", dir=root)
    r4k, r64m, rb, nfiles = (20, 2, 1, 200) if a.quick else (200, 15, 3, 1000)
    t_start = time.time()
    load0 = os.getloadavg()
    try:
        res = {
            "full-4k": single(base, "full4k", FULL, 4096, r4k),
            "none-4k": single(base, "none4k", NONE, 4096, r4k),
            "full-64m": single(base, "full64m", FULL, 64 << 20, r64m),
            "none-64m": single(base, "none64m", NONE, 64 << 20, r64m),
        }
        peers = [n for n in FULL if not n.startswith("atomwrite")]
        fastest = min(peers, key=lambda n: res["full-4k"][n]["median"])
        res["batch"] = batch(base, rb, nfiles, fastest, FULL[fastest])
    finally:
        shutil.rmtree(base, ignore_errors=True)
    load1 = os.getloadavg()
    st = os.statvfs(root)
    fs = "?"
    try:
        dev = os.stat(root).st_dev
        for line in open("/proc/self/mountinfo"):
            parts = line.split()
            mj, mn = parts[2].split(":")
            if os.makedev(int(mj), int(mn)) == dev:
                fs = parts[parts.index("-") + 1]
    except OSError:
        pass
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    print(
        f"Python {platform.python_version()}, atomwrite (this tree), atomicwrites "
        f"{atomicwrites.__version__}, safer; {os.cpu_count()} CPU {cpu}; Linux "
        f"{platform.release()}; {fs} at {root} (block size {st.f_bsize}); "
        f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(t_start))}–"
        f"{time.strftime('%H:%M UTC', time.gmtime())}; load average {load0[0]:.1f} → {load1[0]:.1f}"
    )
    print()
    print(table("4 KiB replace, durability full", res["full-4k"], "atomwrite.write"))
    print(table("64 MiB replace, durability full", res["full-64m"], "atomwrite.write"))
    print(table("4 KiB replace, no fsync (safer's level)", res["none-4k"], "atomwrite.write(none)"))
    print(table("64 MiB replace, no fsync (safer's level)", res["none-64m"], "atomwrite.write(none)"))
    print(table(f"{nfiles} new 4 KiB files, durability full", res["batch"], "atomwrite.Batch"))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
