"""The GPU paths on one CUDA machine: each a timed step, summarised as JSON + Markdown.

README's "Known gaps" says CUDA autocast, NCCL DDP and FSDP and fp16 export have not run on a
GPU. Each step below runs one of them through the CLI and checks what the run recorded; a step
that fails does not stop the others, and steps left when the time budget runs out are skipped.

- env: nvidia-smi, torch/CUDA/NCCL versions, the GPU, the packages in use.
- train-bf16, train-fp16: `edgetune train --device cuda --precision P`, two epochs of
  examples/sst2-sample (10k rows) on a MiniLM-L6-shaped model with random weights (its
  pretrained weights do not fit what travels to the machine; the compute per step is the real
  model's); fp16 runs the loss scaler, and the epoch-1 checkpoint is written from CUDA.
- export, fp16-onnx, check, validate: the bf16 run exported with `--variants fp32,fp16`, its
  fp16 graph run on onnxruntime's CPU provider where it loads, the bundle self-checked and
  validated.
- fsdp-bf16, ddp-bf16, fsdp-fp16: NCCL, the DDP and FSDP2 wrappers, the sharded checkpoint and
  the full-state gather, at world size 1 (NCCL refuses two ranks on one GPU, and edgetune joins
  a process group only for two or more processes, so `--cli --world1` makes it join one).
- resume-fp16: SIGINT at step 40 (tests/interrupted_train.py), then `train --resume` on CUDA.
- train-fp32, qat, fewshot-auto, torchrun-1: no autocast; QAT on CUDA; `--device auto
  --precision auto` few-shot; plain torchrun with one process and --fsdp (nothing to shard).
- pytest: CPU tests of training, the CLI and the launchers (none is GPU-only), on half the
  cores, beside the steps above.

Steps run in that order (what matters most first) within --budget seconds; the rest are skipped.

    python3 bench/gpu_check.py --out "$OUT"      # on the GPU machine (about 5 minutes)
    python3 bench/gpu_check.py --dry-run         # the steps and commands, nothing run
    python3 bench/gpu_check.py --rehearse        # every step on CPU, tiny (tests this script)

Needs the ignored folder .whl/ beside bench/: wheels of the packages the machine lacks and
.whl/minilm-tokenizer/ (all-MiniLM-L6-v2's tokenizer).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "examples" / "sst2-sample"
TOKENIZER = REPO / ".whl" / "minilm-tokenizer"
LABELS = "negative,positive"
MODEL = "minilm-random"  # the preset written into the package copy (see build_package)

# all-MiniLM-L6-v2's config.json: the architecture, trained from random weights here.
MINILM = {
    "model_type": "bert",
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
}
TINY = {**MINILM, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 128}  # fmt: skip
PYTEST = [
    "tests/test_train.py",
    "tests/test_cli.py",
    "tests/test_distributed.py",
    "-k",
    "not deepspeed and not any_point_of_a_step",
]
# What the summary's archive keeps of each run and bundle (no weights, no tokenizers).
KEPT = {"metrics.json", "config.json", "qat.json", "edgetune.json", "golden.json", "report.json"}
CUDA_MEMORY = re.compile(r"gpu_check: cuda peak allocated (\d+) MiB")


class StepFailed(Exception):
    pass


class Skipped(Exception):
    pass


@dataclass
class Step:
    name: str
    what: str
    run: Callable[[Check], dict[str, Any]]
    needs: tuple[str, ...] = ()
    fp16: bool = False  # fp16 runs on CUDA only: the CPU rehearsal skips it


@dataclass
class Check:
    """What every step shares: where things go, the device, the clock and the record."""

    work: Path
    out: Path
    env: dict[str, str]
    deadline: float
    rehearse: bool
    dry_run: bool
    device: str = "cuda"
    record: dict[str, Any] = field(default_factory=dict)
    step: dict[str, Any] = field(default_factory=dict)

    @property
    def runs(self) -> Path:
        return self.work / "runs"

    def log(self, name: str) -> Path:
        return self.work / "logs" / f"{name}.log"

    def sh(self, cmd: list[str], cap_s: float, expect: int | None = 0) -> tuple[int, str]:
        """Run ``cmd`` (its output appended to the step's log); returns (exit code, output)."""
        left = self.deadline - time.monotonic()
        timeout = min(cap_s, left)
        shown = " ".join(cmd).replace(str(REPO) + "/", "")
        entry: dict[str, Any] = {"cmd": shown}
        self.step.setdefault("commands", []).append(entry)
        if self.dry_run:
            print(f"  $ {shown}")
            entry["rc"] = None
            return 0, ""
        if timeout < 10:
            raise Skipped("time budget spent")
        t0 = time.monotonic()
        log = self.log(self.step["name"])
        with open(log, "a") as f:
            f.write(f"\n$ {shown}\n")
            f.flush()
            p = spawn(cmd, self.env, self.work, f)
            try:
                rc = p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)  # the command and whatever it started
                p.wait()
                rc = 124
                f.write(f"\n[gpu_check: killed after {timeout:.0f} s]\n")
        entry.update(rc=rc, seconds=round(time.monotonic() - t0, 1))
        text = log.read_text(errors="replace")
        output = text[text.rfind(f"$ {shown}") :]
        if expect is not None and rc != expect:
            raise StepFailed(f"exit {rc} (expected {expect}): {last_error(output)}")
        return rc, output

    def cli(self, *args: str, cap_s: float, world1: bool = False, expect: int | None = 0):
        """edgetune's command line through this script (the CUDA peak memory is reported)."""
        if world1:
            cmd = torchrun(1) + [__file__, "--cli", "--world1", *args]
        else:
            cmd = [sys.executable, __file__, "--cli", *args]
        return self.sh(cmd, cap_s, expect)

    def precision(self, nominal: str) -> str:
        """The rehearsal on CPU trains every bf16 step in fp32 (fp16 steps need CUDA)."""
        return "fp32" if self.rehearse else nominal


def spawn(cmd: list[str], env: dict[str, str], cwd: Path, log: Any) -> subprocess.Popen:
    """``cmd`` in a session of its own (a timeout kills all it started), in ``cwd``: not the
    repository, whose edgetune ``python -m`` would put first on sys.path (see build_package)."""
    return subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def torchrun(n: int) -> list[str]:
    run = [sys.executable, "-m", "torch.distributed.run"]
    return run + ["--standalone", "--nproc_per_node", str(n)]


def last_json(output: str) -> Any:
    """The last line of ``output`` that is a JSON object (what a probe printed)."""
    return json.loads(next(ln for ln in reversed(output.splitlines()) if ln.startswith("{")))


def last_error(output: str) -> str:
    """The line that says what went wrong: edgetune's one-line error, else the last exception
    (torchrun's own ChildFailedError only repeats that a rank failed)."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "ChildFailedError" in ln:
            continue
        if ln.startswith("error:") or re.match(r"^[\w.]*(Error|Exception)\b", ln):
            return ln[:300]
    return (lines[-1] if lines else "no output")[:300]


# -- the package as pip lays it out -----------------------------------------------------------


def build_package(pkg: Path, arch: dict[str, Any]) -> None:
    """edgetune where ``edgetune._presets`` is ``models/`` (pyproject's package-dir; the tree is
    not pip-installed on the GPU machine), plus the preset of the MiniLM-shaped random model."""
    shutil.rmtree(pkg, ignore_errors=True)
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "edgetune", pkg / "edgetune", ignore=skip)
    presets = pkg / "edgetune" / "_presets"
    shutil.copytree(REPO / "models", presets, ignore=skip)
    shutil.copytree(TOKENIZER, presets / "minilm-tokenizer")
    lines = [
        'description = "MiniLM-L6-H384 architecture with random weights (bench/gpu_check.py)"',
        'source = "config"',
        'tokenizer = "minilm-tokenizer"',
        "max_length = 128",
        "learning_rate = 2e-4",
        "epochs = 2",
        "",
        "[config]",
        *(f"{k} = {json.dumps(v)}" for k, v in arch.items()),
    ]
    (presets / f"{MODEL}.toml").write_text("\n".join(lines) + "\n")


# -- what a run recorded ------------------------------------------------------------------------


def run_figures(c: Check, run: Path, precision: str | None, parallel: str = "none") -> dict:
    """The run's device, precision and launch, checked; its speed and accuracy."""
    if c.dry_run:
        return {}
    m = json.loads((run / "metrics.json").read_text())
    env, timing = m["environment"], m["timing"]
    want = {"device": c.device, "parallel": parallel}
    if precision:
        want["precision"] = precision
    wrong = {k: env.get(k) for k, v in want.items() if env.get(k) != v}
    if wrong:
        raise StepFailed(f"the run recorded {wrong}, expected {want}")
    losses = [h.get("train_loss") for h in m["history"]]
    if not losses or not all(isinstance(x, float) and math.isfinite(x) for x in losses):
        raise StepFailed(f"training losses not all finite: {losses}")
    out = {
        "device": env["device"],
        "precision": env["precision"],
        "parallel": env.get("parallel"),
        "world_size": env.get("world_size"),
        "gpu": env.get("gpu"),
        "train_rows": m["data"]["train"]["rows"],
        "steps": m["history"][-1].get("step"),
        "samples_per_s": round(timing["samples_per_s"], 1),
        "train_s": round(timing["train_s"], 1),
        "total_s": round(timing["total_s"], 1),
        "val_accuracy": round(m["validation"]["accuracy"], 4),
        "test_accuracy": round(m["test"]["accuracy"], 4),
        "train_loss": [round(x, 4) for x in losses],
        "peak_rss_mb": round(timing["memory_per_rank"][0]["peak_rss_mb"]),
        "model_state_mb": round(timing["memory_per_rank"][0]["model_state_mb"], 1),
    }
    if c.device == "cuda" and not env.get("gpu"):
        raise StepFailed("the run did not record its GPU")
    return out


def cuda_peak(output: str) -> dict[str, Any]:
    found = CUDA_MEMORY.findall(output)
    return {"cuda_peak_mib": max(int(x) for x in found)} if found else {}


def safetensors_layout(path: Path) -> dict[str, list[int]]:
    """Tensor names and shapes from a safetensors header (no torch needed)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return {k: v["shape"] for k, v in header.items() if k != "__metadata__"}


def same_layout(c: Check, run: Path, like: str) -> dict[str, Any]:
    """A sharded run's saved model has every tensor of the one-process run, whole."""
    if c.dry_run:
        return {}
    other = c.runs / like / "best" / "model.safetensors"
    if not other.is_file():
        return {"layout": f"not compared ({like} did not finish)"}
    mine = safetensors_layout(run / "best" / "model.safetensors")
    if mine != safetensors_layout(other):
        raise StepFailed(f"best/model.safetensors differs in names or shapes from {like}'s")
    return {"layout": f"{len(mine)} tensors, as {like}"}


# -- the steps --------------------------------------------------------------------------------


def train_options(c: Check, epochs: int = 2, shots: int | None = None) -> list[str]:
    opts = ["--model", MODEL, "--data", str(DATA), "--label-names", LABELS, "--seed", "0"]
    opts += ["--epochs", str(epochs), "--batch-size", "8" if c.rehearse else "32", "--overwrite"]
    shots = 16 if c.rehearse else shots
    return opts + (["--shots", str(shots)] if shots else [])


def env_step(c: Check) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    if shutil.which("nvidia-smi"):
        q = "name,driver_version,memory.total,compute_cap,power.limit"
        _, out = c.sh(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"], 30, None)
        figures["nvidia_smi"] = [ln for ln in out.splitlines()[1:] if ln.strip()]
    else:
        figures["nvidia_smi"] = "not found"
    _, out = c.sh([sys.executable, __file__, "--probe-env"], 90)
    if not c.dry_run:
        figures.update(last_json(out))
    return figures


def train_step(nominal: str, epochs: int = 2) -> Callable[[Check], dict[str, Any]]:
    def run(c: Check) -> dict[str, Any]:
        out, precision = c.runs / f"train-{nominal}", c.precision(nominal)
        args = ["--device", c.device, "--precision", precision]
        opts = train_options(c, epochs=epochs)
        _, log = c.cli("train", *opts, "--output", str(out), *args, cap_s=150)
        return run_figures(c, out, precision) | cuda_peak(log)

    return run


def world1_step(parallel: str, nominal: str) -> Callable[[Check], dict[str, Any]]:
    def run(c: Check) -> dict[str, Any]:
        out, precision = c.runs / f"{parallel}-{nominal}", c.precision(nominal)
        args = ["--device", c.device, "--precision", precision]
        args += ["--fsdp"] if parallel == "fsdp" else []
        opts = train_options(c, epochs=2, shots=1000)
        _, log = c.cli("train", *opts, "--output", str(out), *args, cap_s=120, world1=True)
        figures = run_figures(c, out, precision, parallel) | cuda_peak(log)
        if not c.dry_run and figures["world_size"] != 1:
            raise StepFailed(f"world size {figures['world_size']}, expected 1")
        return figures | same_layout(c, out, f"train-{nominal}")

    return run


def export_step(c: Check) -> dict[str, Any]:
    run, bundle = c.runs / "train-bf16", c.work / "bundles" / "bf16"
    args = ["export", str(run), "--output", str(bundle), "--variants", "fp32,fp16"]
    c.cli(*args, "--no-validate", "--overwrite", cap_s=150)
    if c.dry_run:
        return {}
    m = json.loads((bundle / "edgetune.json").read_text())
    v = m["variants"]
    if "fp16" not in v or v["fp16"].get("precision") != "fp16":
        raise StepFailed(f"no fp16 variant in the manifest: {sorted(v)}")
    return {
        "default_variant": m["default_variant"],
        "variants_mb": {k: round(x["size_bytes"] / 2**20, 1) for k, x in v.items()},
        "fp16_requires": v["fp16"].get("requires"),
        "source": m["source"].get("run"),
    }


def validate_step(c: Check) -> dict[str, Any]:
    bundle = c.work / "bundles" / "bf16"
    args = ["validate", str(bundle), "--threads", "4", "--rounds", "3", "--seq-lengths", "32,128"]
    _, out = c.cli(*args, "--no-data-lengths", "--no-memory", cap_s=120, expect=None)
    if c.dry_run:
        return {}
    r = json.loads((bundle / "validation" / "report.json").read_text())
    figures = {
        name: {
            "accuracy": round(x["accuracy"], 4),
            "agreement": round(x.get("agreement", 1.0), 4),
            "p50_ms_seq128": round(x["latency"]["seq128"]["p50_ms"], 2),
        }
        for name, x in r["variants"].items()
    }
    figures = {"passed": r["passed"], "variants": figures, "time_s": r.get("time_s")}
    failed = [g["message"] for g in r.get("gates", []) if not g.get("passed")]
    if not r["passed"] or c.step["commands"][-1]["rc"] != 0:
        raise StepFailed(f"validation failed: {failed or last_error(out)}")
    return figures


def check_step(c: Check) -> dict[str, Any]:
    bundle = c.work / "bundles" / "bf16"
    _, out = c.cli("check", str(bundle), "--json", cap_s=60)
    if c.dry_run:
        return {}
    lines = out.splitlines()  # --json prints the verdict indented: its braces on lines of their own
    start, end = lines.index("{"), len(lines) - lines[::-1].index("}")
    verdict = json.loads("\n".join(lines[start:end]))
    return {"passed": verdict.get("passed"), "verdict": verdict}


def fp16_onnx_step(c: Check) -> dict[str, Any]:
    bundle = c.work / "bundles" / "bf16"
    _, out = c.sh([sys.executable, __file__, "--probe-fp16", str(bundle)], 60)
    return {} if c.dry_run else last_json(out)


def resume_step(c: Check) -> dict[str, Any]:
    out, precision = c.runs / "resume-fp16", c.precision("fp16")
    at = "6" if c.rehearse else "40"  # in the second epoch: the first one's checkpoint exists
    opts = train_options(c, epochs=2, shots=500) + ["--output", str(out)]
    opts += ["--device", c.device, "--precision", precision]
    script = str(REPO / "tests" / "interrupted_train.py")
    rc, _ = c.sh([sys.executable, script, at, "train", *opts], 120, expect=None)
    if not c.dry_run and (rc != 130 or not Path(f"{out}.partial").is_dir()):
        raise StepFailed(f"the interrupted run exited {rc} (expected 130) or left no {out}.partial")
    _, log = c.cli("train", "--resume", "--output", str(out), cap_s=120)
    if not c.dry_run and "resuming" not in log:
        raise StepFailed("the resumed run did not say where it resumed")
    figures = run_figures(c, out, precision)
    if not c.dry_run:
        figures["resumed_at"] = re.search(r"resuming .* at step (\d+)", log).group(1)
    return figures


def qat_step(c: Check) -> dict[str, Any]:
    out = c.runs / "qat"
    opts = train_options(c, epochs=1, shots=1000) + ["--output", str(out), "--qat"]
    _, log = c.cli("train", *opts, "--device", c.device, "--precision", "auto", cap_s=120)
    figures = run_figures(c, out, None) | cuda_peak(log)
    if not c.dry_run:
        m = json.loads((out / "metrics.json").read_text())
        if not m.get("qat"):
            raise StepFailed("metrics.json has no qat record")
        figures["test_accuracy_float"] = round(m["qat"]["test_float"]["accuracy"], 4)
    return figures


def fewshot_step(c: Check) -> dict[str, Any]:
    out = c.runs / "fewshot-auto"
    opts = ["--model", MODEL, "--data", str(DATA), "--label-names", LABELS, "--overwrite"]
    opts += ["--strategy", "fewshot", "--shots", "16", "--output", str(out)]
    _, log = c.cli("train", *opts, "--device", "auto", "--precision", "auto", cap_s=120)
    return run_figures(c, out, None) | cuda_peak(log)


def torchrun_step(c: Check) -> dict[str, Any]:
    out = c.runs / "torchrun-1"
    opts = train_options(c, epochs=1, shots=500) + ["--output", str(out), "--fsdp"]
    cmd = torchrun(1) + ["-m", "edgetune.cli", "train", *opts, "--device", "auto"]
    _, log = c.sh(cmd, 120)
    if not c.dry_run and "nothing to shard" not in log:
        raise StepFailed("one process with --fsdp did not say there is nothing to shard")
    return run_figures(c, out, None, parallel="none")


def cuda_ep_step(c: Check) -> dict[str, Any]:
    raise Skipped(
        "onnxruntime here is the CPU build, and edgetune creates every session with "
        "CPUExecutionProvider (runtime/classifier.py, validate/timing.py): no CUDA EP path to run"
    )


# In order of what matters most: when the budget runs out, the last are skipped.
STEPS = [
    Step("env", "nvidia-smi, torch/CUDA/NCCL, the GPU and the packages in use", env_step),
    Step("train-bf16", "CUDA bf16 autocast, 2 epochs of 10k rows", train_step("bf16")),
    Step("export", "the CUDA-trained run to ONNX with fp32 and fp16 variants", export_step,
         ("train-bf16",)),
    Step("fp16-onnx", "the fp16 graph: checked, fp16 weights, run on ORT's CPU EP if it loads",
         fp16_onnx_step, ("export",)),
    Step("check", "the bundle's self-check on this machine", check_step, ("export",)),
    Step("train-fp16", "CUDA fp16 autocast with the loss scaler, 2 epochs", train_step("fp16"),
         fp16=True),
    Step("fsdp-bf16", "NCCL + FSDP2 at world size 1, bf16; sharded checkpoint, full-state save",
         world1_step("fsdp", "bf16")),
    Step("ddp-bf16", "NCCL + DDP at world size 1, bf16", world1_step("ddp", "bf16")),
    Step("fsdp-fp16", "NCCL + FSDP2 at world size 1, fp16: the loss scaler on sharded gradients",
         world1_step("fsdp", "fp16"), fp16=True),
    Step("resume-fp16", "SIGINT at step 40, then --resume on CUDA (scaler and optimizer state)",
         resume_step),
    Step("train-fp32", "CUDA without autocast, 1 epoch", train_step("fp32", epochs=1)),
    Step("qat", "quantization-aware training on CUDA (auto precision)", qat_step),
    Step("fewshot-auto", "--device auto --precision auto picks CUDA; few-shot training",
         fewshot_step),
    Step("torchrun-1", "torchrun, one process, --fsdp: edgetune trains unsharded", torchrun_step),
    Step("validate", "the bundle against its PyTorch original (CPU)", validate_step, ("export",)),
    Step("cuda-ep", "the CUDA execution provider", cuda_ep_step, fp16=True),
]  # fmt: skip


# -- the test suite, beside the steps ---------------------------------------------------------


def start_pytest(c: Check) -> tuple[subprocess.Popen | None, dict[str, Any]]:
    selection = ["tests/test_cli.py::test_every_command_has_help"] if c.rehearse else PYTEST
    selection = [str(REPO / x) if x.startswith("tests/") else x for x in selection]
    cmd = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider"]
    # The repository's edgetune lacks edgetune._presets: "append" keeps it behind the copy.
    cmd += ["-c", str(REPO / "pyproject.toml"), "--rootdir", str(REPO), "--import-mode=append"]
    cmd += ["--basetemp", str(c.work / "pytest"), *selection]
    cores = os.cpu_count() or 1
    if cores >= 8 and shutil.which("taskset"):  # the upper half of the cores: steps keep theirs
        cmd = ["taskset", "-c", f"{cores // 2}-{cores - 1}", *cmd]
    rec: dict[str, Any] = {
        "name": "pytest",
        "what": "CPU tests of training, the CLI and the launchers (no test is GPU-only)",
        "commands": [{"cmd": " ".join(cmd)}],
    }
    if c.dry_run:
        print(f"  $ {' '.join(cmd)}  (in the background)")
        return None, rec
    f = open(c.log("pytest"), "w")
    p = spawn(cmd, dict(c.env, OMP_NUM_THREADS="2"), c.work, f)
    t0 = time.monotonic()

    def clock() -> None:  # when it ended, not when the steps were done
        p.wait()
        rec["seconds"] = round(time.monotonic() - t0, 1)

    threading.Thread(target=clock, daemon=True).start()
    return p, rec


def finish_pytest(c: Check, p: subprocess.Popen | None, rec: dict[str, Any]) -> dict[str, Any]:
    if p is None:
        rec["status"] = "planned"
        return rec
    try:
        rc = p.wait(timeout=max(1.0, c.deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        rc = 124
    time.sleep(0.1)  # the clock thread records the end
    rec["commands"][0].update(rc=rc, seconds=rec.get("seconds"))
    text = c.log("pytest").read_text(errors="replace")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    tail = lines[-1] if lines else "no output"
    rec["figures"] = {"summary": tail}
    if rc == 124:  # unfinished is not failed: the summary says how far it got
        done = sum(ln.count(".") for ln in lines if re.fullmatch(r"[.sFEx]+( *\[ *\d+%\])?", ln))
        rec.update(status="timeout", note=f"killed at the time budget after {done} tests")
    else:
        rec["status"] = "pass" if rc == 0 else "fail"
        if rc != 0:
            rec["error"] = tail
    return rec


# -- the run ----------------------------------------------------------------------------------


def run_all(a: argparse.Namespace) -> int:
    work = Path(a.work)
    out = Path(a.out or os.environ.get("OUT") or work / "out")
    if not a.dry_run:
        # The folders below are cleared: only in a scratch folder this script made (a user's
        # runs/ and bundles/ are never wiped by a mistyped --work).
        mark = work / ".gpu_check-scratch"
        if work.exists() and any(work.iterdir()) and not mark.exists():
            raise SystemExit(f"--work {work} is not empty and not this script's: name a new folder")
        work.mkdir(parents=True, exist_ok=True)
        mark.touch()
        shutil.rmtree(work / "runs", ignore_errors=True)
        shutil.rmtree(work / "bundles", ignore_errors=True)
        shutil.rmtree(work / "logs", ignore_errors=True)
        for d in (work / "logs", work / "runs", work / "bundles", out):
            d.mkdir(parents=True, exist_ok=True)
        build_package(work / "pkg", TINY if a.rehearse else MINILM)
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            [str(work / "pkg"), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
        PYTHONUNBUFFERED="1",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HOME=str(work / "cache" / "hf"),
        XDG_CACHE_HOME=str(work / "cache"),
        MPLBACKEND="Agg",
    )
    c = Check(work, out, env, time.monotonic() + a.budget, a.rehearse, a.dry_run)
    t_start = time.monotonic()
    only = set(a.only.split(",")) if a.only else None
    results: list[dict[str, Any]] = []
    status: dict[str, str] = {}
    cuda = a.dry_run or a.rehearse
    pytest_proc, pytest_rec = None, None
    for step in STEPS:
        rec: dict[str, Any] = {"name": step.name, "what": step.what}
        c.step = rec
        results.append(rec)
        if a.dry_run:
            print(f"{step.name}: {step.what}")
        missing = [n for n in step.needs if status.get(n) != "pass" and not a.dry_run]
        t0 = time.monotonic()
        try:
            if only is not None and step.name not in only and step.name != "env":
                raise Skipped("not in --only")
            if step.name != "env" and not cuda:
                raise Skipped("no CUDA GPU visible")
            if a.rehearse and step.fp16:
                raise Skipped("needs CUDA (rehearsal on CPU)")
            if missing:
                raise Skipped(f"needs {', '.join(missing)}")
            rec["figures"] = step.run(c)
            rec["status"] = "planned" if a.dry_run else "pass"
        except Skipped as e:
            rec.update(status="skip", note=str(e))
        except StepFailed as e:
            rec.update(status="fail", error=str(e))
        except Exception as e:  # a bug here, or output not as expected: recorded, not fatal
            rec.update(status="fail", error=f"{type(e).__name__}: {e}"[:400])
        rec["seconds"] = round(time.monotonic() - t0, 1)
        status[step.name] = rec["status"]
        if not a.dry_run:
            print(f"[{time.monotonic() - t_start:6.1f} s] {step.name}: {rec['status']} "
                  f"({rec['seconds']} s) {rec.get('error') or rec.get('note') or ''}", flush=True)  # fmt: skip
        if step.name == "env":
            if not a.dry_run:
                c.record["machine"] = rec.get("figures", {})
                has = bool(c.record["machine"].get("cuda_available"))
                if rec["status"] != "pass" and not a.rehearse:  # unknown: try, and see
                    has = True
                cuda = cuda or has
                if a.rehearse:
                    c.device = "cpu"
                elif not has:
                    print("no CUDA GPU visible: every other step is skipped", flush=True)
            if cuda and (only is None or "pytest" in only):
                pytest_proc, pytest_rec = start_pytest(c)
    if pytest_rec is not None:
        results.append(finish_pytest(c, pytest_proc, pytest_rec))
    if a.dry_run:
        return 0
    failed = [r["name"] for r in results if r.get("status") == "fail"]
    summary = {
        "check": "gpu_check",
        "rehearsal": a.rehearse,
        "budget_s": a.budget,
        "total_s": round(time.monotonic() - t_start, 1),
        "passed": not failed and cuda,
        "failed": failed,
        "steps": results,
        "machine": c.record.get("machine", {}),
    }
    write_summary(c, summary)
    if not cuda:
        return 3
    return 1 if failed else 0


def write_summary(c: Check, s: dict[str, Any]) -> None:
    sys.path.insert(0, str(c.work / "pkg"))
    from edgetune.tables import markdown_table

    out = c.out
    (out / "gpu_check.json").write_text(json.dumps(s, indent=2, default=str) + "\n")
    rows = []
    for r in s["steps"]:
        fig = r.get("figures") or {}
        key = _key_figures(r["name"], fig)
        note = r.get("error") or r.get("note") or ""
        rows.append([r["name"], r["status"], f"{r.get('seconds', 0):.0f}", key, note[:160]])
    table = markdown_table(["step", "status", "s", "figures", "error / note"], rows, "llrll")
    trains = [r for r in s["steps"] if "samples_per_s" in (r.get("figures") or {})]
    head = ["run", "device", "precision", "parallel", "rows", "samples/s", "train s", "val acc",
            "test acc", "CUDA peak MiB"]  # fmt: skip
    train_rows = [
        [r["name"], f["device"], f["precision"], str(f["parallel"]), str(f["train_rows"]),
         f"{f['samples_per_s']:.0f}", f"{f['train_s']:.1f}", f"{f['val_accuracy'] * 100:.2f}%",
         f"{f['test_accuracy'] * 100:.2f}%", str(f.get("cuda_peak_mib", "-"))]
        for r in trains
        for f in [r["figures"]]
    ]  # fmt: skip
    m = s["machine"]
    gpu = m.get("gpu") or "no GPU"
    md = [
        "# GPU paths" + (" (rehearsal on CPU)" if s["rehearsal"] else ""),
        "",
        f"{gpu}; torch {m.get('torch')} (CUDA {m.get('cuda')}, NCCL {m.get('nccl')}), "
        f"transformers {m.get('transformers')}, optimum {m.get('optimum')}, onnxruntime "
        f"{m.get('onnxruntime')}; Python {m.get('python')}; {m.get('cpu_cores')} CPU cores. "
        f"Total {s['total_s']:.0f} s of a {s['budget_s']:.0f} s budget; " + _verdict(s),
        "",
        *table,
        "",
        *(markdown_table(head, train_rows, "llll") if train_rows else []),
        "",
        "Model: MiniLM-L6-H384's architecture (6 layers, hidden 384) with random weights, "
        "trained on examples/sst2-sample; accuracy shows that training works, not what "
        "pretrained MiniLM reaches. DDP and FSDP ran at world size 1 (one GPU).",
        "",
    ]
    (out / "gpu_check.md").write_text("\n".join(md))
    with open(out / "gpu_check.log", "w") as f:  # each step's log, its last 200 lines
        for r in s["steps"]:
            p = c.log(r["name"])
            if p.is_file():
                lines = p.read_text(errors="replace").splitlines()
                cut = f"[... {len(lines) - 200} lines ...]\n" if len(lines) > 200 else ""
                f.write(f"\n===== {r['name']} =====\n{cut}" + "\n".join(lines[-200:]) + "\n")
    with tarfile.open(out / "gpu_check_runs.tar.gz", "w:gz") as tar:  # small files only
        for root in (c.runs, c.work / "bundles"):
            for p in sorted(root.rglob("*")):
                if p.is_file() and p.name in KEPT and p.stat().st_size < 2**20:
                    tar.add(p, arcname=str(p.relative_to(c.work)))
    print("\n".join(md))
    print(f"written: {', '.join(sorted(x.name for x in out.iterdir()))} in {out}")


def _verdict(s: dict[str, Any]) -> str:
    if s["failed"]:
        return f"failed: {', '.join(s['failed'])}."
    if not s["passed"]:
        return "no CUDA GPU visible: the GPU steps were skipped."
    return "every step that ran passed."


def _key_figures(name: str, f: dict[str, Any]) -> str:
    if not f:
        return ""
    if "samples_per_s" in f:
        return f"{f['samples_per_s']:.0f} samples/s, test {f['test_accuracy'] * 100:.1f}%"
    if name == "env":
        return f"{f.get('gpu')}, torch {f.get('torch')}, CUDA {f.get('cuda')}"
    if name == "export":
        return ", ".join(f"{k} {v} MB" for k, v in (f.get("variants_mb") or {}).items())
    if name == "validate":
        v = f.get("variants") or {}
        return ", ".join(f"{k} {x['accuracy'] * 100:.1f}%" for k, x in v.items())
    if name == "fp16-onnx":
        ep = f.get("cpu_ep") or {}
        return f"{f.get('fp16_initializers')} fp16 weights; CPU EP " + (
            f"max |diff| {ep.get('max_abs_diff'):.2g}" if ep.get("loaded") else "does not load"
        )
    if name == "check":
        return f"passed {f.get('passed')}"
    return f.get("summary", "")


# -- modes run as subprocesses ----------------------------------------------------------------


def cli_mode(argv: list[str]) -> None:
    """edgetune's CLI (what the ``edgetune`` script runs), reporting the CUDA peak memory."""
    import atexit

    if argv[:1] == ["--world1"]:
        argv = argv[1:]
        join_at_world_one()
    atexit.register(report_cuda_memory)
    from edgetune.cli import main

    main(argv, prog_name="edgetune")


def join_at_world_one() -> None:
    """edgetune joins the launcher's process group, and runs DDP or FSDP, only for two or more
    processes (``launch.setup``, ``Dist.enabled``); NCCL refuses two ranks on one GPU. So that
    one GPU runs the NCCL group, the DDP and FSDP2 wrappers, the sharded checkpoint and every
    collective (all but traffic between ranks), both are told a group of one counts."""
    import torch.distributed as td

    from edgetune.train.parallel import launch

    launch.launched_world = lambda: 2  # setup(): join the launcher's group (of one)
    launch.Dist.enabled = property(lambda self: td.is_initialized())  # type: ignore[method-assign]


def report_cuda_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        mib = torch.cuda.max_memory_allocated() / 2**20
        print(f"gpu_check: cuda peak allocated {mib:.0f} MiB", file=sys.stderr, flush=True)


def probe_env() -> None:
    """The machine and the packages in use, as one JSON line (a field that fails says why)."""
    import importlib
    import platform

    import torch

    from edgetune.envinfo import dist_version

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "cpu_cores": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
    }

    def put(key: str, get: Callable[[], Any]) -> None:
        try:
            info[key] = get()
        except Exception as e:
            info[key] = f"{type(e).__name__}: {e}"[:200]

    put("cudnn", torch.backends.cudnn.version)
    put("nccl_available", torch.distributed.is_nccl_available)
    if torch.cuda.is_available():
        put("gpu", lambda: torch.cuda.get_device_name(0))
        put("gpus", torch.cuda.device_count)
        put("capability", lambda: ".".join(map(str, torch.cuda.get_device_capability(0))))
        put("gpu_memory_gib", lambda: round(torch.cuda.mem_get_info(0)[1] / 2**30, 1))
        put("bf16_native", lambda: torch.cuda.is_bf16_supported(including_emulation=False))
        put("nccl", lambda: str(torch.cuda.nccl.version()))
    # optimum is a namespace package: its exporter is what must import.
    for name in ("transformers", "optimum.exporters.onnx", "onnx", "onnxruntime", "tokenizers",
                 "accelerate", "huggingface_hub", "numpy", "edgetune"):  # fmt: skip
        top = name.split(".")[0]
        try:
            mod = importlib.import_module(name)
            info[top] = getattr(mod, "__version__", None) or dist_version(top)
            info[f"{top}_from"] = str(Path(mod.__file__).parents[name.count(".") + 1])
        except Exception as e:
            info[top] = f"not importable: {type(e).__name__}: {e}"[:200]
    put("optimum_onnx", lambda: dist_version("optimum-onnx"))
    put("ort_providers", lambda: importlib.import_module("onnxruntime").get_available_providers())
    print(json.dumps(info, default=str))


def probe_fp16(bundle: Path) -> None:
    """The fp16 graph: valid ONNX with fp16 weights; its logits beside fp32's on the CPU EP."""
    from collections import Counter

    import numpy as np
    import onnx
    import onnxruntime as ort
    from tokenizers import Tokenizer

    f16, f32 = bundle / "model_fp16.onnx", bundle / "model_fp32.onnx"
    model = onnx.load(str(f16))
    onnx.checker.check_model(model)
    kinds = Counter(onnx.TensorProto.DataType.Name(t.data_type) for t in model.graph.initializer)
    info: dict[str, Any] = {
        "fp16_mb": round(f16.stat().st_size / 2**20, 1),
        "fp32_mb": round(f32.stat().st_size / 2**20, 1),
        "fp16_initializers": kinds.get("FLOAT16", 0),
        "initializer_types": dict(kinds),
        "contrib_ops": sorted({n.op_type for n in model.graph.node if n.domain == "com.microsoft"}),
    }
    if not info["fp16_initializers"]:
        raise SystemExit(f"{f16.name} holds no fp16 weights: {dict(kinds)}")
    with open(DATA / "test.tsv", newline="") as f:
        texts = [r["sentence"] for _, r in zip(range(64), csv.DictReader(f, delimiter="\t"))]
    manifest = json.loads((bundle / "edgetune.json").read_text())
    tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    tok.enable_truncation(int(manifest.get("max_length") or 128))
    tok.enable_padding(pad_id=tok.token_to_id("[PAD]") or 0, pad_token="[PAD]")
    enc = tok.encode_batch(texts)
    arrays = {
        "input_ids": [e.ids for e in enc],
        "attention_mask": [e.attention_mask for e in enc],
        "token_type_ids": [e.type_ids for e in enc],
    }
    names = {i.name for i in model.graph.input}
    feeds = {k: np.asarray(v, dtype=np.int64) for k, v in arrays.items() if k in names}
    ref = ort.InferenceSession(str(f32), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    try:
        s = ort.InferenceSession(str(f16), providers=["CPUExecutionProvider"])
        got = s.run(None, feeds)[0].astype(np.float32)
        info["cpu_ep"] = {
            "loaded": True,
            "rows": len(texts),
            "max_abs_diff": float(np.abs(got - ref).max()),
            "agreement": float((got.argmax(1) == ref.argmax(1)).mean()),
        }
    except Exception as e:  # ORT's CPU provider lacks fp16 kernels for some fused operators
        info["cpu_ep"] = {"loaded": False, "error": str(e).splitlines()[0][:300]}
    print(json.dumps(info))


def main() -> None:
    if sys.argv[1:2] == ["--cli"]:
        return cli_mode(sys.argv[2:])
    if sys.argv[1:2] == ["--probe-env"]:
        return probe_env()
    if sys.argv[1:2] == ["--probe-fp16"]:
        return probe_fp16(Path(sys.argv[2]))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="Folder for gpu_check.{json,md,log} [$OUT, else WORK/out].")
    ap.add_argument("--work", default="/tmp/gpu_check", help="Scratch folder (runs, bundles).")
    ap.add_argument("--budget", type=float, default=400, help="Seconds for all steps together.")
    ap.add_argument("--only", help="Comma-separated step names (env always runs).")
    ap.add_argument("--dry-run", action="store_true", help="Print the steps and commands.")
    ap.add_argument("--rehearse", action="store_true", help="Every step on CPU, tiny.")
    a = ap.parse_args()
    if not (TOKENIZER / "tokenizer.json").is_file():
        sys.exit(f"{TOKENIZER} is missing: see the end of this script's docstring")
    sys.exit(run_all(a))


if __name__ == "__main__":
    main()
