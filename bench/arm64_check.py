"""Does each variant of a bundle give x86's answers on aarch64? Emulated CPUs, real test rows.

Predicts the first ``--rows`` test rows of ``--data`` (one row per call, no padding) with every
variant of the bundle through ``edgetune.runtime.Classifier`` (``self_check=False``): on x86
in this venv, and under qemu-user aarch64 for each CPU model in ``--cpus``; reports label
agreement and the largest |logit difference| against x86 per variant x CPU. ``--extra
NAME=PATH`` adds any other ONNX graph with the bundle's inputs as one more variant (used to
test candidate int8 graphs, e.g. ``onnxruntime.quantization.quantize_dynamic`` outputs);
``--golden`` uses the bundle's golden texts instead of ``--data``.

Setup (once, ~5 min, needs network for apt and pip): ``bench/arm64_env.sh /tmp/arm`` builds
a Debian arm64 python3.11 sysroot and the aarch64 wheels (onnxruntime, numpy, tokenizers)
there and installs qemu-user-static. The aarch64 half of this script runs as
``qemu-aarch64-static -cpu CPU -L ENV/sysroot ENV/sysroot/usr/bin/python3.11 arm64_check.py
--worker JOB OUT`` with ``PYTHONPATH=ENV/site:<repo>`` and needs no torch.

    python bench/arm64_check.py bundles/qs --data examples/sst2-sample --rows 30 --fp32-rows 3 \
        --src /tmp/arm/src

``--src DIR`` runs another checkout's ``edgetune`` (both sides), for bundles the current code
refuses, e.g. ``git archive COMMIT edgetune | tar -x -C /tmp/arm/src``.

Duration: emulation is slow and serial. Per emulated CPU, roughly 1 s/row for int8-dynamic,
~1.5 s/row for int8-static and ~8 s/row for fp32 (128-token rows), plus ~10 s start-up; the
command above took 6.5 minutes for the 5 default CPU models on 2 cores (1-1.6 min per CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
QEMU = "qemu-aarch64-static"
REPO = HERE.parent
DEFAULT_CPUS = "max,cortex-a72,cortex-a76,neoverse-n1,a64fx"


def run_variants(job: dict) -> tuple[dict, dict]:
    """Logits of job's texts for each variant (the same code on x86 and under qemu)."""
    from edgetune.formats import bundle as bundlefmt
    from edgetune.runtime import Classifier

    root = Path(job["bundle"])
    manifest = bundlefmt.verify(root)
    for name, path in job.get("extra", {}).items():  # other graphs: one row per call
        manifest["variants"][name] = {"file": str(Path(path).resolve()), "batching": "row"}
    logits, secs = {}, {}
    for v, n in job["rows"].items():
        t = time.time()
        clf = (
            Classifier(root, manifest, v, threads=1)
            if v in job.get("extra", {})
            else Classifier.load(root, variant=v, threads=1, self_check=False)
        )
        pairs = job["pairs"][:n] if job["pairs"] else None
        logits[v] = clf.logits(job["texts"][:n], pairs=pairs, batch_size=1)
        secs[v] = round(time.time() - t, 1)
    return logits, secs


def worker(job_path: str, out: str) -> None:
    job = json.loads(Path(job_path).read_text())
    if job.get("src"):
        sys.path.insert(0, job["src"])
    logits, secs = run_variants(job)
    np.savez(out, **logits)
    import onnxruntime

    print(json.dumps({"ort": onnxruntime.__version__, "secs": secs}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", nargs=2, metavar=("JOB", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("bundle", nargs="?")
    ap.add_argument("--data", help="labelled data (its test split is used)")
    ap.add_argument("--golden", action="store_true", help="use the bundle's golden texts")
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--fp32-rows", type=int, default=None, help="fewer rows for fp32 (slow)")
    ap.add_argument("--variants", default=None, help="comma-separated (default: all but fp16)")
    ap.add_argument("--extra", action="append", default=[], metavar="NAME=PATH")
    ap.add_argument("--cpus", default=DEFAULT_CPUS, help="';' or ',' separated qemu -cpu values")
    ap.add_argument("--env", default=os.environ.get("ARM64_ENV", "/tmp/arm"))
    ap.add_argument(
        "--ort-site", default=None, help="aarch64 onnxruntime overlay (before ENV/site)"
    )
    ap.add_argument(
        "--src",
        default=None,
        help="directory whose edgetune package to use on both sides (default: this "
        "repo), e.g. a `git archive` of the commit that exported the bundle",
    )
    ap.add_argument("--name", default="arm64_check")
    ap.add_argument(
        "--qemu",
        default=os.environ.get("QEMU_AARCH64", "qemu-aarch64-static"),
        help="qemu-user binary (e.g. a newer one: /tmp/arm/qemu10/x/usr/bin/qemu-aarch64)",
    )
    a = ap.parse_args()
    global QEMU
    QEMU = a.qemu
    if a.worker:
        return worker(*a.worker)
    if not a.bundle or not (a.data or a.golden):
        ap.error("give a bundle and --data (or --golden)")
    if a.src:
        sys.path.insert(0, str(Path(a.src).resolve()))

    from edgetune.formats import bundle as bundlefmt

    manifest = bundlefmt.verify(a.bundle)
    if a.golden:
        g = json.loads((Path(a.bundle) / "golden.json").read_text())
        texts = [r["text"] for r in g["rows"]]
        pairs = [r["pair"] for r in g["rows"]] if any(r.get("pair") for r in g["rows"]) else None
    else:
        from edgetune.data import load_data

        test = load_data(a.data).test
        texts, pairs = list(test.texts), (list(test.pairs) if test.pairs else None)
    variants = (
        a.variants.split(",") if a.variants else [v for v in manifest["variants"] if v != "fp16"]
    )
    extra = dict(e.split("=", 1) for e in a.extra)
    rows = {
        v: min(len(texts), a.fp32_rows if (v == "fp32" and a.fp32_rows) else a.rows)
        for v in variants + list(extra)
    }
    n = max(rows.values())
    job = {
        "bundle": str(Path(a.bundle).resolve()),
        "texts": texts[:n],
        "pairs": pairs[:n] if pairs else None,
        "rows": rows,
        "extra": {k: str(Path(p).resolve()) for k, p in extra.items()},
        "src": str(Path(a.src).resolve()) if a.src else None,
    }
    tmp = Path(tempfile.mkdtemp(prefix="arm64_check_", dir=a.env if Path(a.env).is_dir() else None))
    (tmp / "job.json").write_text(json.dumps(job))

    t = time.time()
    x86, x86_secs = run_variants(job)
    print(f"x86: {x86_secs} ({time.time() - t:.0f} s)", flush=True)

    cpus = [
        c
        for part in a.cpus.split(";")
        for c in (part.split(",") if all("=" not in x for x in part.split(",")) else [part])
    ]
    env = Path(a.env)
    pp = ":".join(([a.ort_site] if a.ort_site else []) + [str(env / "site"), str(REPO)])
    runs: dict[str, dict] = {}
    for cpu in cpus:
        out = tmp / f"out_{cpu.replace(',', '_').replace('=', '-')}.npz"
        cmd = [
            QEMU,
            "-cpu",
            cpu,
            "-L",
            str(env / "sysroot"),
            str(env / "sysroot/usr/bin/python3.11"),
            str(Path(__file__).resolve()),
            "--worker",
            str(tmp / "job.json"),
            str(out),
        ]
        t = time.time()
        p = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env={
                **os.environ,
                "PYTHONPATH": pp,
                "HOME": str(env / "home"),
                "PYTHONDONTWRITEBYTECODE": "1",
            },
        )
        wall = round(time.time() - t, 1)
        if p.returncode != 0 or not out.exists():
            runs[cpu] = {"error": p.stderr[-1500:], "wall_s": wall}
            print(f"cpu {cpu}: FAILED rc={p.returncode} {p.stderr[-400:]}", flush=True)
            continue
        info = json.loads(p.stdout.strip().splitlines()[-1])
        got = dict(np.load(out))
        res = {}
        for v in rows:
            ref, lg = x86[v], got[v]
            res[v] = {
                "rows": int(len(ref)),
                "label_agreement": float((ref.argmax(1) == lg.argmax(1)).mean()),
                "flips": int((ref.argmax(1) != lg.argmax(1)).sum()),
                "max_abs_diff": float(np.abs(ref - lg).max()),
                "s_per_row": round(info["secs"][v] / len(ref), 2),
            }
        runs[cpu] = {"ort": info["ort"], "wall_s": wall, "variants": res}
        print(
            f"cpu {cpu}: "
            + ", ".join(
                f"{v} {r['flips']} flips, max|d| {r['max_abs_diff']:.3g}" for v, r in res.items()
            )
            + f" ({wall} s)",
            flush=True,
        )

    ok = [c for c in cpus if "variants" in runs[c]]
    table = [
        "Label agreement with x86 (flipped rows) and max |logit difference| vs x86, per variant "
        "x emulated CPU (qemu-user; one row per call).",
        "",
        "| variant | rows | " + " | ".join(ok) + " |",
        "|---|---:|" + "---|" * len(ok),
    ]
    for v in rows:
        cells = []
        for c in ok:
            r = runs[c]["variants"][v]
            cells.append(
                f"{100 * r['label_agreement']:.1f}% ({r['flips']}), {r['max_abs_diff']:.3g}"
            )
        table.append(f"| {v} | {rows[v]} | " + " | ".join(cells) + " |")
    ort_v = {runs[c]["ort"] for c in ok}
    qemu = subprocess.run([QEMU, "--version"], capture_output=True, text=True)
    table += [
        "",
        f"aarch64 onnxruntime {', '.join(sorted(ort_v))} under "
        f"{qemu.stdout.splitlines()[0]}; x86 reference: this machine's onnxruntime.",
    ]
    failed = [c for c in cpus if "error" in runs[c]]
    if failed:
        table.append(f"Failed runs: {', '.join(failed)}.")
    print("\n".join(table))
    sys.path.insert(0, str(HERE))
    from common import write_results

    write_results(
        a.name,
        {
            "src": a.src,
            "bundle": a.bundle,
            "data": a.data,
            "golden": a.golden,
            "rows": rows,
            "cpus": cpus,
            "extra": extra,
            "runs": runs,
            "x86_seconds": x86_secs,
        },
        "aarch64 (qemu) vs x86: bundle variants",
        table,
    )


if __name__ == "__main__":
    main()
