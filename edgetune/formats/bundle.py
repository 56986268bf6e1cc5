"""The bundle: the one module that reads and writes it. Needs no torch.

A bundle ``BUNDLE/`` holds::

    model.onnx            the default variant (what stock loaders pick up)
    model_<variant>.onnx  other variants (e.g. model_fp32.onnx), when built
    config.json           HF config with id2label / label2id
    tokenizer.json ...    tokenizer files
    golden.json           the self-check: golden texts with the PyTorch logits and each
                          variant's expected logits, tolerance and batching (hashed)
    edgetune.json         manifest: source, variants and their settings, versions, CPU features,
                          SHA-256 of every other file, and the metrics validation measured
    validation/           the last validation report (not hashed: nothing runs it)
    edgetune.sig          the signature, when signed (``edgetune sign``)

The manifest cannot hash itself, so whatever the runtime takes from it is either a hash or
checked against a hashed file: labels against config.json, max length and each variant's file
against golden.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import BundleError, ConfigError
from ..fsutil import check_writable, public_mode, replace_dir, write_json
from ..presets import usable_positions

FORMAT = "edgetune-bundle"
FORMAT_VERSION = 2  # 2: golden.json (self-check, every file's hash), per-variant batching
MANIFEST = "edgetune.json"
DEFAULT_FILE = "model.onnx"
GOLDEN = "golden.json"
GOLDEN_FORMAT = "edgetune-golden"
REPORT_DIR = "validation"
SIGNATURE = "edgetune.sig"
TOKENIZER = "tokenizer.json"
MODEL_CONFIG = "config.json"
# One row per session run: dynamic int8 takes its activation ranges from the whole input
# tensor, so a row's answer would depend on its batch-mates and their padding.
BATCHING = ("row", "padded")
# The self-check's second limit: how far the median golden row (its largest |logit difference|)
# may move, as a share of the logits' scale. Honest devices differ from the export machine in
# kernels (accumulation order, fp32 approximations, int8 GEMM paths): a few rows of an int8
# variant move, the rest not at all or by float noise, so the median row stays put; a fault (a
# wrong weight, scale or kernel) moves every row. Measured spreads and injected faults:
# README "What the self-check catches" (bench/selfcheck_faults.py).
TYPICAL_SHIFT = {"float": 1e-5, "int8": 1e-3}


def config_labels(cfg: dict[str, Any]) -> list[str]:
    """A model config's label names in id order: ``id2label``, or where the config leaves it out
    (transformers does not write the default) ``LABEL_0``.. for ``num_labels`` (default 2)."""
    id2label = cfg.get("id2label")
    if not id2label:
        return [f"LABEL_{i}" for i in range(int(cfg.get("num_labels", 2)))]
    return [str(id2label[str(i)]) for i in range(len(id2label))]


def logit_scale(reference: Any) -> float:
    """The scale limits are set against: the largest |logit| of the reference (at least 1)."""
    import numpy as np

    ref = np.asarray(reference, dtype=np.float32)
    return max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0


def typical_tolerance(reference: Any, quantized: bool) -> float:
    """The median golden row's limit for a variant (int8 or float) answering ``reference``."""
    return TYPICAL_SHIFT["int8" if quantized else "float"] * logit_scale(reference)


_HEX = re.compile(r"^[0-9a-f]{64}$")
# Variants built for GPU kernels: no CPU self-check, never a CPU fallback.
GPU_VARIANTS = ("fp16",)
# When a start runs the golden texts: unless this device passed them before, every time, never.
SELF_CHECK_MODES = ("auto", "always", "never")


def variant_file(name: str, default: bool) -> str:
    return DEFAULT_FILE if default else f"model_{name.replace('-', '_')}.onnx"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _hashed(rel: PurePosixPath) -> bool:
    """Files the manifest covers: all but itself, the signature, reports and hidden staging."""
    if rel.as_posix() in (MANIFEST, SIGNATURE) or rel.parts[0] == REPORT_DIR:
        return False
    return not any(part.startswith(".") for part in rel.parts)


def _hashable(root: Path) -> list[str]:
    out = []
    for p in sorted(root.rglob("*")):
        rel = PurePosixPath(p.relative_to(root).as_posix())
        if p.is_file() and _hashed(rel):
            out.append(rel.as_posix())
    return out


def file_hashes(root: Path) -> dict[str, str]:
    return {rel: sha256(root / rel) for rel in _hashable(root)}


def write_manifest(root: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write ``edgetune.json`` with fresh hashes of every other file (atomically)."""
    manifest = {"format": FORMAT, "version": FORMAT_VERSION, **manifest, "files": file_hashes(root)}
    write_json(root / MANIFEST, manifest)
    return manifest


def _safe_rel(rel: Any) -> bool:
    if not isinstance(rel, str) or not rel or "\\" in rel or ":" in rel:
        return False
    p = PurePosixPath(rel)
    return not p.is_absolute() and all(part not in ("", ".", "..") for part in p.parts)


def _check_schema(m: Any, path: Path) -> None:
    """Refuse a manifest whose shape the runtime cannot trust, with one line naming the key."""

    def bad(what: str) -> BundleError:
        return BundleError(f"{path} is malformed: {what}; re-export the bundle")

    if not isinstance(m, dict):
        raise bad("not a JSON object")
    if m.get("format") != FORMAT:
        raise BundleError(f"{path} is not an edgetune bundle manifest; re-export the bundle")
    version = m.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise bad(f"`version` {version!r} is not a format version")
    if version > FORMAT_VERSION:
        raise BundleError(
            f"{path} has format version {version}; this edgetune reads up to "
            f"{FORMAT_VERSION}: upgrade edgetune"
        )
    if version < FORMAT_VERSION:
        raise BundleError(
            f"{path} has format version {version} (an older edgetune, without the self-check "
            "and its cross-checks); re-export the bundle with this edgetune"
        )
    files = m.get("files")
    if not isinstance(files, dict) or not files:
        raise bad("no `files` hashes")
    for rel, digest in files.items():
        if not _safe_rel(rel):
            raise bad(f"file path {rel!r} is not a plain relative path inside the bundle")
        if not isinstance(digest, str) or not _HEX.match(digest):
            raise bad(f"the hash of {rel} is not a SHA-256 hex digest")
    variants = m.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise bad("no `variants`")
    for name, v in variants.items():
        if not isinstance(v, dict) or not isinstance(v.get("file"), str):
            raise bad(f"variant {name!r} has no `file`")
        if v["file"] not in files:
            raise bad(f"variant {name}'s file {v['file']!r} is not among the hashed files")
        req = v.get("requires", {})
        if not isinstance(req, dict) or not isinstance(req.get("onnxruntime", ""), str):
            raise bad(f"variant {name}'s `requires` is not a mapping with an onnxruntime version")
    if m.get("default_variant") not in variants:
        raise bad(f"default_variant {m.get('default_variant')!r} is not one of the variants")
    labels = m.get("labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise bad("`labels` is not a list of label names")
    max_length = m.get("max_length")
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 2:
        raise bad("`max_length` is not a whole number of tokens")
    for rel in (MODEL_CONFIG, TOKENIZER, GOLDEN):
        if rel not in files:
            raise bad(f"{rel} is not among the hashed files")


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
    _check_schema(m, path)
    return m


def verify(
    root: str | Path, variant: str | None = None, manifest: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Check every file against the manifest's SHA-256 and the manifest against them.

    Returns the manifest. Labels must equal config.json's ``id2label``; the max length and
    each variant's file must equal golden.json's (both files are hashed). With ``variant``,
    the graphs of the other variants (and their transformers.js copies) are not hashed: they
    are not loaded, and hashing a multi-variant bundle's 100+ MB would dominate a start; they
    are still listed, and ``verify_graph`` hashes one before it is loaded. ``manifest``: the
    manifest already read from ``root`` (``read_manifest``), not read again.
    """
    root = Path(root)
    m = manifest if manifest is not None else read_manifest(root)
    skip = set()
    if variant is not None:
        skip = {f for v, info in m["variants"].items() if v != variant for f in _graphs(info)}
        skip -= {m["variants"][variant]["file"]} if variant in m["variants"] else set()
    for rel in (r for r in m["files"] if r not in skip):
        _check_file(root, rel, m["files"][rel])
    # A file dropped from the list could be changed unseen; what is there must be listed.
    extra = sorted(set(_hashable(root)) - set(m["files"]))
    if extra:
        raise BundleError(
            f"bundle {root} holds {extra[0]}, which {MANIFEST} does not list; remove it or "
            "re-export the bundle"
        )
    _cross_check(root, m)
    return m


def verify_graph(root: str | Path, manifest: dict[str, Any], variant: str) -> None:
    """Hash one variant's graph (after ``verify(root, other_variant)``, before loading it)."""
    rel = manifest["variants"][variant]["file"]
    _check_file(Path(root), rel, manifest["files"][rel])


def _graphs(info: dict[str, Any]) -> list[str]:
    """A variant's model files: its graph, and its copy in the transformers.js layout. Only
    ``.onnx`` paths: a manifest edit can never take a shared file (tokenizer, config, golden
    texts) out of the hashing."""
    paths = (info.get("file"), info.get("transformers_js"))
    return [f for f in paths if isinstance(f, str) and f.endswith(".onnx")]


def _check_file(root: Path, rel: str, digest: str) -> None:
    p = root / rel
    try:
        inside = p.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # a symlink loop
        inside = False
    if not inside:
        raise BundleError(f"bundle {root}: {rel} links outside the bundle; re-copy the bundle")
    if not p.is_file():
        raise BundleError(f"bundle {root} is missing {rel}; re-export or re-copy the bundle")
    if sha256(p) != digest:
        raise BundleError(
            f"bundle {root}: {rel} does not match its SHA-256 in {MANIFEST} (modified or "
            "truncated); re-export or re-copy the bundle"
        )


def _cross_check(root: Path, m: dict[str, Any]) -> None:
    def bad(what: str) -> BundleError:
        return BundleError(f"bundle {root}: {what}; re-export the bundle")

    try:
        cfg = json.loads((root / MODEL_CONFIG).read_text())
        labels = config_labels(cfg)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise bad(f"{MODEL_CONFIG} has no id2label with ids 0..n-1") from None
    if labels != m["labels"]:
        raise bad(f"the labels in {MANIFEST} ({m['labels']}) differ from {MODEL_CONFIG} ({labels})")
    positions = usable_positions(cfg)
    if positions is not None and m["max_length"] > positions:
        raise bad(f"max_length {m['max_length']} exceeds the model's {positions} positions")
    golden = read_golden(root)
    if golden["max_length"] != m["max_length"] or golden["labels"] != labels:
        raise bad(f"max_length or labels in {MANIFEST} differ from {GOLDEN}")
    # The runtime reads the task from the manifest; golden.json (hashed) vouches for it.
    if golden.get("task") != m.get("task"):
        raise bad(f"the task in {MANIFEST} ({m.get('task')}) differs from {GOLDEN}'s")
    if golden.get("thresholds") != m.get("thresholds"):
        raise bad(f"the decision thresholds in {MANIFEST} differ from {GOLDEN}'s")
    # golden.json (hashed) records every other file's hash: rewriting a hash in the manifest
    # alone is caught; rewriting both is what signing is for.
    if golden["files"] != {k: v for k, v in m["files"].items() if k != GOLDEN}:
        raise bad(f"the files or hashes in {MANIFEST} differ from those {GOLDEN} records")
    for name, v in m["variants"].items():
        g = golden["variants"].get(name)
        if g is None or g["file"] != v["file"] or g.get("requires") != v.get("requires"):
            raise bad(f"variant {name} in {MANIFEST} differs from the one {GOLDEN} records")


def write_golden(root: Path, golden: dict[str, Any]) -> None:
    """Write golden.json with the hash of every other file (write it last, then the manifest)."""
    files = {k: v for k, v in file_hashes(root).items() if k != GOLDEN}
    write_json(root / GOLDEN, {**golden, "files": files})


def golden_pairs(rows: list[dict[str, Any]]) -> list[str] | None:
    """The golden rows' second texts, for sentence-pair tasks (None otherwise)."""
    return [r["pair"] for r in rows] if rows and rows[0].get("pair") is not None else None


def read_golden(root: Path) -> dict[str, Any]:
    """golden.json, checked for every key and type the self-check reads (hash it first)."""
    path = root / GOLDEN
    try:
        g = json.loads(path.read_text())
        ok = _golden_ok(g)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise BundleError(f"{path} is missing or malformed; re-export the bundle")
    return g


def _golden_ok(g: Any) -> bool:
    def numbers(x: Any) -> bool:
        return isinstance(x, list) and all(isinstance(v, (int, float)) for v in x)

    def number_rows(x: Any, n: int) -> bool:
        """n rows of logits, or for a per-token task n lists of per-token logits."""
        if not (isinstance(x, list) and len(x) == n):
            return False
        if g.get("task") == "token-classification":
            return all(isinstance(r, list) and all(numbers(t) for t in r) for r in x)
        return all(numbers(r) for r in x)

    rows = g["rows"]
    ok = (
        g["format"] == GOLDEN_FORMAT
        and isinstance(g["max_length"], int)
        and isinstance(g["labels"], list)
        and isinstance(g["files"], dict)
        and isinstance(rows, list)
        and bool(rows)
        and all(
            isinstance(r, dict)
            and isinstance(r.get("text"), str)
            and isinstance(r.get("pair", ""), (str, type(None)))
            for r in rows
        )
        and isinstance(g["variants"], dict)
    )
    for v in g["variants"].values() if ok else ():
        ok = ok and isinstance(v, dict) and isinstance(v.get("file"), str)
        ok = ok and v.get("batching") in BATCHING
        if ok and "logits" in v:
            ok = number_rows(v["logits"], len(rows)) and isinstance(v.get("tolerance"), float)
    return ok


def pick_variant(manifest: dict[str, Any], wanted: str | None, root: Path) -> str:
    """``wanted`` (default: the bundle's default variant), if the bundle has it."""
    variants = manifest.get("variants") or {}
    name = str(wanted or manifest.get("default_variant"))
    if name not in variants:
        raise ConfigError(
            f"bundle {root} has no variant {name}; it has {', '.join(variants) or 'none'}"
        )
    return name


def update_manifest(root: str | Path, **fields: Any) -> dict[str, Any]:
    """Merge fields into the manifest (e.g. metrics) and re-hash (after verifying, see ``verify``)."""
    root = Path(root)
    m = verify(root)
    m.update(fields)
    for key in ("format", "version", "files"):
        m.pop(key, None)
    return write_manifest(root, m)


def check_output(output: Path, overwrite: bool, sources: tuple[str | None, ...] = ()) -> None:
    """Refuse outputs export must not touch.

    ``--overwrite`` replaces only a bundle (or an empty folder), never other files and never a
    folder that holds, or lies inside, something the export reads (``sources``).
    """
    check_writable(output, "--output")
    if output.is_file():
        raise BundleError(f"output {output} is a file; choose a directory path for --output")
    out = output.resolve()
    for src in filter(None, sources):
        p = Path(src).expanduser().resolve()
        if p == out or out in p.parents or p in out.parents:
            raise BundleError(
                f"--output {output} overlaps {src}, which the export reads; choose a path "
                "outside it"
            )
    if output.is_dir() and any(output.iterdir()):
        if not (output / MANIFEST).is_file():
            raise BundleError(
                f"{output} exists and is not an edgetune bundle; export replaces only its own "
                "bundles, so choose another --output"
            )
        if not overwrite:
            raise BundleError(
                f"output {output} already holds a bundle; pass --overwrite to replace it or "
                "choose another --output"
            )


def install(staged: Path, output: Path) -> None:
    """Move a complete staged bundle into place, replacing an older one."""
    replace_dir(staged, output)


def archive_path(root: Path) -> Path:
    return root.with_name(root.name + ".tar.gz")


def archive(root: Path) -> Path:
    """Write ``<root>.tar.gz`` next to the bundle (atomically)."""
    dst = archive_path(root)
    fd, tmp = tempfile.mkstemp(dir=root.parent, prefix=f".{root.name}.", suffix=".tar.gz")
    os.close(fd)
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(root, arcname=root.name)
    public_mode(Path(tmp))
    os.replace(tmp, dst)
    return dst
