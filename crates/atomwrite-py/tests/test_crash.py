"""SIGKILL a Python writer 1,000 times while a reader reads: never a torn or missing file."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Dict

import atomwrite
import crashkit
from conftest import temps

KIT = os.path.join(os.path.dirname(__file__), "crashkit.py")


def _run(d: str, kills: int, seed: int, env: Dict[str, str]) -> str:
    path = os.path.join(d, "state.bin")
    stop = os.path.join(d, "stop")
    atomwrite.write(path, crashkit.payload(0))
    reader = subprocess.Popen(
        [sys.executable, KIT, "reader", path, stop], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        killer = subprocess.run(
            [sys.executable, KIT, "killer", path, str(kills), str(seed)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            timeout=600,
        )
    finally:
        open(stop, "w").close()
        out, _ = reader.communicate(timeout=120)
    assert killer.returncode == 0, killer.stdout
    assert killer.stdout.strip() == f"kills={kills}"
    assert reader.returncode == 0, out
    assert int(out.strip().split("=")[1]) > 0
    return path


def test_sigkill_1000_times_never_torn_or_missing(d: str) -> None:
    _run(d, 1000, seed=1, env=dict(os.environ))
    _only_temps_left_and_clean_removes_them(d)


def test_sigkill_on_the_portable_path(d: str) -> None:
    env = dict(os.environ, ATOMWRITE_PORTABLE="1")
    _run(d, 200, seed=2, env=env)
    _only_temps_left_and_clean_removes_them(d)


def _only_temps_left_and_clean_removes_them(d: str) -> None:
    # An anonymous O_TMPFILE temp vanishes with the process; one killed after it got its
    # temporary name (just before the rename), or a named temp of the portable path, stays
    # as `.state.bin.RANDOM.tmp`, which `clean` recognises (its flock died with the writer).
    left = temps(d)
    others = sorted(set(os.listdir(d)) - set(left))
    assert others == ["state.bin", "stop"]
    report = atomwrite.clean(d, older_than=0)
    assert sorted(os.path.basename(p) for p in report.removed) == sorted(left)
    assert temps(d) == []
