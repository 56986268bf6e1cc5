"""Shared fixtures: isolated caches, tiny data in every format, a tiny local model."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

ASSETS = Path(__file__).parent / "assets"


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch):
    """Point every cache and home folder at a temporary directory; never touch the network."""
    home = tmp_path_factory.mktemp("home")
    for var in ("HOME", "HF_HOME", "HF_DATASETS_CACHE", "XDG_CACHE_HOME", "TORCH_HOME"):
        monkeypatch.setenv(var, str(home / var.lower()))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def sentiment() -> pd.DataFrame:
    return pd.read_csv(ASSETS / "sentiment.csv")


@pytest.fixture
def csv_file(tmp_path) -> Path:
    dst = tmp_path / "sentiment.csv"
    shutil.copy(ASSETS / "sentiment.csv", dst)
    return dst


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random DistilBERT saved in HF format (safetensors + tokenizer)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DistilBertConfig

    from edgetune.presets import resolve_model

    tok_dir = resolve_model("tiny-distilbert").location
    tok = AutoTokenizer.from_pretrained(tok_dir)
    torch.manual_seed(0)
    cfg = DistilBertConfig(
        vocab_size=len(tok),
        dim=32,
        hidden_dim=64,
        n_layers=2,
        n_heads=2,
        max_position_embeddings=64,
        num_labels=2,
    )
    model = AutoModelForSequenceClassification.from_config(cfg)
    out = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


@pytest.fixture
def bundle(bundle_dir, tmp_path):
    """A private copy of the shared bundle (tests write into it or tamper with it)."""
    dst = tmp_path / "bundle"
    shutil.copytree(bundle_dir, dst)
    return dst


def train_kwargs(**over):
    """Fast, deterministic settings for tiny training runs."""
    kw = dict(
        model="tiny-distilbert",
        epochs=2,
        batch_size=8,
        learning_rate=5e-3,
        precision="fp32",
        device="cpu",
        val_size=0.25,
        test_size=0.25,
        seed=0,
    )
    kw.update(over)
    return kw


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    import edgetune

    edgetune.train(
        data=str(ASSETS / "sentiment.csv"),
        output=str(out),
        progress=False,
        **train_kwargs(epochs=8, learning_rate=1e-2),
    )
    return out


@pytest.fixture(scope="session")
def bundle_dir(trained_run, tmp_path_factory):
    from edgetune.export import export

    out = tmp_path_factory.mktemp("bundles") / "b"
    export(
        source=str(trained_run),
        output=str(out),
        variants=("fp32", "int8-dynamic"),
        progress=False,
        archive=True,
        validate=False,
    )
    return out


def rerecord_hashes(root: Path) -> None:
    """Re-record every hash after editing a bundle's files, as a careless (or hostile) tool would
    (bench/faults.py's ``rehash``, which the fault benches use)."""
    bench = str(Path(__file__).resolve().parents[1] / "bench")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    import faults

    faults.rehash(root)


RUNTIME_PACKAGES = ("numpy", "onnxruntime", "tokenizers", "click")


def runtime_venv(tmp_path: Path, packages=RUNTIME_PACKAGES, first: Path | None = None) -> Path:
    """A fresh venv holding only ``packages`` (linked from this one) and edgetune; returns its
    python. ``first``: a folder of packages that take precedence (e.g. an older onnxruntime)."""
    import importlib.metadata as md
    import venv

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False, symlinks=True)
    pkgs = tmp_path / "site"
    pkgs.mkdir()
    for dist_name in packages:
        dist = md.distribution(dist_name)
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            src = Path(dist.locate_file(top))
            if src.exists() and not (pkgs / top).exists() and top != "__pycache__":
                (pkgs / top).symlink_to(src)
    (pkgs / "edgetune").symlink_to(Path(__file__).resolve().parents[1] / "edgetune")
    site = next(env_dir.glob("lib/python3*/site-packages"))
    (site / "runtime.pth").write_text("".join(f"{d}\n" for d in (first, pkgs) if d))
    return env_dir / "bin" / "python"


def fp32_bundle(run: Path, tmp_path_factory, name: str) -> Path:
    """``run`` exported with its default variant and fp32 beside it (no validator)."""
    from edgetune.export import export

    out = tmp_path_factory.mktemp(name) / "b"
    export(source=str(run), output=str(out), variants=("fp32",), progress=False)
    return out
