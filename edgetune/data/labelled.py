"""A labelled split to measure a model on (validation, export's data check), its labels
mapped onto the model's: by name, else by integer id."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..formats import rundir
from .load import load_data
from .split import Split


def load_task_data(
    spec: str,
    task: str | None,
    *,
    text_columns: tuple[str, ...] = (),
    label_column: str | None = None,
    label_names: tuple[str, ...] | list[str] = (),
    val_size: float = 0.1,
    test_size: float = 0.1,
    seed: int = 42,
    header: bool | None = None,
    label_columns: tuple[str, ...] | list[str] = (),
    label_sep: str = ",",
) -> Any:
    """A task's data through its reader: ``Data`` (texts and labels); for token
    classification ``TokenData`` (words and tags; the text column names the tokens, the label
    column the tags, and ``label_names`` names integer tags); for multi-label
    ``MultiLabelData`` (texts and label sets: a column of lists or ``label_sep``-delimited
    labels, or several 0/1 ``label_columns``)."""
    if task == "token-classification":
        from .tokens import load_token_data

        return load_token_data(
            spec,
            tokens_column=text_columns[0] if text_columns else None,
            tags_column=label_column,
            label_names=list(label_names) or None,
            val_size=val_size,
            test_size=test_size,
            seed=seed,
        )
    if task == "multi-label":
        from .multilabel import load_multilabel_data

        return load_multilabel_data(
            spec,
            text_columns=text_columns,
            label_columns=tuple(label_columns) or ((label_column,) if label_column else ()),
            label_names=tuple(label_names),
            label_sep=label_sep,
            val_size=val_size,
            test_size=test_size,
            seed=seed,
            header=header,
        )
    return load_data(
        spec,
        text_columns=text_columns,
        label_column=label_column,
        val_size=val_size,
        test_size=test_size,
        seed=seed,
        header=header,
    )


def load_run_data(rc: dict[str, Any]) -> Any:
    """A run's data, split exactly as it was for training (its task, its settings)."""
    spec, kwargs = rundir.data_spec(rc)
    c = rc["config"]
    task = c.get("task")
    names = tuple(c.get("label_names") or ()) if task != "text-classification" else ()
    multi = {
        "label_columns": tuple(c.get("label_columns") or ()),
        "label_sep": c.get("label_sep", ","),
    }
    return load_task_data(
        spec, task, label_names=names, **kwargs, **(multi if task == "multi-label" else {})
    )


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
    _require_data(data, rc)
    spec = data
    if spec is None:
        assert rc is not None
        # The run's own settings reproduce its held-out split exactly.
        spec, kwargs = rundir.data_spec(rc)
    loaded = load_data(spec, **kwargs)
    part = getattr(loaded, split)
    mapping = _label_mapping(loaded.label_names, labels, spec)
    part = Split(part.texts, [mapping[i] for i in part.labels], part.pairs)
    return _at_most(part, max_samples), {"source": str(spec), "split": split, "label_names": labels}


def labelled_token_split(
    labels: list[str],
    rc: dict[str, Any] | None,
    *,
    data: str | None = None,
    split: str = "test",
    text_columns: tuple[str, ...] = (),
    label_column: str | None = None,
    max_samples: int | None = None,
) -> tuple[Any, dict[str, Any]]:
    """A token-classification split to measure a model on, its tags mapped onto the model's
    tag ids by name (a tag the model does not know is refused)."""
    # Integer tags are read by the model's names (CoNLL tags are text).
    names = tuple(n for n in labels if n) if data and _integer_tags(data) else ()
    read = {"text_columns": text_columns, "label_column": label_column, "label_names": names}
    part, ids, info = _measured("token-classification", labels, rc, data, split, read)
    part = type(part)(part.tokens, [[ids[t] for t in tags] for tags in part.tags])
    return _at_most(part, max_samples), info


def labelled_label_sets(
    labels: list[str],
    rc: dict[str, Any] | None,
    *,
    data: str | None = None,
    split: str = "test",
    text_columns: tuple[str, ...] = (),
    label_column: str | None = None,
    header: bool | None = None,
    max_samples: int | None = None,
) -> tuple[Any, dict[str, Any]]:
    """A multi-label split to measure a model on, its labels mapped onto the model's by name
    (a label the model does not know is refused)."""
    # The model's names also name integer label ids (a name it does not know is refused).
    read = {"text_columns": text_columns, "label_column": label_column, "header": header}
    read["label_names"] = tuple(labels)
    part, ids, info = _measured("multi-label", labels, rc, data, split, read)
    rows = [sorted(ids[i] for i in row) for row in part.labels]
    return _at_most(type(part)(part.texts, rows, part.pairs), max_samples), info


def _measured(
    task: str,
    labels: list[str],
    rc: dict[str, Any] | None,
    data: str | None,
    split: str,
    read: dict[str, Any],
) -> tuple[Any, list[int], dict[str, Any]]:
    """``split`` of ``data`` (else of the run's data, split as it was), the model's id of each
    of the data's label names, and where the split came from."""
    _require_data(data, rc)
    if data is None:
        assert rc is not None
        loaded, spec = load_run_data(rc), rundir.data_spec(rc)[0]
    else:
        loaded, spec = load_task_data(data, task, **read), data
    unknown = [n for n in loaded.label_names if n not in labels]
    if unknown:
        raise DataError(
            f"the labels in {spec} ({', '.join(unknown[:5])}) are not the model's "
            f"({', '.join(labels[:7])}); validate on data with the same labels"
        )
    ids = [labels.index(n) for n in loaded.label_names]
    info = {"source": str(spec), "split": split, "label_names": labels}
    return getattr(loaded, split), ids, info


def _require_data(data: str | None, rc: dict[str, Any] | None) -> None:
    if data is None and rc is None:
        raise ConfigError(
            "no labelled data to validate on: pass --data FILE_OR_FOLDER "
            "(the bundle's source is not an edgetune run with training data)"
        )


def _at_most(part: Any, max_samples: int | None) -> Any:
    """At most ``max_samples`` rows (a seeded random choice, in the split's order)."""
    if max_samples and len(part) > max_samples:
        idx = np.random.default_rng(0).choice(len(part), max_samples, replace=False)
        part = part.subset(np.sort(idx))
    return part


def _integer_tags(spec: str) -> bool:
    """Whether ``spec``'s tags may be integers (JSON, Parquet and hub data; CoNLL is text)."""
    return not str(spec).endswith((".conll", ".txt", ".iob", ".bio"))


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
