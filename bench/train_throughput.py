"""Training throughput: edgetune vs a plain Hugging Face Trainer loop, same model, data, epochs.

Runs both on the same machine in one process (plain Trainer first, then edgetune), then
evaluates each fine-tuned model on the same test split. Writes JSON and a Markdown table to
bench/results/. Duration: about 20 minutes on 2 cores for full SST-2 (1 epoch each);
``--train-rows 6000`` takes about 3 minutes.

    python bench/train_throughput.py                       # full SST-2 from ../shared/data/sst2
    python bench/train_throughput.py --train-rows 6000     # quicker
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import write_results  # noqa: E402


def plain_trainer(model_dir, train, test, label_names, epochs, lr, bs, seed, max_length):
    """The reference: what a typical HF fine-tuning script does (fp32, dynamic padding)."""
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=len(label_names)
    )

    def ds(split):
        d = Dataset.from_dict({"text": split.texts, "label": split.labels})
        return d.map(lambda b: tok(b["text"], truncation=True, max_length=max_length), batched=True)

    tr, te = ds(train), ds(test)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=bs,
            per_device_eval_batch_size=64,
            num_train_epochs=epochs,
            learning_rate=lr,
            seed=seed,
            save_strategy="no",
            logging_strategy="no",
            report_to=[],
            disable_tqdm=True,
            use_cpu=not torch.cuda.is_available(),
        )
        trainer = Trainer(
            model=model, args=args, train_dataset=tr, data_collator=DataCollatorWithPadding(tok)
        )
        t0 = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - t0
        pred = trainer.predict(te)
    acc = float(np.mean(pred.predictions.argmax(-1) == np.asarray(test.labels)))
    return {
        "train_s": train_s,
        "samples_per_s": len(train) * epochs / train_s,
        "test_accuracy": acc,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data" / "sst2"))
    ap.add_argument("--model", default="minilm-l6")
    ap.add_argument(
        "--train-rows", type=int, default=0, help="use the first N training rows (0 = all)"
    )
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument(
        "--learning-rate", type=float, default=5e-5, help="plain Trainer's learning rate"
    )
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--name", default="train_throughput")
    a = ap.parse_args()

    import edgetune
    from edgetune.data import load_data
    from edgetune.presets import resolve_model

    data = load_data(a.data, seed=a.seed)
    if a.train_rows:
        data.train = data.train.subset(list(range(min(a.train_rows, len(data.train)))))
    source = resolve_model(a.model)
    max_length = source.preset.max_length if source.preset else 128
    print(
        f"data: {len(data.train)} train / {len(data.test)} test; model {source.location}",
        flush=True,
    )

    base = plain_trainer(
        source.location,
        data.train,
        data.test,
        data.label_names,
        a.epochs,
        a.learning_rate,
        a.batch_size,
        a.seed,
        max_length,
    )
    print(f"plain Trainer: {base}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        # Hand edgetune exactly the rows the baseline saw.
        import pandas as pd

        for name, split in (
            ("train", data.train),
            ("validation", data.validation),
            ("test", data.test),
        ):
            pd.DataFrame({"text": split.texts, "label": split.labels}).to_parquet(
                Path(tmp) / f"{name}.parquet"
            )
        r = edgetune.train(
            model=a.model,
            data=tmp,
            output=str(Path(tmp) / "run"),
            epochs=a.epochs,
            batch_size=a.batch_size,
            seed=a.seed,
            progress=False,
        )
    ours = {
        "train_s": r.timing["train_s"],
        "samples_per_s": r.timing["samples_per_s"],
        "test_accuracy": r.test["accuracy"],
        "precision": r.environment["precision"],
        "learning_rate": r.config["learning_rate"],
        "freeze_embeddings": r.config["freeze_embeddings"],
    }
    print(f"edgetune: {ours}", flush=True)
    speedup = ours["samples_per_s"] / base["samples_per_s"]
    result = {
        "model": a.model,
        "data": a.data,
        "train_rows": len(data.train),
        "test_rows": len(data.test),
        "epochs": a.epochs,
        "batch_size": a.batch_size,
        "plain_trainer": base,
        "edgetune": ours,
        "speedup": speedup,
        "accuracy_delta_points": (ours["test_accuracy"] - base["test_accuracy"]) * 100,
    }
    rows = [
        ("plain HF Trainer (fp32, dynamic padding)", base),
        (f"edgetune train ({ours['precision']}, length-grouped)", ours),
    ]
    table = [
        "| trainer | samples/s | train time (s) | test accuracy |",
        "|---|---:|---:|---:|",
        *[
            f"| {n} | {m['samples_per_s']:.1f} | {m['train_s']:.0f} | {m['test_accuracy'] * 100:.2f}% |"
            for n, m in rows
        ],
        "",
        f"Speed-up: **{speedup:.2f}x**; accuracy difference: {result['accuracy_delta_points']:+.2f} points.",
    ]
    write_results(a.name, result, "Training throughput", table)


if __name__ == "__main__":
    main()
