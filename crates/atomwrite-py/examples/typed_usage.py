"""The three common uses, type-checked by mypy --strict in CI (crates/atomwrite-py/ci.sh)."""

from __future__ import annotations

import json
import os
import pickle
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import atomwrite


def save_config(path: Path, text: str) -> atomwrite.Receipt:
    """A config file: replaced atomically, keeping its mode and owner."""
    return atomwrite.write(path, text, encoding="utf-8")


def save_state(path: str, state: Dict[str, Any]) -> Optional[atomwrite.Receipt]:
    """JSON state: streamed through a real text file object; discarded if dump raises."""
    with atomwrite.open(path, "w", newline="\n") as f:
        json.dump(state, f, indent=2)
    return f.receipt


def save_checkpoint(path: os.PathLike[str], model: object, step: int) -> atomwrite.Published:
    """An ML checkpoint as a numbered version behind an atomic pointer, keeping 3."""
    blob = pickle.dumps({"step": step, "model": model})
    latest = atomwrite.latest(path)
    expected = latest.version if latest is not None else 0
    try:
        return atomwrite.publish(path, blob, keep=3, expect=expected)
    except atomwrite.ConflictError as e:
        print(f"another trainer published v{e.actual} (expected v{e.expected})", file=sys.stderr)
        raise


def save_parts(dir: Path, parts: List[bytes]) -> List[atomwrite.Receipt]:
    with atomwrite.Batch(durability="full") as b:
        for i, part in enumerate(parts):
            b.write(dir / f"part-{i:05}.bin", part)
    return b.receipts


def stream(path: bytes) -> int:
    with atomwrite.open(path, "wb", perms=0o640, no_clobber=True) as f:
        n = f.write(b"binary")
    r = f.receipt
    assert r is not None
    v: atomwrite.VerifyResult = atomwrite.verify(path)
    report: atomwrite.CleanReport = atomwrite.clean(os.path.dirname(path))
    return n + r.size + (1 if v.ok else 0) + len(report.removed)


if __name__ == "__main__":
    import tempfile

    d = Path(tempfile.mkdtemp())
    save_config(d / "app.toml", "x = 1\n")
    save_state(str(d / "state.json"), {"step": 1})
    save_checkpoint(d / "model.pkl", [1.0, 2.0], 1)
    save_parts(d / "parts", [b"a", b"b"])
    print(stream(os.fsencode(d / "raw.bin")))
