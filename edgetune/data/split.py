"""A split of labelled texts, and carving validation and test splits out of training."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError


@dataclass
class Split:
    """One split: texts (one or two columns) and integer label ids."""

    texts: list[str]
    labels: list[int]
    pairs: list[str] | None = None  # second text column for sentence-pair tasks

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx: np.ndarray) -> Split:
        return Split(
            [self.texts[i] for i in idx],
            [self.labels[i] for i in idx],
            None if self.pairs is None else [self.pairs[i] for i in idx],
        )


def carve(train: Split, count: float, rng: np.random.Generator, name: str, spec: str):
    """Stratified split of about ``count`` rows out of ``train``.

    Each class gives its rounded share. Where that takes nothing, or a class's last row, the
    total is brought to round(count) by largest remainder instead, so that many small classes
    (whose shares all round to 0) still give a split and every class keeps a training row.
    """
    labels = np.asarray(train.labels)
    groups = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        groups.append(idx)
    sizes = np.array([len(g) for g in groups])
    share = count / len(train) * sizes
    take = np.round(share).astype(int)
    # Per-class rounding, where it works, is kept: runs re-create the splits they trained with.
    if not (take.sum() > 0 and (take < sizes).all()):
        _balance(take, share, sizes, count, rng, name, spec)
    picked = np.sort(np.concatenate([g[:k] for g, k in zip(groups, take)]))
    taken = np.zeros(len(train), dtype=bool)
    taken[picked] = True
    return train.subset(np.flatnonzero(~taken)), train.subset(picked)


def _balance(
    take: np.ndarray,
    share: np.ndarray,
    sizes: np.ndarray,
    count: float,
    rng: np.random.Generator,
    name: str,
    spec: str,
) -> None:
    """Bring ``take`` (rows per class) to round(count) by largest remainder, in place."""
    np.minimum(take, sizes - 1, out=take)
    target, spare = max(1, round(count)), int((sizes - 1).sum())
    if spare == 0:
        raise DataError(
            f"cannot carve a {name} split from {spec}: each of its {len(sizes)} classes has a "
            f"single training row, which must stay in training; provide a {name} file, or add "
            "rows (at least 2 per class)"
        )
    if target > spare:
        raise DataError(
            f"cannot carve a {name} split of {target} rows from {spec}: its {len(sizes)} classes "
            f"can spare only {spare} of {int(sizes.sum())} training rows (a class's last row stays in "
            f"training); lower --{'val' if name == 'validation' else 'test'}-size or provide "
            f"a {name} file"
        )
    if take.sum() != target:
        # Classes cut most by rounding gain a row first, those rounded up most lose one first;
        # ties in random order.
        order = rng.permutation(len(sizes))
        order = order[np.argsort(take[order] - share[order], kind="stable")]
        step = 1 if take.sum() < target else -1
        while take.sum() != target:
            for i in order if step > 0 else order[::-1]:
                if take.sum() != target and 0 <= take[i] + step < sizes[i]:
                    take[i] += step
