"""Texts without labels for ``--unlabeled`` on the SST-2 sample: N phrases of the full SST-2
training split (``../shared/data/sst2/train.tsv``) that are not in ``examples/sst2-sample``,
shuffled with a fixed seed, written as a one-column CSV (``sentence``).

    python bench/sst2_unlabeled.py --rows 10000 --output runs/data/sst2-unlabeled-10k.csv
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", default="../shared/data/sst2/train.tsv")
    ap.add_argument("--sample", default="examples/sst2-sample")
    ap.add_argument("--rows", type=int, default=10000)
    ap.add_argument("--output", default="runs/data/sst2-unlabeled-10k.csv", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    from edgetune.data import load_data

    s = load_data(a.sample)
    seen = {*s.train.texts, *s.validation.texts, *s.test.texts}
    texts = []
    with open(a.full, encoding="utf-8") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(rows)
        for text, _ in rows:
            if text not in seen:
                seen.add(text)
                texts.append(text)
    random.Random(a.seed).shuffle(texts)
    a.output.parent.mkdir(parents=True, exist_ok=True)
    with a.output.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["sentence"])
        w.writerows([t] for t in texts[: a.rows])
    print(f"{min(a.rows, len(texts))} of {len(texts)} unlabeled texts -> {a.output}")


if __name__ == "__main__":
    main()
