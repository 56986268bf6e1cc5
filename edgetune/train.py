"""``edgetune train``: fine-tune a compact transformer for text classification."""

from __future__ import annotations

import contextlib
import copy
import math
import random
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import fsutil
from .console import sayer
from .data import Data, Split, load_data
from .dist import deepspeed_options, fsdp_options, launched_world
from .errors import ConfigError, DataError, EdgetuneError, first_line
from .formats import run as rundir
from .modeling import load_for_training, load_saved, model_config
from .presets import ModelSource, resolve_model

STRATEGIES = ("full", "head", "lora")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda", "mps")
METRICS = ("accuracy", "macro_f1", "loss")
CLASS_WEIGHTS = ("none", "balanced")


class TrainingInterrupted(EdgetuneError):
    """Ctrl-C (SIGINT) or SIGTERM during training; exit code 128 + the signal's number."""

    exit_code = 130

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.exit_code = 128 + int(signum)


STEP_POINTS = (
    "batch",  # before the forward pass of a batch
    "backward",  # its gradients are computed (and, under DDP, averaged)
    "optimizer",  # the optimizer has changed the weights
    "scheduler",  # the learning-rate schedule has moved on
    "zero_grad",  # gradients are cleared
    "counted",  # the step counter has moved on
    "ema",  # the moving average has taken the new weights
    "boundary",  # the step is recorded: a checkpoint taken now resumes after it
    "epoch",  # an epoch is over (before its evaluation)
    "evaluated",  # an evaluation is recorded (and the best model saved if it improved)
    "end",  # training is over, before the final figures
)


@dataclass
class StepEvent:
    """What a step hook sees: where training is, and the live model and optimizer."""

    point: str
    step: int
    epoch: int
    batch: int
    model: Any
    optimizer: Any


class _Signals:
    """SIGINT and SIGTERM raise KeyboardInterrupt, except inside ``atomic()``, which finishes
    first: a step (optimizer, schedule, counters) is either wholly done or not begun."""

    def __init__(self) -> None:
        self.depth = 0
        self.pending = False
        self.signum = int(signal.SIGINT)
        self._old: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread receives signals; leave the handlers alone
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum
        if self.depth:
            self.pending = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def atomic(self):
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if not self.depth and self.pending:  # not reached when the block raised
            self.pending = False
            raise KeyboardInterrupt


@dataclass
class TrainConfig:
    """Everything that defines a training run; validated on construction.

    ``None`` means "from the model preset, else a sensible default" and is resolved when
    training starts; the resolved values are written to the run's ``config.json``.
    """

    model: str
    data: str
    output: str
    text_columns: tuple[str, ...] = ()
    label_column: str | None = None
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
    metric: str = "accuracy"
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
    gradient_checkpointing: bool = False
    fsdp: bool = False
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        self.text_columns = tuple(self.text_columns)
        self.label_names = tuple(self.label_names)
        checks = [
            (self.strategy in STRATEGIES, f"--strategy must be one of {', '.join(STRATEGIES)}"),
            (self.precision in PRECISIONS, f"--precision must be one of {', '.join(PRECISIONS)}"),
            (self.device in DEVICES, f"--device must be one of {', '.join(DEVICES)}"),
            (self.metric in METRICS, f"--metric must be one of {', '.join(METRICS)}"),
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
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)
        parse_qat_start(self.qat_start)
        out, data = Path(self.output).expanduser(), Path(self.data).expanduser()
        if data.exists() and out.resolve() == data.resolve():
            raise ConfigError("--output is the data path; choose a new directory for the run")
        if Path(self.model).exists() and out.resolve() == Path(self.model).resolve():
            raise ConfigError("--output is the model directory; choose a new directory for the run")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["text_columns"] = list(self.text_columns)
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
            f"cleaning   dropped {_dropped(d)}",
            f"best       epoch {self.best['epoch']:.2f} (step {self.best['step']}), "
            f"validation {c['metric']} {self.best['value']:.4f}"
            + ("  [stopped early]" if self.stopped_early else ""),
            "",
            f"{'':12}{'accuracy':>10}{'macro P':>10}{'macro R':>10}{'macro F1':>10}",
        ]
        for name, m in (("validation", v), ("test", t)):
            lines.append(
                f"{name:12}{m['accuracy'] * 100:>9.2f}%{m['macro_precision'] * 100:>9.2f}%"
                f"{m['macro_recall'] * 100:>9.2f}%{m['macro_f1'] * 100:>9.2f}%"
            )
        if self.qat:
            sch = self.qat["scheme"]
            lines.append(
                f"qat        {sch['mode']} int8 (target {sch['target']}, "
                f"{'per-channel' if sch['per_channel'] else 'per-tensor'}, embeddings {sch['embeddings']}): "
                f"figures above are fake-quantized; float weights alone: test "
                f"{self.qat['test_float']['accuracy'] * 100:.2f}%"
            )
        lines += [
            "",
            "per class (test)  "
            + "   ".join(
                f"{k}: F1 {p['f1'] * 100:.1f}% (n={p['support']})"
                for k, p in t["per_class"].items()
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


def _dropped(d: dict[str, Any]) -> str:
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


# -- the stage ----------------------------------------------------------------------------------


def parse_qat_start(spec: str | int) -> tuple[int, str]:
    """``"2"`` (epochs) or ``"500steps"`` (optimizer steps) → ``(count, unit)``."""
    text = str(spec).strip().lower()
    for unit, suffixes in (("steps", ("steps", "step")), ("epochs", ("epochs", "epoch", ""))):
        for suf in suffixes:
            num = text[: len(text) - len(suf)] if suf and text.endswith(suf) else text
            if (suf == "" or text.endswith(suf)) and num.isdigit():
                return int(num), unit
    raise ConfigError(f"--qat-start {spec!r}: give epochs (2) or optimizer steps (500steps)")


def train(
    config: TrainConfig | None = None,
    /,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    on_step: Callable[[StepEvent], None] | None = None,
    **options: Any,
) -> TrainResult:
    """Fine-tune a sequence classifier and write a run directory.

    Args:
        config: a ``TrainConfig``; or pass its fields as keyword arguments.
        resume: continue the unfinished run at ``output`` from its last checkpoint. Other
            options may be given only with the values the run was started with.
        overwrite: replace an existing run at ``output`` (only a run edgetune wrote).
        progress: show progress bars and status lines on stderr.
        on_step: called at each point of ``STEP_POINTS`` with a ``StepEvent`` (tests use it to
            interrupt training at an exact point; it must not change the model).

    Returns:
        The run's metrics (also written to ``output/metrics.json``).
    """
    from . import dist

    t_start = time.perf_counter()
    if resume:
        # The saved configuration wins: a resumed run continues exactly the run it was.
        options = {**(config.to_dict() if config else {}), **options}
        if not options.get("output"):
            raise ConfigError("--resume needs --output: the run directory to continue")
        config = None
    elif config is None:
        config = TrainConfig(**options)
    elif options:
        config = replace(config, **options)
    device_hint = config.device if config else "auto"
    signals = _Signals()
    signals.install()
    try:
        d = dist.setup(_launch_device(device_hint))
        try:
            with _library_chatter(progress):
                return _train(
                    config,
                    d,
                    t_start,
                    options if resume else None,
                    overwrite,
                    progress,
                    signals,
                    on_step,
                )
        finally:
            dist.teardown(d)
    except KeyboardInterrupt:
        raise TrainingInterrupted(
            "interrupted before training began; nothing was written", signals.signum
        ) from None
    finally:
        signals.restore()


@contextlib.contextmanager
def _library_chatter(progress: bool):
    """stdout carries the result: what libraries print there while training (DeepSpeed's
    logger, bound to stdout when it is imported) is status, shown on stderr, dropped if quiet."""
    import io
    import logging

    sink = sys.stderr if progress else io.StringIO()
    ds = logging.getLogger("DeepSpeed")  # handlers exist once deepspeed is imported

    def point(old: tuple[Any, ...], new: Any) -> None:
        for h in ds.handlers:
            if isinstance(h, logging.StreamHandler) and h.stream in old:
                h.setStream(new)

    point((sys.stdout, sys.__stdout__), sink)  # a launcher (accelerate) imported it already
    try:
        with contextlib.redirect_stdout(sink):
            yield
    finally:
        point((sink,), sys.stderr)


def _launch_device(requested: str) -> str:
    if requested != "auto" or launched_world() <= 1:
        return requested
    from .hw import pick_device

    return pick_device("auto")


def _resumed_config(work: Path, options: dict[str, Any]) -> TrainConfig:
    """The saved configuration of the run in ``work``; refuse options that differ from it."""
    saved = rundir.read_json(work / rundir.CONFIG)
    out = str(options["output"])
    config = TrainConfig.from_dict({**saved["config"], "output": out})
    differ = []
    for key, value in options.items():
        if key == "output":
            continue
        given = getattr(TrainConfig.from_dict({**config.to_dict(), key: value}), key)
        was = getattr(config, key)
        if key in ("data", "model") and Path(str(value)).expanduser().exists():
            same = (
                Path(str(value)).expanduser().resolve()
                == Path(
                    saved.get("data_location")
                    if key == "data"
                    else saved["model_source"]["location"]
                ).resolve()
                or given == was
            )
        else:
            same = given == was
        if not same:
            differ.append(f"--{key.replace('_', '-')} {given} (the run has {was})")
    if differ:
        raise ConfigError(
            f"--resume continues {out} as it was started, but got {'; '.join(differ)}; drop "
            "those options, or start a new run with --overwrite"
        )
    spec = saved.get("data_location") or config.data
    if saved.get("data_fingerprint") and rundir.fingerprint(spec) != saved["data_fingerprint"]:
        raise ConfigError(
            f"the data at {spec} changed since {out} started, so its checkpoint cannot be "
            "continued exactly; restore the data, or start a new run with --overwrite"
        )
    return config


def _check_max_length(config: TrainConfig, source: ModelSource) -> TrainConfig:
    """Refuse a --max-length beyond the model's positions; cap the default at them."""
    from .presets import usable_positions

    positions = usable_positions(model_config(source, config.trust_remote_code))
    if positions is None:
        return config
    if config.max_length is not None and config.max_length > positions:
        raise ConfigError(
            f"--max-length {config.max_length} exceeds the {positions} positions of "
            f"{config.model}; pass --max-length {positions} or less"
        )
    if config.max_length is None:
        p = source.preset
        return replace(config, max_length=min(p.max_length if p else 128, positions))
    return config


def _train(
    config: TrainConfig | None,
    d: Any,
    t_start: float,
    resume_options: dict[str, Any] | None,
    overwrite: bool,
    progress: bool,
    signals: _Signals,
    on_step: Callable[[StepEvent], None] | None,
) -> TrainResult:
    progress = progress and d.main
    resume = resume_options is not None
    with contextlib.ExitStack() as stack:
        if resume:
            assert resume_options is not None
            output = Path(str(resume_options["output"])).expanduser()
        else:
            assert config is not None
            output = Path(config.output).expanduser()
        # One writer per run: the lock is held from the first check to the final rename.
        _on_main(d, lambda: fsutil.check_writable(output, "--output"))
        _on_main(d, lambda: stack.enter_context(fsutil.locked(output, "run")))
        if resume:
            assert resume_options is not None
            work = _on_main(d, lambda: rundir.check_output(output, overwrite=False, resume=True))
            config = _resumed_config(work, resume_options)
        assert config is not None
        if not resume:
            sources = (config.data, config.model)
            work = _on_main(
                d,
                lambda: rundir.check_output(
                    output, overwrite=overwrite, resume=False, sources=sources
                ),
            )
        created = False
        try:
            result = _run(config, d, t_start, work, output, resume, progress, signals, on_step)
            created = True
            return result
        finally:
            # A new run that stopped before its first checkpoint leaves nothing to resume.
            if not created and not resume and d.main and work.exists():
                if not rundir.has_checkpoint(work):
                    shutil.rmtree(work, ignore_errors=True)


def _run(
    config: TrainConfig,
    d: Any,
    t_start: float,
    work: Path,
    output: Path,
    resume: bool,
    progress: bool,
    signals: _Signals,
    on_step: Callable[[StepEvent], None] | None,
) -> TrainResult:
    source = resolve_model(config.model)
    config = _check_max_length(config, source)
    data = load_data(
        config.data,
        text_columns=config.text_columns,
        label_column=config.label_column,
        val_size=config.val_size,
        test_size=config.test_size,
        seed=config.seed,
        header=config.header,
    )
    label_names = _apply_label_names(data, config.label_names)
    config, env = _resolve(config, source)
    env["world_size"] = d.world
    say = sayer(progress)
    # Sharding settings are read (and checked) even where there is one process.
    fsdp, zero = fsdp_options(config.fsdp), deepspeed_options()
    if (fsdp or zero) and not d.enabled:
        fsdp = zero = None
        say("one process: nothing to shard; start several with torchrun or accelerate launch")
    if zero is not None and fsdp is not None:
        raise ConfigError("choose one of FSDP (--fsdp) and a DeepSpeed accelerate config")
    env["parallel"] = "fsdp" if fsdp else "deepspeed" if zero else "ddp" if d.enabled else "none"
    if fsdp is not None:
        env["fsdp"] = fsdp.to_dict()
    if zero is not None:
        env["deepspeed"] = {"zero_optimization": zero.zero}
    if zero is not None and env["precision"] == "fp16":
        raise ConfigError(
            "--precision fp16 is not supported with DeepSpeed (edgetune's loss scaler would be "
            "bypassed); use --precision bf16 or fp32"
        )
    if config.qat and (fsdp or zero):
        raise ConfigError(
            f"--qat is not supported with {env['parallel']}; train the compact model with DDP "
            "(an accelerate config with distributed_type MULTI_GPU or MULTI_CPU, or torchrun)"
        )
    say(
        f"data: {len(data.train)} train / {len(data.validation)} validation / {len(data.test)} test, "
        f"{data.num_labels} classes; dropped {_dropped(data.report)}"
    )

    _seed_everything(config.seed)
    tokenizer, model, new_weights = load_for_training(source, config, label_names)
    if config.qat_distill and new_weights and parse_qat_start(config.qat_start)[0] == 0:
        raise ConfigError(
            f"--qat-distill learns from the model as QAT starts, and {config.model} has an "
            "untrained classifier there; train first (--qat-start 2) or pass a fine-tuned "
            "--model RUN/best"
        )
    if not resume and d.main:
        rundir.create_work(work)
        rundir.write_json(
            work / rundir.CONFIG, _config_file(config, source, env, rundir.fingerprint(config.data))
        )
    d.barrier()
    trainer = _Trainer(
        config, env, data, tokenizer, model, work, say, progress, d, fsdp, zero, signals, on_step
    )
    if resume:
        trainer.load_checkpoint()
        say(f"resuming {work} at step {trainer.state['step']} (epoch {trainer.state['epoch']})")
    try:
        trainer.fit()
        return _finish(trainer, data, label_names, output, t_start, signals)
    except KeyboardInterrupt:
        step = trainer.state["step"]
        what = "terminated" if signals.signum == signal.SIGTERM else "interrupted"
        if trainer.fsdp is None and trainer.engine is None:
            with signals.atomic():  # every rank: each one's random state goes in
                trainer.save_checkpoint()
            saved = f"checkpoint saved in {work}"
        elif rundir.has_checkpoint(work):
            # Saving sharded state needs every rank at the same point; Ctrl-C is not.
            saved = f"the checkpoint of the last epoch in {work} is kept"
        else:
            raise TrainingInterrupted(
                f"{what} at step {step}, before the first checkpoint of this sharded run; "
                f"start again with --overwrite",
                signals.signum,
            ) from None
        raise TrainingInterrupted(
            f"{what} at step {step}; {saved}; "
            f"continue with `edgetune train --resume --output {output}`",
            signals.signum,
        ) from None


def _finish(
    trainer: _Trainer,
    data: Data,
    label_names: list[str],
    output: Path,
    t_start: float,
    signals: _Signals,
) -> TrainResult:
    """Final figures, metrics.json and the curve; then the run is moved into place."""
    config, env, d, work, say = trainer.config, trainer.env, trainer.dist, trainer.work, trainer.say
    tokenizer = trainer.tokenizer

    # Memory per rank: what sharding saves shows in the weights and optimizer state it holds.
    from .hw import peak_rss_mb

    memory = d.gather(
        [{"rank": d.rank, "peak_rss_mb": peak_rss_mb(), "model_state_mb": trainer.state_mb()}]
    )
    if not d.main:
        d.barrier()  # leave with rank 0: an early exit can abort the group's threads
        return None  # type: ignore[return-value]  # rank 0 writes and reports the run

    # Final figures come from the saved best model in fp32: exactly what export will see.
    say("evaluating the best checkpoint on validation and test (fp32)")
    best_model = load_saved(work / rundir.BEST).to(env["device"])
    ev = _Evaluator(best_model, tokenizer, config, env, precision="fp32")
    qat_info = None
    if config.qat:
        from .qat import attach
        from .quant import read_scheme

        scheme = read_scheme(work / rundir.BEST)
        if scheme is None:
            raise EdgetuneError(f"{work / rundir.BEST} lacks its QAT scheme; retrain with --qat")
        float_test = ev.metrics(data.test, label_names)
        attach(best_model, scheme)  # the figures of a QAT run are those of its int8 arithmetic
        qat_info = {"scheme": scheme.to_dict(), "test_float": float_test}
    val = ev.metrics(data.validation, label_names)
    test = ev.metrics(data.test, label_names)
    state = trainer.state
    timing = {
        "total_s": time.perf_counter() - t_start,
        "train_s": state["train_s"],
        "samples_per_s": state["samples"] / max(state["train_s"], 1e-9),
        "memory_per_rank": memory,
    }
    result = TrainResult(
        output=str(output),
        config=config.to_dict(),
        label_names=label_names,
        best=state["best"],
        validation=val,
        test=test,
        history=state["history"],
        timing=timing,
        data=data.report,
        environment=env,
        stopped_early=state.get("stopped_early", False),
        qat=qat_info,
    )
    rundir.write_json(work / rundir.METRICS, result.to_dict())
    _plot(state["history"], config.metric, work / rundir.CURVE)
    with signals.atomic():
        rundir.finalize(work, output)
    d.barrier()
    return result


def _on_main(d: Any, fn: Any) -> Any:
    """Run ``fn`` on rank 0 and hand its result (or its error) to every rank."""
    result, error = None, None
    if d.main:
        try:
            result = fn()
        except EdgetuneError as e:
            error = e
    result, error = d.broadcast((result, error))
    if error is not None:
        raise error
    return result


def load_result(run: str | Path) -> TrainResult:
    """Read a finished run's metrics."""
    path = rundir.open_run(run)
    return TrainResult.from_dict(rundir.read_json(path / rundir.METRICS))


# -- set-up helpers -----------------------------------------------------------------------------


def _apply_label_names(data: Data, names: tuple[str, ...]) -> list[str]:
    if not names:
        return data.label_names
    if len(names) != data.num_labels:
        raise DataError(
            f"--label-names gives {len(names)} names but the data has {data.num_labels} classes "
            f"({', '.join(data.label_names)}); give one name per class, in that order"
        )
    if len(set(names)) != len(names):
        raise DataError("--label-names has repeated names; give each class its own name")
    data.label_names = list(names)
    data.report["label_names"] = list(names)
    data.report["class_counts"] = dict(zip(names, data.report["class_counts"].values()))
    return data.label_names


def _resolve(config: TrainConfig, source: ModelSource) -> tuple[TrainConfig, dict[str, Any]]:
    """Fill preset/auto values; refuse precisions the device cannot run."""
    import torch

    from . import hw

    p = source.preset
    device = hw.pick_device(config.device)
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda but no CUDA GPU is visible; use --device cpu or auto")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps but MPS is not available; use --device cpu or auto")
    precision = config.precision
    if precision == "auto":
        if device == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        elif device == "cpu" and hw.cpu_supports_bf16():
            precision = "bf16"
        else:
            precision = "fp32"
    if precision == "fp16" and device != "cuda":
        raise ConfigError("--precision fp16 needs a CUDA GPU; use bf16 or fp32 on this device")
    if precision == "bf16" and device == "cpu" and not hw.cpu_supports_bf16():
        raise ConfigError(
            "--precision bf16: this CPU has neither AMX nor AVX-512-BF16, so bf16 would be slow; "
            "use --precision fp32"
        )
    if precision == "bf16" and device == "mps":
        raise ConfigError("--precision bf16 is not supported on MPS here; use fp32")
    resolved = replace(
        config,
        device=device,
        precision=precision,
        max_length=config.max_length or (p.max_length if p else 128),
        learning_rate=config.learning_rate or (p.learning_rate if p else 5e-5),
        epochs=config.epochs or (p.epochs if p else 3),
        ema=config.ema if config.ema is not None else (p.ema if p else 0.0),
        # Pretrained word embeddings barely move in fine-tuning; random ones must learn.
        freeze_embeddings=(
            config.freeze_embeddings
            if config.freeze_embeddings is not None
            else source.kind != "config"
        ),
    )
    env = _environment(device, precision)
    return resolved, env


def _environment(device: str, precision: str) -> dict[str, Any]:
    import torch

    from .envinfo import environment

    env = {"device": device, "precision": precision, **environment("torch", "transformers")}
    env["threads"] = torch.get_num_threads()
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def _config_file(
    config: TrainConfig, source: ModelSource, env: dict[str, Any], data_fingerprint: str | None
) -> dict[str, Any]:
    return {
        "format": rundir.FORMAT,
        "version": rundir.FORMAT_VERSION,
        "config": config.to_dict(),
        "model_source": {"kind": source.kind, "location": source.location},
        # Where the data was, so later stages (e.g. static calibration) find it from any cwd.
        "data_location": str(Path(config.data).expanduser().resolve())
        if Path(config.data).expanduser().exists()
        else config.data,
        # What --resume checks: the checkpoint continues only on the rows it was trained on.
        "data_fingerprint": data_fingerprint,
        "environment": env,
    }


def qat_scheme(config: TrainConfig) -> Any:
    """The int8 scheme a QAT run simulates: the export's settings for ``--qat-target``."""
    from .quant import QATScheme, QuantizationConfig

    q = QuantizationConfig.for_target(config.qat_target, config.qat_per_channel)
    return QATScheme(
        mode=config.qat or "dynamic",
        per_channel=q.per_channel,
        reduce_range=q.reduce_range,
        target=q.target,
        embeddings=config.qat_embeddings,
    )


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# -- batching -----------------------------------------------------------------------------------


def encode(tokenizer: Any, split: Split, max_length: int) -> dict[str, list[list[int]]]:
    """Tokenize without padding (batches are padded to their own longest row)."""
    enc = tokenizer(split.texts, split.pairs, truncation=True, max_length=max_length)
    return {k: enc[k] for k in tokenizer.model_input_names if k in enc}


def make_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator, group_by_length: bool
) -> list[np.ndarray]:
    """Shuffled batches; with grouping, rows of similar length share a batch (less padding).

    Grouping sorts within shuffled mega-batches of 50 batches and then shuffles the batch
    order, so each batch is still a random draw of the data, only of similar length.
    """
    idx = rng.permutation(len(lengths))
    if not group_by_length:
        return [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]
    mega = batch_size * 50
    batches = []
    for i in range(0, len(idx), mega):
        chunk = idx[i : i + mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def collate(enc: dict[str, list[list[int]]], rows: np.ndarray, pad_id: int) -> dict[str, Any]:
    import torch

    ids = enc["input_ids"]
    width = max(len(ids[r]) for r in rows)
    out = {}
    for key, seqs in enc.items():
        fill = pad_id if key == "input_ids" else 0
        arr = np.full((len(rows), width), fill, dtype=np.int64)
        for i, r in enumerate(rows):
            s = seqs[r]
            arr[i, : len(s)] = s
        out[key] = torch.from_numpy(arr)
    return out


def _autocast(device: str, precision: str):
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device, dtype=dtype)


class _Evaluator:
    """Batched, length-sorted inference returning logits in input order."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        config: TrainConfig,
        env: dict[str, Any],
        precision: str | None = None,
        dist: Any = None,
    ) -> None:
        from .dist import Dist

        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.dist = dist or Dist()
        self.device = env["device"]
        self.precision = precision or env["precision"]
        self._cache: dict[int, dict[str, list[list[int]]]] = {}

    def logits(self, split: Split) -> np.ndarray:
        import torch

        key = id(split)
        if key not in self._cache:
            self._cache[key] = encode(self.tokenizer, split, self.config.max_length or 128)
        enc = self._cache[key]
        lengths = np.array([len(x) for x in enc["input_ids"]])
        order = np.argsort(-lengths, kind="stable")
        bs = max(64, self.config.batch_size * 2)
        rank, world = self.dist.rank, self.dist.world
        out = np.zeros((len(split), self.model.config.num_labels), dtype=np.float32)
        mine: list[tuple[np.ndarray, np.ndarray]] = []
        was_training = self.model.training
        self.model.eval()
        # Sharded models gather weights inside forward, so every rank runs every step
        # (an empty share forwards one row and drops it); inference mode cannot wrap that.
        grad_off = torch.no_grad() if self.dist.enabled else torch.inference_mode()
        with grad_off, _autocast(self.device, self.precision):
            for i in range(0, len(order), bs * world):
                chunk = order[i : i + bs * world]
                rows = chunk[rank::world]
                run = rows if len(rows) else chunk[:1]
                batch = {
                    k: v.to(self.device)
                    for k, v in collate(enc, run, self.tokenizer.pad_token_id).items()
                }
                lg = self.model(**batch).logits.float().cpu().numpy()
                mine.append((rows, lg[: len(rows)]))
        self.model.train(was_training)
        for rows, lg in self.dist.gather(mine):
            out[rows] = lg
        return out

    def metrics(self, split: Split, label_names: list[str]) -> dict[str, Any]:
        from .metrics import classification_metrics

        lg = self.logits(split)
        m = classification_metrics(split.labels, lg.argmax(-1), label_names)
        m["loss"] = _cross_entropy(lg, np.asarray(split.labels))
        return m


def _cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels].mean())


# -- the loop -----------------------------------------------------------------------------------


def _own_copies(model: Any) -> dict[str, Any]:
    """The model's state dict with every tensor in its own storage (safetensors needs that)."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _local(tensors: list[Any]) -> list[Any]:
    """Each tensor's local storage: a sharded (FSDP) parameter's own shard, else the tensor."""
    return [t.to_local() if hasattr(t, "to_local") else t.detach() for t in tensors]


# Attention query/value projections per architecture; others fall back to peft's own table.
_LORA_TARGETS = {
    "distilbert": ["q_lin", "v_lin"],
    "mpnet": ["q", "v"],
    "albert": ["query", "value"],
    "bert": ["query", "value"],
}


class _Trainer:
    """The training loop: epochs, accumulation, evaluation, checkpoints, early stopping."""

    def __init__(
        self,
        config: TrainConfig,
        env: dict[str, Any],
        data: Data,
        tokenizer: Any,
        model: Any,
        work: Path,
        say: Any,
        progress: bool,
        dist: Any = None,
        fsdp: Any = None,
        zero: Any = None,
        signals: _Signals | None = None,
        on_step: Callable[[StepEvent], None] | None = None,
    ) -> None:
        import torch

        from .dist import Dist

        self.signals = signals or _Signals()
        self.on_step = on_step
        self.config, self.env, self.data = config, env, data
        self.tokenizer, self.work, self.say, self.progress = tokenizer, work, say, progress
        self.dist = dist or Dist()
        self.device = env["device"]
        self.model = self._prepare(model).to(self.device)
        self.fsdp = fsdp
        if config.gradient_checkpointing or (self.fsdp and self.fsdp.activation_checkpointing):
            base = getattr(self.model, "get_base_model", lambda: self.model)()
            base.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        self._shell: Any = None  # FSDP: an empty copy on rank 0 that saves the best model
        if self.fsdp is not None:
            self._shard()
        self.train_enc = encode(tokenizer, data.train, config.max_length or 128)
        self.labels = torch.tensor(data.train.labels)
        weight = None
        if config.class_weights == "balanced":
            counts = np.bincount(data.train.labels, minlength=data.num_labels).astype(np.float64)
            w = len(data.train) / (data.num_labels * np.maximum(counts, 1))
            weight = torch.tensor(w, dtype=torch.float32, device=self.device)
        self.loss_fn = torch.nn.CrossEntropyLoss(weight=weight)
        accum = config.grad_accum
        # Under DDP each global batch holds world_size x batch_size rows, one shard per rank.
        self.global_batch = config.batch_size * self.dist.world
        self.batches_per_epoch = len(self._global_batches(0))
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / accum)
        self.total_steps = self.steps_per_epoch * (config.epochs or 1)
        self.optimizer = self._optimizer()
        from transformers import get_linear_schedule_with_warmup

        self.scheduler = get_linear_schedule_with_warmup(
            self.optimizer, int(config.warmup_ratio * self.total_steps), self.total_steps
        )
        self.qat: Any = None
        self.teacher: Any = None  # --qat-distill's float model, taken when QAT starts
        if config.qat:
            from .qat import attach

            self.qat = attach(self.model, qat_scheme(config), enabled=False)
            n, unit = parse_qat_start(config.qat_start)
            self.qat_start_step = n if unit == "steps" else n * self.steps_per_epoch
            if self.qat_start_step >= self.total_steps:
                raise ConfigError(
                    f"--qat-start {config.qat_start} is at or after the end of training "
                    f"({self.total_steps} steps); start earlier or train longer"
                )
        self.scaler = torch.amp.GradScaler("cuda") if env["precision"] == "fp16" else None
        self.net = self.model
        self.engine: Any = None  # DeepSpeed's, under a DeepSpeed accelerate config
        if zero is not None:
            self.engine = self._deepspeed(zero)
            self.net = self.engine
        elif self.dist.enabled and self.fsdp is None:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.dist.local_rank] if self.device == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.evaluator = _Evaluator(self.model, tokenizer, config, env, dist=self.dist)
        higher = config.metric != "loss"
        self.state: dict[str, Any] = {
            "step": 0,
            "epoch": 0,
            "next_batch": 0,
            "position": 0.0,  # epochs done, as a fraction (what an evaluation is labelled)
            "samples": 0,
            "train_s": 0.0,
            "history": [],
            "best": {
                "metric": config.metric,
                "value": -math.inf if higher else math.inf,
                "step": 0,
                "epoch": 0.0,
            },
            "bad_evals": 0,
            "stopped_early": False,
            "done": False,
        }
        self._loss_sum = 0.0
        self._loss_n = 0
        self._last_eval_step = -1
        self._params = [p for p in self.model.parameters() if p.requires_grad]
        # Exponential moving average of the trainable weights (Polyak averaging): evaluated
        # and saved instead of the raw weights, it smooths the step-to-step noise of SGD.
        self._ema = [p.detach().clone() for p in self._params] if config.ema else None
        self._mark_boundary()

    # model set-up per strategy
    def _prepare(self, model: Any) -> Any:
        c = self.config
        if c.strategy == "head":
            prefix = model.base_model_prefix
            for name, p in model.named_parameters():
                p.requires_grad = not name.startswith(prefix + ".") or ".pooler." in name
        elif c.strategy == "lora":
            from peft import LoraConfig, TaskType, get_peft_model

            try:
                model = get_peft_model(
                    model,
                    LoraConfig(
                        task_type=TaskType.SEQ_CLS,
                        r=c.lora_r,
                        lora_alpha=c.lora_alpha,
                        lora_dropout=c.lora_dropout,
                        target_modules=_LORA_TARGETS.get(model.config.model_type),
                    ),
                )
            except ValueError as e:
                raise ConfigError(
                    f"--strategy lora: {first_line(e)}; use --strategy full"
                ) from None
        elif c.freeze_embeddings:
            # Word embeddings are half of a small model's weights but gain little from
            # fine-tuning; freezing them skips their optimizer update and gradient.
            model.get_input_embeddings().weight.requires_grad = False
        return model

    def _shard(self) -> None:
        """PyTorch FSDP2: each transformer layer, then the whole model, sharded across ranks."""
        import torch
        from torch.distributed.fsdp import fully_shard

        if self.dist.main:  # the model's structure without its memory (meta tensors)
            self._shell = copy.deepcopy(self.model).to("meta")
        kw: dict[str, Any] = {"reshard_after_forward": self.fsdp.reshard_after_forward}
        base = getattr(self.model, "get_base_model", lambda: self.model)()
        layer_types = set(getattr(base, "_no_split_modules", None) or [])
        layers = [m for m in self.model.modules() if type(m).__name__ in layer_types]
        if not layers:  # models that do not name their blocks: the encoder's layer list
            layers = [
                block
                for m in self.model.modules()
                if isinstance(m, torch.nn.ModuleList) and len(m) > 1
                for block in m
            ]
        for m in layers:
            fully_shard(m, **kw)
        fully_shard(self.model, **kw)

    def _deepspeed(self, zero: Any) -> Any:
        """DeepSpeed's engine around the model and edgetune's optimizer (ZeRO stages 0-2)."""
        import logging

        try:
            import deepspeed
        except ImportError:
            raise ConfigError(
                "the accelerate config asks for DeepSpeed, which is not installed; "
                "pip install deepspeed (or use an FSDP or DDP config)"
            ) from None
        from deepspeed.utils import logger as ds_logger

        # Its engine logs each save and load at INFO; --quiet keeps its errors only.
        ds_logger.setLevel(logging.WARNING if self.progress else logging.ERROR)
        c = self.config
        engine, *_ = deepspeed.initialize(
            model=self.model,
            optimizer=self.optimizer,
            config=zero.engine_config(c.batch_size, c.grad_accum),
        )
        return engine

    def _full_state(self) -> dict[str, Any]:
        """The model's full state dict on rank 0, gathered from every rank's shard."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_model_state_dict(self.model, options=opts)

    def _optimizer(self) -> Any:
        import torch

        decay: list[Any] = []
        no_decay: list[Any] = []
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            (
                no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay
            ).append(p)
        groups = [
            {"params": decay, "weight_decay": self.config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        lr = float(self.config.learning_rate or 5e-5)
        try:
            return torch.optim.AdamW(groups, lr=lr, fused=self.device in ("cpu", "cuda"))
        except (RuntimeError, TypeError):
            return torch.optim.AdamW(groups, lr=lr)

    def state_mb(self) -> float:
        """MB of weights and optimizer state this rank holds (its shard under FSDP)."""
        import torch

        tensors = list(self.model.parameters())
        if self.engine is not None:  # ZeRO's fp32 master copy of this rank's partition
            tensors += [p for g in self.optimizer.param_groups for p in g["params"]]
        for st in self.optimizer.state.values():
            tensors += [v for v in st.values() if torch.is_tensor(v) and v.ndim > 0]
        return sum(t.numel() * t.element_size() for t in _local(tensors)) / 2**20

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def _epoch_encoding(self, epoch: int) -> dict[str, list[list[int]]]:
        c = self.config
        if c.augment <= 0:
            return self.train_enc
        from .augment import augment_text

        rng = random.Random(c.seed * 1_000_003 + epoch)
        t = self.data.train
        aug = Split(
            [augment_text(x, c.augment, rng) for x in t.texts],
            t.labels,
            None if t.pairs is None else [augment_text(x, c.augment, rng) for x in t.pairs],
        )
        return encode(self.tokenizer, aug, c.max_length or 128)

    def fit(self) -> None:
        from tqdm.auto import tqdm

        c, s = self.config, self.state
        epochs = c.epochs or 1
        self.say(
            f"training {c.model} ({c.strategy}, {self.trainable_parameters() / 1e6:.2f}M trainable "
            f"parameters) on {self.device} in {self.env['precision']} for {epochs} epoch(s)"
        )
        self.model.train()
        pad = self.tokenizer.pad_token_id
        atomic = self.signals.atomic
        if self._evaluation_due():  # stopped between a step and its evaluation
            self._evaluate(s["position"])
        while s["epoch"] < epochs and not s["done"]:
            epoch = s["epoch"]
            enc = self._epoch_encoding(epoch)
            batches = self._global_batches(epoch, enc)
            start = s["next_batch"]
            bar = tqdm(
                total=len(batches),
                initial=start,
                desc=f"epoch {epoch + 1}/{epochs}",
                unit="batch",
                disable=not self.progress,
                leave=False,
                dynamic_ncols=True,
                # Logs (CI, files) get an update every 30 s instead of a redraw per batch.
                mininterval=0.1 if sys.stderr.isatty() else 30.0,
            )
            t0 = time.perf_counter()
            for bi in range(start, len(batches)):
                self._qat_switch()
                self._hook("batch", bi)
                rows = batches[bi][self.dist.rank :: self.dist.world]  # this rank's shard
                batch = {k: v.to(self.device) for k, v in collate(enc, rows, pad).items()}
                labels = self.labels[rows].to(self.device)
                last = not (bi + 1) % c.grad_accum or bi + 1 == len(batches)
                if self.engine is not None:  # our accumulation boundaries, not DeepSpeed's count
                    self.engine.set_gradient_accumulation_boundary(last)
                with _autocast(self.device, self.env["precision"]):
                    logits = self.net(**batch).logits
                loss = self._loss(logits.float(), labels, batch) / c.grad_accum
                if self.engine is not None:
                    self.engine.backward(loss, scale_wrt_gas=False)
                elif self.scaler is not None:
                    self.scaler.scale(loss).backward()
                else:
                    loss.backward()
                self._loss_sum += loss.item() * c.grad_accum * len(rows)
                self._loss_n += len(rows)
                s["samples"] += len(batches[bi])
                bar.update(1)
                self._hook("backward", bi)
                if not last:
                    continue
                # A signal here waits for the step to be recorded: a checkpoint never holds
                # weights one step ahead of its counters (resume would apply a batch twice).
                with atomic():
                    self._step(bi)
                    s["step"] += 1
                    self._hook("counted", bi)
                    self._update_ema()
                    self._hook("ema", bi)
                    s["next_batch"] = bi + 1
                    s["position"] = round(epoch + (bi + 1) / len(batches), 4)
                    self._mark_boundary()
                    self._hook("boundary", bi)
                if bar.n % 20 == 0 or bi + 1 == len(batches):
                    bar.set_postfix(
                        loss=f"{self._loss_sum / max(self._loss_n, 1):.4f}", refresh=False
                    )
                if c.eval_steps and s["step"] % c.eval_steps == 0:
                    s["train_s"] += time.perf_counter() - t0
                    self._evaluate(s["position"])
                    t0 = time.perf_counter()
                    if s["done"]:
                        break
            else:
                with atomic():
                    s["train_s"] += time.perf_counter() - t0
                    s["epoch"] += 1
                    s["next_batch"] = 0
                    s["position"] = float(s["epoch"])
                    self._hook("epoch", len(batches))
                if self._last_eval_step != s["step"]:
                    self._evaluate(float(s["epoch"]))
                if not s["done"] and s["epoch"] < epochs:
                    with atomic():
                        self.save_checkpoint()
            bar.close()
        s["done"] = True
        self._hook("end", s["next_batch"])

    def _hook(self, point: str, batch: int) -> None:
        if self.on_step is not None:
            s = self.state
            self.on_step(StepEvent(point, s["step"], s["epoch"], batch, self.model, self.optimizer))

    def _evaluation_due(self) -> bool:
        """Whether the step the run stopped at owed an evaluation it did not record."""
        s, c = self.state, self.config
        if s["step"] == 0 or self._last_eval_step == s["step"] or s["done"]:
            return False
        at_epoch_end = s["next_batch"] == 0
        return at_epoch_end or bool(c.eval_steps and s["step"] % c.eval_steps == 0)

    def _loss(self, logits: Any, labels: Any, batch: dict[str, Any]) -> Any:
        loss = self.loss_fn(logits, labels)
        if self.teacher is None:
            return loss
        import torch
        import torch.nn.functional as F

        # Self-distillation: the fake-quantized student also matches the float model's
        # class distribution, which carries more than the hard label (KL at temperature 1).
        with torch.no_grad(), _autocast(self.device, self.env["precision"]):
            target = F.softmax(self.teacher(**batch).logits.float(), dim=-1)
        kd = F.kl_div(F.log_softmax(logits, dim=-1), target, reduction="batchmean")
        a = self.config.qat_distill
        return (1 - a) * loss + a * kd

    def _make_teacher(self) -> Any:
        """A frozen float copy of the model as it stands (EMA weights where averaged)."""
        base = self.model
        with self.qat.suspended(), self._ema_weights():
            teacher = copy.deepcopy(base)
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad = False
        return teacher

    def _global_batches(self, epoch: int, enc: Any = None) -> list[np.ndarray]:
        """The epoch's batches of world_size x batch_size rows (identical on every rank)."""
        c = self.config
        enc = enc or self.train_enc
        lengths = np.array([len(x) for x in enc["input_ids"]])
        batches = make_batches(
            lengths, self.global_batch, np.random.default_rng(c.seed + epoch), c.group_by_length
        )
        if self.dist.enabled:  # every rank needs at least one row of every batch
            batches = [b for b in batches if len(b) >= self.dist.world]
        return batches

    def _qat_switch(self, quiet: bool = False) -> None:
        if self.qat is None or self.qat.enabled or self.state["step"] < self.qat_start_step:
            return
        self.qat.enabled = True
        if self.config.qat_distill and self.teacher is None:
            self.teacher = self._make_teacher()
        if not quiet:
            self.say(
                f"quantization-aware training ({self.qat.scheme.mode} int8, target "
                f"{self.qat.scheme.target}) from step {self.state['step']}"
            )

    def _update_ema(self) -> None:
        import torch

        if self._ema is None:
            return
        step = self.state["step"]
        decay = min(self.config.ema, (1 + step) / (10 + step))  # warm-up: early weights fade fast
        with torch.no_grad():
            torch._foreach_lerp_(_local(self._ema), _local(self._params), 1 - decay)

    @contextlib.contextmanager
    def _ema_weights(self):
        """Temporarily load the EMA weights into the model (no-op without EMA)."""
        import torch

        if self._ema is None:
            yield
            return
        params = _local(self._params)
        with torch.no_grad():
            raw = [p.clone() for p in params]
            torch._foreach_copy_(params, _local(self._ema))
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(params, raw)

    def _mark_boundary(self) -> None:
        """Remember what a checkpoint taken now must hold (RNG and loss sums at this step)."""
        import torch

        self._boundary = (
            torch.get_rng_state(),
            self._loss_sum,
            self._loss_n,
            self.state["samples"],
        )

    def _step(self, bi: int) -> None:
        import torch

        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.engine is not None:  # clips (gradient_clipping 1.0), steps and zeroes
            self.engine.step()
        elif self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            self.optimizer.step()
        self._hook("optimizer", bi)
        self.scheduler.step()
        self._hook("scheduler", bi)
        if self.engine is None:
            self.optimizer.zero_grad(set_to_none=True)
        self._hook("zero_grad", bi)

    def _evaluate(self, epoch: float) -> None:
        if self.dist.enabled:  # the reported train loss is over every rank's rows
            import torch
            import torch.distributed as td

            t = torch.tensor(
                [self._loss_sum, float(self._loss_n)], dtype=torch.float64, device=self.device
            )
            td.all_reduce(t)
            self._loss_sum, self._loss_n = float(t[0]), int(t[1])
            if self.qat is not None and self.qat.scheme.ranges:
                # Static QAT: each rank learned ranges from its shard; all use their mean.
                every = self.dist.gather([self.qat.scheme.ranges])
                self.qat.scheme.ranges = {
                    k: [float(np.mean([r[k][i] for r in every])) for i in (0, 1)]
                    for k in sorted(every[0])
                }
        # Every rank evaluates its share and receives the whole split's logits, so every rank
        # reaches the same figures and the same best / early-stop decisions.
        c, s = self.config, self.state
        with self._ema_weights():
            m = self.evaluator.metrics(self.data.validation, self.data.label_names)
        entry = {
            "epoch": round(epoch, 4),
            "step": s["step"],
            "train_loss": self._loss_sum / max(self._loss_n, 1),
            "val_loss": m["loss"],
            "val_accuracy": m["accuracy"],
            "val_macro_f1": m["macro_f1"],
            "learning_rate": self.scheduler.get_last_lr()[0],
            "train_s": round(s["train_s"], 2),
        }
        value = m[c.metric]
        best = s["best"]
        better = value < best["value"] if c.metric == "loss" else value > best["value"]
        if self.qat is not None and not self.qat.enabled:
            better = False  # a QAT run keeps only checkpoints trained against int8
        with self.signals.atomic():  # recorded wholly or not at all (resume evaluates again)
            self._loss_sum, self._loss_n = 0.0, 0
            self._mark_boundary()
            s["history"].append(entry)
            if better:
                best.update(value=value, step=s["step"], epoch=entry["epoch"])
                s["bad_evals"] = 0
                with self._ema_weights():
                    self._save_best()
            else:
                s["bad_evals"] += 1
            stop = bool(c.patience and s["bad_evals"] >= c.patience)
            if stop:
                s["stopped_early"] = True
                s["done"] = True
            self._last_eval_step = s["step"]
            self._hook("evaluated", s["next_batch"])
        mark = "  * best" if better else ""
        self.say(
            f"epoch {entry['epoch']:.2f} step {s['step']}: train loss {entry['train_loss']:.4f}, "
            f"val loss {m['loss']:.4f}, val acc {m['accuracy'] * 100:.2f}%, "
            f"val macro F1 {m['macro_f1'] * 100:.2f}%{mark}"
        )
        if stop:
            self.say(f"early stop: no improvement in {c.patience} evaluation(s)")
        if c.eval_steps:
            with self.signals.atomic():
                self.save_checkpoint()

    def _save_best(self) -> None:
        model = self.model
        if self.fsdp is not None:
            state = self._full_state()  # every rank takes part in the gather
            if not self.dist.main:
                return
            self._shell.load_state_dict(state, assign=True)  # holds the gathered tensors
            model = self._shell
        elif not self.dist.main:
            return
        tmp = self.work / (rundir.BEST + ".tmp")
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp)
        with self.qat.suspended() if self.qat is not None else contextlib.nullcontext():
            if self.config.strategy == "lora":
                model = copy.deepcopy(model).merge_and_unload()
            # Under ZeRO the weights are views of one flat buffer: save copies of them.
            copies = _own_copies(model) if self.engine is not None else None
            model.save_pretrained(tmp, safe_serialization=True, state_dict=copies)
        self.tokenizer.save_pretrained(tmp)
        if self.qat is not None:
            from .quant import write_scheme

            write_scheme(tmp, self.qat.scheme)
        rundir.replace_dir(tmp, self.work / rundir.BEST)
        if self._shell is not None:
            self._shell.to("meta")  # let the gathered copy go

    def save_checkpoint(self) -> None:
        import torch
        from safetensors.torch import save_file, save_model

        if self.fsdp is not None:
            # Sharded: gather full tensors (every rank takes part); rank 0 writes them.
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                get_optimizer_state_dict,
            )

            weights = self._full_state()
            ema = [e.full_tensor().cpu() for e in self._ema] if self._ema is not None else None
            opt_state = get_optimizer_state_dict(
                self.model,
                self.optimizer,
                options=StateDictOptions(full_state_dict=True, cpu_offload=True),
            )
        else:
            weights, ema, opt_state = None, self._ema, None
        # Each rank draws its own dropout masks: every rank's random state is saved.
        rngs = self.dist.gather([self._boundary[0]])
        tmp = self.work / (rundir.CHECKPOINT + ".tmp")
        if self.dist.main:
            if tmp.exists():
                import shutil

                shutil.rmtree(tmp)
            tmp.mkdir()
        if self.engine is not None:
            # ZeRO shards the optimizer state: every rank writes its part with DeepSpeed.
            self.dist.barrier()
            self.engine.save_checkpoint(str(tmp / "deepspeed"), tag="last", save_latest=False)
            self.dist.barrier()
        if not self.dist.main:
            return
        # Interrupted mid-accumulation: roll back to the last optimizer step, whose batch
        # index, RNG state and loss sums are what resuming needs.
        rng, loss_sum, loss_n, samples = self._boundary
        if self.engine is not None:  # optimizer state is in deepspeed/; weights share a buffer
            weights, opt_state = _own_copies(self.model), {}
        if weights is not None:
            save_file(
                {k: v.contiguous() for k, v in weights.items()}, str(tmp / "model.safetensors")
            )
        else:
            save_model(self.model, str(tmp / "model.safetensors"))
        if ema is not None:
            save_file(
                {str(i): t.contiguous() for i, t in enumerate(ema)}, str(tmp / "ema.safetensors")
            )
        if self.teacher is not None:
            save_model(self.teacher, str(tmp / "teacher.safetensors"))
        torch.save(
            {
                "optimizer": opt_state if opt_state is not None else self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else None,
                "torch_rng": rng,
                "torch_rng_per_rank": rngs,
            },
            tmp / "optimizer.pt",
        )
        state = {**self.state, "samples": samples, "loss_sum": loss_sum, "loss_n": loss_n}
        state["launch"] = {"parallel": self.env.get("parallel", "none"), "world": self.dist.world}
        if self.qat is not None:
            state["qat_ranges"] = self.qat.scheme.ranges
        rundir.write_json(tmp / rundir.STATE, state)
        rundir.replace_dir(tmp, self.work / rundir.CHECKPOINT)

    def load_checkpoint(self) -> None:
        import torch
        from safetensors.torch import load_file, load_model

        ck = self.work / rundir.CHECKPOINT
        state = rundir.read_json(ck / rundir.STATE)
        # Batches, their shards and the optimizer's layout all depend on how it was launched.
        launch = state.pop("launch", None)
        now = {"parallel": self.env.get("parallel", "none"), "world": self.dist.world}
        if launch is not None and launch != now:
            raise ConfigError(
                f"the checkpoint was written by {launch['world']} process(es) "
                f"({launch['parallel']}); resume with the same launcher and process count "
                f"(now: {now['world']}, {now['parallel']})"
            )
        extra = torch.load(ck / "optimizer.pt", map_location=self.device, weights_only=True)
        if self.fsdp is not None:
            # Every rank reads the full tensors (the run directory is shared) and keeps its shard.
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                set_model_state_dict,
                set_optimizer_state_dict,
            )
            from torch.distributed.tensor import distribute_tensor

            full = StateDictOptions(full_state_dict=True)
            weights: dict[str, Any] = load_file(str(ck / "model.safetensors"), device=self.device)
            set_model_state_dict(self.model, weights, options=full)
            set_optimizer_state_dict(self.model, self.optimizer, extra["optimizer"], options=full)
            if self._ema is not None:
                saved = load_file(str(ck / "ema.safetensors"), device=self.device)
                self._ema = [
                    distribute_tensor(saved[str(i)], p.device_mesh, p.placements)
                    for i, p in enumerate(self._params)
                ]
        else:
            if self.engine is not None:  # weights and each rank's optimizer shard
                self.engine.load_checkpoint(
                    str(ck / "deepspeed"), tag="last", load_lr_scheduler_states=False
                )
            else:
                load_model(self.model, str(ck / "model.safetensors"), device=self.device)
                self.optimizer.load_state_dict(extra["optimizer"])
            if self._ema is not None:
                saved = load_file(str(ck / "ema.safetensors"), device=self.device)
                self._ema = [saved[str(i)] for i in range(len(self._ema))]
        self.scheduler.load_state_dict(extra["scheduler"])
        if self.scaler is not None and extra.get("scaler"):
            self.scaler.load_state_dict(extra["scaler"])
        rngs = extra.get("torch_rng_per_rank") or [extra["torch_rng"]]
        torch.set_rng_state(rngs[self.dist.rank if len(rngs) > 1 else 0].cpu())
        ranges = state.pop("qat_ranges", None)
        if self.qat is not None and ranges is not None:
            self.qat.scheme.ranges = ranges
        self._loss_sum = state.pop("loss_sum", 0.0)
        self._loss_n = state.pop("loss_n", 0)
        self.state.update(state)
        self._last_eval_step = state["history"][-1]["step"] if state.get("history") else -1
        self._qat_switch(quiet=True)
        if self.teacher is not None and (ck / "teacher.safetensors").exists():
            load_model(self.teacher, str(ck / "teacher.safetensors"), device=self.device)
        self._mark_boundary()
        self.state["samples"] = 0
        self.state["train_s"] = 0.0


# -- the curve ----------------------------------------------------------------------------------


def _plot(history: list[dict[str, Any]], metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(steps, [h["train_loss"] for h in history], "o-", label="train loss")
    a.plot(steps, [h["val_loss"] for h in history], "s-", label="validation loss")
    a.set_xlabel("optimizer step")
    a.set_ylabel("cross-entropy")
    a.legend()
    a.grid(alpha=0.3)
    b.plot(steps, [h["val_accuracy"] * 100 for h in history], "o-", label="validation accuracy")
    b.plot(steps, [h["val_macro_f1"] * 100 for h in history], "s-", label="validation macro F1")
    b.set_xlabel("optimizer step")
    b.set_ylabel("%")
    b.legend()
    b.grid(alpha=0.3)
    fig.suptitle(f"training curve (best by validation {metric})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
