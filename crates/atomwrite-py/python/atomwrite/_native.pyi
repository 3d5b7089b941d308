"""Stubs for the native layer (``atomwrite._native``); use the ``atomwrite`` package instead."""

from typing import List, Optional, Tuple, Type

_Owner = Tuple[int, int, int, int, bool]
_Receipt = Tuple[
    str, int, Optional[str], int, int, str, str, Optional[_Owner], Optional[str]
]
_Published = Tuple[
    str, int, int, str, int, str, Optional[int], List[str], List[str]
]
_Version = Tuple[
    int,
    str,
    bool,
    bool,
    str,
    Optional[int],
    Optional[str],
    Optional[str],
    Optional[str],
    Optional[str],
]
_Verify = Tuple[
    str, str, str, str, str, Optional[int], Optional[str], Optional[int], Optional[str]
]
_Clean = Tuple[
    List[str], int, List[str], int, List[str], List[str], List[str], List[str]
]

def _set_conflict_error(t: Type[FileExistsError]) -> None: ...
def classify(path: bytes) -> Optional[str]: ...
def write(
    path: bytes,
    data: bytes,
    durability: str,
    mode: Optional[int],
    no_clobber: bool,
    follow_symlinks: bool,
    manifest: bool,
    checksum: bool,
) -> _Receipt: ...
def copy(
    src: bytes,
    dst: bytes,
    durability: str,
    mode: Optional[int],
    no_clobber: bool,
    follow_symlinks: bool,
    manifest: bool,
    preserve: bool,
    checksum: bool,
) -> _Receipt: ...
def publish(
    dst: bytes,
    data: Optional[bytes],
    from_path: Optional[bytes],
    dir: Optional[bytes],
    keep: Optional[int],
    expect: Optional[int],
    durability: str,
    mode: Optional[int],
    wait_timeout: Optional[float],
) -> _Published: ...
def latest(dst: bytes) -> Optional[Tuple[int, str]]: ...
def versions(dst: bytes) -> Tuple[List[_Version], int, List[str]]: ...
def verify(path: bytes) -> _Verify: ...
def clean(dir: bytes, older_than: float, dry_run: bool, recursive: bool) -> _Clean: ...
def clean_versions(dst: bytes, dry_run: bool) -> Tuple[List[str], int, bool, List[str]]: ...
def run_id() -> str: ...

class RawFile:
    def __init__(
        self,
        path: bytes,
        durability: str,
        mode: Optional[int],
        no_clobber: bool,
        follow_symlinks: bool,
        manifest: bool,
        size_hint: Optional[int] = None,
        checksum: bool = True,
    ) -> None: ...
    @property
    def destination(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    @property
    def temp_path(self) -> Optional[str]: ...
    def readable(self) -> bool: ...
    def writable(self) -> bool: ...
    def seekable(self) -> bool: ...
    def isatty(self) -> bool: ...
    def write(self, data: object) -> int: ...
    def seek(self, offset: int, whence: int = 0) -> int: ...
    def tell(self) -> int: ...
    def truncate(self, size: Optional[int] = None) -> int: ...
    def flush(self) -> None: ...
    def fileno(self) -> int: ...
    def __len__(self) -> int: ...
    def commit(self) -> _Receipt: ...
    def discard(self) -> None: ...
    def close(self) -> None: ...

class NativeBatch:
    def __init__(
        self,
        durability: str,
        mode: Optional[int],
        no_clobber: bool,
        follow_symlinks: bool,
        manifest: bool,
        checksum: bool,
    ) -> None: ...
    def add(self, path: bytes, data: bytes) -> None: ...
    def __len__(self) -> int: ...
    def commit(self) -> Tuple[List[_Receipt], int, int]: ...
    def discard(self) -> None: ...
