"""``edgetune train``: fine-tune a compact transformer for text classification."""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import fsutil
from ..console import sayer
from ..data import Data
from ..errors import ConfigError, DataError, EdgetuneError
from ..formats import rundir
from ..modeling import load_for_training, load_saved, model_config
from ..presets import ModelSource, resolve_model
from ..tasks import MULTI, TEXT, TOKENS, task_named
from . import checkpoint, distill
from .config import TrainConfig, TrainResult, dropped_summary, parse_qat_start
from .evaluate import Evaluator
from .loop import Trainer
from .parallel import backend_for
from .parallel.launch import (
    Dist,
    deepspeed_options,
    fsdp_options,
    launched_world,
    setup,
    teardown,
)
from .parts import RunTrainer, TrainerParts
from .signals import Signals, StepEvent, TrainingInterrupted, library_chatter


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
    if config is not None and config.latency_budget and config.layers is not None:
        raise ConfigError("--latency-budget chooses the number of layers; drop --layers")
    device_hint = config.device if config else "auto"
    # Few-shot training is one process (seconds to minutes on K rows per class). Under a
    # launcher, refusing on every rank would end in the launcher's own traceback; instead
    # rank 0 trains alone and the others leave at once, successfully.
    alone = config is not None and config.strategy == "fewshot" and launched_world() > 1
    if alone and _launched_rank() != 0:
        return None  # type: ignore[return-value]  # rank 0 writes and reports the run
    signals = Signals()
    signals.install()
    try:
        d = Dist() if alone else setup(_launch_device(device_hint))
        if alone and progress:
            sayer(progress)(
                f"--strategy fewshot trains in one process: rank 0 alone (of {launched_world()})"
            )
        try:
            with library_chatter(progress):
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
            teardown(d)
    except KeyboardInterrupt:
        raise TrainingInterrupted(
            "interrupted before training began; nothing was written", signals.signum
        ) from None
    finally:
        signals.restore()


def _fit_budget(
    config: TrainConfig,
    source: ModelSource,
    label_names: list[str],
    env: dict[str, Any],
    say: Any,
    depth: int,
) -> TrainConfig:
    """Choose --layers for --latency-budget (recorded in the run, so --resume does not measure
    again: the resolved config holds the choice)."""
    from ..runtime import default_threads
    from .budget import choose_depth, measure_candidates, parse_budget
    from .trainable import keep_layers

    budget_ms, seq = parse_budget(str(config.latency_budget))

    def build(n: int) -> tuple[Any, Any]:
        tokenizer, model, _ = load_for_training(source, config, label_names)
        keep_layers(model, n)
        return model, tokenizer

    threads = default_threads()
    measured = measure_candidates(build, depth, seq, threads, say)
    chosen = choose_depth(measured, budget_ms, seq)
    env["latency_budget"] = {
        "budget_ms": budget_ms,
        "seq": seq,
        "threads": threads,
        "p50_ms_by_layers": {str(k): round(v, 3) for k, v in measured.items()},
        "layers": chosen,
    }
    say(f"latency budget {budget_ms:g} ms at {seq} tokens: {chosen} of {depth} layers")
    return replace(config, layers=chosen)


def _launched_rank() -> int:
    import os

    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def _launch_device(requested: str) -> str:
    if requested != "auto" or launched_world() <= 1:
        return requested
    from ..hw import pick_device

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
    from ..presets import usable_positions

    positions = usable_positions(model_config(source, config.trust_remote_code))
    if positions is not None and config.max_length is not None and config.max_length > positions:
        raise ConfigError(
            f"--max-length {config.max_length} exceeds the {positions} positions of "
            f"{config.model}; pass --max-length {positions} or less"
        )
    if positions is not None and config.max_length is None:
        p = source.preset
        config = replace(config, max_length=min(p.max_length if p else 128, positions))
    if config.latency_budget:
        from .budget import parse_budget

        seq = parse_budget(config.latency_budget)[1]
        if config.max_length is not None and seq > config.max_length:
            # Candidates would be timed at the max length while the run recorded another.
            raise ConfigError(
                f"--latency-budget {config.latency_budget} times {seq} tokens, beyond this run's "
                f"max length {config.max_length}; give a length up to {config.max_length}"
            )
    return config


def _train(
    config: TrainConfig | None,
    d: Any,
    t_start: float,
    resume_options: dict[str, Any] | None,
    overwrite: bool,
    progress: bool,
    signals: Signals,
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
            sources = config.input_paths()
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
    signals: Signals,
    on_step: Callable[[StepEvent], None] | None,
) -> TrainResult:
    """The run's phases, in order: each refuses its own bad input before later work."""
    say = sayer(progress)
    source = resolve_model(config.model)
    config = _check_max_length(config, source)
    config = _resolve_task(config)
    data, label_names = _prepare_data(config)
    config, env = _resolve(config, source)
    env["world_size"] = d.world
    fsdp, zero = _check_launch(config, env, d, say)
    say(
        f"data: {len(data.train)} train / {len(data.validation)} validation / {len(data.test)} test, "
        f"{data.num_labels} classes; dropped {dropped_summary(data.report)}"
    )
    data, teacher, extra = _prepare_teacher(config, data, env, d, work, say, progress)
    config, tokenizer, model = _build_model(config, source, label_names, env, say, data)
    if not resume and d.main:
        _start_work(config, source, env, work, teacher, extra)
    d.barrier()
    backend = backend_for(d, env["device"], fsdp, zero, config, verbose=progress)
    parts = TrainerParts(
        config, env, data, tokenizer, model, work, say, progress, d, backend, signals, on_step
    )
    trainer = _make_trainer(parts, teacher)
    if resume and isinstance(trainer, Trainer):  # a few-shot run keeps no checkpoint
        checkpoint.load(trainer)
        say(f"resuming {work} at step {trainer.state['step']} (epoch {trainer.state['epoch']})")
    try:
        trainer.fit()
        return _finish(trainer, data, label_names, output, t_start, signals)
    except KeyboardInterrupt:
        raise _interrupted(trainer, output, signals) from None


def _resolve_task(config: TrainConfig) -> TrainConfig:
    """The task (``auto``: token classification when the data holds token lists, CoNLL or
    spans; multi-label when its label column holds lists or delimited labels, or several
    label columns are given) and its metric; options the task cannot use are refused before
    any work."""
    name = config.task if config.task != "auto" else _detect_task(config)
    task = task_named(name)
    metric = task.metrics[0] if config.metric == "auto" else config.metric
    if metric not in task.metrics:
        raise ConfigError(
            f"--metric {metric} is not a {name} figure; choose one of {', '.join(task.metrics)}"
        )
    unused = _unused_options(config, name)
    if unused:
        raise ConfigError(f"{unused} does not apply to {name}; drop it")
    return replace(config, task=name, metric=metric)


def _detect_task(config: TrainConfig) -> str:
    from ..data.multilabel import is_multilabel_data
    from ..data.tokens import is_token_data

    if is_token_data(config.data):
        return TOKENS
    columns = config.label_columns or ((config.label_column,) if config.label_column else ())
    return MULTI if is_multilabel_data(config.data, columns, config.label_sep) else TEXT


def _unused_options(config: TrainConfig, task: str) -> str | None:
    """The first option set that the task has no use for."""
    tokens, multi = task == "token-classification", task == "multi-label"
    checks = [
        (not tokens and config.label_all_subwords, "--label-all-subwords"),
        (not multi and config.threshold != "0.5", "--threshold"),
        (not multi and bool(config.label_columns), "several --label-column"),
        (not multi and config.label_sep != ",", "--label-sep"),
    ]
    if multi:  # few-shot learns label sets (one-vs-rest head) from labelled rows only
        checks += [(config.shots == 0, "--shots 0 (zero-shot)")]
    if tokens:
        checks += [
            (config.strategy == "fewshot", "--strategy fewshot"),
            (config.shots is not None, "--shots"),
            (bool(config.label_prompts), "--label-prompts"),
        ]
    if tokens or multi:
        checks += [
            (bool(config.template), "--template"),
            (bool(config.unlabeled), "--unlabeled"),
            (config.distill_augment > 0, "--distill-augment"),
            (bool(config.latency_budget), "--latency-budget"),
        ]
    if tokens:
        checks += [
            (config.augment > 0, "--augment"),
            (config.class_weights != "none", "--class-weights"),
            (len(config.text_columns) > 1, "a second --text-column"),
        ]
    return next((name for hit, name in checks if hit), None)


def _prepare_data(config: TrainConfig) -> tuple[Any, list[str]]:
    """The splits, the label names, and --shots' rows per class."""
    from ..data.labelled import load_task_data

    data = load_task_data(
        config.data,
        config.task,
        text_columns=config.text_columns,
        label_column=config.label_column,
        label_columns=config.label_columns,
        label_sep=config.label_sep,
        label_names=config.label_names,
        val_size=config.val_size,
        test_size=config.test_size,
        seed=config.seed,
        header=config.header,
    )
    label_names = data.label_names  # --label-names named the integer tags (or labels)
    if config.task == "text-classification":
        label_names = _apply_label_names(data, config.label_names)
    if config.shots is not None:
        from .fewshot import sample_shots

        data.report["train"]["rows_before_shots"] = len(data.train)
        data.train = sample_shots(data.train, config.shots, config.seed, data.num_labels)
        data.report["train"]["rows"] = len(data.train)
        data.report["shots"] = config.shots
    return data, label_names


def _check_launch(config: TrainConfig, env: dict[str, Any], d: Any, say: Any) -> tuple[Any, Any]:
    """The sharding settings (read and checked even where there is one process), recorded."""
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
    return fsdp, zero


def _prepare_teacher(
    config: TrainConfig,
    data: Data,
    env: dict[str, Any],
    d: Any,
    work: Path,
    say: Any,
    progress: bool,
) -> tuple[Data, Any, Any]:
    """With --teacher: the texts without labels it labels, and its logits and figures (rank 0
    reads and runs it, before seeding; every rank receives them)."""
    if not config.teacher:
        return data, None, None
    extra = d.broadcast(distill.unlabeled_rows(config, data, work, say) if d.main else None)
    data = distill.with_unlabeled(data, extra)
    teacher = d.broadcast(
        distill.load_or_compute(config, data, env, work, say, progress) if d.main else None
    )
    if extra is not None:  # what was read and dropped, recorded with the teacher's figures
        teacher[1].setdefault("unlabeled", data.report.get("unlabeled"))
        data.report["unlabeled"] = teacher[1]["unlabeled"]
    return data, teacher, extra


def _build_model(
    config: TrainConfig,
    source: ModelSource,
    label_names: list[str],
    env: dict[str, Any],
    say: Any,
    data: Any,
) -> tuple[TrainConfig, Any, Any]:
    """Seeded weights and tokenizer (a new multi-label head starting at the label rates); the
    student's depth (--layers, or the latency budget's)."""
    _seed_everything(config.seed)
    tokenizer, model, new_weights = load_for_training(source, config, label_names)
    if new_weights and config.task == MULTI:
        from .trainable import start_at_label_rates

        start_at_label_rates(model, data.train.targets(data.num_labels))
    if config.qat_distill and new_weights and parse_qat_start(config.qat_start)[0] == 0:
        raise ConfigError(
            f"--qat-distill learns from the model as QAT starts, and {config.model} has an "
            "untrained classifier there; train first (--qat-start 2) or pass a fine-tuned "
            "--model RUN/best"
        )
    if config.latency_budget and config.layers is None:
        depth = getattr(model.config, "num_hidden_layers", None) or model.config.n_layers
        config = _fit_budget(config, source, label_names, env, say, int(depth))
    if config.layers is not None:
        from .trainable import keep_layers

        env["layers_kept"] = keep_layers(model, config.layers)
        say(f"student: layers {env['layers_kept']} of {config.model}")
    return config, tokenizer, model


def _start_work(
    config: TrainConfig,
    source: ModelSource,
    env: dict[str, Any],
    work: Path,
    teacher: Any,
    extra: Any,
) -> None:
    """A new run's working folder: the resolved config, and the teacher's logits and texts."""
    rundir.create_work(work)
    rundir.write_json(
        work / rundir.CONFIG, _config_file(config, source, env, rundir.fingerprint(config.data))
    )
    if teacher is not None:
        distill.save(teacher[0], teacher[1], work)
    if extra is not None:
        distill.save_unlabeled(extra, work)


def _make_trainer(parts: TrainerParts, teacher: Any) -> RunTrainer:
    """The few-shot trainer, or the loop (learning the teacher's logits, if any)."""
    if parts.config.strategy == "fewshot":
        from .fewshot import FewShotTrainer

        return FewShotTrainer(parts)
    trainer = Trainer(parts)
    if teacher is not None:
        trainer.learn_from(teacher[0])
    return trainer


def _interrupted(trainer: RunTrainer, output: Path, signals: Signals) -> TrainingInterrupted:
    """Ctrl-C or SIGTERM: save what resuming needs, and say how to continue."""
    step, work = trainer.state["step"], trainer.work
    what = "terminated" if signals.signum == signal.SIGTERM else "interrupted"
    if not isinstance(trainer, Trainer):
        return TrainingInterrupted(
            f"{what} at step {step}; a few-shot run keeps no checkpoint (it takes minutes), "
            "so nothing was written; start it again",
            signals.signum,
        )
    if trainer.backend.saves_anywhere:
        with signals.atomic():  # every rank: each one's random state goes in
            checkpoint.save(trainer)
        saved = f"checkpoint saved in {work}"
    elif rundir.has_checkpoint(work):
        # Saving sharded state needs every rank at the same point; Ctrl-C is not.
        saved = f"the checkpoint of the last epoch in {work} is kept"
    else:
        return TrainingInterrupted(
            f"{what} at step {step}, before the first checkpoint of this sharded run; "
            f"start again with --overwrite",
            signals.signum,
        )
    return TrainingInterrupted(
        f"{what} at step {step}; {saved}; "
        f"continue with `edgetune train --resume --output {output}`",
        signals.signum,
    )


def _finish(
    trainer: RunTrainer,
    data: Data,
    label_names: list[str],
    output: Path,
    t_start: float,
    signals: Signals,
) -> TrainResult:
    """Final figures, metrics.json and the curve; then the run is moved into place."""
    config, env, d, work, say = trainer.config, trainer.env, trainer.dist, trainer.work, trainer.say
    tokenizer = trainer.tokenizer

    # Memory per rank: what sharding saves shows in the weights and optimizer state it holds.
    from ..hw import peak_rss_mb

    memory = d.gather(
        [{"rank": d.rank, "peak_rss_mb": peak_rss_mb(), "model_state_mb": trainer.state_mb()}]
    )
    if not d.main:
        d.barrier()  # leave with rank 0: an early exit can abort the group's threads
        return None  # type: ignore[return-value]  # rank 0 writes and reports the run

    # Final figures come from the saved best model in fp32: exactly what export will see.
    say("evaluating the best checkpoint on validation and test (fp32)")
    best_model = load_saved(work / rundir.BEST).to(env["device"])
    ev = Evaluator(best_model, tokenizer, config, env, precision="fp32")
    qat_info = None
    if config.qat:
        from ..quant import read_scheme
        from .qat import attach

        scheme = read_scheme(work / rundir.BEST)
        if scheme is None:
            raise EdgetuneError(f"{work / rundir.BEST} lacks its QAT scheme; retrain with --qat")
        float_test = ev.metrics(data.test, label_names)
        attach(best_model, scheme)  # the figures of a QAT run are those of its int8 arithmetic
        qat_info = {"scheme": scheme.to_dict(), "test_float": float_test}
    val = ev.metrics(data.validation, label_names)
    test = ev.metrics(data.test, label_names)
    if ev.task.multi_label:  # the decision rule, then the figures it gives
        val, test = _thresholds(ev, data, config, work / rundir.BEST, val, test)
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
        teacher=rundir.read_json(work / rundir.TEACHER) if config.teacher else None,
    )
    rundir.write_json(work / rundir.METRICS, result.to_dict())
    _plot(state["history"], config.metric, work / rundir.CURVE)
    with signals.atomic():
        rundir.finalize(work, output)
    d.barrier()
    return result


def _thresholds(
    ev: Evaluator, data: Any, config: TrainConfig, best: Path, val: dict, test: dict
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each label's threshold (``--threshold tuned``: the one maximising its F1 on validation;
    else the one given), kept in ``best/``; validation and test figures decided by it, with
    those at 0.5 beside them."""
    from ..labelsets import decisions, multilabel_metrics, sigmoid, tune_thresholds

    names, k = data.label_names, data.num_labels
    probs = {s: sigmoid(ev.logits(getattr(data, s))) for s in ("validation", "test")}
    if config.threshold == "tuned":
        values = tune_thresholds(probs["validation"], data.validation.targets(k))
    else:
        values = np.full(k, float(config.threshold), np.float32)
    rundir.write_thresholds(best, {n: float(v) for n, v in zip(names, values)}, config.threshold)
    out = []
    for name, at_half in (("validation", val), ("test", test)):
        split = getattr(data, name)
        m = multilabel_metrics(split.targets(k), decisions(probs[name], values), names)
        out.append({**m, "loss": at_half["loss"], "at_0.5": at_half})
    return out[0], out[1]


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

    from .. import hw

    p = source.preset
    device = hw.pick_device(config.device)
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda but no CUDA GPU is visible; use --device cpu or auto")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps but MPS is not available; use --device cpu or auto")
    precision = config.precision
    if precision == "auto":
        if device == "cuda":
            # Native bf16 only (Ampere on): pre-Ampere GPUs emulate it slowly, fp16 is theirs.
            native = torch.cuda.is_bf16_supported(including_emulation=False)
            precision = "bf16" if native else "fp16"
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
    fewshot = config.strategy == "fewshot"
    if fewshot:
        from .fewshot import LEARNING_RATE

        default_lr = LEARNING_RATE
    else:
        default_lr = p.learning_rate if p else 5e-5
    resolved = replace(
        config,
        device=device,
        precision=precision,
        max_length=config.max_length or (p.max_length if p else 128),
        learning_rate=config.learning_rate or default_lr,
        epochs=config.epochs or (1 if fewshot else p.epochs if p else 3),
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

    from ..envinfo import environment

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


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# -- batching -----------------------------------------------------------------------------------


# -- the loop -----------------------------------------------------------------------------------


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
    if history and f"val_{metric}" in history[0] and metric not in ("accuracy", "macro_f1"):
        b.plot(
            steps, [h[f"val_{metric}"] * 100 for h in history], "^-", label=f"validation {metric}"
        )
    b.set_xlabel("optimizer step")
    b.set_ylabel("%")
    b.legend()
    b.grid(alpha=0.3)
    fig.suptitle(f"training curve (best by validation {metric})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
