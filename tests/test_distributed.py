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
# Two CPU processes over gloo on any machine, a GPU one too (two ranks cannot share one GPU).
CPU_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}

ARGS = {
    k: v
    for k, v in train_kwargs(epochs=3, val_size=7, test_size=8, dropout=0.0).items()
    if k != "batch_size"
}


ACCELERATE_FSDP = """\
compute_environment: LOCAL_MACHINE
distributed_type: FSDP
fsdp_config:
  fsdp_version: 2
  fsdp_reshard_after_forward: true
num_machines: 1
num_processes: 2
mixed_precision: 'no'
"""


ACCELERATE_DEEPSPEED = """\
compute_environment: LOCAL_MACHINE
distributed_type: DEEPSPEED
deepspeed_config:
  zero_stage: 2
  offload_optimizer_device: none
  offload_param_device: none
num_machines: 1
num_processes: 2
mixed_precision: 'no'
"""


def _launcher(name: str) -> str:
    exe = shutil.which(name, path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip(f"{name} is not installed next to this Python")
    return exe


def _launch(how: str, tmp_path: Path) -> list[str]:
    """The launcher that starts two CPU processes: torchrun (DDP or --fsdp) or accelerate."""
    if how.startswith("accelerate-"):
        if how == "accelerate-deepspeed":
            pytest.importorskip("deepspeed")
        cfg = tmp_path / "accelerate.yaml"
        cfg.write_text(ACCELERATE_FSDP if how == "accelerate-fsdp" else ACCELERATE_DEEPSPEED)
        return [_launcher("accelerate"), "launch", "--config_file", str(cfg)]
    return [_launcher("torchrun"), "--standalone", "--nproc_per_node", "2"]


@pytest.mark.parametrize(
    ("how", "parallel"),
    [
        ("torchrun", "ddp"),
        ("torchrun-fsdp", "fsdp"),
        ("accelerate-fsdp", "fsdp"),
        ("accelerate-deepspeed", "deepspeed"),
    ],
)
def test_two_processes_write_one_run_equal_to_one_process(how, parallel, tmp_path):
    launch = _launch(how, tmp_path)
    single = edgetune.train(
        data=str(ASSETS / "sentiment.csv"),
        output=str(tmp_path / "single"),
        batch_size=8,
        progress=False,
        **ARGS,
    )
    out = tmp_path / "ddp" / "run"
    cmd = launch + ["-m", "edgetune.cli", "train", "--data", str(ASSETS / "sentiment.csv")]
    cmd += ["--output", str(out), "--batch-size", "4", "--quiet"]
    cmd += ["--fsdp"] if how == "torchrun-fsdp" else []
    for k, v in ARGS.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    env = CPU_ENV
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    # Exactly one run directory, finished, and one summary printed (by rank 0).
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["run"]
    assert (out / "metrics.json").is_file() and (out / "best" / "model.safetensors").is_file()
    assert r.stdout.count("run        ") == 1
    # --quiet: the summary alone on stdout. accelerate's own launcher process (not edgetune's)
    # imports DeepSpeed and prints its accelerator warning there once, before any rank starts.
    launcher_lines = 1 if how == "accelerate-deepspeed" else 0
    assert len(r.stdout[: r.stdout.index("run ")].splitlines()) <= launcher_lines, r.stdout[:1000]
    ddp = json.loads((out / "metrics.json").read_text())
    assert ddp["environment"]["world_size"] == 2
    assert ddp["environment"]["parallel"] == parallel
    # Each rank's weights + optimizer state: all of it under DDP, about half under FSDP;
    # under ZeRO-2 the weights, plus half the fp32 master copy and half the optimizer state.
    whole = single.timing["memory_per_rank"][0]["model_state_mb"]
    held = [r["model_state_mb"] for r in ddp["timing"]["memory_per_rank"]]
    assert len(held) == 2
    if parallel == "fsdp":
        assert all(0.4 * whole < x < 0.6 * whole for x in held), (held, whole)
    elif parallel == "deepspeed":
        assert all(0.75 * whole < x < 0.9 * whole for x in held), (held, whole)
    else:
        assert held == [pytest.approx(whole, rel=1e-9)] * 2
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


@pytest.mark.parametrize(
    ("how", "parallel"), [("torchrun-fsdp", "fsdp"), ("accelerate-deepspeed", "deepspeed")]
)
def test_sharded_run_resumes_from_its_checkpoint(how, parallel, tmp_path):
    """Ctrl-C on every rank mid-epoch, then `--resume` under the same launcher."""
    launch = _launch(how, tmp_path)
    kw = {**ARGS, "ema": 0.9}
    ref = edgetune.train(
        data=str(ASSETS / "sentiment.csv"),
        output=str(tmp_path / "ref"),
        batch_size=8,
        progress=False,
        **kw,
    )
    out = tmp_path / "sharded"
    args = ["train", "--data", str(ASSETS / "sentiment.csv"), "--output", str(out)]
    args += ["--batch-size", "4", "--quiet"] + (["--fsdp"] if how == "torchrun-fsdp" else [])
    for k, v in kw.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    env = CPU_ENV
    script = str(Path(__file__).with_name("interrupted_train.py"))
    # 3 steps per epoch: the 6th step is in the middle of epoch 2, after one checkpoint.
    r = subprocess.run(launch + [script, "6", *args], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "--resume" in r.stderr, r.stderr[-3000:]
    assert not out.exists()
    r = subprocess.run(
        launch + ["-m", "edgetune.cli", "train", "--resume", "--output", str(out), "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "metrics.json").read_text())
    assert res["environment"]["parallel"] == parallel
    assert [h["step"] for h in res["history"]] == [h["step"] for h in ref.history]
    for a, b in zip(res["history"], ref.history):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4, abs=1e-5)
    assert res["test"]["confusion_matrix"] == ref.test["confusion_matrix"]


def test_accelerate_fsdp_settings_are_read(monkeypatch):
    from edgetune.train.parallel.launch import fsdp_options

    for var in ("ACCELERATE_USE_FSDP", "FSDP_RESHARD_AFTER_FORWARD", "FSDP_SHARDING_STRATEGY"):
        monkeypatch.delenv(var, raising=False)
    assert fsdp_options(False) is None
    assert fsdp_options(True).reshard_after_forward is True  # --fsdp: FULL_SHARD
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_ACTIVATION_CHECKPOINTING", "true")
    # accelerate exports both variables, each at its default unless the config set it.
    for reshard, strategy, expected in [
        ("false", "FULL_SHARD", False),
        ("SHARD_GRAD_OP", "FULL_SHARD", False),
        ("true", "SHARD_GRAD_OP", False),
        ("true", "FULL_SHARD", True),
    ]:
        monkeypatch.setenv("FSDP_RESHARD_AFTER_FORWARD", reshard)
        monkeypatch.setenv("FSDP_SHARDING_STRATEGY", strategy)
        o = fsdp_options(False)
        assert (o.reshard_after_forward, o.activation_checkpointing) == (expected, True)
    monkeypatch.setenv("FSDP_SHARDING_STRATEGY", "NO_SHARD")
    assert fsdp_options(False) is None  # nothing sharded is DDP


@pytest.mark.parametrize(
    ("env", "msg"),
    [
        (
            {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"},
            "ZeRO stage 3 is not supported; use stage 1 or 2",
        ),
        (
            {"ACCELERATE_USE_FSDP": "true", "FSDP_RESHARD_AFTER_FORWARD": "sometimes"},
            "use FULL_SHARD or SHARD_GRAD_OP",
        ),
        ({"ACCELERATE_USE_FSDP": "true", "FSDP_OFFLOAD_PARAMS": "true"}, "fsdp_offload_params"),
        (
            {
                "ACCELERATE_USE_DEEPSPEED": "true",
                "ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE": "cpu",
            },
            "set offload_optimizer_device to none",
        ),
    ],
)
def test_unsupported_accelerate_configs_exit_2(env, msg, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from edgetune.cli import main

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    out = tmp_path / "run"
    args = ["train", "--model", "tiny-distilbert", "--data", str(ASSETS / "sentiment.csv")]
    r = CliRunner().invoke(main, args + ["--output", str(out), "--fsdp"])
    assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output, r.output
    assert not out.exists()


def test_ddp_resume_is_exact_after_a_signal_at_any_point_of_a_step(tmp_path):
    """Under torchrun (2 processes, DDP), each rank gets SIGINT at the same point of a step;
    the resumed run's weights and optimizer state are bit for bit the uninterrupted run's."""
    import torch

    from edgetune.train import STEP_POINTS

    from .step_hooks import assert_same_state

    options = {**ARGS, "data": str(ASSETS / "sentiment.csv"), "batch_size": 4, "ema": 0.9}
    options.update(eval_steps=2, dropout=0.1, progress=False)
    script = str(Path(__file__).with_name("step_hooks.py"))
    env = CPU_ENV
    cmd = _launch("torchrun", tmp_path) + [script, json.dumps(options), str(tmp_path), *STEP_POINTS]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    ref = torch.load(tmp_path / "ref.pt", weights_only=False)
    for point in STEP_POINTS:
        assert_same_state(torch.load(tmp_path / f"{point}.pt", weights_only=False), ref)


def test_two_processes_distil_like_one(trained_run, tmp_path):
    """DDP with a teacher and unlabeled texts: rank 0 reads the texts and runs the teacher, every
    rank learns the same logits; the run equals one process's (8 extra rows: equal shards)."""
    extra = tmp_path / "extra.csv"
    extra.write_text(
        "text\n" + "".join(f"a {w} film about {x}\n" for w in ("fine", "dreary") for x in "abcd")
    )
    opts = {**ARGS, "teacher": str(trained_run), "unlabeled": str(extra)}
    single = edgetune.train(
        data=str(ASSETS / "sentiment.csv"),
        output=str(tmp_path / "single"),
        batch_size=8,
        progress=False,
        **opts,
    )
    out = tmp_path / "ddp"
    cmd = [*_launch("torchrun", tmp_path), "-m", "edgetune.cli", "train"]
    cmd += ["--data", str(ASSETS / "sentiment.csv"), "--output", str(out), "--batch-size", "4"]
    for k, v in opts.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    env = CPU_ENV
    r = subprocess.run([*cmd, "--quiet"], capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    ddp = json.loads((out / "metrics.json").read_text())
    assert ddp["environment"]["world_size"] == 2
    assert ddp["teacher"]["unlabeled"]["rows"] == 8 == single.teacher["unlabeled"]["rows"]
    assert (out / "unlabeled.jsonl").read_text() == (
        tmp_path / "single" / "unlabeled.jsonl"
    ).read_text()
    for a, b in zip(ddp["history"], single.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4, abs=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4, abs=1e-5)
    assert ddp["test"]["confusion_matrix"] == single.test["confusion_matrix"]


def test_two_processes_train_a_token_classifier(tmp_path):
    """Per-token labels travel in the encoding and are sharded with their rows; the evaluator
    gathers each sentence's own tokens from both ranks."""
    from .test_token_task import write_conll

    data = write_conll(tmp_path / "conll", counts=(32, 8, 8))
    out = tmp_path / "ddp" / "run"
    cmd = _launch("torchrun", tmp_path) + ["-m", "edgetune.cli", "train", "--data", str(data)]
    cmd += ["--output", str(out), "--batch-size", "4", "--max-length", "32", "--quiet"]
    for k, v in ARGS.items():
        if k not in ("val_size", "test_size"):
            cmd += [f"--{k.replace('_', '-')}", str(v)]
    env = CPU_ENV
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["environment"]["world_size"] == 2 and m["config"]["task"] == "token-classification"
    assert m["test"]["n_sentences"] == 8 and 0.0 <= m["test"]["f1"] <= 1.0
    assert len(m["history"]) == 3 and all(h["train_loss"] > 0 for h in m["history"])


def test_two_processes_train_a_multi_label_classifier(tmp_path):
    """Label sets travel as float targets sharded with their rows; thresholds are tuned once,
    by rank 0, on the gathered validation logits."""
    from .test_multilabel_task import write_jsonl

    data = write_jsonl(tmp_path / "t.jsonl", n=48)
    out = tmp_path / "ddp" / "run"
    cmd = _launch("torchrun", tmp_path) + ["-m", "edgetune.cli", "train", "--data", str(data)]
    cmd += ["--output", str(out), "--batch-size", "4", "--threshold", "tuned", "--quiet"]
    for k, v in ARGS.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    env = CPU_ENV
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["environment"]["world_size"] == 2 and m["config"]["task"] == "multi-label"
    assert (out / "best" / "thresholds.json").is_file() and "micro_f1" in m["test"]


def test_more_ranks_than_gpus_is_one_line(monkeypatch):
    """Two ranks launched on a one-GPU machine: a one-line error naming the fix, before any
    process group is joined (not CUDA's "invalid device ordinal" traceback)."""
    import torch

    from edgetune.errors import ConfigError
    from edgetune.train.parallel.launch import setup

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match=r"local rank 1 but the machine has 1 GPU.*--device cpu"):
        setup("cuda")
