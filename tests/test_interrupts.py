"""Nothing lost, nothing silently wrong: interruption, exact resume, locks and overwriting."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

import edgetune
from edgetune.cli import main
from edgetune.errors import ConfigError, LockedError, RunError
from edgetune.formats import rundir
from edgetune.fsutil import locked
from edgetune.train import STEP_POINTS, TrainingInterrupted

from .conftest import ASSETS, train_kwargs
from .step_hooks import FIRST_STEP, assert_same_state, capture_end, chain, interrupt_at

# EMA, dropout and eval steps: the RNG, the average and the evaluation schedule must all resume.
KW = train_kwargs(progress=False, ema=0.9, eval_steps=2)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    store: dict = {}
    out = tmp_path_factory.mktemp("ref") / "run"
    res = edgetune.train(
        output=str(out), data=str(ASSETS / "sentiment.csv"), on_step=capture_end(store), **KW
    )
    return store, res


@pytest.mark.parametrize("point", STEP_POINTS)
def test_resume_is_exact_after_a_signal_at_any_point_of_a_step(point, reference, tmp_path):
    """SIGINT at each point of a step (and around evaluation); resumed weights and optimizer
    state are bit for bit those of the uninterrupted run."""
    ref, ref_res = reference
    out = tmp_path / "run"
    data = str(ASSETS / "sentiment.csv")
    with pytest.raises(TrainingInterrupted, match="--resume") as e:
        edgetune.train(output=str(out), data=data, on_step=interrupt_at(point), **KW)
    assert e.value.exit_code == 130
    assert not out.exists() and rundir.has_checkpoint(rundir.partial_path(out))
    state = json.loads((rundir.partial_path(out) / "checkpoint" / "trainer_state.json").read_text())
    assert state["step"] >= FIRST_STEP
    store: dict = {}
    seen: list = []
    res = edgetune.train(
        output=str(out),
        resume=True,
        progress=False,
        on_step=chain(capture_end(store), lambda e: seen.append((e.point, e.step))),
    )
    assert_same_state(store, ref)
    assert res.history == [
        {**h, "train_s": r["train_s"]} for h, r in zip(ref_res.history, res.history)
    ]
    assert (out / "best" / "model.safetensors").read_bytes() == (
        Path(ref_res.output) / "best" / "model.safetensors"
    ).read_bytes()
    assert not any(p == "optimizer" and s < state["step"] for p, s in seen)  # no step replayed


def test_sigterm_saves_a_checkpoint_and_exits_143(tmp_path):
    out = tmp_path / "run"
    kw = {**KW, "data": str(ASSETS / "sentiment.csv")}
    with pytest.raises(TrainingInterrupted, match="terminated at step") as e:
        edgetune.train(output=str(out), on_step=interrupt_at("backward", 4, signal.SIGTERM), **kw)
    assert e.value.exit_code == 143
    assert rundir.has_checkpoint(rundir.partial_path(out))
    edgetune.train(output=str(out), resume=True, progress=False)
    assert rundir.is_run(out)


def test_interrupted_before_training_leaves_nothing_and_exits_130(tmp_path, monkeypatch):
    import importlib

    def ctrl_c(*a, **k):  # Ctrl-C while the data is read
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(importlib.import_module("edgetune.data.labelled"), "load_task_data", ctrl_c)
    out = tmp_path / "run"
    r = CliRunner().invoke(
        main,
        [
            "train",
            "--model",
            "tiny-distilbert",
            "--data",
            str(ASSETS / "sentiment.csv"),
            "--output",
            str(out),
        ],
    )
    assert r.exit_code == 130, r.output
    assert "interrupted before training began" in r.output
    assert not out.exists() and not rundir.partial_path(out).exists()


def test_a_killed_run_says_exactly_how_to_go_on(tmp_path):
    """SIGKILL before the first checkpoint leaves a .partial: no message loop."""
    out = tmp_path / "run"
    work = rundir.partial_path(out)
    work.mkdir()
    (work / "config.json").write_text(json.dumps({"format": rundir.FORMAT}))
    kw = {**KW, "data": str(ASSETS / "sentiment.csv")}
    with pytest.raises(RunError, match="before its first checkpoint.*--overwrite"):
        edgetune.train(output=str(out), **kw)
    with pytest.raises(RunError, match="before its first checkpoint.*--overwrite"):
        edgetune.train(output=str(out), resume=True)
    edgetune.train(output=str(out), overwrite=True, **kw)
    assert rundir.is_run(out) and not work.exists()


def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    """SIGKILL mid-epoch 2: the epoch-1 checkpoint is what --resume continues."""
    out = tmp_path / "run"
    script = (
        "import os, signal, sys, edgetune\n"
        "def hook(e):\n"
        "    if e.point == 'batch' and e.step == 4: os.kill(os.getpid(), signal.SIGKILL)\n"
        f"edgetune.train(output={str(out)!r}, data={str(ASSETS / 'sentiment.csv')!r}, "
        f"on_step=hook, **{train_kwargs(progress=False)!r})\n"
    )
    r = subprocess.run([sys.executable, "-c", script], env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == -signal.SIGKILL
    r2 = CliRunner().invoke(main, ["train", "--resume", "--output", str(out), "--quiet"])
    assert r2.exit_code == 0, r2.output
    ref = edgetune.train(
        output=str(tmp_path / "ref"),
        data=str(ASSETS / "sentiment.csv"),
        **train_kwargs(progress=False),
    )
    got = json.loads((out / "metrics.json").read_text())
    assert [h["val_loss"] for h in got["history"]] == [h["val_loss"] for h in ref.history]


def test_resume_refuses_changed_options_and_changed_data(tmp_path, csv_file):
    out = tmp_path / "run"
    kw = {**KW, "data": str(csv_file)}
    with pytest.raises(TrainingInterrupted):
        edgetune.train(output=str(out), on_step=interrupt_at("boundary", 4), **kw)
    base = ["train", "--resume", "--output", str(out), "--quiet"]
    for extra, named in (
        (["--epochs", "5"], "--epochs 5 (the run has 2)"),
        (["--model", "minilm-l6"], "--model minilm-l6"),
        (["--data", str(ASSETS / "sentiment.jsonl")], "--data"),
    ):
        r = CliRunner().invoke(main, base + extra)
        assert r.exit_code == 2 and named in r.output and "--overwrite" in r.output, r.output
    # The same values as the run's are fine (here: its epochs and its data by another path).
    r = CliRunner().invoke(
        main, base + ["--epochs", "2", "--data", str(csv_file.parent / "." / csv_file.name)]
    )
    assert r.exit_code == 0, r.output
    # Data changed under a checkpoint: refused.
    out2 = tmp_path / "run2"
    with pytest.raises(TrainingInterrupted):
        edgetune.train(output=str(out2), on_step=interrupt_at("boundary", 4), **kw)
    csv_file.write_text(csv_file.read_text() + "a new row,1\n")
    with pytest.raises(ConfigError, match="data .* changed"):
        edgetune.train(output=str(out2), resume=True)


def test_a_second_writer_of_the_same_run_is_refused(tmp_path):
    out = tmp_path / "run"
    kw = {**KW, "data": str(ASSETS / "sentiment.csv")}
    held, done = threading.Event(), threading.Event()

    def other_writer():  # as another `edgetune train --output run` holds it
        with locked(out, "run"):
            held.set()
            done.wait(60)

    t = threading.Thread(target=other_writer)
    t.start()
    held.wait(60)
    try:
        with pytest.raises(LockedError, match="another edgetune process"):
            edgetune.train(output=str(out), **kw)
    finally:
        done.set()
        t.join()
    assert not out.exists() and not rundir.partial_path(out).exists()


def test_two_trainings_into_one_output_at_once(tmp_path):
    """Two real processes: one writes the run, the other exits 2 naming the lock holder."""
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "edgetune.cli",
        "train",
        "--model",
        "tiny-distilbert",
        "--data",
        str(ASSETS / "sentiment.csv"),
        "--output",
        str(out),
        "--quiet",
        "--epochs",
        "3",
        "--precision",
        "fp32",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    assert sorted(c for c, _ in results) == [0, 2], results
    # The loser met the lock, or (started after the winner finished) the finished run.
    loser = next(e for c, e in results if c == 2)
    assert "being written by another edgetune process" in loser or "already holds a run" in loser
    assert rundir.is_run(out)


def test_overwrite_replaces_only_edgetune_runs_and_never_a_source(tmp_path, csv_file):
    kw = {**KW, "data": str(csv_file)}
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(RunError, match="not an edgetune run.*another --output"):
        edgetune.train(output=str(foreign), overwrite=True, **kw)
    assert (foreign / "cat.jpg").exists()
    # The data inside the output folder: --overwrite would delete it.
    holder = tmp_path / "project"
    holder.mkdir()
    shutil.copy(csv_file, holder / "data.csv")
    (holder / "config.json").write_text(json.dumps({"format": rundir.FORMAT}))
    with pytest.raises(RunError, match="holds .*data.csv.*which this run reads"):
        edgetune.train(
            output=str(holder), overwrite=True, **{**kw, "data": str(holder / "data.csv")}
        )
    assert (holder / "data.csv").exists()
    # An empty folder and an earlier run are fine.
    empty = tmp_path / "empty"
    empty.mkdir()
    edgetune.train(output=str(empty), **kw)
    edgetune.train(output=str(empty), overwrite=True, **kw)
    assert rundir.is_run(empty)


def test_max_length_beyond_the_model_positions_is_refused(tmp_path, csv_file, tiny_model_dir):
    """The tiny test model has 64 positions: 512 is refused up front; the default is capped."""
    kw = {**KW, "data": str(csv_file), "model": str(tiny_model_dir)}
    with pytest.raises(ConfigError, match="--max-length 512 exceeds the 64 positions.*64 or less"):
        edgetune.train(output=str(tmp_path / "a"), max_length=512, **kw)
    assert not (tmp_path / "a").exists() and not (tmp_path / "a.partial").exists()
    res = edgetune.train(output=str(tmp_path / "b"), **kw)
    assert res.config["max_length"] == 64


def test_usable_positions_know_the_roberta_offset():
    from edgetune.presets import usable_positions

    assert usable_positions({"model_type": "bert", "max_position_embeddings": 512}) == 512
    assert (
        usable_positions({"model_type": "mpnet", "max_position_embeddings": 514, "pad_token_id": 1})
        == 512
    )
    assert usable_positions({"model_type": "bert"}) is None
