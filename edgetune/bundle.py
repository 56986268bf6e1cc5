"""The bundle: the one module that reads and writes it. Needs no torch.

A bundle ``BUNDLE/`` holds::

    model.onnx            the default variant (what stock loaders pick up)
    model_<variant>.onnx  other variants (e.g. model_fp32.onnx), when built
    config.json           HF config with id2label / label2id
    tokenizer.json ...    tokenizer files
    edgetune.json         manifest: source, variants and their settings, versions, CPU features,
                          SHA-256 of every other file, and the metrics validation measured
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from .errors import BundleError, ConfigError
from .fsutil import replace_dir, write_json

FORMAT = "edgetune-bundle"
FORMAT_VERSION = 1
MANIFEST = "edgetune.json"
DEFAULT_FILE = "model.onnx"


def variant_file(name: str, default: bool) -> str:
    return DEFAULT_FILE if default else f"model_{name.replace('-', '_')}.onnx"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): sha256(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def write_manifest(root: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write ``edgetune.json`` with fresh hashes of every other file (atomically)."""
    manifest = {"format": FORMAT, "version": FORMAT_VERSION, **manifest, "files": file_hashes(root)}
    write_json(root / MANIFEST, manifest)
    return manifest


def read_manifest(root: str | Path) -> dict[str, Any]:
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise BundleError(
            f"{root} is not an edgetune bundle (no {MANIFEST}); pass a bundle directory"
        )
    try:
        m = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{path} is not valid JSON ({e}); re-export the bundle") from None
    if m.get("format") != FORMAT:
        raise BundleError(f"{path} is not an edgetune bundle manifest; re-export the bundle")
    return m


def verify(root: str | Path, ignore: tuple[str, ...] = ()) -> dict[str, Any]:
    """Check every file against the manifest's SHA-256; return the manifest.

    ``ignore`` holds path prefixes left unchecked (a report that is being rewritten).
    """
    root = Path(root)
    m = read_manifest(root)
    for rel, digest in m.get("files", {}).items():
        if rel.startswith(ignore):
            continue
        p = root / rel
        if not p.is_file():
            raise BundleError(f"bundle {root} is missing {rel}; re-export or re-copy the bundle")
        if sha256(p) != digest:
            raise BundleError(
                f"bundle {root}: {rel} does not match its SHA-256 in {MANIFEST} (modified or "
                "truncated); re-export or re-copy the bundle"
            )
    return m


def pick_variant(manifest: dict[str, Any], wanted: str | None, root: Path) -> str:
    """``wanted`` (default: the bundle's default variant), if the bundle has it."""
    variants = manifest.get("variants") or {}
    name = str(wanted or manifest.get("default_variant"))
    if name not in variants:
        raise ConfigError(
            f"bundle {root} has no variant {name}; it has {', '.join(variants) or 'none'}"
        )
    return name


def update_manifest(
    root: str | Path, ignore: tuple[str, ...] = (), **fields: Any
) -> dict[str, Any]:
    """Merge fields into the manifest (e.g. metrics) and re-hash (after verifying, see ``verify``)."""
    root = Path(root)
    m = verify(root, ignore)
    m.update(fields)
    for key in ("format", "version", "files"):
        m.pop(key, None)
    return write_manifest(root, m)


def check_output(output: Path, overwrite: bool) -> None:
    if output.is_file():
        raise BundleError(f"output {output} is a file; choose a directory path for --output")
    if output.exists() and not overwrite:
        what = "holds a bundle" if (output / MANIFEST).exists() else "exists"
        raise BundleError(
            f"output {output} already {what}; pass --overwrite to replace it or choose another --output"
        )


def install(staged: Path, output: Path) -> None:
    """Move a complete staged bundle into place, replacing an older one."""
    replace_dir(staged, output)


def archive(root: Path) -> Path:
    """Write ``<root>.tar.gz`` next to the bundle (atomically)."""
    dst = root.with_name(root.name + ".tar.gz")
    fd, tmp = tempfile.mkstemp(dir=root.parent, prefix=f".{root.name}.", suffix=".tar.gz")
    os.close(fd)
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(root, arcname=root.name)
    os.replace(tmp, dst)
    return dst
