"""GoEmotions multi-label (28 labels): train -> export -> validate, at tuned and at 0.5 thresholds.

Takes a folder with GoEmotions' train/dev/test TSV (text, comma-separated label ids, id; no
header) and ``labels.txt`` (e.g. monologg/GoEmotions-pytorch's ``data/original/``, read out of
git; the data itself is never committed), and records where it came from (``--source``).
Trains RUN when it does not exist yet (``edgetune train --task multi-label --threshold tuned``;
a RUN.partial left by a stopped run is resumed), exports it with extra variants in its own
process, and validates every variant through the runtime against PyTorch with the issue's gate
(macro F1 drop <= 1 point). Then every variant's test figures at one global 0.5 threshold
beside the tuned ones, and each int8 variant's per-label decision agreement with fp32.
Duration beyond training: about 5 minutes for MiniLM-L6 on 2 cores.

    python bench/goemotions.py runs/emotions --data /path/to/goemotions \
        --source "monologg/GoEmotions-pytorch@b75f9d3 data/original/" --threads 2
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import export_in_own_process, train_or_resume, write_results  # noqa: E402


def _train(a: argparse.Namespace) -> float | None:
    options = ["--model", a.model, "--data", a.data, "--epochs", str(a.epochs)]
    options += ["--task", "multi-label", "--no-header", "--text-column", "0"]
    options += ["--label-column", "1", "--label-names", str(Path(a.data) / "labels.txt")]
    return train_or_resume(a.run, options + ["--threshold", "tuned", *shlex.split(a.train_args)])


def _at_half(bundle: Path, variants: list[str], split) -> dict[str, dict]:
    """Each variant's test figures at 0.5, and int8 decision agreement with fp32 (tuned)."""
    from edgetune.labelsets import decisions, label_agreement, multilabel_metrics, sigmoid
    from edgetune.runtime import Classifier

    out, decided = {}, {}
    for v in variants:
        clf = Classifier.load(bundle, variant=v)
        probs = sigmoid(clf.logits(split.texts, batch_size=32))
        targets = split.targets(len(clf.labels))
        m = multilabel_metrics(targets, decisions(probs, 0.5), clf.labels)
        decided[v] = decisions(probs, clf.thresholds)
        out[v] = {"micro_f1": m["micro_f1"], "macro_f1": m["macro_f1"]}
    for v in variants:
        out[v]["label_agreement_with_fp32"] = label_agreement(decided[v], decided["fp32"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--data", required=True, help="folder with train/dev/test.tsv, labels.txt")
    ap.add_argument("--source", default="", help="where the data came from (repository@commit)")
    ap.add_argument("--model", default="minilm-l6")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument(
        "--train-args", default="", help="more edgetune train options, e.g. '--learning-rate 2e-4'"
    )
    ap.add_argument("--variants", default="fp32,int8-static,int8-portable")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="goemotions")
    a = ap.parse_args()

    from edgetune.data.labelled import load_run_data
    from edgetune.validate import markdown as _markdown
    from edgetune.validate import validate

    train_s = _train(a)
    run = Path(a.run)
    metrics = json.loads((run / "metrics.json").read_text())
    test_split = load_run_data(json.loads((run / "config.json").read_text())).test
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / run.name
        export_in_own_process(a.run, out, a.variants)
        result = validate(
            bundle=str(out), threads=a.threads, max_f1_drop=1.0, raise_on_failure=False
        )
        names = [v for v in result.report["variants"] if v != "pytorch-fp32"]
        half = _at_half(out, names, test_split)
    report = result.report
    print(result.summary())
    body = _markdown(report).splitlines()[2:]
    body += ["", "| variant | micro F1 @0.5 | macro F1 @0.5 | label agreement with fp32 (tuned) |"]
    body += ["|---|---:|---:|---:|"]
    for v, r in half.items():
        body.append(
            f"| {v} | {r['micro_f1'] * 100:.2f} | {r['macro_f1'] * 100:.2f} | "
            f"{r['label_agreement_with_fp32'] * 100:.2f}% |"
        )
    test = metrics["test"]
    body += [
        "",
        f"Data: `{a.data}` ({a.source or 'source not given'}). Model {a.model}, "
        f"{metrics['config']['epochs']} epoch(s) at learning rate "
        f"{metrics['config']['learning_rate']:g}, thresholds tuned on dev; the run's test "
        f"(PyTorch): micro F1 {test['micro_f1'] * 100:.2f}, macro F1 {test['macro_f1'] * 100:.2f} "
        f"(at 0.5: {test['at_0.5']['micro_f1'] * 100:.2f} / {test['at_0.5']['macro_f1'] * 100:.2f}).",
    ]
    if train_s is not None:
        body.append(f"Training the run took {train_s / 60:.1f} minutes.")
    write_results(
        a.name,
        {
            "run": a.run,
            "data": a.data,
            "source": a.source,
            "train_s": train_s,
            "run_test": test,
            "at_0.5": half,
            "validation": report,
        },
        f"GoEmotions multi-label: {a.model} through export and validation",
        body,
    )


if __name__ == "__main__":
    main()
