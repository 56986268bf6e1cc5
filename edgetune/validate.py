"""``edgetune validate``: every variant of a bundle against the PyTorch original, side by side.

Accuracy is task-level (a labelled split of real data, not random inputs); latency is measured
with all candidates interleaved in one process (see ``latency.py``), so speed-ups are paired
ratios that hold on noisy machines. The report is written next to the bundle's models
(``validation/report.{json,md,png}``) and its headline figures go into the manifest.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from .envinfo import environment
from .errors import ConfigError, DataError, GateFailed
from .formats import bundle as bundlefmt
from .formats import run as rundir
from .fsutil import clean_stale, locked, temp_dir

SCHEMA = "edgetune-validation"
SCHEMA_VERSION = 1
REPORT_DIR = bundlefmt.REPORT_DIR
REPORT_FILES = ("report.json", "report.md", "report.png")
PYTORCH = "pytorch-fp32"
FLIPPED_SHOWN = 20
BLOCK = 3  # timed calls per candidate per round


@dataclass
class ValidateConfig:
    """What ``validate`` measures and which gates it applies; validated on construction.

    ``min_speedup`` holds ``(seq_len, ratio)`` pairs; ``seq_len`` None applies the ratio to every
    measured fixed sequence length.
    """

    bundle: str
    data: str | None = None
    split: str = "test"
    text_columns: tuple[str, ...] = ()
    label_column: str | None = None
    header: bool | None = None  # CSV/TSV --data: the first row names the columns
    source: str | None = None
    pytorch: bool = True
    variants: tuple[str, ...] = ()
    seq_lengths: tuple[int, ...] = (16, 32, 128)
    data_lengths: bool = True
    batch_size: int = 32
    threads: int = 0  # 0: all cores
    rounds: int = 20
    warmup: int = 3
    pause_s: float = 0.05
    max_samples: int | None = None
    memory: bool = True
    max_accuracy_drop: float | None = None
    min_agreement: float | None = None
    min_speedup: tuple[tuple[int | None, float], ...] = ()
    max_batch_diff: float | None = 1e-5
    report_dir: str | None = None

    def __post_init__(self) -> None:
        self.text_columns = tuple(self.text_columns)
        self.variants = tuple(self.variants)
        self.seq_lengths = tuple(sorted({int(s) for s in self.seq_lengths}))
        self.min_speedup = tuple(
            (None if s is None else int(s), float(r)) for s, r in self.min_speedup
        )
        if not self.threads:
            self.threads = os.cpu_count() or 1
        checks = [
            (
                self.split in ("train", "validation", "test"),
                "--split must be train, validation or test",
            ),
            (all(s >= 2 for s in self.seq_lengths), "--seq-lengths must be at least 2 tokens each"),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.threads >= 1, "--threads must be at least 1"),
            (self.rounds >= 3, "--rounds must be at least 3"),
            (self.warmup >= 0, "--warmup must be 0 or more"),
            (self.pause_s >= 0, "--pause must be 0 or more seconds"),
            (self.max_samples is None or self.max_samples >= 1, "--max-samples must be at least 1"),
            (
                self.max_accuracy_drop is None or self.max_accuracy_drop >= 0,
                "--max-accuracy-drop is in points and must be 0 or more",
            ),
            (
                self.min_agreement is None or 0 <= self.min_agreement <= 1,
                "--min-agreement is a fraction between 0 and 1, e.g. 0.99",
            ),
            (
                all(r > 0 for _, r in self.min_speedup),
                "--min-speedup must be positive, e.g. 3 or 128:3",
            ),
            (
                self.max_batch_diff is None or self.max_batch_diff >= 0,
                "--max-batch-diff is a probability difference, 0 or more (e.g. 1e-5)",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("text_columns", "variants", "seq_lengths"):
            d[k] = list(d[k])
        d["min_speedup"] = [list(p) for p in self.min_speedup]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ValidateConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def parse_speedup(spec: str) -> tuple[int | None, float]:
    """``"3"`` (every sequence length) or ``"128:3"`` (one length) → ``(seq_len, ratio)``."""
    try:
        if ":" in spec:
            s, r = spec.split(":", 1)
            return int(s), float(r.rstrip("x"))
        return None, float(spec.rstrip("x"))
    except ValueError:
        raise ConfigError(
            f"--min-speedup {spec!r} is not a ratio; write 3 (every length) or 128:3"
        ) from None


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
    _check_report_dir(out)
    with locked(root, "bundle"), locked(out, "report folder"):
        # Leftovers of killed writers (report staging, manifest temporaries); ours to remove now.
        clean_stale(out.parent, out.name)
        clean_stale(root, bundlefmt.MANIFEST)
        result = _validate(config, root, out, progress)
    if result.failures and raise_on_failure:
        raise GateFailed("\n".join(result.failures))
    return result


def _validate(config: ValidateConfig, root: Path, out: Path, progress: bool) -> ValidationResult:
    from .console import sayer
    from .runtime import Classifier

    say = sayer(progress)
    t0 = time.perf_counter()
    manifest = bundlefmt.verify(root)  # never run a model whose files do not match
    variants = _pick_variants(manifest, config)
    source = _pytorch_source(manifest, config.source) if config.pytorch else None
    max_len = int(manifest["max_length"])
    too_long = [s for s, _ in config.min_speedup if s is not None and s > max_len]
    if too_long:
        raise ConfigError(
            f"--min-speedup {too_long[0]}:… asks for sequence length {too_long[0]}, beyond the "
            f"model's max length {max_len}; gate a length up to {max_len}"
        )
    # Checked after the model's limit, so following one message never leads into the other.
    for s, _ in config.min_speedup:
        if s is not None and s not in config.seq_lengths:
            raise ConfigError(
                f"--min-speedup {s}:… names sequence length {s}, which is not measured; "
                f"add it to --seq-lengths (now {','.join(map(str, config.seq_lengths))})"
            )
    split, data_info = _load_split(manifest, config)
    if not split.texts:
        raise DataError(f"the {config.split} split of {data_info['source']} is empty")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(root)
    golden = bundlefmt.read_golden(root)
    runners: dict[str, Any] = {}
    if source is not None:
        runners[PYTORCH] = _TorchRunner(source, config.threads, max_len)
    for name in variants:
        # ONNX variants run exactly as devices run them: the runtime's tokenizer and batching.
        clf = Classifier(root, manifest, name, config.threads, golden)
        runners[name] = RuntimeRunner(clf)
    baseline = PYTORCH if source is not None else ("fp32" if "fp32" in variants else None)

    b = config.batch_size
    say(f"predicting {len(split.texts)} {config.split} rows with {', '.join(runners)} (batch {b})")
    logits = {name: r.logits(split.texts, split.pairs, b) for name, r in runners.items()}
    rows = _accuracy(logits, split, data_info["label_names"], baseline)
    flipped = _flipped(logits, split, data_info["label_names"], baseline)
    say("checking batch invariance: every row again at batch 1")
    for name, r in runners.items():
        if r.kind == "onnx":
            rows[name]["batch_invariance"] = _invariance(r, split, logits[name], b)

    say(f"timing {', '.join(runners)} interleaved on {config.threads} thread(s)")
    latency = _latency(runners, tok, split, config, max_len)
    for name, lat in latency.items():
        rows[name]["latency"] = lat
    for name in variants:
        rows[name]["file"] = manifest["variants"][name]["file"]
        rows[name]["size_bytes"] = (root / manifest["variants"][name]["file"]).stat().st_size
    if source is not None:
        rows[PYTORCH]["file"] = str(source)
        rows[PYTORCH]["size_bytes"] = sum(p.stat().st_size for p in source.glob("*.safetensors"))
    if config.memory:
        say("measuring peak memory, one process per variant")
        for name in runners:
            rows[name]["peak_rss_mb"] = _peak_memory(runners[name], max_len)

    default = manifest.get("default_variant")
    gates, failures = _gates(rows, config, default, baseline)
    report = {
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
        "flipped_examples": flipped,
        "gates": gates,
        "passed": not failures,
        "environment": environment("onnxruntime", "torch"),
        "config": config.to_dict(),
        "time_s": round(time.perf_counter() - t0, 1),
    }
    _write_report(report, out)
    note = None
    if (root / bundlefmt.SIGNATURE).exists():
        # Re-hashing would break the owner's signature; the report is written all the same.
        note = (
            f"the bundle is signed, so its manifest keeps the signed figures (report in {out}); "
            "re-sign it (`edgetune sign`) to record these"
        )
    else:
        manifest = bundlefmt.update_manifest(root, metrics=_manifest_metrics(report))
    return ValidationResult(report, str(out), failures, manifest, note)


def _check_report_dir(out: Path) -> None:
    """Refuse, before any work, to replace a folder that is not one of our reports."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"--report-dir {out} is a file; choose a folder path")
    names = {p.name for p in out.iterdir()}
    ours = False
    if names and names <= set(REPORT_FILES) and "report.json" in names:
        try:
            ours = json.loads((out / "report.json").read_text()).get("schema") == SCHEMA
        except (OSError, ValueError, AttributeError):
            ours = False
    if names and not ours:
        raise ConfigError(
            f"--report-dir {out} holds files that are not an edgetune validation report; "
            "choose an empty or new folder"
        )


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


def _pytorch_source(manifest: dict[str, Any], source: str | None) -> Path:
    """The PyTorch original: ``source`` if given, else the run or model the bundle came from."""
    given = source or (manifest.get("source") or {}).get("path")
    path = Path(given).expanduser() if given else None
    if path is not None and rundir.is_run(path):
        path = path / rundir.BEST
    if path is None or not (path / "config.json").is_file():
        raise ConfigError(
            f"the PyTorch original ({given or 'unknown'}) is not available here; pass "
            "--source RUN_OR_MODEL_DIR, or --no-pytorch to compare the ONNX variants only"
        )
    return path


def _run_config(manifest: dict[str, Any]) -> dict[str, Any] | None:
    run = (manifest.get("source") or {}).get("run")
    if run and rundir.is_run(Path(run)):
        return rundir.read_json(Path(run) / rundir.CONFIG)
    return None


def _load_split(manifest: dict[str, Any], config: ValidateConfig):
    """The labelled split, with labels mapped onto the bundle's label ids."""
    return labelled_split(list(manifest.get("labels") or []), _run_config(manifest), config)


def labelled_split(labels: list[str], rc: dict[str, Any] | None, config: ValidateConfig):
    """The split ``config`` names, its labels mapped onto a model's ``labels``.

    Args:
        labels: the model's label names, in id order.
        rc: the config.json of the run the model came from (its data and split settings).
    """
    from .data import load_data

    kwargs: dict[str, Any] = {
        "text_columns": config.text_columns,
        "label_column": config.label_column,
        "header": config.header,
    }
    spec = config.data
    if spec is None:
        if rc is None:
            raise ConfigError(
                "no labelled data to validate on: pass --data FILE_OR_FOLDER "
                "(the bundle's source is not an edgetune run with training data)"
            )
        # The run's own settings reproduce its held-out split exactly.
        spec, kwargs = rundir.data_spec(rc)
    data = load_data(spec, **kwargs)
    split = getattr(data, config.split)
    mapping = _label_mapping(data.label_names, labels, spec)
    split = type(split)(split.texts, [mapping[i] for i in split.labels], split.pairs)
    if config.max_samples and len(split.texts) > config.max_samples:
        idx = np.random.default_rng(0).choice(len(split.texts), config.max_samples, replace=False)
        split = split.subset(np.sort(idx))
    return split, {"source": str(spec), "split": config.split, "label_names": labels}


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


# -- runners: texts in, logits out ---------------------------------------------------------------


class _TorchRunner:
    """The PyTorch original with its transformers tokenizer (length-sorted padded batches)."""

    kind = "pytorch"

    def __init__(self, path: Path, threads: int, max_length: int = 512) -> None:
        import torch
        from transformers import AutoTokenizer

        from .modeling import load_saved

        torch.set_num_threads(threads)
        self.path, self.threads, self.max_length = path, threads, max_length
        self.model = load_saved(path).eval()
        self.names = set(_forward_args(self.model))
        self.tokenizer = AutoTokenizer.from_pretrained(path)

    def prepare(self, feed: dict[str, np.ndarray]) -> Any:
        import torch

        return {k: torch.from_numpy(v) for k, v in feed.items() if k in self.names}

    def run(self, prepared: Any) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model(**prepared).logits.float().numpy()

    def logits(self, texts: list[str], pairs: list[str] | None, batch_size: int) -> np.ndarray:
        enc = self.tokenizer(texts, pairs, truncation=True, max_length=self.max_length)
        lengths = [len(x) for x in enc["input_ids"]]
        order = np.argsort(lengths, kind="stable")
        out = np.zeros((len(texts), self.model.config.num_labels), dtype=np.float32)
        for i in range(0, len(order), batch_size):
            rows = order[i : i + batch_size]
            out[rows] = self.run(self.prepare(_feed(enc, rows)))
        return out


def _forward_args(model: Any) -> list[str]:
    import inspect

    return list(inspect.signature(model.forward).parameters)


class RuntimeRunner:
    """A bundle variant served by ``edgetune.runtime.Classifier``, the code devices run."""

    kind = "onnx"

    def __init__(self, clf: Any) -> None:
        self.clf = clf
        self.path = clf.root / clf.manifest["variants"][clf.variant]["file"]
        self.threads = clf.threads

    def prepare(self, feed: dict[str, np.ndarray]) -> Any:
        return feed

    def run(self, prepared: Any) -> np.ndarray:
        return self.clf.run_feed(prepared)

    def logits(self, texts: list[str], pairs: list[str] | None, batch_size: int) -> np.ndarray:
        return self.clf.logits(texts, pairs=pairs, batch_size=batch_size)


def _feed(enc: Any, rows: np.ndarray | list[int]) -> dict[str, np.ndarray]:
    ids = enc["input_ids"]
    width = max(len(ids[r]) for r in rows)
    out = {}
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        if key not in enc:
            continue
        arr = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            seq = enc[key][r]
            arr[i, : len(seq)] = seq
        out[key] = arr
    return out


def _invariance(
    runner: RuntimeRunner, split: Any, batched: np.ndarray, batch_size: int
) -> dict[str, Any]:
    """Every row again, one per call: label flips and score differences against the batch."""
    from .runtime import softmax

    single = runner.logits(split.texts, split.pairs, 1)
    return {
        "batch_size": batch_size,
        "batching": runner.clf.batching,
        "flips": int(np.sum(single.argmax(-1) != batched.argmax(-1))),
        "max_score_diff": float(np.max(np.abs(softmax(single) - softmax(batched)))),
        "max_logit_diff": float(np.max(np.abs(single - batched))),
    }


# -- accuracy -----------------------------------------------------------------------------------


def _accuracy(
    logits: dict[str, np.ndarray], split: Any, label_names: list[str], baseline: str | None
) -> dict[str, dict[str, Any]]:
    from .metrics import classification_metrics

    y = np.asarray(split.labels)
    rows: dict[str, dict[str, Any]] = {}
    base = logits.get(baseline) if baseline else None
    for name, lg in logits.items():
        pred = lg.argmax(-1)
        m = classification_metrics(y, pred, label_names)
        row: dict[str, Any] = {"kind": "pytorch" if name == PYTORCH else "onnx", **m}
        if base is not None:
            diff = np.abs(lg - base)
            row["agreement"] = float(np.mean(pred == base.argmax(-1)))
            row["flipped"] = int(np.sum(pred != base.argmax(-1)))
            row["logit_max_abs_diff"] = float(diff.max())
            row["logit_mean_abs_diff"] = float(diff.mean())
            row["accuracy_delta_points"] = (
                m["accuracy"] - float(np.mean(base.argmax(-1) == y))
            ) * 100
        rows[name] = row
    return rows


def _flipped(
    logits: dict[str, np.ndarray], split: Any, label_names: list[str], baseline: str | None
) -> dict[str, list[dict[str, Any]]]:
    if baseline is None:
        return {}
    base = logits[baseline].argmax(-1)
    out = {}
    for name, lg in logits.items():
        if name == baseline:
            continue
        pred = lg.argmax(-1)
        idx = np.flatnonzero(pred != base)[:FLIPPED_SHOWN]
        out[name] = [
            {
                "index": int(i),
                "text": split.texts[i] + (f" || {split.pairs[i]}" if split.pairs else ""),
                "label": label_names[split.labels[i]],
                baseline: label_names[int(base[i])],
                name: label_names[int(pred[i])],
            }
            for i in idx
        ]
    return out


# -- latency ------------------------------------------------------------------------------------


def fixed_length_text(tok: Any, texts: list[str], length: int) -> str:
    """A text of real words that tokenizes to exactly ``length`` tokens (specials included)."""
    joined, i = "", 0
    while i < len(texts) and len(tok(joined, verbose=False)["input_ids"]) <= length:
        joined += " " + texts[i]
        i += 1
    while len(tok(joined, verbose=False)["input_ids"]) <= length:
        joined += " " + (joined or "word")  # very short data: repeat what there is
    joined = joined.strip()
    enc = tok(joined, return_offsets_mapping=True, add_special_tokens=False)
    specials = len(tok("")["input_ids"])
    offsets = enc["offset_mapping"]
    # Cut after a token, then step back until the count fits (word pieces can merge).
    for n in range(length - specials, 0, -1):
        text = joined[: offsets[n - 1][1]]
        if len(tok(text)["input_ids"]) == length:
            return text
    return joined


def _latency(
    runners: dict[str, Any],
    tok: Any,
    split: Any,
    config: ValidateConfig,
    max_len: int,
) -> dict[str, dict[str, Any]]:
    from .latency import measure, speedup

    rng = np.random.default_rng(0)
    Case = tuple[list[str], list[str] | None]
    cases: dict[str, tuple[int, list[Case]]] = {}
    for s in config.seq_lengths:
        if s <= max_len:
            cases[f"seq{s}"] = (1, [([fixed_length_text(tok, split.texts, s)], None)])
    n = len(split.texts)

    def rows_of(idx: Any) -> Case:
        texts = [split.texts[r] for r in idx]
        return texts, ([split.pairs[r] for r in idx] if split.pairs else None)

    if config.data_lengths:
        cases["data"] = (1, [rows_of([r]) for r in rng.choice(n, size=min(n, 64), replace=False)])
    perm = rng.permutation(n)
    b = config.batch_size
    batches = [perm[i : i + b] for i in range(0, max(len(perm) - b + 1, 1), b)][:8]
    cases[f"batch{b}"] = (b, [rows_of(r) for r in batches])

    out: dict[str, dict[str, Any]] = {name: {} for name in runners}
    base = PYTORCH if PYTORCH in runners else None
    for case, (bsz, inputs) in cases.items():
        candidates = {name: _cycler(r, inputs, bsz) for name, r in runners.items()}
        rounds = max(config.rounds, -(-len(inputs) // BLOCK))
        timings = measure(
            candidates, rounds=rounds, warmup=config.warmup, block=BLOCK, pause_s=config.pause_s
        )
        for name, t in timings.items():
            entry: dict[str, Any] = {**t.summary(bsz), "batch_size": bsz}
            if case.startswith("seq"):
                entry["seq_len"] = int(case[3:])
            if base is not None and name != base:
                entry["speedup"] = speedup(timings[base], t)
            out[name][case] = entry
    return out


def _cycler(runner: Any, inputs: list[tuple[list[str], list[str] | None]], batch_size: int):
    """A callable classifying the next input each call (same order for every candidate)."""
    state = {"i": 0}

    def call() -> None:
        texts, pairs = inputs[state["i"] % len(inputs)]
        runner.logits(texts, pairs, batch_size)
        state["i"] += 1

    return call


# -- memory -------------------------------------------------------------------------------------

_PROBE = r"""
import resource, sys, numpy as np
kind, path, threads, length = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
feed = {"input_ids": np.ones((1, length), np.int64), "attention_mask": np.ones((1, length), np.int64)}
if kind == "pytorch":
    import torch
    from transformers import AutoModelForSequenceClassification
    torch.set_num_threads(threads)
    m = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True).eval()
    with torch.inference_mode():
        m(**{k: torch.from_numpy(v) for k, v in feed.items()})
else:
    import onnxruntime as ort
    so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.log_severity_level = 3
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    names = {i.name for i in s.get_inputs()}
    feed["token_type_ids"] = np.zeros((1, length), np.int64)
    s.run(None, {k: v for k, v in feed.items() if k in names})
try:  # VmHWM belongs to this image; ru_maxrss can carry the forking parent's peak
    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
    print(int(hwm.split()[1]) / 1024)
except (OSError, IndexError):
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20 if sys.platform == "darwin" else 1024))
"""


def _peak_memory(runner: Any, length: int) -> float | None:
    """Peak RSS (MB) of a fresh process that loads the variant and runs one max-length row."""
    try:
        r = subprocess.run(
            [
                sys.executable,
                "-c",
                _PROBE,
                runner.kind,
                str(runner.path),
                str(runner.threads),
                str(length),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"},
        )
        return round(float(r.stdout.strip().splitlines()[-1]), 1)
    except (subprocess.SubprocessError, ValueError, IndexError):
        return None


# -- gates --------------------------------------------------------------------------------------


def _gates(
    rows: dict[str, dict[str, Any]],
    config: ValidateConfig,
    default: str | None,
    baseline: str | None,
) -> tuple[list[dict[str, Any]], list[str]]:
    gates: list[dict[str, Any]] = []

    def gate(name: str, value: float, threshold: float, ok: bool, text: str, variant: str) -> None:
        gates.append(
            {
                "gate": name,
                "variant": variant,
                "value": value,
                "threshold": threshold,
                "passed": ok,
                "message": text,
            }
        )

    if config.max_batch_diff is not None:
        # Every variant, not only the default: a device may be served any of them.
        for name, r in rows.items():
            inv = r.get("batch_invariance")
            if inv is None:
                continue
            gate(
                "max_batch_diff",
                inv["max_score_diff"],
                config.max_batch_diff,
                inv["flips"] == 0 and inv["max_score_diff"] <= config.max_batch_diff,
                f"batch invariance of {name} (batch {inv['batch_size']} vs 1): {inv['flips']} "
                f"label(s) flipped, max score difference {inv['max_score_diff']:.2g} "
                f"(limit 0 flips, {config.max_batch_diff:g})",
                name,
            )
    wanted = (
        config.max_accuracy_drop is not None
        or config.min_agreement is not None
        or config.min_speedup
    )
    if not wanted:
        return gates, [f"gate failed: {g['message']}" for g in gates if not g["passed"]]
    if default not in rows:
        raise ConfigError(
            f"the gates judge the default variant {default}, which was not measured; "
            "drop --variants or include it"
        )
    row = rows[default]

    if config.max_accuracy_drop is not None or config.min_agreement is not None:
        if baseline is None:
            raise ConfigError(
                "accuracy gates need a baseline: keep the PyTorch original (--source) "
                "or build the fp32 variant (`edgetune export --variants fp32`)"
            )
    if config.max_accuracy_drop is not None:
        drop = -row["accuracy_delta_points"]
        gate(
            "max_accuracy_drop",
            drop,
            config.max_accuracy_drop,
            drop <= config.max_accuracy_drop + 1e-9,
            f"accuracy drop of {default} vs {baseline}: {drop:.2f} points "
            f"(limit {config.max_accuracy_drop:g})",
            default,
        )
    if config.min_agreement is not None:
        agree = row["agreement"]
        gate(
            "min_agreement",
            agree,
            config.min_agreement,
            agree >= config.min_agreement - 1e-12,
            f"agreement of {default} with {baseline}: {agree:.4f} (minimum {config.min_agreement:g})",
            default,
        )
    for seq, ratio in config.min_speedup:
        if PYTORCH not in rows:
            raise ConfigError("--min-speedup compares with PyTorch fp32; drop --no-pytorch")
        lengths = [seq] if seq is not None else list(config.seq_lengths)
        lengths = [s for s in lengths if f"seq{s}" in row["latency"]]  # within max length
        if not lengths:
            raise ConfigError("--min-speedup has no measured sequence length to judge")
        for s in lengths:
            sp = row["latency"][f"seq{s}"]["speedup"]
            gate(
                f"min_speedup@{s}",
                sp["ratio"],
                ratio,
                sp["ratio"] >= ratio,
                f"speed-up of {default} vs {PYTORCH} at sequence length {s}: {sp['ratio']:.2f}x "
                f"(95% CI {sp['ci_low']:.2f}-{sp['ci_high']:.2f}; minimum {ratio:g}x)",
                default,
            )
    failures = [f"gate failed: {g['message']}" for g in gates if not g["passed"]]
    return gates, failures


# -- report -------------------------------------------------------------------------------------


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _table_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    seqs = [f"seq{s}" for s in report["settings"]["seq_lengths"]]
    any_row = next(iter(report["variants"].values()))
    seqs = [s for s in seqs if s in any_row.get("latency", {})]
    head = ["variant", "accuracy", "Δ points", "agreement", "macro F1"]
    head += [f"p50 ms @{s[3:]}" for s in seqs] + [f"speed-up @{s[3:]}" for s in seqs]
    bcase = f"batch{report['settings']['batch_size']}"
    head += ["p50 ms data", f"rows/s b{report['settings']['batch_size']}", "size MB", "peak MB"]
    head += [f"flips b1/b{report['settings']['batch_size']}", "max Δscore"]
    lines = []
    for name, r in report["variants"].items():
        lat = r.get("latency", {})
        mark = "*" if name == report["default_variant"] else ""
        cells = [
            name + mark,
            f"{r['accuracy'] * 100:.2f}",
            _fmt(r.get("accuracy_delta_points"), "+.2f"),
            _fmt(r["agreement"] * 100 if "agreement" in r else None, ".2f"),
            f"{r['macro_f1'] * 100:.2f}",
        ]
        cells += [_fmt(lat.get(s, {}).get("p50_ms"), ".2f") for s in seqs]
        cells += [
            _fmt(lat.get(s, {}).get("speedup", {}).get("ratio"), ".2f")
            + ("x" if "speedup" in lat.get(s, {}) else "")
            for s in seqs
        ]
        cells += [
            _fmt(lat.get("data", {}).get("p50_ms"), ".2f"),
            _fmt(lat.get(bcase, {}).get("throughput_per_s"), ".0f"),
            _fmt(r.get("size_bytes", 0) / 1e6 if r.get("size_bytes") else None, ".1f"),
            _fmt(r.get("peak_rss_mb"), ".0f"),
        ]
        inv = r.get("batch_invariance") or {}
        cells += [str(inv.get("flips", "-")), _fmt(inv.get("max_score_diff"), ".1e")]
        lines.append(cells)
    return head, lines


def summary_table(report: dict[str, Any]) -> str:
    """The one-screen table printed at the end of ``validate``."""
    head, rows = _table_rows(report)
    widths = [max(len(head[i]), *(len(r[i]) for r in rows)) for i in range(len(head))]

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        )

    s = report["settings"]
    out = [
        f"validated  {report['bundle']} on {report['data']['rows']} {report['data']['split']} rows "
        f"of {report['data']['source']}; {s['threads']} thread(s); * = default variant",
        fmt(head),
        *(fmt(r) for r in rows),
    ]
    for g in report["gates"]:
        out.append(f"{'PASS' if g['passed'] else 'FAIL'}  {g['message']}")
    return "\n".join(out)


def _markdown(report: dict[str, Any]) -> str:
    head, rows = _table_rows(report)
    s = report["settings"]
    env = report["environment"]
    md = [
        f"# Validation of {Path(report['bundle']).name}",
        "",
        f"Data: {report['data']['rows']} rows of the {report['data']['split']} split of "
        f"`{report['data']['source']}`. Baseline: {report['baseline'] or 'none'}. "
        f"Default variant (gated): **{report['default_variant']}** (marked *).",
        f"Latency: batch 1, {s['threads']} thread(s), {s['warmup']} warm-up + at least {s['rounds']} "
        "interleaved rounds per case; speed-ups are medians of per-call ratios paired within a round vs "
        "PyTorch fp32 (95% bootstrap intervals in report.json).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
    ]
    if report["gates"]:
        md += ["## Gates", ""]
        md += [
            f"- {'PASS' if g['passed'] else '**FAIL**'}: {g['message']}" for g in report["gates"]
        ]
        md.append("")
    labels = report["data"]["label_names"]
    md += ["## Per class (F1)", "", "| variant | " + " | ".join(labels) + " |"]
    md.append("|---|" + "---:|" * len(labels))
    for name, r in report["variants"].items():
        md.append(
            f"| {name} | "
            + " | ".join(f"{r['per_class'][c]['f1'] * 100:.2f}" for c in labels)
            + " |"
        )
    md.append("")
    for name, ex in report["flipped_examples"].items():
        n = report["variants"][name].get("flipped", 0)
        md += [f"## Flipped vs {report['baseline']}: {name} ({n} rows, first {len(ex)} shown)", ""]
        if ex:
            md += [
                "| # | text | label | " + f"{report['baseline']} | {name} |",
                "|---:|---|---|---|---|",
            ]
            for e in ex:
                text = e["text"].replace("|", "\\|")
                text = text if len(text) <= 120 else text[:117] + "..."
                md.append(
                    f"| {e['index']} | {text} | {e['label']} | {e[report['baseline']]} | {e[name]} |"
                )
        md.append("")
    cpu = env["cpu"]
    md += [
        "## Environment",
        "",
        f"{cpu['name']} ({cpu['machine']}, {cpu['cores']} cores; {', '.join(cpu['features']) or 'no extra features'}); "
        f"Python {env['python']}, edgetune {env['edgetune']}, onnxruntime {env['onnxruntime']}"
        + (f", torch {env['torch']}" if "torch" in env else "")
        + f". Took {report['time_s']:.0f} s.",
        "",
    ]
    return "\n".join(md)


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seqs = [f"seq{s}" for s in report["settings"]["seq_lengths"]]
    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=110)
    for name, r in report["variants"].items():
        lat = r.get("latency", {})
        case = next((c for c in reversed(seqs) if c in lat), None) or "data"
        x = lat.get(case, {}).get("p50_ms")
        if x is None:
            continue
        size = (r.get("size_bytes") or 0) / 1e6
        ax.scatter([x], [r["accuracy"] * 100], s=max(size, 1) * 6, alpha=0.6)
        ax.annotate(
            f"{name}\n{size:.1f} MB",
            (x, r["accuracy"] * 100),
            fontsize=8,
            xytext=(6, 4),
            textcoords="offset points",
        )
    ax.set_xlabel(
        f"batch-1 p50 latency at the longest measured length (ms), {report['settings']['threads']} threads"
    )
    ax.set_ylabel(f"{report['data']['split']} accuracy (%)")
    ax.set_title("Accuracy vs latency (marker area ∝ file size)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _write_report(report: dict[str, Any], out: Path) -> None:
    """report.json, report.md and report.png, written together (temporary folder, then moved)."""
    tmp = temp_dir(out.parent, f".{out.name}.tmp-")
    try:
        (tmp / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
        (tmp / "report.md").write_text(_markdown(report))
        _plot(report, tmp / "report.png")
        bundlefmt.install(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _manifest_metrics(report: dict[str, Any]) -> dict[str, Any]:
    """The headline figures that travel with the bundle."""
    per = {}
    for name, r in report["variants"].items():
        entry = {
            k: r[k]
            for k in ("accuracy", "macro_f1", "agreement", "accuracy_delta_points")
            if k in r
        }
        entry["p50_ms"] = {c: v["p50_ms"] for c, v in r.get("latency", {}).items()}
        entry["speedup"] = {
            c: v["speedup"]["ratio"] for c, v in r.get("latency", {}).items() if "speedup" in v
        }
        if "batch_invariance" in r:
            entry["batch_invariance"] = r["batch_invariance"]
        per[name] = entry
    return {
        "validation": {
            "data": report["data"],
            "baseline": report["baseline"],
            "threads": report["settings"]["threads"],
            "cpu": report["environment"]["cpu"]["name"],
            "variants": per,
            "gates": [
                {k: g[k] for k in ("gate", "value", "threshold", "passed")} for g in report["gates"]
            ],
            "passed": report["passed"],
        }
    }
