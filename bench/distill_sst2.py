"""Distillation into students sized for the device: a fine-tuned MPNet teacher, MiniLM-L6 plain
and distilled, 4- and 3-layer students distilled; fp32 and int8 test accuracy, int8 latency.

Every model goes through the path users ship: `edgetune train`, `edgetune export` (defaults:
int8 for this CPU), `edgetune validate` (the runtime's tokenizer and batching on the test split).
The int8 models are then timed side by side at batch 1 (interleaved rounds, 2 threads), at 32
and 128 tokens of real text. Finally `--latency-budget` is asked for a budget between the 4- and
5-layer students' latencies (the 5-layer one interpolated), on a small subset (latency does not
depend on the weights), and the validate gate is run on its bundle.

Each run is skipped when it is already finished under --runs (an interrupted bench continues; an
unfinished run is resumed), so the bench can be re-run to fill in a missing row.

    make teacher  # the mpnet-base parts
    python bench/distill_sst2.py --data ../shared/data/sst2 --label-names negative,positive
    python bench/distill_sst2.py --data examples/sst2-sample --label-names negative,positive \
        --runs runs/distill-sample --name distill_sst2_sample --augment-depth 3
    # another data set, another teacher: options --teacher-model, --depths, --plain-depths

Duration on 2 cores with examples/sst2-sample (10k training rows): about 2 hours (the teacher's
fine-tune is about half of it). The full SST-2 train split is six times that.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import bundle_accuracy, export_bundle, train_run, write_results  # noqa: E402

SEQS = (32, 128)
THREADS = 2


def _side_by_side(bundles: dict[str, Path], texts: list[str], rounds: int) -> dict[str, Any]:
    """p50/p90 ms at batch 1 of each bundle's default variant, timed interleaved per length."""
    from transformers import AutoTokenizer

    from edgetune.latency import BLOCK, measure
    from edgetune.runners import fixed_length_text
    from edgetune.runtime import Classifier

    clfs = {n: Classifier.load(b, threads=THREADS) for n, b in bundles.items()}
    out: dict[str, Any] = {n: {} for n in bundles}
    for s in SEQS:
        calls = {}
        for n, b in bundles.items():
            text = fixed_length_text(AutoTokenizer.from_pretrained(b), texts, s)
            calls[n] = functools.partial(clfs[n].logits, [text], batch_size=1)
        timings = measure(calls, rounds=rounds, warmup=3, block=BLOCK, pause_s=0.05)
        for n, t in timings.items():
            out[n][f"seq{s}"] = t.summary(1)
    return out


def _subset(data: str, rows: int, where: Path) -> str:
    """The first ``rows`` training rows of ``data`` and its validation/test splits, as CSV."""
    import csv

    from edgetune.data import load_data

    d = load_data(data)
    where.mkdir(parents=True, exist_ok=True)
    for name, split in (("train", d.train), ("validation", d.validation), ("test", d.test)):
        n = rows if name == "train" else len(split)
        with (where / f"{name}.csv").open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows((t, d.label_names[y]) for t, y in zip(split.texts[:n], split.labels[:n]))
    return str(where)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/sst2")
    ap.add_argument("--label-names", default=None, help="e.g. negative,positive")
    ap.add_argument("--runs", default="runs/distill", type=Path)
    ap.add_argument("--bundles", default="bundles/distill", type=Path)
    ap.add_argument("--teacher-model", default="mpnet-base")
    ap.add_argument("--teacher", help="A finished teacher run to reuse [trained here]")
    ap.add_argument("--teacher-epochs", type=int, default=2)
    ap.add_argument("--student-model", default="minilm-l6")
    ap.add_argument("--depth", type=int, default=6, help="The student model's layers")
    ap.add_argument("--depths", default="6,4,3", help="Distilled students' layers")
    ap.add_argument("--plain-depths", default="6", help="Students trained without the teacher")
    ap.add_argument("--plain", help="A finished plain full-depth run to reuse [trained here]")
    ap.add_argument(
        "--augment-depth",
        type=int,
        help="Also distil this depth with --distill-augment 1 (teacher-labelled augmented copies)",
    )
    ap.add_argument("--unlabeled", help="Texts without labels for one more distilled student")
    ap.add_argument("--unlabeled-depth", type=int, default=3)
    ap.add_argument("--budget-check", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--name", default="distill_sst2")
    a = ap.parse_args()

    data, labels, runs, full = a.data, a.label_names, a.runs, a.depth
    teacher = (
        Path(a.teacher)
        if a.teacher
        else train_run(
            runs,
            "teacher",
            data,
            labels,
            "--model",
            a.teacher_model,
            "--epochs",
            str(a.teacher_epochs),
        )
    )
    t = ["--teacher", str(teacher)]
    student = ["--model", a.student_model]

    def layers(d: int) -> list[str]:
        return [] if d == full else ["--layers", str(d)]

    models: dict[str, Path] = {f"teacher {a.teacher_model}": teacher}
    for d in _ints(a.plain_depths):
        name = f"{a.student_model} {d}L plain"
        models[name] = (
            Path(a.plain)
            if a.plain and d == full
            else train_run(runs, f"plain-{d}", data, labels, *student, *layers(d))
        )
    for d in _ints(a.depths):
        models[f"{a.student_model} {d}L distilled"] = train_run(
            runs, f"kd-{d}", data, labels, *student, *layers(d), *t
        )
    if a.augment_depth:
        models[f"{a.student_model} {a.augment_depth}L distilled + augmented copies"] = train_run(
            runs,
            f"kd-{a.augment_depth}-aug",
            data,
            labels,
            *student,
            *layers(a.augment_depth),
            "--distill-augment",
            "1",
            *t,
        )

    if a.unlabeled:
        d = a.unlabeled_depth
        models[f"{a.student_model} {d}L distilled + unlabeled texts"] = train_run(
            runs,
            f"kd-{d}-unlabeled",
            data,
            labels,
            *student,
            *layers(d),
            "--unlabeled",
            a.unlabeled,
            *t,
        )

    bundles = {n: export_bundle(r, a.bundles) for n, r in models.items()}
    acc = {n: bundle_accuracy(b) for n, b in bundles.items()}

    from edgetune.data import load_data

    texts = load_data(data).test.texts
    print(f"timing {len(bundles)} int8 models side by side at {SEQS} tokens", flush=True)
    lat = _side_by_side(bundles, texts, a.rounds)

    rows: dict[str, Any] = {}
    for n, r in models.items():
        m = json.loads((r / "metrics.json").read_text())
        kept = m["environment"].get("layers_kept")
        rows[n] = {
            "run": str(r),
            "layers": len(kept) if kept else None,
            "train_s": m["timing"]["train_s"],
            "teacher_test": (m.get("teacher") or {}).get("test", {}).get("accuracy"),
            "unlabeled": (m.get("teacher") or {}).get("unlabeled"),
            **acc[n],
            "latency": lat[n],
        }
    ref = next((r for n, r in rows.items() if n.endswith(f"{full}L plain")), None)
    for r in rows.values():
        r["p50_ratio_vs_full_depth_plain"] = (
            {k: r["latency"][k]["p50_ms"] / ref["latency"][k]["p50_ms"] for k in r["latency"]}
            if ref
            else None
        )

    budget = _budget_check(a, rows, runs, labels) if a.budget_check and ref else None

    def pct(x: Any) -> str:
        return "—" if x is None else f"{100 * x:.2f}"

    table = [
        "| model | fp32 test | int8 test (default export) | int8 p50 ms @32 | @128 "
        f"| vs {full}L plain @128 | train s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for n, r in rows.items():
        ratio = r["p50_ratio_vs_full_depth_plain"]
        table.append(
            f"| {n} | {pct(r['fp32_test'])} | {pct(r['int8_test'])} | "
            f"{r['latency']['seq32']['p50_ms']:.2f} | {r['latency']['seq128']['p50_ms']:.2f} | "
            f"{'—' if ratio is None else format(ratio['seq128'], '.2f') + 'x'} | "
            f"{r['train_s']:.0f} |"
        )
    first = next(iter(acc.values()))
    table += [
        "",
        f"Data: {data}, {first['rows']} test rows. Latency: each bundle's default variant "
        f"through edgetune.runtime, batch 1, {THREADS} threads, real text cut to 32/128 tokens, "
        f"{a.rounds} interleaved rounds.",
    ]
    if budget:
        g = budget["validate_gate"][0] if budget["validate_gate"] else None
        table.append(
            f"--latency-budget {budget['budget_ms_at_128']}ms@128 (between the "
            f"{budget['between'][0]}- and {budget['between'][1]}-layer students) chose "
            f"{budget['chosen_layers']} layers (candidates p50 ms: "
            f"{budget['candidates_p50_ms']}); "
            + (
                f"validate's gate on its bundle: {'passed' if g['passed'] else 'FAILED'} "
                f"({g['value']:.2f} ms; limit {g['threshold']:g} ms)."
                if g
                else "validate applied no latency gate."
            )
        )
    write_results(
        a.name,
        {"data": data, "threads": THREADS, "models": rows, "latency_budget": budget},
        f"Distillation on {data}: teacher, students and their int8 latency",
        table,
    )


def _ints(spec: str) -> list[int]:
    return [int(x) for x in spec.split(",") if x.strip()]


def _budget_check(a: Any, rows: dict[str, Any], runs: Path, labels: str | None) -> dict[str, Any]:
    """--latency-budget midway between the deepest shallower distilled student (d layers) and
    d + 1 layers (interpolated from d and full depth): it must choose d; then validate's gate
    on the chosen student's bundle. Trained briefly on a subset: latency ignores the weights."""
    from edgetune.validate import validate

    full = a.depth
    shallower = [d for d in _ints(a.depths) if d < full]
    if not shallower:
        return {}
    d = max(shallower)
    ld = rows[f"{a.student_model} {d}L distilled"]["latency"]["seq128"]["p50_ms"]
    lf = rows[f"{a.student_model} {full}L plain"]["latency"]["seq128"]["p50_ms"]
    budget_ms = round(ld + (lf - ld) / (2 * (full - d)), 2)
    sub = _subset(a.data, 2000, runs / "budget-data")
    brun = train_run(
        runs,
        "budget",
        sub,
        labels,
        "--model",
        a.student_model,
        "--epochs",
        "1",
        "--latency-budget",
        f"{budget_ms}ms@128",
    )
    bm = json.loads((brun / "metrics.json").read_text())
    bbundle = export_bundle(brun, a.bundles)
    gate = validate(
        bundle=str(bbundle),
        threads=THREADS,
        seq_lengths=(128,),
        memory=False,
        progress=False,
        raise_on_failure=False,
    )
    return {
        "budget_ms_at_128": budget_ms,
        "between": [d, d + 1],
        "chosen_layers": bm["environment"]["latency_budget"]["layers"],
        "candidates_p50_ms": bm["environment"]["latency_budget"]["p50_ms_by_layers"],
        "validate_gate": [g for g in gate.report["gates"] if g["gate"].startswith("max_latency")],
        "validate_passed": gate.report["passed"],
    }


if __name__ == "__main__":
    main()
