"""CoNLL-2003 English NER: train -> export -> validate through the runtime, per variant.

Takes a folder with CoNLL-2003's train/dev/test files (e.g. kyzhouhzau/BERT-NER's ``data/``,
read out of git; the data itself is never committed) and records where it came from
(``--source``, e.g. the repository and commit). Trains RUN when it does not exist yet
(``edgetune train --model MODEL --data DIR``; MiniLM-L6, 3 epochs: about 25 minutes on 2
cores; a RUN.partial left by a stopped run is resumed), exports it with extra variants in its own process, and validates every variant
against the PyTorch original on the test split with the issue's gates (entity F1 drop <= 0.5
points, speed-up >= 2.5x at 128 tokens). Writes test entity F1 per variant, per-type F1,
speed-ups at 16/32/128 tokens and rows/s. Duration beyond training: about 5 minutes.

    python bench/ner_conll.py runs/ner-minilm --data /path/to/conll2003 \
        --source "kyzhouhzau/BERT-NER@0f77e47 data/" --threads 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import export_in_own_process, train_or_resume, write_results  # noqa: E402


def _train(a: argparse.Namespace) -> float | None:
    options = ["--model", a.model, "--data", a.data, "--epochs", str(a.epochs)]
    return train_or_resume(a.run, options + [x for x in (a.train_args or "").split() if x])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--data", required=True, help="folder with train.txt, dev.txt, test.txt")
    ap.add_argument("--source", default="", help="where the data came from (repository@commit)")
    ap.add_argument("--model", default="minilm-l6")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-args", help="more `edgetune train` options, space-separated")
    ap.add_argument("--variants", default="fp32,int8-static,int8-portable")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-samples", type=int, help="validate on at most this many sentences")
    ap.add_argument("--name", default="ner_conll")
    a = ap.parse_args()

    from edgetune.validate import markdown as _markdown
    from edgetune.validate import validate

    train_s = _train(a)
    metrics = json.loads((Path(a.run) / "metrics.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / Path(a.run).name
        export_s, peak_mb = export_in_own_process(a.run, out, a.variants)
        result = validate(
            bundle=str(out),
            threads=a.threads,
            max_f1_drop=0.5,
            min_speedup=((128, 2.5),),
            max_samples=a.max_samples,
            raise_on_failure=False,
        )
    report = result.report
    print(result.summary())
    body = _markdown(report).splitlines()[2:]  # the title is write_results'
    test = metrics["test"]
    body += [
        "",
        f"Data: `{a.data}` ({a.source or 'source not given'}). Model {a.model}, "
        f"{metrics['config']['epochs']} epoch(s); the run's own test figures (PyTorch, fp32, "
        f"training's evaluator: words past the max length count as O): entity F1 "
        f"{test['f1'] * 100:.2f}, token accuracy {test['accuracy'] * 100:.2f}.",
        f"Export of {len(report['variants']) - 1} variants: {export_s:.0f} s, peak memory "
        f"{peak_mb:.0f} MB.",
    ]
    if train_s is not None:
        body.append(f"Training the run took {train_s / 60:.1f} minutes.")
    write_results(
        a.name,
        {
            "run": a.run,
            "data": a.data,
            "source": a.source,
            "model": a.model,
            "train_s": train_s,  # None: the run existed already
            "run_test": test,
            "export_s": export_s,
            "export_peak_rss_mb": peak_mb,
            "validation": report,
        },
        f"CoNLL-2003 NER: {a.model} through export and validation",
        body,
    )


if __name__ == "__main__":
    main()
