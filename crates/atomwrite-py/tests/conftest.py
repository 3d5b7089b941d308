"""Shared helpers for the atomwrite Python tests."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Callable, Iterator, List

import pytest

NOBODY = 65534


def is_root() -> bool:
    return os.geteuid() == 0


def require_root(why: str) -> None:
    """Root-only tests: skipped with the reason when not root, a failure under CI=true."""
    if is_root():
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"must run as root under CI: {why}")
    pytest.skip(f"needs root: {why}")


@pytest.fixture
def d() -> Iterator[str]:
    """A fresh directory every user can traverse (child processes may run as `nobody`)."""
    path = tempfile.mkdtemp(prefix="atomwrite-py-")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def entries(dirpath: str) -> List[str]:
    return sorted(os.listdir(dirpath))


def temps(dirpath: str) -> List[str]:
    """atomwrite temporary files (`.NAME.RANDOM.tmp`) left in `dirpath`."""
    return [n for n in os.listdir(dirpath) if n.startswith(".") and n.endswith(".tmp")]


def as_nobody(fn: Callable[[], int]) -> int:
    """Runs `fn` in a forked child with uid/gid 65534 and returns its exit status (the value
    `fn` returns, 99 if it raised)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 99
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            code = fn()
        except BaseException as e:  # noqa: BLE001
            print(f"child failed: {e!r}", flush=True)
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
