"""Atomic file-system helpers shared by the run and bundle formats (no heavy imports).

Temporary files and folders are created private (``mkstemp``/``mkdtemp`` give 0600/0700) and
opened up to the user's umask just before they are moved into place, so a copied bundle or run
is readable like any other file the user writes.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import ConfigError, LockedError


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _read_umask()


def public_mode(path: Path) -> None:
    """Give a file or folder made by ``tempfile`` the mode a plain ``open``/``mkdir`` would."""
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~UMASK)


def temp_dir(parent: Path, prefix: str) -> Path:
    """A new staging folder in ``parent`` with the user's permissions (not mkdtemp's 0700)."""
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    public_mode(tmp)
    return tmp


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_text(path: Path, text: str) -> None:
    """Write text atomically (temporary file, then rename; nothing left behind on failure)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        public_mode(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def existing(spec: str | None) -> Path | None:
    """``spec`` as a path when something is there; None for inline values (a prompt, a hub id)
    that are no path, even one too long for the file system to look up."""
    if not spec:
        return None
    p = Path(spec).expanduser()
    return p if os.path.lexists(p) else None  # False on ENAMETOOLONG or an embedded NUL


def check_writable(path: Path, option: str) -> None:
    """Refuse, before any work, an output whose folder cannot be created or written.

    The nearest existing ancestor must be a writable folder: not a file, not on a read-only
    file system (``os.access`` reports both, even for root).
    """
    p = Path(path).expanduser()
    parent = next((a for a in p.absolute().parents if a.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ConfigError(f"{option} {path}: {parent} is a file, not a folder; choose another path")
    if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{option} {path}: {parent} is not writable (read-only or no permission); "
            "choose another path"
        )


_STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.ENOTDIR)


def storage_error(e: BaseException) -> str | None:
    """ "no space left on device writing PATH" when ``e`` (or what it wraps) is a storage
    failure of the OS; None otherwise. Rust and C++ libraries only keep the OS message."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno in _STORAGE_ERRNOS:
            where = f" writing {cur.filename}" if cur.filename else ""
            return f"{os.strerror(cur.errno).lower()}{where}"
        text = str(cur)
        for code in _STORAGE_ERRNOS:
            if os.strerror(code) in text or f"os error {code})" in text:
                return os.strerror(code).lower()
        cur = cur.__cause__ or cur.__context__
    return None


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a completed directory into place, replacing an older one."""
    public_mode(tmp)
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        if old.exists():
            shutil.rmtree(old)
        final.rename(old)
    tmp.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def lock_path(target: Path) -> Path:
    """The lock file of a run or bundle: beside it, so it never lands among the hashed files.

    Resolved first, so ``.``, ``../b`` and an absolute path to one folder share one lock.
    """
    target = target.resolve()
    return target.with_name(f".{target.name}.lock")


_HELD: set[tuple[int, str]] = set()


@contextmanager
def locked(target: Path, what: str, timeout: float = 0.0) -> Iterator[None]:
    """Hold the writer lock of ``target`` (a run or bundle folder, existing or not).

    A second writer waits up to ``timeout`` seconds, then gets a one-line error naming the
    process that holds the lock. The lock is an OS file lock, so a killed holder releases it.
    """
    path = lock_path(target)
    key = (threading.get_ident(), str(path))
    if key in _HELD:  # this thread already holds it (export validates what it wrote)
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~UMASK)
        if _try_lock(fd):
            try:  # the file may have been unlinked by the previous holder: then start again
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
        else:
            holder = _holder(fd)
            if time.monotonic() >= deadline:
                os.close(fd)
                raise LockedError(
                    f"{what} {target} is being written by another edgetune process ({holder}); "
                    "wait for it to finish, or write to another path"
                )
            time.sleep(0.2)
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}, {' '.join(sys.argv[:2]) or 'python'}".encode())
        _HELD.add(key)
        yield
    finally:
        _HELD.discard(key)
        try:
            path.unlink(missing_ok=True)
        except OSError:  # Windows keeps an open file
            pass
        os.close(fd)  # closing releases the lock


def _try_lock(fd: int) -> bool:
    try:
        if os.name == "nt":
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 200).decode(errors="replace").strip() or "unknown process"
    except OSError:
        return "unknown process"


def clean_stale(parent: Path, name: str) -> list[str]:
    """Remove what killed writers of ``parent/name`` left (call while holding its lock):
    ``.NAME.old``, ``.NAME.staging-*`` and ``.NAME.tmp-*``; nothing of another name."""
    removed: list[str] = []
    if not parent.is_dir():
        return removed
    for p in parent.iterdir():
        if p.name == f".{name}.old" or p.name.startswith((f".{name}.staging-", f".{name}.tmp-")):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p.name)
    return removed
