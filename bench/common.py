"""Helpers shared by the benchmark scripts: machine description, result files, and runs and
bundles made through the CLI (each reused when already finished, so a bench continues)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine_info() -> dict[str, Any]:
    """edgetune's environment capture, plus torch's thread count and the date."""
    import torch

    from edgetune.envinfo import environment

    info = environment("torch", "transformers", "onnxruntime")
    info["torch_threads"] = torch.get_num_threads()
    info["date"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return info


def write_results(name: str, result: dict[str, Any], title: str, table: list[str]) -> None:
    """Write ``results/NAME.json`` and ``results/NAME.md``, with the benchmark's name and machine."""
    result = {"benchmark": name, **result, "machine": machine_info()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    m = result["machine"]
    md = [
        f"# {title}",
        "",
        *table,
        "",
        f"Machine: {m['cpu']['name']}, {m['cpu']['cores']} cores "
        f"({', '.join(m['cpu']['features'])}); torch {m['torch']}, {m['torch_threads']} threads; "
        f"{m['date']}.",
        "",
    ]
    (RESULTS / f"{name}.md").write_text("\n".join(md))
    print("\n".join(md))


def edgetune_cli(*args: str) -> None:
    cmd = [sys.executable, "-m", "edgetune", *args]
    print("$ edgetune " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True)


def train_run(runs: Path, name: str, data: str, labels: str | None, *opts: str) -> Path:
    """A finished run at runs/NAME: trained now, resumed, or (already finished) reused."""
    out = runs / name
    if (out / "metrics.json").is_file():
        print(f"reusing {out}", flush=True)
        return out
    if Path(f"{out}.partial").exists():
        edgetune_cli("train", "--resume", "--output", str(out))
        return out
    extra = ["--label-names", labels] if labels else []
    edgetune_cli("train", "--data", data, "--output", str(out), *extra, *opts)
    return out


def export_bundle(run: Path, bundles: Path) -> Path:
    from edgetune.formats.bundle import MANIFEST

    out = bundles / run.name
    if not (out / MANIFEST).is_file():  # an earlier run of the bench exported it
        edgetune_cli("export", str(run), "--output", str(out), "--no-validate", "--overwrite")
    return out


def bundle_accuracy(
    bundle: Path, seqs: tuple[int, ...] = (32, 128), threads: int = 2
) -> dict[str, Any]:
    """Test accuracy of the PyTorch original (fp32) and the default int8 variant (runtime)."""
    from edgetune.validate import validate

    done = bundle / "validation" / "report.json"
    rep = json.loads(done.read_text()) if done.is_file() else {}  # an earlier run of the bench
    if "pytorch-fp32" not in rep.get("variants", {}):
        rep = validate(
            bundle=str(bundle),
            threads=threads,
            seq_lengths=seqs,
            memory=False,
            data_lengths=False,
            rounds=5,
            progress=False,
            raise_on_failure=False,
        ).report
    rows, default = rep["variants"], rep["default_variant"]
    return {
        "default_variant": default,
        "fp32_test": rows["pytorch-fp32"]["accuracy"],
        "int8_test": rows[default]["accuracy"],
        "agreement": rows[default]["agreement"],
        "rows": rep["data"]["rows"],
    }


def train_or_resume(run: str, options: list[str]) -> float | None:
    """Train RUN with ``edgetune train OPTIONS --output RUN --quiet`` unless it exists; a
    RUN.partial left by a stopped run is resumed instead. Seconds it took (None: it existed)."""
    import time
    from pathlib import Path

    if Path(run).exists():
        return None
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "edgetune.cli", "train", "--output", run, "--quiet"]
    partial = Path(run + ".partial").exists()  # stopped earlier: continue where it was
    subprocess.run(cmd + (["--resume"] if partial else options), check=True)
    return time.perf_counter() - t0


def export_in_own_process(run: str, out: Path, variants: str) -> tuple[float, float]:
    """``edgetune export RUN --output OUT --variants V --no-validate`` in its own process, so
    its time and peak memory are its own: (seconds, peak RSS MB of the children so far)."""
    import resource
    import time

    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "edgetune.cli", "export", run, "--output", str(out)]
    subprocess.run(cmd + ["--variants", variants, "--no-validate", "--quiet"], check=True)
    seconds = time.perf_counter() - t0
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
