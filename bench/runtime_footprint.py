"""Edge runtime: cold start, installed size and predictions/s of a bundle without torch.

Creates a fresh virtual environment with only the runtime (``pip install edgetune`` without
the ``train`` extra: onnxruntime, tokenizers, numpy, click), measures its installed size
against the full training environment and each installed package's share of it, the cold
start of a prediction in it (process start + import + bundle verification + session load +
self-check + first prediction; median of 10 runs of each kind, interleaved: a first start on
the device, a second start whose self-check pass is remembered, and a start without the
self-check)
and predictions/s at batch 1 and 32 on the data's test texts. The import alone is timed there
too (``import edgetune.runtime``: seconds inside the process, and the whole process), with the
modules it loads, so a dependency that creeps into the runtime shows. Duration: about 2 minutes
(the package index must be reachable for the runtime install).

    python bench/runtime_footprint.py bundles/sst2 --data ../shared/data/sst2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from common import write_results  # noqa: E402

# The import alone, in the runtime environment: what an edge process pays before any bundle.
IMPORT = """\
import json, sys, time
t = time.perf_counter()
import edgetune.runtime
t = time.perf_counter() - t
ours = sorted(m for m in sys.modules if m.split(".")[0] == "edgetune")
print(json.dumps({"import_s": t, "edgetune_modules": ours, "modules": len(sys.modules)}))
"""


# Each installed distribution's files (its RECORD), in bytes: what each package costs a device,
# and whether a prediction imports any of its modules (pip installs what metadata requires).
SHARES = """\
import importlib.metadata as m, json, sys
from edgetune.runtime import Classifier
Classifier.load(sys.argv[1], self_check="always").predict(["a gorgeous, witty film"])
loaded = {name.split(".")[0] for name in sys.modules}
owners = m.packages_distributions()
used = {d for top in loaded for d in owners.get(top, [])}
out = {}
for d in m.distributions():
    size = 0
    for f in d.files or []:
        p = f.locate()
        if p.is_file() and not p.is_symlink():
            size += p.stat().st_size
    out[d.metadata["Name"]] = {"bytes": size, "imported": d.metadata["Name"] in used}
print(json.dumps(out))
"""


def du(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        if p.is_file() and not p.is_symlink():
            total += p.stat().st_size
    return total


def site_packages(env: Path) -> Path:
    return next(env.glob("lib/python3*/site-packages"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--data", required=True, help="texts to predict (the test split is used)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="runtime_footprint")
    a = ap.parse_args()

    from edgetune.data import load_data
    from edgetune.runtime import Classifier

    texts = load_data(a.data).test.texts
    with tempfile.TemporaryDirectory() as tmp:
        env = Path(tmp) / "runtime-venv"
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        py = env / "bin" / "python"
        pip = [str(py), "-m", "pip", "install", "-q"]
        t0 = time.perf_counter()
        subprocess.run(pip + [str(ROOT)], check=True)  # the base install: the runtime only
        install_s = time.perf_counter() - t0
        # pip and setuptools come with every venv; they are not part of the runtime.
        subprocess.run(
            [str(py), "-m", "pip", "uninstall", "-q", "-y", "pip", "setuptools"], check=False
        )
        runtime_bytes = du(site_packages(env))
        full_bytes = du(site_packages(Path(sys.prefix)))
        # What the runtime environment holds, not a source tree on PYTHONPATH or in the
        # current folder (python -c puts the current folder first on sys.path).
        alone = {
            "env": {
                **{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
                "PYTHONDONTWRITEBYTECODE": "1",
            },
            "cwd": tmp,
        }
        listed = subprocess.run(
            [
                str(py),
                "-c",
                "import importlib.metadata as m; print(sorted(d.metadata['Name'] for d in m.distributions()))",
            ],
            capture_output=True,
            text=True,
            check=True,
            **alone,
        ).stdout.strip()
        has_torch = (
            subprocess.run([str(py), "-c", "import torch"], capture_output=True, **alone).returncode
            == 0
        )
        bundle = str(Path(a.bundle).resolve())

        def script(check: str) -> str:
            return (
                "from edgetune.runtime import Classifier\n"
                f"Classifier.load({bundle!r}, threads={a.threads}, self_check={check!r})"
                ".predict(['a gorgeous, witty film'])\n"
            )

        shares = json.loads(
            subprocess.run(
                [str(py), "-c", SHARES, str(Path(a.bundle).resolve())],
                capture_output=True,
                text=True,
                check=True,
                **alone,
            ).stdout
        )
        # First start: no pass remembered on this device (a fresh cache each time), so the
        # self-check runs; second start: the pass of an earlier start is remembered.
        warm_cache = Path(tmp) / "warm-cache"
        subprocess.run(
            [str(py), "-c", script("auto")],
            check=True,
            **{**alone, "env": {**alone["env"], "EDGETUNE_CACHE": str(warm_cache)}},
        )
        starts: dict[str, list[float]] = {"first": [], "second": [], "unchecked": []}
        imports: list[dict[str, Any]] = []
        for i in range(10):
            t = time.perf_counter()
            r = subprocess.run(
                [str(py), "-c", IMPORT], capture_output=True, text=True, check=True, **alone
            )
            imports.append({**json.loads(r.stdout), "process_s": time.perf_counter() - t})
            for kind, check, cache in (
                ("first", "auto", Path(tmp) / f"cold-cache-{i}"),
                ("second", "auto", warm_cache),
                ("unchecked", "never", warm_cache),
            ):
                run_env = {**alone["env"], "EDGETUNE_CACHE": str(cache)}
                t = time.perf_counter()
                subprocess.run([str(py), "-c", script(check)], check=True, cwd=tmp, env=run_env)
                starts[kind].append(time.perf_counter() - t)
        cold, cold_unchecked = starts["first"], starts["unchecked"]

    clf = Classifier.load(a.bundle, threads=a.threads)
    clf.predict(texts[:64])  # warm-up
    rates = {}
    for bs in (1, 32):
        t = time.perf_counter()
        clf.predict(texts, batch_size=bs)
        rates[bs] = len(texts) / (time.perf_counter() - t)

    cold_med = statistics.median(cold)
    second_med = statistics.median(starts["second"])
    import_med = statistics.median(i["import_s"] for i in imports)
    import_proc_med = statistics.median(i["process_s"] for i in imports)
    ours = imports[0]["edgetune_modules"]
    subpackages = sorted({m.split(".")[1] for m in ours if m.count(".") > 1})
    unchecked_med = statistics.median(cold_unchecked)
    check = clf.self_check()
    ratio = runtime_bytes / full_bytes
    used_bytes = sum(v["bytes"] for v in shares.values() if v["imported"])
    table = [
        "| measure | value |",
        "|---|---:|",
        f"| first start on a device: process + import + verify + load + self-check + first prediction (median of 10) | **{cold_med * 1000:.0f} ms** (min {min(cold) * 1000:.0f}, max {max(cold) * 1000:.0f}) |",
        f"| second start: the same with the device's pass remembered, interleaved | **{second_med * 1000:.0f} ms** (min {min(starts['second']) * 1000:.0f}, max {max(starts['second']) * 1000:.0f}) |",
        f"| without the self-check (`--no-self-check`), interleaved | {unchecked_med * 1000:.0f} ms |",
        f"| `import edgetune.runtime`, inside the process (median of 10) | {import_med * 1000:.0f} ms |",
        f"| process start + `import edgetune.runtime` (median of 10) | {import_proc_med * 1000:.0f} ms |",
        f"| modules loaded by the import: edgetune's / all | {len(ours)} / {imports[0]['modules']} |",
        f"| the self-check itself, in a warm process ({check.rows} golden rows, {check.variant}) | {check.time_ms:.0f} ms |",
        f"| runtime environment, installed (site-packages) | {runtime_bytes / 1e6:.0f} MB |",
        f"| full training environment (site-packages) | {full_bytes / 1e6:.0f} MB |",
        f"| runtime / full | **{ratio * 100:.1f}%** |",
        f"| predictions/s, batch 1 ({len(texts)} texts, {a.threads} threads) | {rates[1]:.0f} |",
        f"| predictions/s, batch 32 | {rates[32]:.0f} |",
        "",
        "",
        "| package in the runtime environment | MB | share | imported by a prediction |",
        "|---|---:|---:|---|",
        *[
            f"| {name} | {v['bytes'] / 1e6:.1f} | {v['bytes'] / runtime_bytes * 100:.1f}% | "
            f"{'yes' if v['imported'] else 'no'} |"
            for name, v in sorted(shares.items(), key=lambda kv: -kv[1]["bytes"])
        ],
        "",
        f"Imported by a prediction: {used_bytes / 1e6:.0f} MB of {runtime_bytes / 1e6:.0f} MB; "
        "the rest is installed because a package's metadata requires it.",
        "",
        f"Runtime environment: {listed}; torch importable there: {has_torch}. Install took {install_s:.0f} s.",
        f"edgetune modules the runtime loads: {', '.join(ours)} (subpackages: "
        f"{', '.join(subpackages) or 'none'}).",
        f"Bundle: {a.bundle} (default variant {clf.variant}).",
    ]
    write_results(
        a.name,
        {
            "bundle": a.bundle,
            "cold_start_s": cold,
            "cold_start_median_s": cold_med,
            "second_start_s": starts["second"],
            "second_start_median_s": second_med,
            "package_bytes": shares,
            "cold_start_no_self_check_s": cold_unchecked,
            "cold_start_no_self_check_median_s": unchecked_med,
            "import": imports,
            "import_median_s": import_med,
            "import_process_median_s": import_proc_med,
            "import_edgetune_modules": ours,
            "self_check": check.to_dict(),
            "runtime_site_packages_bytes": runtime_bytes,
            "full_site_packages_bytes": full_bytes,
            "runtime_vs_full": ratio,
            "predictions_per_s": {"batch_1": rates[1], "batch_32": rates[32]},
            "runtime_packages": listed,
            "torch_in_runtime": has_torch,
        },
        "Edge runtime footprint and cold start",
        table,
    )


if __name__ == "__main__":
    main()
