"""What the self-check lets through and what it refuses: honest devices against injected faults.

For each variant of BUNDLE, the shipped self-check (``Classifier.self_check``: the golden rows
through the runtime, judged by ``Classifier.judge``) runs
- here (native x86),
- in onnxruntime-web's WASM backend under Node (``--wasm``; the graph in WASM, the verdict by
  the same ``judge``),
- under qemu-user on emulated x86 CPUs (``--x86-cpus``, e.g. Haswell = AVX2 without VNNI,
  Nehalem = SSE4.2; this venv's python) and aarch64 CPUs (``--arm-cpus`` with ``--arm-env``, the
  sysroot of ``bench/arm64_env.sh``),
and on copies of the bundle with one fault each (``bench/faults.py``: a layer scaled by 1%, one
attention head zeroed, an int8 weight scale one step off, an int8 weight zero point one step
off; every hash re-recorded). Writes, per variant and platform, the largest and the median
row's |logit difference|, flips and the verdict.

    python bench/selfcheck_faults.py bundles/quickstart --wasm --x86-cpus Haswell,Nehalem \
        --arm-env /work/arm --arm-cpus cortex-a72,neoverse-n1 --emulated-variants int8-static,int8-dynamic

Duration: native and faults under a minute; WASM about 30 s; each emulated CPU 1-4 minutes
per int8 variant (fp32 is several times slower under emulation).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import faults  # noqa: E402


def checks(bundle: Path, variants: list[str]) -> dict[str, dict[str, Any]]:
    """The shipped self-check of each variant, here."""
    from edgetune.runtime import Classifier

    out = {}
    for v in variants:
        out[v] = Classifier.load(bundle, variant=v, threads=1, self_check=False).self_check()
        out[v] = out[v].to_dict()
    return out


def wasm(bundle: Path, variants: list[str]) -> dict[str, dict[str, Any]]:
    """Each variant's golden answers from onnxruntime-web (WASM), judged by the runtime."""
    from edgetune.formats import bundle as bundlefmt
    from edgetune.runtime import Classifier

    js = REPO / "tests" / "js"
    manifest = bundlefmt.verify(bundle)
    texts = [r["text"] for r in bundlefmt.read_golden(bundle)["rows"]]
    clfs = {v: Classifier.load(bundle, variant=v, threads=1, self_check=False) for v in variants}
    first = next(iter(clfs.values()))
    feeds = [
        {"input_ids": e.ids, "attention_mask": e.attention_mask, "token_type_ids": e.type_ids}
        for e in first.tokenizer.encode_batch(texts)
    ]
    models = [str((bundle / manifest["variants"][v]["file"]).resolve()) for v in variants]
    p = subprocess.run(
        ["node", str(js / "ortweb.mjs"), *models],
        input=json.dumps(feeds),
        capture_output=True,
        text=True,
        cwd=js,
        env={**os.environ, "NODE_NO_WARNINGS": "1"},
        check=True,
    )
    out = {}
    for v, line in zip(variants, p.stdout.splitlines(), strict=True):
        got = np.asarray(json.loads(line)["logits"], np.float32).reshape(len(texts), -1)
        out[v] = clfs[v].judge(got).to_dict()
    return out


def emulated(cmd: list[str], env: dict[str, str], bundle: Path, variants: list[str]) -> Any:
    """This script's ``--worker`` under qemu: the self-checks as the emulated CPU runs them."""
    t = time.time()
    p = subprocess.run(
        [
            *cmd,
            str(Path(__file__).resolve()),
            "--worker",
            str(bundle.resolve()),
            ",".join(variants),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **env, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    if p.returncode != 0:
        return {"error": p.stderr[-800:], "wall_s": round(time.time() - t, 1)}
    return json.loads(p.stdout.strip().splitlines()[-1])


def with_faults(bundle: Path, variants: list[str]) -> dict[str, dict[str, Any]]:
    """The self-check of each variant on a copy of the bundle with one fault each."""
    from edgetune.formats import bundle as bundlefmt

    manifest = bundlefmt.verify(bundle)
    config = json.loads((bundle / "config.json").read_text())
    out: dict[str, dict[str, Any]] = {}
    for v in variants:
        for fault in faults.FAULTS:
            with tempfile.TemporaryDirectory() as tmp:
                copy = Path(tmp) / "bundle"
                shutil.copytree(bundle, copy)
                graph = copy / manifest["variants"][v]["file"]
                if not faults.applies(fault, graph):
                    continue
                what = faults.inject(fault, graph, config)
                faults.rehash(copy)
                out.setdefault(v, {})[fault] = {**checks(copy, [v])[v], "changed": what}
    return out


def _cell(c: dict[str, Any]) -> str:
    if "max_abs_diff" not in c:
        return "error"
    verdict = "pass" if c["passed"] else "**FAIL**"
    return f"{c['max_abs_diff']:.3g} / {c['typical_diff']:.3g}, {c['flips']} flips: {verdict}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", nargs=2, metavar=("BUNDLE", "VARIANTS"), help=argparse.SUPPRESS)
    ap.add_argument("bundle", nargs="?")
    ap.add_argument("--variants", help="comma-separated (default: every CPU variant)")
    ap.add_argument("--wasm", action="store_true", help="also onnxruntime-web (needs tests/js)")
    ap.add_argument("--x86-cpus", default="", help="qemu-x86_64 -cpu models, e.g. Haswell")
    ap.add_argument("--arm-cpus", default="", help="qemu-aarch64 -cpu models")
    ap.add_argument("--arm-env", default="/tmp/arm", help="bench/arm64_env.sh's folder")
    ap.add_argument("--emulated-variants", help="variants run under emulation [all]")
    ap.add_argument("--name", default="selfcheck_faults")
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(checks(Path(a.worker[0]), a.worker[1].split(","))))
        return
    if not a.bundle:
        ap.error("give a bundle")
    from edgetune.formats import bundle as bundlefmt

    bundle = Path(a.bundle)
    manifest = bundlefmt.verify(bundle)
    golden = bundlefmt.read_golden(bundle)
    variants = (a.variants or "").split(",") if a.variants else [
        v for v in manifest["variants"] if "logits" in golden["variants"][v]
    ]  # fmt: skip
    slow = a.emulated_variants.split(",") if a.emulated_variants else variants
    t0 = time.time()
    platforms: dict[str, Any] = {"x86 (here)": checks(bundle, variants)}
    if a.wasm:
        platforms["WASM (onnxruntime-web)"] = wasm(bundle, variants)
    for cpu in [c for c in a.x86_cpus.split(",") if c]:
        print(f"x86 {cpu} under qemu ...", flush=True)
        qemu = ["qemu-x86_64-static", "-cpu", cpu, sys.executable]
        platforms[f"x86 {cpu} (qemu)"] = emulated(qemu, {"PYTHONPATH": str(REPO)}, bundle, slow)
    env = Path(a.arm_env)
    for cpu in [c for c in a.arm_cpus.split(",") if c]:
        print(f"aarch64 {cpu} under qemu ...", flush=True)
        qemu = ["qemu-aarch64-static", "-cpu", cpu, "-L", str(env / "sysroot")]
        qemu.append(str(env / "sysroot/usr/bin/python3.11"))
        paths = {"PYTHONPATH": f"{env / 'site'}:{REPO}", "HOME": str(env / "home")}
        platforms[f"aarch64 {cpu} (qemu)"] = emulated(qemu, paths, bundle, slow)
    injected = with_faults(bundle, variants)

    table = [
        "Each cell: largest / median row |logit difference| from export's answers on the "
        f"{len(golden['rows'])} golden rows, label flips, and the self-check's verdict.",
        "",
        "| variant | row limit | median-row limit | " + " | ".join(platforms) + " |",
        "|---|---:|---:|" + "---|" * len(platforms),
    ]
    for v in variants:
        here = platforms["x86 (here)"][v]  # the limits as the runtime reads them
        cells = [_cell(p[v]) if v in p else "—" for p in platforms.values()]
        limits = f"{here['tolerance']:.3g} | {here['typical_tolerance']:.3g}"
        table.append(f"| {v} | {limits} | " + " | ".join(cells) + " |")
    table += ["", "Injected faults (every hash re-recorded), the same self-check here:", ""]
    table += [
        "| variant | " + " | ".join(faults.FAULTS) + " |",
        "|---|" + "---|" * len(faults.FAULTS),
    ]
    for v in variants:
        row = injected.get(v, {})
        table.append(
            f"| {v} | "
            + " | ".join(_cell(row[f]) if f in row else "n/a" for f in faults.FAULTS)
            + " |"
        )
    caught = [c["passed"] is False for row in injected.values() for c in row.values()]
    table += ["", f"Faults refused: {sum(caught)} of {len(caught)}. Took {time.time() - t0:.0f} s."]
    print("\n".join(table))
    from common import write_results

    write_results(
        a.name,
        {"bundle": str(bundle), "platforms": platforms, "faults": injected},
        f"The self-check on honest devices and on injected faults: {bundle}",
        table,
    )


if __name__ == "__main__":
    main()
