"""The ``validate`` stage: bundle, PyTorch original and labelled data in; measures, gates, report out."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..envinfo import environment
from ..errors import ConfigError, DataError, GateFailed
from ..formats import bundle as bundlefmt
from ..formats import rundir
from ..fsutil import clean_stale, locked
from ..hw import keeps_torch_threads
from ..runners import PYTORCH, RuntimeRunner, TorchRunner, pytorch_source
from ..tasks import task_named
from .config import ValidateConfig
from .gates import accuracy_rows, apply_gates, batch_invariance, flipped_examples
from .report import (
    REPORT_DIR,
    SCHEMA,
    SCHEMA_VERSION,
    check_report_dir,
    manifest_metrics,
    summary_table,
    write_report,
)
from .timing import measure_latency, peak_memory


@dataclass
class ValidationResult:
    """The report (``report`` is what report.json holds) and where it was written."""

    report: dict[str, Any]
    report_dir: str
    failures: list[str] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)
    note: str | None = None

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        out = summary_table(self.report) + f"\nreport     {self.report_dir}/report.md"
        return out + (f"\nnote       {self.note}" if self.note else "")


# -- the stage ----------------------------------------------------------------------------------


@keeps_torch_threads
def validate(
    config: ValidateConfig | None = None,
    /,
    *,
    progress: bool = True,
    raise_on_failure: bool = True,
    **options: Any,
) -> ValidationResult:
    """Measure accuracy, agreement, latency, size and memory of each variant; apply the gates.

    Raises ``GateFailed`` (after writing the report) when a gate does not hold, unless
    ``raise_on_failure`` is False.
    """
    if config is None:
        config = ValidateConfig(**options)
    elif options:
        config = replace(config, **options)
    root = Path(config.bundle).expanduser()
    out = Path(config.report_dir).expanduser() if config.report_dir else root / REPORT_DIR
    check_report_dir(out)
    with locked(root, "bundle"), locked(out, "report folder"):
        # Leftovers of killed writers (report staging, manifest temporaries); ours to remove now.
        clean_stale(out.parent, out.name)
        clean_stale(root, bundlefmt.MANIFEST)
        result = _validate(config, root, out, progress)
    if result.failures and raise_on_failure:
        raise GateFailed("\n".join(result.failures))
    return result


def _latency_gate(
    manifest: dict[str, Any], config: ValidateConfig, max_len: int
) -> dict[str, Any] | None:
    """The latency limit to judge: --max-latency, else the budget the run was trained for."""
    from ..latency import parse_budget

    if config.max_latency is not None:
        ms, seq = parse_budget(config.max_latency, "--max-latency")
        if seq > max_len:
            raise ConfigError(
                f"--max-latency {config.max_latency} asks for sequence length {seq}, beyond "
                f"the model's max length {max_len}; gate a length up to {max_len}"
            )
        return {"ms": ms, "seq": seq, "origin": "--max-latency"}
    budget = manifest.get("source", {}).get("latency_budget")
    if budget and config.budget:
        seq = min(int(budget["seq"]), max_len)  # the budget timed at most the model's length
        return {
            "ms": float(budget["budget_ms"]),
            "seq": seq,
            "origin": "the run's --latency-budget",
        }
    return None


def _validate(config: ValidateConfig, root: Path, out: Path, progress: bool) -> ValidationResult:
    from ..console import sayer
    from ..runtime import Classifier

    say = sayer(progress)
    t0 = time.perf_counter()
    manifest = bundlefmt.verify(root)  # never run a model whose files do not match
    variants = _pick_variants(manifest, config)
    source = pytorch_source(manifest, config.source) if config.pytorch else None
    max_len = int(manifest["max_length"])
    _check_lengths(config, max_len)
    latency_gate = _latency_gate(manifest, config, max_len)
    if latency_gate is not None and latency_gate["seq"] not in config.seq_lengths:
        config = replace(config, seq_lengths=(*config.seq_lengths, latency_gate["seq"]))
    task = task_named(manifest.get("task"))
    if config.max_f1_drop is not None and not (task.per_token or task.multi_label):
        raise ConfigError(
            "--max-f1-drop gates the entity F1 of token-classification bundles and the macro F1 "
            "of multi-label ones; this one classifies whole texts: use --max-accuracy-drop"
        )
    split, data_info = _load_split(manifest, config, task.name)
    if not split.texts:
        raise DataError(f"the {config.split} split of {data_info['source']} is empty")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(root)
    golden = bundlefmt.read_golden(root)
    runners: dict[str, Any] = {}
    if source is not None:
        runners[PYTORCH] = TorchRunner(source, config.threads, max_len)
    for name in variants:
        # ONNX variants run exactly as devices run them: the runtime's tokenizer and batching.
        clf = Classifier(root, manifest, name, config.threads, golden)
        runners[name] = RuntimeRunner(clf)
    baseline = PYTORCH if source is not None else ("fp32" if "fp32" in variants else None)

    b = config.batch_size
    say(f"predicting {len(split.texts)} {config.split} rows with {', '.join(runners)} (batch {b})")
    names = data_info["label_names"]
    if task.multi_label:
        thresholds = np.asarray([manifest["thresholds"][n] for n in names], np.float32)
        rows, flipped = _label_sets(runners, split, names, baseline, b, thresholds, say)
    else:
        rows, flipped = _answers(runners, split, names, baseline, b, tok, say)

    say(f"timing {', '.join(runners)} interleaved on {config.threads} thread(s)")
    latency = measure_latency(runners, tok, split, config, max_len)
    for name, lat in latency.items():
        rows[name]["latency"] = lat
    _record_files(rows, root, manifest, variants, source)
    if config.memory:
        say("measuring peak memory, one process per variant")
        for name in runners:
            rows[name]["peak_rss_mb"] = peak_memory(runners[name], max_len)

    default = manifest.get("default_variant")
    gates, failures = apply_gates(rows, config, default, baseline, latency_gate)
    report = _report(root, config, default, baseline, data_info, split, rows, max_len)
    report |= {"flipped_examples": flipped, "gates": gates, "passed": not failures}
    report["time_s"] = round(time.perf_counter() - t0, 1)
    write_report(report, out)
    note = None
    if (root / bundlefmt.SIGNATURE).exists():
        # Re-hashing would break the owner's signature; the report is written all the same.
        note = (
            f"the bundle is signed, so its manifest keeps the signed figures (report in {out}); "
            "re-sign it (`edgetune sign`) to record these"
        )
    else:
        manifest = bundlefmt.update_manifest(root, metrics=manifest_metrics(report))
    return ValidationResult(report, str(out), failures, manifest, note)


def _label_sets(
    runners: dict[str, Any],
    split: Any,
    label_names: list[str],
    baseline: str | None,
    b: int,
    thresholds: np.ndarray,
    say: Any,
) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """A multi-label bundle's answers: label sets by its thresholds (``validate.labelsets``)."""
    from .labelsets import flipped_sets, label_set_rows, set_batch_invariance

    logits = {name: r.logits(split.texts, split.pairs, b) for name, r in runners.items()}
    rows, decided = label_set_rows(logits, split, label_names, baseline, thresholds)
    flipped = flipped_sets(decided, split, label_names, baseline)
    say("checking batch invariance: every row again at batch 1")
    for name, r in runners.items():
        if r.kind == "onnx":
            inv = set_batch_invariance(r, split, logits[name], b, thresholds)
            rows[name]["batch_invariance"] = inv
    return rows, flipped


def _answers(
    runners: dict[str, Any],
    split: Any,
    label_names: list[str],
    baseline: str | None,
    b: int,
    tok: Any,
    say: Any,
) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Each candidate's figures on the split and the rows it answers differently from the
    baseline; each ONNX variant's batch invariance. Per token: entity figures per word."""
    pairs = split.pairs  # every split kind has one (None: single texts)
    logits = {name: r.logits(split.texts, pairs, b) for name, r in runners.items()}
    per_token = isinstance(next(iter(logits.values())), list)
    if per_token:
        from .tokens import data_tokens, flipped_sentences, token_batch_invariance, token_rows

        rows, tags = token_rows(
            logits, data_tokens(tok.backend_tokenizer, split), split, label_names, baseline
        )
        flipped = flipped_sentences(tags, split, label_names, baseline)
        invariance: Any = token_batch_invariance
    else:
        rows = accuracy_rows(logits, split, label_names, baseline)
        flipped = flipped_examples(logits, split, label_names, baseline)
        invariance = batch_invariance
    say("checking batch invariance: every row again at batch 1")
    for name, r in runners.items():
        if r.kind == "onnx":
            rows[name]["batch_invariance"] = invariance(r, split, logits[name], b)
    return rows, flipped


def _report(
    root: Path,
    config: ValidateConfig,
    default: str | None,
    baseline: str | None,
    data_info: dict[str, Any],
    split: Any,
    rows: dict[str, dict[str, Any]],
    max_len: int,
) -> dict[str, Any]:
    """report.json's content, in its order (the gates and time are filled in after)."""
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "bundle": str(root.resolve()),
        "default_variant": default,
        "baseline": baseline,
        "data": data_info | {"rows": len(split.texts)},
        "settings": {
            "threads": config.threads,
            "rounds": config.rounds,
            "warmup": config.warmup,
            "seq_lengths": [s for s in config.seq_lengths if s <= max_len],
            "skipped_seq_lengths": [s for s in config.seq_lengths if s > max_len],
            "data_lengths": config.data_lengths,
            "batch_size": config.batch_size,
            "max_length": max_len,
        },
        "variants": rows,
        "flipped_examples": [],
        "gates": [],
        "passed": True,
        "environment": environment("onnxruntime", "torch"),
        "config": config.to_dict(),
        "time_s": 0.0,
    }


def _check_lengths(config: ValidateConfig, max_len: int) -> None:
    """Lengths to time and gate: within the model's, and every gated one timed."""
    from ..latency import lengths_within

    too_long = [s for s, _ in config.min_speedup if s is not None and s > max_len]
    if too_long:
        raise ConfigError(
            f"--min-speedup {too_long[0]}:… asks for sequence length {too_long[0]}, beyond the "
            f"model's max length {max_len}; gate a length up to {max_len}"
        )
    lengths_within(config.seq_lengths, max_len)
    # Checked after the model's limit, so following one message never leads into the other.
    for s, _ in config.min_speedup:
        if s is not None and s not in config.seq_lengths:
            raise ConfigError(
                f"--min-speedup {s}:… names sequence length {s}, which is not measured; "
                f"add it to --seq-lengths (now {','.join(map(str, config.seq_lengths))})"
            )


def _record_files(
    rows: dict[str, dict[str, Any]],
    root: Path,
    manifest: dict[str, Any],
    variants: list[str],
    source: Path | None,
) -> None:
    """Each candidate's file and size on disk."""
    for name in variants:
        rows[name]["file"] = manifest["variants"][name]["file"]
        rows[name]["size_bytes"] = (root / manifest["variants"][name]["file"]).stat().st_size
    if source is not None:
        rows[PYTORCH]["file"] = str(source)
        rows[PYTORCH]["size_bytes"] = sum(p.stat().st_size for p in source.glob("*.safetensors"))


# -- inputs -------------------------------------------------------------------------------------


def _pick_variants(manifest: dict[str, Any], config: ValidateConfig) -> list[str]:
    built = list(manifest.get("variants", {}))
    if config.variants:
        unknown = [v for v in config.variants if v not in built]
        if unknown:
            raise ConfigError(
                f"the bundle has no variant {', '.join(unknown)}; it has {', '.join(built)} "
                "(build more with `edgetune export --variants`)"
            )
        names = list(config.variants)
    else:
        names = built
    # fp16 graphs target GPUs; ORT's CPU kernels do not cover them.
    return [n for n in names if n != "fp16"]


def _run_config(manifest: dict[str, Any]) -> dict[str, Any] | None:
    run = (manifest.get("source") or {}).get("run")
    if run and rundir.is_run(Path(run)):
        return rundir.read_json(Path(run) / rundir.CONFIG)
    return None


def _load_split(manifest: dict[str, Any], config: ValidateConfig, task: str):
    """The labelled split, with labels (or tags) mapped onto the bundle's label ids."""
    from ..data.labelled import labelled_label_sets, labelled_split, labelled_token_split

    labels, rc = list(manifest.get("labels") or []), _run_config(manifest)
    kw: dict[str, Any] = {
        "data": config.data,
        "split": config.split,
        "text_columns": config.text_columns,
        "label_column": config.label_column,
        "max_samples": config.max_samples,
    }
    if task == "token-classification":
        return labelled_token_split(labels, rc, **kw)
    if task == "multi-label":
        return labelled_label_sets(labels, rc, header=config.header, **kw)
    return labelled_split(labels, rc, header=config.header, **kw)
