"""Few labels, strong student: a few-shot mpnet-base teacher from K labelled rows per class,
then MiniLM-L6 students (6 and 4 layers) distilled on the training split's texts without labels.

For each K, seed and draw of the K rows:
1. teacher: `edgetune train --model mpnet-base --strategy fewshot --shots K --seed S`;
2. students: `edgetune train --model minilm-l6 [--layers 4] --shots K --seed S --teacher
   TEACHER --unlabeled TEXTS` (the same K labelled rows; the teacher labels every other text;
   its pass is cached, so the second student reuses it);
3. each student exported (default int8 variant for this CPU) and validated through the runtime
   on the test split.

Draws: ``phrases`` samples K rows per class from the whole training split (SST-2's are mostly
phrases of a few words); ``sentences`` only from rows of at least --min-words words, since users
label whole texts. Validation is a seeded --val-rows rows of the dev split (a few-shot user has
few labels to spare); the unlabelled texts are the training split's texts (labels dropped).

Every run, bundle and result row is reused when finished, so a stopped bench continues where it
stopped (a half-trained run resumes); cells run K by K in the order given (--shots 32,16,8
measures the goal first), seed by seed, each seed over both draws, so a partial table compares
the draws.

    python bench/fewshot_distill.py --data ../shared/data/sst2 --label-names negative,positive \
        --shots 32,16,8 --seeds 3 --draws phrases,sentences
    python bench/fewshot_distill.py ... --table-only    # tabulate what is finished
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import (  # noqa: E402
    RESULTS,
    bundle_accuracy,
    export_bundle,
    machine_info,
    train_run,
    write_results,
)

STUDENTS = {"6L": (), "4L": ("--layers", "4")}


def _write(path: Path, rows: list[tuple[str, str]], header: tuple[str, ...]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _data(src: str, labels: str | None, val_rows: int, min_words: int, where: Path) -> dict:
    """Folders for each draw (train = all rows, or rows of >= min_words words; the same seeded
    validation sample and the whole test split) and the unlabelled texts."""
    import numpy as np

    from edgetune.data import load_data

    d = load_data(src)
    names = labels.split(",") if labels else d.label_names
    val_idx = np.sort(np.random.default_rng(0).permutation(len(d.validation))[:val_rows])
    val = d.validation.subset(val_idx)
    train = list(zip(d.train.texts, (names[y] for y in d.train.labels)))
    out: dict[str, Any] = {}
    for draw, keep in (
        ("phrases", train),
        ("sentences", [r for r in train if len(r[0].split()) >= min_words]),
    ):
        folder = where / draw
        folder.mkdir(parents=True, exist_ok=True)
        _write(folder / "train.csv", keep, ("text", "label"))
        for name, split in (("validation", val), ("test", d.test)):
            rows = list(zip(split.texts, (names[y] for y in split.labels)))
            _write(folder / f"{name}.csv", rows, ("text", "label"))
        out[draw] = {"path": str(folder), "train_rows": len(keep)}
    _write(where / "unlabeled.csv", [(t,) for t in d.train.texts], ("text",))
    out["unlabeled"] = str(where / "unlabeled.csv")
    out["unlabeled_rows"] = len(d.train.texts)
    return out


def _chain(args: argparse.Namespace, data: dict, draw: str, k: int, seed: int) -> dict:
    runs, bundles = Path(args.runs), Path(args.bundles)
    folder = data[draw]["path"]
    picked = ("--shots", str(k), "--seed", str(seed), "--quiet")
    key = f"{draw}-k{k}-s{seed}"
    t0 = time.perf_counter()
    teacher = train_run(
        runs, f"teacher-{key}", folder, None, "--model", args.teacher, "--strategy", "fewshot",
        *picked,
    )  # fmt: skip
    tm = json.loads((teacher / "metrics.json").read_text())
    cpu = machine_info()["cpu"]
    row: dict[str, Any] = {
        "machine": f"{cpu['name']} ({', '.join(cpu['features'])})",
        "teacher_test": tm["test"]["accuracy"],
        "teacher_train_s": tm["timing"]["total_s"],
        "teacher_wall_s": round(time.perf_counter() - t0, 1),
    }
    for name, extra in STUDENTS.items():
        t1 = time.perf_counter()
        run = train_run(
            runs, f"{name}-{key}", folder, None, "--model", args.student, *extra,
            "--teacher", str(teacher), "--unlabeled", data["unlabeled"],
            "--epochs", str(args.student_epochs), *picked,
        )  # fmt: skip
        t2 = time.perf_counter()
        acc = bundle_accuracy(export_bundle(run, bundles), seqs=(32,))
        sm = json.loads((run / "metrics.json").read_text())
        row[name] = {
            **acc,
            "train_s": sm["timing"]["total_s"],
            "wall_train_s": round(t2 - t1, 1),
            "wall_export_validate_s": round(time.perf_counter() - t2, 1),
        }
    return row


def _finished(done_file: Path, record: Path) -> dict[str, Any]:
    """Finished chains: this checkout's, else the committed record's (a fresh clone continues
    the bench from bench/results/ rather than from the start)."""
    if done_file.is_file():
        return json.loads(done_file.read_text())
    if record.is_file():
        return dict(json.loads(record.read_text()).get("rows", {}))
    return {}


def _mean_std(v: list[float]) -> str:
    if not v:
        return "—"
    sd = statistics.stdev(v) if len(v) > 1 else 0.0
    return f"{statistics.mean(v) * 100:.2f} ± {sd * 100:.2f}"


def _table(rows: dict[str, Any], draws: list[str], shots: list[int]) -> list[str]:
    table = [
        "| draw | K per class | n | teacher (mpnet-base fewshot) | 6L student fp32 | 6L int8 "
        "| 6L int8-fp32 max | 4L student fp32 | 4L int8 | median s per chain |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for draw in draws:
        for k in sorted(shots):
            cell = [r for key, r in rows.items() if key.startswith(f"{draw}-k{k}-")]
            if not cell:
                continue
            drop = max(abs(r["6L"]["int8_test"] - r["6L"]["fp32_test"]) * 100 for r in cell)
            secs = statistics.median(
                r["teacher_wall_s"] + sum(r[s]["wall_train_s"] for s in STUDENTS) for r in cell
            )
            table.append(
                f"| {draw} | {k} | {len(cell)} | {_mean_std([r['teacher_test'] for r in cell])} "
                f"| {_mean_std([r['6L']['fp32_test'] for r in cell])} "
                f"| {_mean_std([r['6L']['int8_test'] for r in cell])} | {drop:.2f} "
                f"| {_mean_std([r['4L']['fp32_test'] for r in cell])} "
                f"| {_mean_std([r['4L']['int8_test'] for r in cell])} | {secs:.0f} |"
            )
    return table


def main() -> None:
    a = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a.add_argument("--data", required=True)
    a.add_argument("--label-names")
    a.add_argument("--teacher", default="mpnet-base")
    a.add_argument("--student", default="minilm-l6")
    a.add_argument("--student-epochs", type=int, default=1)
    a.add_argument("--shots", default="32,16,8")
    a.add_argument("--seeds", type=int, default=3)
    a.add_argument("--draws", default="phrases,sentences")
    a.add_argument("--min-words", type=int, default=8)
    a.add_argument("--val-rows", type=int, default=200)
    a.add_argument("--runs", default="runs/fewshot-distill")
    a.add_argument("--bundles", default="bundles/fewshot-distill")
    a.add_argument("--name", default="fewshot_distill_sst2")
    a.add_argument("--table-only", action="store_true", help="train nothing: tabulate")
    args = a.parse_args()
    runs = Path(args.runs)
    data = _data(args.data, args.label_names, args.val_rows, args.min_words, runs / "data")
    shots = [int(k) for k in args.shots.split(",")]
    draws = args.draws.split(",")
    rows = _finished(runs / "rows.json", RESULTS / f"{args.name}.json")
    done_file = runs / "rows.json"
    for k in [] if args.table_only else shots:
        for seed in range(args.seeds):
            for draw in draws:
                key = f"{draw}-k{k}-s{seed}"
                if key not in rows:
                    rows[key] = _chain(args, data, draw, k, seed)
                    done_file.write_text(json.dumps(rows, indent=2))
                    _report(args, data, rows, draws, shots)
    _report(args, data, rows, draws, shots)


def _report(args: argparse.Namespace, data: dict, rows: dict, draws: list, shots: list) -> None:
    table = _table(rows, draws, shots)
    table += [
        "",
        f"Data: {args.data}; K rows per class by `--shots K --seed S` from the training split "
        f"(phrases: all {data['phrases']['train_rows']} rows; sentences: the "
        f"{data['sentences']['train_rows']} rows of at least {args.min_words} words); "
        f"validation a seeded {args.val_rows} dev rows; unlabelled: the "
        f"{data['unlabeled_rows']} training texts; students {args.student_epochs} epoch(s). "
        "Accuracy: test split, mean ± std over seeds; int8 = each bundle's default variant "
        "through the runtime.",
        "",
        "Chains ran on: "
        + "; ".join(sorted({r.get("machine", "(not recorded)") for r in rows.values()}))
        + ".",
    ]
    write_results(
        args.name,
        {"args": vars(args), "rows": rows},
        "Few-shot mpnet-base teacher, distilled MiniLM-L6 students",
        table,
    )


if __name__ == "__main__":
    main()
