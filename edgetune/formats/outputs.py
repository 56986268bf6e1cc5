"""Result files (bench's JSON, Markdown and JUnit, export's ``--archive``): where they may go.

A result file is created new, or replaces a file edgetune wrote (recognised by its content) or
an empty one. Never a bundle's or run's own files, nothing inside a bundle or run, never a
symbolic link, FIFO, device or folder: those hold what a user cannot get back.
"""

from __future__ import annotations

import json
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError
from ..fsutil import check_writable
from . import bundle as bundlefmt
from . import rundir

# A file edgetune wrote is small; a large one is not read whole only to be recognised.
_MAX_RECOGNISED = 64 << 20


def artifact_around(path: Path) -> tuple[str, Path] | None:
    """The bundle or run (finished or not) that ``path`` lies in or is, if any."""
    try:
        here = path.expanduser().absolute()
        folders = [here.parent.resolve(), *here.parent.resolve().parents]
    except (OSError, RuntimeError):
        return None
    if path.is_dir():
        folders.insert(0, here.resolve())
    for folder in folders:
        if (folder / bundlefmt.MANIFEST).is_file():
            return "bundle", folder
        if rundir.is_run(folder) or rundir.written_by_us(folder):
            return "run", folder
    return None


def check_result_file(
    path: str | Path,
    option: str,
    ours: Callable[[Path], bool],
    *,
    what: str,
    overwrite: bool = True,
) -> None:
    """Refuse, before any work, a result path whose current content would be lost.

    Args:
        path: where the result goes.
        option: the option that named it, for the message.
        ours: whether an existing regular file there is one edgetune wrote (``what``).
        what: how messages name such a file, e.g. "bench JSON".
        overwrite: whether an existing file of ours may be replaced (``--archive`` asks for
            ``--overwrite``; bench results are refreshed in place, as CI jobs do).
    """
    p = Path(path).expanduser()
    around = artifact_around(p)
    if around is not None:
        kind, folder = around
        raise ConfigError(
            f"{option} {path} is inside the {kind} {folder}, whose files edgetune keeps as "
            f"written; write it outside, e.g. {folder.parent / p.name}"
        )
    try:
        st = os.lstat(p)
    except (FileNotFoundError, NotADirectoryError):
        check_writable(p, option)
        return
    except OSError as e:
        raise ConfigError(
            f"{option} {path} cannot be inspected ({e.strerror}); choose another path"
        ) from None
    if not stat.S_ISREG(st.st_mode):
        kind = _kind(st.st_mode)
        raise ConfigError(
            f"{option} {path} is {kind}, not a regular file; edgetune writes results only to new "
            "files or files it wrote, so choose another path"
        )
    if st.st_size and not (st.st_size <= _MAX_RECOGNISED and _safe(ours, p)):
        raise ConfigError(
            f"{option} {path} exists and is not an edgetune {what}; edgetune replaces only "
            "files it wrote, so choose another path (or move that file away)"
        )
    if st.st_size and not overwrite:
        raise ConfigError(f"{option}: {path} already exists; pass --overwrite to replace it")
    check_writable(p, option)


def check_distinct(paths: dict[str, str | None]) -> None:
    """Two results of one command never go to the same file (the second would replace the first)."""
    seen: dict[Path, str] = {}
    for option, path in paths.items():
        if not path:
            continue
        key = Path(path).expanduser().absolute()
        key = key.parent.resolve() / key.name
        if key in seen:
            raise ConfigError(
                f"{seen[key]} and {option} name the same file {path}; give each its own"
            )
        seen[key] = option


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _safe(ours: Callable[[Path], bool], p: Path) -> bool:
    try:
        return ours(p)
    except (OSError, ValueError, UnicodeDecodeError, tarfile.TarError, EOFError):
        return False


def json_with_schema(schema: str) -> Callable[[Path], bool]:
    """Recognises a JSON file whose ``schema`` field is ``schema``."""

    def ours(p: Path) -> bool:
        data = json.loads(p.read_text(encoding="utf-8"))
        return isinstance(data, dict) and data.get("schema") == schema

    return ours


def text_starting(prefix: str, contains: str = "") -> Callable[[Path], bool]:
    """Recognises a text file that starts with ``prefix`` (and holds ``contains``)."""

    def ours(p: Path) -> bool:
        text = p.read_text(encoding="utf-8")
        return text.startswith(prefix) and contains in text

    return ours


def bundle_archive(name: str) -> Callable[[Path], bool]:
    """Recognises a ``.tar.gz`` of the bundle folder ``name`` (its manifest inside)."""

    def ours(p: Path) -> bool:
        with tarfile.open(p, "r:gz") as tar:
            return any(m.name == f"{name}/{bundlefmt.MANIFEST}" for m in tar)

    return ours
