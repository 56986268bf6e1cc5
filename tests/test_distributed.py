from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import edgetune

from .conftest import ASSETS, train_kwargs

# 32 training rows: every global batch of 8 splits into two equal shards of 4, so two
# processes average exactly the gradients one process computes on the whole batch.
ARGS = {
    k: v
    for k, v in train_kwargs(epochs=3, val_size=7, test_size=8, dropout=0.0).items()
    if k != "batch_size"
}


def test_two_processes_write_one_run_equal_to_one_process(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed next to this Python")
    single = edgetune.train(
        data=str(ASSETS / "sentiment.csv"),
        output=str(tmp_path / "single"),
        batch_size=8,
        progress=False,
        **ARGS,
    )
    out = tmp_path / "ddp" / "run"
    cmd = [
        torchrun,
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "edgetune.cli",
        "train",
        "--data",
        str(ASSETS / "sentiment.csv"),
        "--output",
        str(out),
        "--batch-size",
        "4",
        "--quiet",
    ]
    for k, v in ARGS.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    # Exactly one run directory, finished, and one summary printed (by rank 0).
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["run"]
    assert (out / "metrics.json").is_file() and (out / "best" / "model.safetensors").is_file()
    assert r.stdout.count("run        ") == 1
    ddp = json.loads((out / "metrics.json").read_text())
    assert ddp["environment"]["world_size"] == 2
    assert ddp["data"]["validation"]["rows"] == 7 and ddp["test"]["n"] == 8  # whole splits
    # Same optimisation: losses agree to float rounding, predictions exactly.
    assert len(ddp["history"]) == len(single.history) == 3
    for a, b in zip(ddp["history"], single.history):
        assert a["step"] == b["step"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4, abs=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4, abs=1e-5)
        assert a["val_accuracy"] == b["val_accuracy"]
    assert ddp["test"]["accuracy"] == single.test["accuracy"]
    assert ddp["test"]["confusion_matrix"] == single.test["confusion_matrix"]
