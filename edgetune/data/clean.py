"""Cleaning rows and mapping labels: empty texts, duplicates, unlabelled rows, the label map."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from ..errors import DataError
from ..textio import cell_text, is_missing
from .split import Split


def clean(df: Any, texts: tuple[str, ...], label: str, report: dict[str, Any]):
    """Strip, drop empty texts, missing labels and exact duplicates; count each."""
    a = [cell_text(v) for v in df[texts[0]].tolist()]
    b = [cell_text(v) for v in df[texts[1]].tolist()] if len(texts) == 2 else None
    raw = df[label].tolist()
    report["read"] = len(a)
    out_a: list[str] = []
    out_b: list[str] | None = [] if b is not None else None
    out_l: list[Any] = []
    seen: set[tuple[Any, ...]] = set()
    empty = missing = dupes = 0
    for i in range(len(a)):
        if not a[i] or (b is not None and not b[i]):
            empty += 1
            continue
        lab = raw[i]
        if is_missing(lab):
            missing += 1
            continue
        lab = _normalise_label(lab)
        key = (a[i], b[i] if b is not None else None, lab)
        if key in seen:
            dupes += 1
            continue
        seen.add(key)
        out_a.append(a[i])
        if out_b is not None and b is not None:
            out_b.append(b[i])
        out_l.append(lab)
    report.update(dropped_empty_text=empty, dropped_missing_label=missing, dropped_duplicates=dupes)
    return out_a, out_b, out_l


def _normalise_label(v: Any) -> Any:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return int(v)
    if isinstance(v, str):
        s = v.strip()
        return int(s) if s.lstrip("-").isdigit() else s
    return str(v)


def drop_unlabelled(
    cleaned: dict[str, Any], class_names: list[str] | None, report: dict[str, Any]
) -> None:
    """Drop rows whose negative label means "no label" (the rule is in ``load_data``)."""

    def negative(v: Any) -> bool:
        return isinstance(v, int) and v < 0

    labels = [labs for *_, labs in cleaned.values()]
    minus_one_is_class = any(negative(v) and v != -1 for labs in labels for v in labs) or any(
        -1 in labs and any(v != -1 for v in labs) for labs in labels
    )
    for name, (a, b, labs) in cleaned.items():
        if class_names:  # a ClassLabel's -1 is "no label" by definition
            keep = [not negative(v) for v in labs]
        elif not minus_one_is_class and labs and all(v == -1 for v in labs):
            keep = [False] * len(labs)
        else:
            continue
        cleaned[name] = (
            [x for x, k in zip(a, keep) if k],
            None if b is None else [x for x, k in zip(b, keep) if k],
            [x for x, k in zip(labs, keep) if k],
        )
        report[name]["dropped_missing_label"] += keep.count(False)


def refuse_untrained(splits: dict[str, Split], label_names: list[str], spec: str) -> None:
    """Refuse classes met in validation or test data with no training row: none can be learnt."""
    trained = set(splits["train"].labels)
    found = []
    for name in ("validation", "test"):
        counts = Counter(v for v in splits[name].labels if v not in trained)
        found += [f"{label_names[c]!r} ({n} {name} row{'s' * (n > 1)})" for c, n in counts.items()]
    if found:
        one = len(found) == 1
        raise DataError(
            f"{'class' if one else 'classes'} {', '.join(found)} {'has' if one else 'have'} "
            f"no training rows in {spec}, so no model can learn {'it' if one else 'them'}; "
            f"add training rows for {'it' if one else 'them'}, or drop those rows"
        )


def label_map(
    columns: list[list[Any]], class_names: list[str] | None, label: str
) -> tuple[list[str], dict[Any, int]]:
    """Label names in id order, and each raw label's id (a Hub ``ClassLabel``'s own when given)."""
    values = {v for col in columns for v in col}
    if class_names and all(isinstance(v, int) and 0 <= v < len(class_names) for v in values):
        return list(class_names), {i: i for i in range(len(class_names))}
    if all(isinstance(v, int) for v in values):
        ordered: list[Any] = sorted(values)
    else:  # strings, or integers among strings: in text order
        ordered = sorted(values, key=str)
    if len(ordered) > 1000:
        raise DataError(
            f"label column {label} has {len(ordered)} distinct values; "
            "is it really the label? pass --label-column NAME"
        )
    return [str(v) for v in ordered], {v: i for i, v in enumerate(ordered)}
