"""A labelled split to measure a model on (validation, export's data check), its labels
mapped onto the model's: by name, else by integer id."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..formats import rundir
from .load import load_data
from .split import Split


def labelled_split(
    labels: list[str],
    rc: dict[str, Any] | None,
    *,
    data: str | None = None,
    split: str = "test",
    text_columns: tuple[str, ...] = (),
    label_column: str | None = None,
    header: bool | None = None,
    max_samples: int | None = None,
) -> tuple[Split, dict[str, Any]]:
    """A labelled split to measure a model on, its labels mapped onto the model's ``labels``.

    Args:
        labels: the model's label names, in id order.
        rc: the config.json of the run the model came from (its data and split settings),
            used when ``data`` is None.
        max_samples: at most this many rows (a seeded random choice).
    """
    kwargs: dict[str, Any] = {
        "text_columns": text_columns,
        "label_column": label_column,
        "header": header,
    }
    spec = data
    if spec is None:
        if rc is None:
            raise ConfigError(
                "no labelled data to validate on: pass --data FILE_OR_FOLDER "
                "(the bundle's source is not an edgetune run with training data)"
            )
        # The run's own settings reproduce its held-out split exactly.
        spec, kwargs = rundir.data_spec(rc)
    loaded = load_data(spec, **kwargs)
    part = getattr(loaded, split)
    mapping = _label_mapping(loaded.label_names, labels, spec)
    part = Split(part.texts, [mapping[i] for i in part.labels], part.pairs)
    if max_samples and len(part.texts) > max_samples:
        idx = np.random.default_rng(0).choice(len(part.texts), max_samples, replace=False)
        part = part.subset(np.sort(idx))
    return part, {"source": str(spec), "split": split, "label_names": labels}


def _label_mapping(data_names: list[str], model_names: list[str], spec: str) -> dict[int, int]:
    """Data label id → model label id: by name, else by integer id."""
    if all(n in model_names for n in data_names):
        return {i: model_names.index(n) for i, n in enumerate(data_names)}
    if all(n.lstrip("-").isdigit() and 0 <= int(n) < len(model_names) for n in data_names):
        return {i: int(n) for i, n in enumerate(data_names)}
    raise DataError(
        f"the labels in {spec} ({', '.join(data_names[:5])}) do not match the model's "
        f"({', '.join(model_names[:5])}); use the same label names or ids 0..{len(model_names) - 1}"
    )
