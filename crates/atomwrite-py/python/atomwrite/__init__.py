"""Atomic, durable file writes: **if the final filename exists, its contents are complete**.

The Python face of the ``atomwrite`` Rust library (the same engine as the ``atomwrite``
command): every function here calls the library, with the GIL released during all I/O and
every ``fsync``.

Guarantees (for every write, copy, batch file and publish):

* A reader that opens the destination sees the old complete contents or the new complete
  contents, never a prefix or a mix; after a process crash (even ``SIGKILL``) the same holds.
* ``durability="full"`` (default): when the call returns, the new contents and the rename
  survive a power loss (the file and its directory are ``fsync``ed). ``"integrity"``: the data
  is ``fsync``ed before the rename, but a power loss may bring the old contents back.
  ``"none"``: atomic against process crashes only.
* A failure raises an ``OSError`` subclass (``FileExistsError``, ``PermissionError``,
  ``IsADirectoryError``, ... chosen by errno, as ``open()`` does) with ``errno``, ``filename``
  and, for a rename, ``filename2`` set; the destination is then byte-for-byte as it was and no
  temporary file remains. The one exception is a failed directory ``fsync`` after the rename
  (``e.op == "sync_dir"``): the new contents are visible but not promised durable.
* A replaced file keeps its mode, and its owner and group where permitted; a new file gets
  ``0o666 & ~umask`` (not the 0600 of a ``tempfile``), or exactly ``mode=`` when given.
* Never more than a redirect: in a sticky directory others may write (like ``/tmp``), a symlink
  is followed only if it belongs to the caller or to the directory's owner, and a file
  belonging to neither is not replaced (``PermissionError``, nothing changed).

Not guaranteed: ordering between writers that do not coordinate (the last rename wins; use
``no_clobber=True`` or ``publish(..., expect=)``); atomicity across several files (a ``Batch``
makes each file atomic and all durable together, not all-or-nothing; publish a directory with
``publish(dst, dir=...)`` for that); hard links to the destination keep the old contents.
"""

from __future__ import annotations

import builtins as _builtins
import datetime as _dt
import io as _io
import os as _os
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, List, Literal, Optional, Tuple, Type, Union, overload

from . import _native

__all__ = [
    "write",
    "open",
    "copy",
    "Batch",
    "publish",
    "latest",
    "versions",
    "verify",
    "clean",
    "Receipt",
    "OwnerChange",
    "Published",
    "Version",
    "VersionList",
    "VerifyResult",
    "CleanReport",
    "ConflictError",
    "AtomicWriter",
    "AtomicTextWriter",
    "Durability",
]

_builtin_open = _builtins.open

StrPath = Union[str, bytes, "_os.PathLike[str]", "_os.PathLike[bytes]"]
Durability = Literal["full", "integrity", "none"]
Data = Union[bytes, bytearray, memoryview, str]


class ConflictError(FileExistsError):
    """A lost compare-and-swap: ``publish(..., expect=N)`` found another current version.

    Nothing was published. ``expected`` is the version asked for, ``actual`` the version that
    was current (read under the publishers' lock; 0 means nothing published yet). A subclass
    of ``FileExistsError`` (errno ``EEXIST``), so code that treats create-only conflicts
    alike keeps working.
    """

    expected: int
    actual: int
    op: str
    hint: Optional[str]


_native._set_conflict_error(ConflictError)


@dataclass(frozen=True)
class OwnerChange:
    """The owner and group of a replaced file and those its replacement got instead.

    Set-uid/set-gid bits are dropped when the owner or group could not be kept
    (``setid_dropped``), as the kernel drops them on ``chown``.
    """

    from_uid: int
    from_gid: int
    to_uid: int
    to_gid: int
    setid_dropped: bool


@dataclass(frozen=True)
class Receipt:
    """What a successful commit produced (frozen, picklable).

    Describes the bytes that were made visible (and, under ``durability="full"``, durable) at
    ``path`` (the destination, or the target of a followed symlink). It does not promise that
    the file still holds them later: another writer may have replaced it since.
    ``durability`` is what the commit honoured: the level asked for, lowered to ``"none"`` on a
    filesystem that keeps nothing across a power loss (tmpfs, network, FUSE), ``"store"`` for
    an object store. ``sha256`` is computed while the bytes are written (``None`` for a ``copy`` without
    ``checksum=True``); ``manifest`` is the sidecar written with ``manifest=True``.
    """

    path: str
    size: int
    sha256: Optional[str]
    written_at: _dt.datetime
    run_id: str
    durability: str
    owner_changed: Optional[OwnerChange] = None
    manifest: Optional[str] = None


@dataclass(frozen=True)
class Published:
    """What a ``publish`` did: the new current ``version`` of ``dst`` (stored at ``path``),
    the one it replaced (``previous``, 0 for none), the version a regular file at ``dst`` was
    migrated into, and what retention removed."""

    dst: str
    version: int
    previous: int
    path: str
    size: int
    sha256: str
    migrated: Optional[int] = None
    removed: Tuple[str, ...] = ()
    warnings: Tuple[str, ...] = ()


@dataclass(frozen=True)
class Version:
    """One published version of a destination.

    ``latest()`` fills only ``version``, ``path``, ``current`` and ``kind`` (it reads the
    pointer, nothing else); ``versions()`` adds what each version's manifest records.
    """

    version: int
    path: str
    current: bool = False
    pending: bool = False
    kind: str = "file"
    size: Optional[int] = None
    sha256: Optional[str] = None
    written_at: Optional[str] = None
    run_id: Optional[str] = None
    manifest_error: Optional[str] = None


@dataclass(frozen=True)
class VersionList:
    """Every version of a destination, oldest first, and the current one (0: none)."""

    versions: Tuple[Version, ...]
    current: int
    ignored: Tuple[str, ...] = ()


@dataclass(frozen=True)
class VerifyResult:
    """What ``verify`` found. ``status`` is ``"ok"``, ``"mismatch"``, ``"missing_manifest"``,
    ``"bad_manifest"`` or ``"missing_data"``; ``ok`` is true only for ``"ok"``."""

    path: str
    data_path: str
    manifest_path: str
    status: str
    detail: str
    size: Optional[int]
    sha256: Optional[str]
    expected_size: Optional[int]
    expected_sha256: Optional[str]

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True)
class CleanReport:
    """What ``clean`` removed (or, with ``dry_run=True``, would remove) and what it left."""

    removed: Tuple[str, ...]
    bytes: int
    leftovers: Tuple[str, ...] = ()
    leftover_bytes: int = 0
    locked: Tuple[str, ...] = ()
    busy: Tuple[str, ...] = ()
    young: Tuple[str, ...] = ()
    warnings: Tuple[str, ...] = ()


def _receipt(t: Tuple[Any, ...]) -> Receipt:
    path, size, sha, secs, micros, run_id, durability, owner, manifest = t
    when = _dt.datetime.fromtimestamp(secs, _dt.timezone.utc).replace(microsecond=micros)
    return Receipt(
        path=path,
        size=size,
        sha256=sha,
        written_at=when,
        run_id=run_id,
        durability=durability,
        owner_changed=OwnerChange(*owner) if owner is not None else None,
        manifest=manifest,
    )


def _url(path: StrPath) -> Optional[str]:
    """The one place a destination is dispatched: ``None`` for a local path, the URL for an
    object-store destination.

    URLs (``s3://``, ``gs://``, ``az://``, ``file:///``, ``memory://``) are recognised with the
    CLI's rules, and a typo such as ``s3:/bucket/key`` is a ``ValueError`` rather than a local
    file named ``s3:`` (``./s3:/key`` names that local file). A package built without the
    ``object-store`` feature raises ``NotImplementedError`` for a URL.
    """
    b = _os.fsencode(path)
    scheme = _native.classify(b)
    if scheme is None:
        return None
    if not _native.OBJECT_STORE:
        raise NotImplementedError(
            f"{_os.fsdecode(b)!r}: this build of atomwrite has no object-store support "
            "(rebuild with the default 'object-store' feature)"
        )
    return b.decode("utf-8")  # classify() accepts only UTF-8 URLs


def _local(path: StrPath, what: str = "this function") -> bytes:
    """``path`` as bytes for the native layer; a URL raises ``NotImplementedError`` for the
    functions that serve local files only."""
    if _url(path) is not None:
        raise NotImplementedError(
            f"{_os.fsdecode(path)!r}: {what} serves local paths only; for object-store URLs "
            "use write(), publish(), latest(), versions() and verify()"
        )
    return _os.fsencode(path)


def _data(data: Data, encoding: Optional[str], errors: Optional[str]) -> bytes:
    if isinstance(data, str):
        return data.encode(encoding or "utf-8", errors or "strict")
    if encoding is not None:
        raise TypeError("encoding= applies only to str data")
    if isinstance(data, (bytes, bytearray)):
        return data  # type: ignore[return-value]  # bytearray is copied by the native layer
    if isinstance(data, memoryview):
        return data.tobytes()
    raise TypeError(f"data must be bytes, bytearray, memoryview or str, not {type(data).__name__}")


def write(
    path: StrPath,
    data: Data,
    *,
    durability: Durability = "full",
    mode: Optional[int] = None,
    no_clobber: bool = False,
    follow_symlinks: bool = True,
    manifest: bool = False,
    encoding: Optional[str] = None,
    errors: Optional[str] = None,
    checksum: bool = True,
) -> Receipt:
    """Replaces (or creates) ``path`` with ``data``, atomically and durably.

    ``data`` is ``bytes``-like, or ``str`` encoded with ``encoding`` (default UTF-8).
    Missing parent directories are created (durably under ``"full"``).

    Guarantees: a reader sees the old or the new complete contents, never a mix, also after a
    crash; with ``durability="full"`` the new contents survive a power loss once this returns.
    ``no_clobber=True`` is create-only, checked atomically by the kernel at the rename: an
    existing destination raises ``FileExistsError`` and is left alone. ``mode`` sets the
    permission bits exactly (not filtered by the umask); without it a replaced file keeps its
    mode and (where permitted) owner and group. ``follow_symlinks=True`` writes to a symlink's
    target and keeps the link; ``False`` replaces the link itself with a regular file (the
    CLI's ``--no-follow``), leaving the target untouched. ``manifest=True`` also writes
    ``PATH.manifest.json`` (size, sha256) after the data, which ``verify`` checks.
    ``checksum=False`` skips the sha256 (``Receipt.sha256`` is then ``None``); it is computed
    by default, on a second thread for large data.

    On failure an ``OSError`` subclass is raised, the destination is unchanged and no
    temporary file remains.

    ``path`` may be an object-store URL (``s3://bucket/key``, ``gs://``, ``az://``,
    ``file:///``, ``memory://``), written as the CLI does: one atomic PUT (multipart for large
    data; readers see the old or the new object, never a part), create-only with
    ``If-None-Match`` for ``no_clobber=True``, a ``KEY.manifest.json`` with ``manifest=True``.
    Durability is then the store's (an acknowledged PUT is durable); ``mode`` and
    ``follow_symlinks`` do not apply. URLs go through the library's one destination interface
    (``atomwrite::destination``), the same code as the CLI's.
    """
    url = _url(path)
    if url is not None:
        return _receipt(_native.url_write(url, _data(data, encoding, errors), no_clobber, manifest))
    dst = _os.fsencode(path)
    return _receipt(
        _native.write(
            dst,
            _data(data, encoding, errors),
            durability,
            mode,
            no_clobber,
            follow_symlinks,
            manifest,
            checksum,
        )
    )


def copy(
    src: StrPath,
    dst: StrPath,
    *,
    durability: Durability = "full",
    mode: Optional[int] = None,
    no_clobber: bool = False,
    follow_symlinks: bool = True,
    manifest: bool = False,
    preserve: bool = False,
    checksum: bool = False,
) -> Receipt:
    """Copies the regular file ``src`` to ``dst`` atomically and durably (``atomwrite cp``).

    The fastest means the filesystems allow: a reflink (btrfs, xfs), ``copy_file_range``, or a
    buffered copy; with ``checksum=True`` (implied by ``manifest=True``) the bytes pass through
    sha256 and the receipt carries it. A new copy gets the source's mode ``& 0o777 & ~umask``
    (never set-uid/set-gid), a replaced destination keeps its own mode and owner;
    ``preserve=True`` is ``cp -p`` (mode, owner, group; set-id bits only with the owner).
    ``src`` is opened as a careful ``cp`` would: another user's symlink in a sticky directory
    is not followed, and a FIFO is never blocked on. Same guarantees and errors as ``write``.
    """
    s = _local(src, "copy()")
    d = _local(dst, "copy()")
    return _receipt(
        _native.copy(
            s, d, durability, mode, no_clobber, follow_symlinks, manifest, preserve, checksum
        )
    )


class _CommitOnExit:
    """What both writers do at the end of a ``with`` block and when collected: a normal exit
    commits (``close()``); an exception, or garbage collection of a writer never closed,
    discards, so a half-written file is never published. Listed before the ``io`` base so
    these win over ``IOBase``'s (whose ``__del__`` would ``close()``, i.e. commit). Each writer
    class defines ``close()`` and ``discard()``; they are declared here for type checkers only,
    so that a writer's ``super().close()`` still reaches the ``io`` base at run time."""

    if TYPE_CHECKING:

        def close(self) -> None: ...

        def discard(self) -> None: ...

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()

    def __del__(self) -> None:
        try:
            self.discard()
        except Exception:
            pass


class AtomicWriter(_CommitOnExit, _io.BufferedIOBase):
    """The binary file object returned by ``atomwrite.open(path, "wb")``.

    Bytes go to a temporary file in the destination's directory (an anonymous ``O_TMPFILE``
    inode where the filesystem allows); nothing is visible at the destination until the commit.

    * ``with`` block left normally, or ``close()``: **commit** (atomic, with the requested
      durability); ``receipt`` is then set. A failed commit raises and leaves the destination
      untouched.
    * ``with`` block left by an exception, or ``discard()``: the temporary file is removed, the
      destination is untouched, and the exception propagates.
    * Garbage-collected without ``close()``: **discarded**, never committed (unlike a plain
      file, whose buffered data would be flushed): an abandoned write must not publish a
      partial file.

    ``write``, ``writelines``, ``flush`` (to the temporary file; not an ``fsync``), ``seek``,
    ``tell`` and ``truncate`` work as on a file from ``open()``; ``fileno()`` raises
    ``io.UnsupportedOperation``, because bytes written around the object would escape the
    size and sha256 the receipt reports. One object may be used from several threads (writes
    are serialised, as with ``io.BufferedWriter``); the GIL is released during the writes to
    the temporary file and the commit.
    """

    _BYPASS = 1 << 16

    def __init__(self, raw: _native.RawFile, name: str, buffer_size: int) -> None:
        super().__init__()
        self._raw = raw
        self._buf = _io.BufferedWriter(raw, buffer_size)
        self._name = name
        self._receipt: Optional[Receipt] = None
        self._done = False

    @property
    def name(self) -> str:
        """The destination path as given (like ``open()``'s ``name``)."""
        return self._name

    @property
    def mode(self) -> str:
        return "wb"

    @property
    def receipt(self) -> Optional[Receipt]:
        """The commit's ``Receipt``; ``None`` before the commit, or after a discard."""
        return self._receipt

    @property
    def temp_path(self) -> Optional[str]:
        """The named temporary file in use, if any (``None`` for an anonymous inode)."""
        return self._raw.temp_path

    def readable(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._raw.fileno()

    def _check(self) -> None:
        if self._done:
            raise ValueError("I/O operation on closed file.")

    def write(self, b: Any) -> int:
        self._check()
        if type(b) is bytes and len(b) >= self._BYPASS:
            # Large bytes go straight to the native layer (no copy); the buffered writer is
            # flushed first and re-synchronised with the raw position after.
            self._buf.flush()
            n = self._raw.write(b)
            self._buf.seek(0, _io.SEEK_CUR)
            return n
        return self._buf.write(b)

    def flush(self) -> None:
        if self._done:
            if self.closed:
                raise ValueError("I/O operation on closed file.")
            return
        self._buf.flush()

    def seek(self, offset: int, whence: int = _io.SEEK_SET) -> int:
        self._check()
        return self._buf.seek(offset, whence)

    def tell(self) -> int:
        self._check()
        return self._buf.tell()

    def truncate(self, size: Optional[int] = None) -> int:
        self._check()
        return self._buf.truncate(size)

    def commit(self) -> Receipt:
        """Flushes the buffer and publishes the file (what ``close()`` and a normal ``with``
        exit do); returns the ``Receipt``. Closes the file, whether it succeeds or not."""
        self._check()
        self._done = True
        try:
            self._buf.flush()
            self._receipt = _receipt(self._raw.commit())
        finally:
            self._raw.discard()
            super().close()
        return self._receipt

    def discard(self) -> None:
        """Abandons the write: the temporary file is removed, the destination is untouched.
        A no-op once committed or discarded."""
        if self._done:
            return
        self._done = True
        try:
            self._raw.discard()
        finally:
            super().close()

    def close(self) -> None:
        """Commits (see ``commit``), like closing a file from ``open()`` saves it; a no-op
        when already closed."""
        if not self._done:
            self.commit()

    def __enter__(self) -> "AtomicWriter":
        self._check()
        return self

    def __repr__(self) -> str:
        state = "committed" if self._receipt else ("closed" if self._done else "open")
        return f"<atomwrite.AtomicWriter name={self._name!r} {state}>"


class AtomicTextWriter(_CommitOnExit, _io.TextIOWrapper):
    """The text file object returned by ``atomwrite.open(path, "w")``: an
    ``io.TextIOWrapper`` over an ``AtomicWriter``, with the same commit/discard rules
    (commit on ``close()`` or a normal ``with`` exit, discard on an exception or garbage
    collection) and ``receipt``."""

    buffer: AtomicWriter

    @property
    def receipt(self) -> Optional[Receipt]:
        """The commit's ``Receipt``; ``None`` before the commit, or after a discard."""
        return self.buffer.receipt

    @property
    def name(self) -> str:
        return self.buffer.name

    @property
    def mode(self) -> str:
        return "w"

    def commit(self) -> Receipt:
        """Flushes the text and the buffer and publishes the file; returns the ``Receipt``."""
        if not self.buffer.closed:
            try:
                super().flush()
            except BaseException:
                self.buffer.discard()
                raise
        return self.buffer.commit()

    def discard(self) -> None:
        """Abandons the write; the destination is untouched."""
        self.buffer.discard()

    def close(self) -> None:
        if not self.buffer.closed:
            self.commit()

    def __enter__(self) -> "AtomicTextWriter":
        return self

    def __repr__(self) -> str:
        return f"<atomwrite.AtomicTextWriter name={self.name!r} encoding={self.encoding!r}>"


@overload
def open(
    path: StrPath,
    mode: Literal["wb", "bw", "xb", "bx"],
    *,
    encoding: None = ...,
    errors: None = ...,
    newline: None = ...,
    buffering: int = ...,
    durability: Durability = ...,
    perms: Optional[int] = ...,
    no_clobber: bool = ...,
    follow_symlinks: bool = ...,
    manifest: bool = ...,
    size_hint: Optional[int] = ...,
    checksum: bool = ...,
) -> AtomicWriter: ...


@overload
def open(
    path: StrPath,
    mode: Literal["w", "wt", "tw", "x", "xt", "tx"] = ...,
    *,
    encoding: Optional[str] = ...,
    errors: Optional[str] = ...,
    newline: Optional[str] = ...,
    buffering: int = ...,
    durability: Durability = ...,
    perms: Optional[int] = ...,
    no_clobber: bool = ...,
    follow_symlinks: bool = ...,
    manifest: bool = ...,
    size_hint: Optional[int] = ...,
    checksum: bool = ...,
) -> AtomicTextWriter: ...


def open(  # noqa: A001 - deliberately mirrors builtins.open
    path: StrPath,
    mode: str = "w",
    *,
    encoding: Optional[str] = None,
    errors: Optional[str] = None,
    newline: Optional[str] = None,
    buffering: int = -1,
    durability: Durability = "full",
    perms: Optional[int] = None,
    no_clobber: bool = False,
    follow_symlinks: bool = True,
    manifest: bool = False,
    size_hint: Optional[int] = None,
    checksum: bool = True,
) -> Union[AtomicWriter, AtomicTextWriter]:
    """Opens ``path`` for an atomic write: a real file object whose contents replace (or
    create) ``path`` when it is closed.

    ``mode`` is ``"w"`` (text, the default, like ``open()``) or ``"wb"`` (binary); ``"x"`` /
    ``"xb"`` are create-only (``no_clobber=True``), as with ``open()``. ``encoding`` defaults
    to UTF-8 (not the locale's), ``errors`` and ``newline`` are as for ``open()``.
    ``perms`` is the exact permission bits of the result (``write``'s ``mode=``, renamed
    here because ``mode`` is the open mode); the other options are ``write``'s.

    ::

        with atomwrite.open("state.json", "w") as f:
            json.dump(state, f)
        # state.json now holds the complete new JSON, durably; f.receipt says what was written

    Commits on a normal exit of the ``with`` block (or ``close()``); on an exception the
    temporary file is removed, the destination is untouched and the exception propagates.
    Nothing is visible at ``path`` before the commit. A file object garbage-collected without
    ``close()`` is discarded, not committed. Works with ``json.dump``, ``pickle.dump``,
    ``numpy.save``, ``torch.save``, ``csv.writer`` and ``shutil.copyfileobj``.
    """
    m = set(mode)
    if len(mode) != len(m) or not m <= set("wxbt") or ("w" in m) == ("x" in m) or m >= {"b", "t"}:
        raise ValueError(f"invalid mode {mode!r}: atomwrite.open writes only ('w', 'wb', 'x', 'xb')")
    binary = "b" in m
    if "x" in m:
        no_clobber = True
    if binary and (encoding is not None or errors is not None or newline is not None):
        raise ValueError("binary mode doesn't take an encoding, errors or newline argument")
    dst = _local(path, "open()")
    raw = _native.RawFile(
        dst, durability, perms, no_clobber, follow_symlinks, manifest, size_hint, checksum
    )
    if buffering in (-1, 0, 1):
        buffering = _io.DEFAULT_BUFFER_SIZE * 8
    name = _os.fsdecode(path) if not isinstance(path, int) else str(path)
    w = AtomicWriter(raw, name, buffering)
    if binary:
        return w
    try:
        return AtomicTextWriter(w, encoding=encoding or "utf-8", errors=errors, newline=newline)
    except BaseException:
        w.discard()
        raise


class Batch:
    """Many atomic writes made durable together: one data flush and one ``fsync`` per
    directory for the whole batch instead of two ``fsync`` calls per file.

    ::

        with atomwrite.Batch() as b:
            for i, part in enumerate(parts):
                b.write(f"out/part-{i:05}.csv", part)
        b.receipts  # one Receipt per file, in order

    Each file is written to its temporary file when added; nothing is visible until the commit
    (a normal ``with`` exit, or ``commit()``). An exception inside the ``with`` block discards
    every temporary file and touches no destination.

    Guarantees ("all or report"): every file is atomic on its own; if anything fails before the
    renames, no file is replaced and every temporary file is removed; after a successful commit
    under ``"full"`` every file is durable. An error during the renames (e.g. a create-only
    conflict) stops them: the ``OSError`` raised has ``replaced`` and ``not_replaced`` lists,
    the replaced files are made durable and the others are untouched. A batch is not atomic as
    a whole (a crash during the renames leaves some files new, some old). Not thread-safe for
    concurrent ``write`` calls from several threads beyond being serialised.
    """

    def __init__(
        self,
        *,
        durability: Durability = "full",
        mode: Optional[int] = None,
        no_clobber: bool = False,
        follow_symlinks: bool = True,
        manifest: bool = False,
        checksum: bool = True,
    ) -> None:
        self._b = _native.NativeBatch(
            durability, mode, no_clobber, follow_symlinks, manifest, checksum
        )
        self.receipts: List[Receipt] = []
        self.dir_syncs = 0
        self.data_syncs = 0

    def write(
        self,
        path: StrPath,
        data: Data,
        *,
        encoding: Optional[str] = None,
        errors: Optional[str] = None,
    ) -> None:
        """Adds ``path`` with ``data`` (written to a temporary file now, published at the
        commit)."""
        self._b.add(_local(path, "Batch"), _data(data, encoding, errors))

    def __len__(self) -> int:
        return len(self._b)

    def commit(self) -> List[Receipt]:
        """Publishes every file; returns the receipts (also in ``receipts``)."""
        files, self.dir_syncs, self.data_syncs = self._b.commit()
        self.receipts = [_receipt(t) for t in files]
        return self.receipts

    def discard(self) -> None:
        """Removes every temporary file; no destination is touched."""
        self._b.discard()

    def __enter__(self) -> "Batch":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def publish(
    path: StrPath,
    data: Optional[Data] = None,
    *,
    from_path: Optional[StrPath] = None,
    dir: Optional[StrPath] = None,
    keep: Optional[int] = None,
    expect: Optional[int] = None,
    durability: Durability = "full",
    mode: Optional[int] = None,
    wait_timeout: Optional[float] = None,
    encoding: Optional[str] = None,
) -> Published:
    """Publishes a new version of ``path`` behind an atomic ``latest`` pointer
    (``atomwrite publish``): the contents (``data``, the file ``from_path``, or the directory
    tree ``dir``) become ``PATH.versions/vNNNNNNNNNN[.ext]``, and ``path`` becomes a symlink to
    it in one atomic rename.

    Guarantees: a reader opening ``path`` gets a complete version, old or new; after a crash
    ``path`` still points at a complete version whose manifest is durable. ``expect=N`` is a
    compare-and-swap among publishers on this machine: if the current version is not ``N``
    (0: nothing published yet) nothing is published and ``ConflictError`` is raised with
    ``expected`` and ``actual``. ``keep=N`` keeps the N newest older versions (at least 2);
    versions without an atomwrite manifest, and versions newer than the current one, are never
    removed. Publishers of one destination run one after another (``wait_timeout`` seconds at
    most, then ``BlockingIOError``).

    For an object-store URL (``data`` or ``from_path=``): the CLI's protocol (create-only
    version objects with manifests, a pointer moved by compare-and-swap); ``expect`` is exact
    there too, and ``ConflictError.actual`` is read right after the conflict.
    """
    given = sum(x is not None for x in (data, from_path, dir))
    if given != 1:
        raise TypeError("publish() takes exactly one of data, from_path= or dir=")
    url = _url(path)
    if url is not None:
        if dir is not None:
            raise NotImplementedError(f"{url!r}: directory versions are published to local paths only")
        if from_path is not None:
            with _builtin_open(_local(from_path, "publish(from_path=)"), "rb") as f:
                data = f.read()
        assert data is not None
        t = _native.url_publish(url, _data(data, encoding, None), keep, expect)
    else:
        t = _native.publish(
            _os.fsencode(path),
            _data(data, encoding, None) if data is not None else None,
            _local(from_path, "publish(from_path=)") if from_path is not None else None,
            _local(dir, "publish(dir=)") if dir is not None else None,
            keep,
            expect,
            durability,
            mode,
            wait_timeout,
        )
    d, version, previous, p, size, sha, migrated, removed, warnings = t
    return Published(d, version, previous, p, size, sha, migrated, tuple(removed), tuple(warnings))


def latest(path: StrPath) -> Optional[Version]:
    """The version ``path`` points at now, from one ``readlink`` (atomic); ``None`` when
    nothing was published. Not promised to still be current when you use it: act on it with
    ``publish(..., expect=v.version)``."""
    url = _url(path)
    if url is not None:
        u = _native.url_latest(url)
        return Version(version=u[0], path=u[1], current=True) if u is not None else None
    r = _native.latest(_os.fsencode(path))
    if r is None:
        return None
    version, p = r
    kind = "directory" if _os.path.isdir(p) and not _os.path.islink(p) else "file"
    return Version(version=version, path=p, current=True, kind=kind)


def versions(path: StrPath) -> VersionList:
    """Every version of ``path``, oldest first, with what its manifest records (read once,
    without the publishers' lock: a publish in progress is listed as ``pending``)."""
    url = _url(path)
    if url is not None:
        vs, current, ignored = _native.url_versions(url)
    else:
        vs, current, ignored = _native.versions(_os.fsencode(path))
    return VersionList(tuple(Version(*v) for v in vs), current, tuple(ignored))


def verify(path: StrPath) -> VerifyResult:
    """Recomputes the size and sha256 of ``path`` (or of the version a published ``path``
    points at) and compares them with its manifest. Never raises for what it finds: a torn
    data/manifest pair, a missing manifest or missing data is a ``VerifyResult`` whose
    ``ok`` is false. Cannot tell whether matching bytes are *right*."""
    url = _url(path)
    if url is not None:
        return VerifyResult(*_native.url_verify(url))
    return VerifyResult(*_native.verify(_os.fsencode(path)))


def clean(
    path: StrPath,
    *,
    older_than: float = 3600.0,
    dry_run: bool = False,
    recursive: bool = False,
) -> CleanReport:
    """Removes what crashed writers left behind (``atomwrite clean``).

    For a directory: atomwrite's temporary files (``.NAME.RANDOM.tmp``) at least
    ``older_than`` seconds old and not held by a live writer (each holds an ``flock``), and the
    leftovers of crashed publishes in its ``NAME.versions/`` directories. For a published
    destination (a file or pointer): the leftovers of its crashed publishes only.

    Guarantees: only files with the exact shape of atomwrite's temps or with positive evidence
    of a crashed publish are removed; never one a live writer or publisher holds; symlinks are
    never followed; nothing is created (``dry_run=True`` works read-only).
    """
    b = _local(path, "clean()")
    if _os.path.isdir(b) and not _os.path.islink(b):
        r = _native.clean(b, float(older_than), dry_run, recursive)
        removed, nbytes, leftovers, lbytes, locked, busy, young, warnings = r
        return CleanReport(
            tuple(removed),
            nbytes,
            tuple(leftovers),
            lbytes,
            tuple(locked),
            tuple(busy),
            tuple(young),
            tuple(warnings),
        )
    removed, nbytes, is_locked, warnings = _native.clean_versions(b, dry_run)
    return CleanReport(
        leftovers=tuple(removed),
        leftover_bytes=nbytes,
        removed=(),
        bytes=0,
        busy=(_os.fsdecode(b),) if is_locked else (),
        warnings=tuple(warnings),
    )


def run_id() -> str:
    """The run id receipts carry in this process (``ATOMWRITE_RUN_ID`` or a random id)."""
    return _native.run_id()
