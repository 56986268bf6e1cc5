"""What defines a training run (``TrainConfig``) and what it returns (``TrainResult``)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..formats import rundir

STRATEGIES = ("full", "head", "lora", "fewshot")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda", "mps")
METRICS = ("auto", "accuracy", "macro_f1", "f1", "micro_f1", "loss")  # f1: entity F1 (tokens)
TASKS = ("auto", "text-classification", "token-classification", "multi-label")
CLASS_WEIGHTS = ("none", "balanced")


@dataclass
class TrainConfig:
    """Everything that defines a training run; validated on construction.

    ``None`` means "from the model preset, else a sensible default" and is resolved when
    training starts; the resolved values are written to the run's ``config.json``.
    """

    model: str
    data: str
    output: str
    task: str = "auto"  # text-classification or token-classification; auto: from the data
    text_columns: tuple[str, ...] = ()
    label_column: str | None = None
    label_columns: tuple[str, ...] = ()  # multi-label: several 0/1 columns, one per label
    label_sep: str = ","  # multi-label: the separator of labels in one string ("sports,politics")
    threshold: str = "0.5"  # multi-label decision rule: a probability, or "tuned" (per label)
    header: bool | None = None  # CSV/TSV: the first row names the columns (None: detect data)
    label_names: tuple[str, ...] = ()
    val_size: float = 0.1
    test_size: float = 0.1
    max_length: int | None = None
    strategy: str = "full"
    epochs: int | None = None
    learning_rate: float | None = None
    batch_size: int = 32
    grad_accum: int = 1
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    dropout: float | None = None
    seed: int = 42
    class_weights: str = "none"
    eval_steps: int | None = None
    metric: str = "auto"  # the task's own: accuracy (text), entity F1 (tokens)
    patience: int | None = None
    augment: float = 0.0
    ema: float | None = None
    device: str = "auto"
    precision: str = "auto"
    freeze_embeddings: bool | None = None
    group_by_length: bool = True
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    qat: str | None = None
    qat_start: str = "0"
    qat_per_channel: bool = True
    qat_target: str = "auto"
    qat_embeddings: str = "int4"
    qat_distill: float = 0.0
    teacher: str | None = None  # a run or model whose class probabilities the student learns
    layers: int | None = None  # a shallower student: keep this many of the model's layers
    latency_budget: str | None = None  # "3ms@128": the deepest student whose int8 export fits
    distill_alpha: float = 0.5
    distill_temperature: float = 2.0
    unlabeled: str | None = None  # texts without labels that the student learns from the teacher
    distill_augment: int = 0  # teacher-labelled augmented copies of each training text
    shots: int | None = None  # sample this many training rows per class (stratified, seeded)
    label_prompts: str | None = None  # "label=description,..." or a file: zero-shot / head prior
    pairs: int | None = None  # fewshot: contrastive pairs per epoch (default 40 per row)
    head_l2: float = 1.0  # fewshot: L2 weight of the logistic-regression head (sklearn's 1/C)
    template: str | None = None  # cloze (PET): "{text} It was [MASK]." around each text
    verbalizer: str | None = None  # cloze: "label=word,..." read at the mask
    label_all_subwords: bool = False  # token task: every sub-word learns its word's tag
    gradient_checkpointing: bool = False
    fsdp: bool = False
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        self.text_columns = tuple(self.text_columns)
        self.label_columns = tuple(self.label_columns)
        self.threshold = str(self.threshold)
        self.label_names = tuple(self.label_names)
        for f in fields(self):
            value = getattr(self, f.name)
            # inf and nan pass every range check written as a comparison with the wrong sign
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"--{f.name.replace('_', '-')} {value} is not a finite number")
        for ok, msg in self._range_checks() + self._combination_checks():
            if not ok:
                raise ConfigError(msg)
        self._check_specs_and_paths()

    def _range_checks(self) -> list[tuple[Any, str]]:
        """Each option's own values, and the QAT and distillation options' pairings."""
        return [
            (self.strategy in STRATEGIES, f"--strategy must be one of {', '.join(STRATEGIES)}"),
            (self.precision in PRECISIONS, f"--precision must be one of {', '.join(PRECISIONS)}"),
            (self.device in DEVICES, f"--device must be one of {', '.join(DEVICES)}"),
            (self.metric in METRICS, f"--metric must be one of {', '.join(METRICS)}"),
            (self.task in TASKS, f"--task must be one of {', '.join(TASKS)}"),
            (_threshold_ok(self.threshold), "--threshold is a probability in (0, 1) or tuned"),
            (bool(self.label_sep), "--label-sep must not be empty"),
            (self.class_weights in CLASS_WEIGHTS, "--class-weights must be none or balanced"),
            (self.epochs is None or self.epochs >= 1, "--epochs must be at least 1"),
            (
                self.learning_rate is None or 0 < self.learning_rate < 1,
                "--learning-rate must be in (0, 1)",
            ),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.grad_accum >= 1, "--grad-accum must be at least 1"),
            (0 <= self.warmup_ratio < 1, "--warmup-ratio must be in [0, 1)"),
            (self.weight_decay >= 0, "--weight-decay must be >= 0"),
            (self.dropout is None or 0 <= self.dropout < 1, "--dropout must be in [0, 1)"),
            (self.max_length is None or self.max_length >= 8, "--max-length must be at least 8"),
            (self.eval_steps is None or self.eval_steps >= 1, "--eval-steps must be at least 1"),
            (self.patience is None or self.patience >= 1, "--patience must be at least 1"),
            (0 <= self.augment < 1, "--augment is a probability in [0, 1)"),
            (
                self.ema is None or 0 <= self.ema < 1,
                "--ema is a decay in [0, 1) (0 = off), e.g. 0.999",
            ),
            (self.val_size > 0 and self.test_size > 0, "--val-size and --test-size must be > 0"),
            (len(self.text_columns) <= 2, "pass --text-column once, or twice for sentence pairs"),
            (self.lora_r >= 1 and self.lora_alpha >= 1, "--lora-r and --lora-alpha must be >= 1"),
            (self.qat in (None, "dynamic", "static"), "--qat must be dynamic or static"),
            (
                self.qat_target in ("auto", "avx2", "avx512", "avx512_vnni", "arm64"),
                "--qat-target must be auto, avx2, avx512, avx512_vnni or arm64",
            ),
            (
                self.qat_embeddings in ("int4", "int8", "fp32"),
                "--qat-embeddings must be int4, int8 or fp32",
            ),
            (self.qat is None or self.strategy != "head", "--qat needs --strategy full or lora"),
            (0 <= self.qat_distill < 1, "--qat-distill is a weight in [0, 1), e.g. 0.5"),
            (not self.qat_distill or self.qat, "--qat-distill needs --qat"),
            (self.layers is None or self.layers >= 1, "--layers must be at least 1"),
            (0 <= self.distill_alpha <= 1, "--distill-alpha is a weight in [0, 1], e.g. 0.5"),
            (self.distill_temperature > 0, "--distill-temperature must be > 0, e.g. 2"),
            (self.distill_augment >= 0, "--distill-augment is a count of copies, e.g. 2"),
            (
                self.teacher or not (self.unlabeled or self.distill_augment),
                "--unlabeled and --distill-augment give texts for a teacher to label; "
                "add --teacher RUN",
            ),
            (
                not (self.teacher and self.qat_distill),
                "choose one teacher: --teacher, or --qat-distill (the model itself as QAT starts)",
            ),
        ]

    def _combination_checks(self) -> list[tuple[Any, str]]:
        """Options that need, or exclude, one another (few-shot and cloze ones mostly)."""
        fewshot = self.strategy == "fewshot"
        return [
            (
                self.shots is None or self.shots >= 0,
                "--shots is a count of rows per class, e.g. 16",
            ),
            (
                self.shots != 0 or (fewshot and self.label_prompts),
                "--shots 0 leaves no training rows: add --strategy fewshot --label-prompts "
                "for a zero-shot classifier, or pass --shots 8 or more",
            ),
            (
                not self.label_prompts or fewshot,
                "--label-prompts describes classes for --strategy fewshot; add it",
            ),
            (self.pairs is None or self.pairs >= 2, "--pairs must be at least 2"),
            (self.head_l2 >= 0, "--head-l2 must be >= 0"),
            (
                bool(self.template) == bool(self.verbalizer),
                "--template and --verbalizer go together: the template's [MASK] is read at the "
                "verbaliser's words",
            ),
            (
                not self.template or self.strategy == "full",
                "--template/--verbalizer fine-tune the masked-LM (PET); use --strategy full",
            ),
            (
                not fewshot or not (self.qat or self.teacher or self.augment or self.fsdp),
                "--strategy fewshot does not combine with --qat, --teacher, --augment or --fsdp; "
                "use --strategy full for those",
            ),
            (
                not self.template or not (self.qat or self.teacher or self.fsdp),
                "--template does not combine with --qat, --teacher or --fsdp; drop them",
            ),
        ]

    def _check_specs_and_paths(self) -> None:
        """Values with a syntax of their own, and an output that is an input."""
        parse_qat_start(self.qat_start)
        if self.latency_budget is not None:
            from .budget import parse_budget

            parse_budget(self.latency_budget)
        out, data = Path(self.output).expanduser(), Path(self.data).expanduser()
        if data.exists() and out.resolve() == data.resolve():
            raise ConfigError("--output is the data path; choose a new directory for the run")
        if Path(self.model).exists() and out.resolve() == Path(self.model).resolve():
            raise ConfigError("--output is the model directory; choose a new directory for the run")

    def input_paths(self) -> tuple[tuple[str, str], ...]:
        """Every option that names something the run reads, with its value (paths or not)."""
        named = {
            "--data": self.data,
            "--model": self.model,
            "--teacher": self.teacher,
            "--unlabeled": self.unlabeled,
            "--label-prompts": self.label_prompts,
            "--verbalizer": self.verbalizer,
        }
        return tuple((k, v) for k, v in named.items() if v)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["text_columns"] = list(self.text_columns)
        d["label_columns"] = list(self.label_columns)
        d["label_names"] = list(self.label_names)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown training option(s) {', '.join(sorted(unknown))} in config")
        return cls(**d)


@dataclass
class TrainResult:
    """What ``train`` returns (and what ``metrics.json`` holds)."""

    output: str
    config: dict[str, Any]
    label_names: list[str]
    best: dict[str, Any]
    validation: dict[str, Any]
    test: dict[str, Any]
    history: list[dict[str, Any]]
    timing: dict[str, Any]
    data: dict[str, Any]
    environment: dict[str, Any] = field(default_factory=dict)
    stopped_early: bool = False
    qat: dict[str, Any] | None = None  # scheme, and the float (not fake-quantized) test figures
    teacher: dict[str, Any] | None = None  # the teacher: where it is, its validation/test figures

    def to_dict(self) -> dict[str, Any]:
        return {"format": rundir.FORMAT, "version": rundir.FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainResult:
        d = {k: v for k, v in d.items() if k not in ("format", "version")}
        return cls(**d)

    def summary(self) -> str:
        """A one-screen, human-readable summary."""
        v, t, c = self.validation, self.test, self.config
        d = self.data
        lines = [
            f"run        {self.output}",
            f"model      {c['model']}  ({c['strategy']}, {self.environment.get('device')}, "
            f"{self.environment.get('precision')})",
            f"data       {d['train']['rows']} train / {d['validation']['rows']} validation / "
            f"{d['test']['rows']} test; labels: {', '.join(self.label_names)}",
            f"cleaning   dropped {dropped_summary(d)}",
            f"best       epoch {self.best['epoch']:.2f} (step {self.best['step']}), "
            f"validation {c['metric']} {self.best['value']:.4f}"
            + ("  [stopped early]" if self.stopped_early else ""),
            "",
            *_figures(v, t),
        ]
        if self.qat:
            sch = self.qat["scheme"]
            lines.append(
                f"qat        {sch['mode']} int8 (target {sch['target']}, "
                f"{'per-channel' if sch['per_channel'] else 'per-tensor'}, embeddings {sch['embeddings']}): "
                f"figures above are fake-quantized; float weights alone: test "
                f"{self.qat['test_float']['accuracy'] * 100:.2f}%"
            )
        per, what = ("per_type", "per type") if "per_type" in t else ("per_class", "per class")
        if "per_label" in t:
            per, what = "per_label", "per label"
            half = t["at_0.5"]
            lines.append(
                f"thresholds {c.get('threshold', '0.5')} (in best/thresholds.json); every label at "
                f"0.5: test micro F1 {half['micro_f1'] * 100:.2f}%, macro F1 {half['macro_f1'] * 100:.2f}%"
            )
        lines += [
            "",
            f"{what} (test)  "
            + "   ".join(
                f"{k}: F1 {p['f1'] * 100:.1f}% (n={p['support']})" for k, p in t[per].items()
            ),
            f"time       {self.timing['total_s']:.0f} s total, {self.timing['train_s']:.0f} s training, "
            f"{self.timing['samples_per_s']:.1f} samples/s",
        ]
        mem = self.timing.get("memory_per_rank") or []
        if mem:
            lines.append(
                f"memory     peak RSS {max(m['peak_rss_mb'] for m in mem):.0f} MB, weights + "
                f"optimizer state {max(m['model_state_mb'] for m in mem):.0f} MB"
                + (f" (largest of {len(mem)} ranks)" if len(mem) > 1 else "")
            )
        return "\n".join(lines)


def _threshold_ok(spec: str) -> bool:
    if spec == "tuned":
        return True
    try:
        return 0 < float(spec) < 1
    except ValueError:
        return False


def _figures(v: dict[str, Any], t: dict[str, Any]) -> list[str]:
    """Validation and test figures: accuracy and macro P/R/F1, or for token classification
    entity-level P/R/F1 (exact spans), token accuracy and macro F1 over entity types."""
    keys: tuple[str, ...]
    names: tuple[str, ...]
    if "per_type" in t:
        keys = ("precision", "recall", "f1", "accuracy", "macro_f1")
        names = ("entity P", "entity R", "entity F1", "token acc", "macro F1")
    elif "micro_f1" in t:
        keys = ("micro_precision", "micro_recall", "micro_f1", "macro_f1", "subset_accuracy")
        names = ("micro P", "micro R", "micro F1", "macro F1", "exact set")
    else:
        keys = ("accuracy", "macro_precision", "macro_recall", "macro_f1")
        names = ("accuracy", "macro P", "macro R", "macro F1")
    out = [f"{'':12}" + "".join(f"{n:>11}" for n in names)]
    for name, m in (("validation", v), ("test", t)):
        out.append(f"{name:12}" + "".join(f"{m[k] * 100:>10.2f}%" for k in keys))
    return out


def dropped_summary(d: dict[str, Any]) -> str:
    parts = []
    for split in ("train", "validation", "test"):
        r = d.get(split, {})
        n = [
            r.get("dropped_empty_text", 0),
            r.get("dropped_missing_label", 0),
            r.get("dropped_duplicates", 0),
        ]
        if "read" in r:
            parts.append(f"{split}: {n[0]} empty, {n[1]} unlabelled, {n[2]} duplicate")
        else:
            parts.append(f"{split}: carved from train")
    return "; ".join(parts)


def parse_qat_start(spec: str | int) -> tuple[int, str]:
    """``"2"`` (epochs) or ``"500steps"`` (optimizer steps) → ``(count, unit)``."""
    text = str(spec).strip().lower()
    for unit, suffixes in (("steps", ("steps", "step")), ("epochs", ("epochs", "epoch", ""))):
        for suf in suffixes:
            num = text[: len(text) - len(suf)] if suf and text.endswith(suf) else text
            if (suf == "" or text.endswith(suf)) and num.isdigit():
                return int(num), unit
    raise ConfigError(f"--qat-start {spec!r}: give epochs (2) or optimizer steps (500steps)")
