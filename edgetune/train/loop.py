"""The training loop: epochs, accumulation, atomic steps, evaluation, the best model, early
stopping. What varies lives in parts: the parallel backend, the checkpoint, the moving
average, quantization-aware training."""

from __future__ import annotations

import contextlib
import math
import sys
import time
from typing import Any

import numpy as np

from ..data import Data
from ..errors import TrainingDiverged
from . import checkpoint, distill
from .batching import autocast, collate, encode, epoch_encoding, global_batches
from .config import TrainConfig
from .ema import EMA
from .evaluate import Evaluator, merged_loss
from .parts import TrainerParts
from .setup import make_optimizer, prepare
from .signals import StepEvent


class Trainer:
    def __init__(self, parts: TrainerParts) -> None:
        import torch

        config, env, data, tokenizer = parts.config, parts.env, parts.data, parts.tokenizer
        dist, backend, model = parts.dist, parts.backend, parts.model
        self.config, self.env, self.data, self.tokenizer = config, env, data, tokenizer
        self.work, self.say, self.progress, self.dist = parts.work, parts.say, parts.progress, dist
        self.backend, self.signals, self.on_step = backend, parts.signals, parts.on_step
        self.device = env["device"]
        self.model = prepare(model, config).to(self.device)
        fsdp = getattr(backend, "options", None)
        if config.gradient_checkpointing or getattr(fsdp, "activation_checkpointing", False):
            base = getattr(self.model, "get_base_model", lambda: self.model)()
            base.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        backend.shard(self.model)
        self.train_enc = encode(tokenizer, data.train, config.max_length or 128)
        self.labels = torch.tensor(data.train.labels)
        self.loss_fn = loss_function(config, data, self.device)
        # Under DDP each global batch holds world_size x batch_size rows, one shard per rank.
        self.global_batch = config.batch_size * dist.world
        self.steps_per_epoch = math.ceil(len(self.global_batches(0)) / config.grad_accum)
        self.total_steps = self.steps_per_epoch * (config.epochs or 1)
        from transformers import get_linear_schedule_with_warmup

        optimizer = make_optimizer(self.model, config, self.device)
        self.scheduler = get_linear_schedule_with_warmup(
            optimizer, int(config.warmup_ratio * self.total_steps), self.total_steps
        )
        self.qat: Any = None
        if config.qat:
            from .qat import QATControl

            self.qat = QATControl(self.model, config, self.steps_per_epoch, self.total_steps)
        self.scaler = torch.amp.GradScaler("cuda") if env["precision"] == "fp16" else None
        self.net, self.optimizer = backend.wrap(self.model, optimizer)
        self.evaluator = Evaluator(self.model, tokenizer, config, env, dist=dist)
        self.state = fresh_state(config.metric)
        self.loss_sum, self.loss_n, self.last_eval_step = 0.0, 0, -1
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.ema = EMA(params, config.ema) if config.ema else None
        self.boundary: tuple[Any, ...] = ()
        self.mark_boundary()
        self.teacher_logits: Any = None

    def learn_from(self, logits: np.ndarray) -> None:
        """Distil: the teacher's logits on the training rows join the loss (``distill.loss``)."""
        import torch

        self.teacher_logits = torch.from_numpy(np.asarray(logits, np.float32)).to(self.device)

    def state_mb(self) -> float:
        """MB of weights and optimizer state this rank holds (its shard when sharded)."""
        tensors = self.backend.state_tensors(self.model, self.optimizer)
        return sum(t.numel() * t.element_size() for t in tensors) / 2**20

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def global_batches(self, epoch: int, enc: Any = None) -> list[np.ndarray]:
        return global_batches(
            enc or self.train_enc, self.global_batch, self.config, epoch, self.dist
        )

    def fit(self) -> None:
        c, s = self.config, self.state
        epochs = c.epochs or 1
        self.say(
            f"training {c.model} ({c.strategy}, {self.trainable_parameters() / 1e6:.2f}M trainable "
            f"parameters) on {self.device} in {self.env['precision']} for {epochs} epoch(s)"
        )
        self.model.train()
        if self.evaluation_due():  # stopped between a step and its evaluation
            self.evaluate(s["position"])
        while s["epoch"] < epochs and not s["done"]:
            self.run_epoch(epochs)
        s["done"] = True
        self.hook("end", s["next_batch"])

    def run_epoch(self, epochs: int) -> None:
        from tqdm.auto import tqdm

        c, s, atomic = self.config, self.state, self.signals.atomic
        epoch = s["epoch"]
        enc = epoch_encoding(self.tokenizer, self.data.train, self.config, epoch, self.train_enc)
        batches = self.global_batches(epoch, enc)
        bar = tqdm(
            total=len(batches),
            initial=s["next_batch"],
            desc=f"epoch {epoch + 1}/{epochs}",
            unit="batch",
            disable=not self.progress,
            leave=False,
            dynamic_ncols=True,
            # Logs (CI, files) get an update every 30 s instead of a redraw per batch.
            mininterval=0.1 if sys.stderr.isatty() else 30.0,
        )
        t0 = time.perf_counter()
        for bi in range(s["next_batch"], len(batches)):
            last = not (bi + 1) % c.grad_accum or bi + 1 == len(batches)
            self.forward_backward(enc, batches[bi], last, bi)
            bar.update(1)
            if not last:
                continue
            # A signal here waits for the step to be recorded: a checkpoint never holds
            # weights one step ahead of its counters (resume would apply a batch twice).
            with atomic():
                self.step(bi)
                s["position"] = round(epoch + (bi + 1) / len(batches), 4)
                self.mark_boundary()
                self.hook("boundary", bi)
            if bar.n % 20 == 0 or bi + 1 == len(batches):
                bar.set_postfix(loss=f"{self.loss_sum / max(self.loss_n, 1):.4f}", refresh=False)
            if c.eval_steps and s["step"] % c.eval_steps == 0:
                s["train_s"] += time.perf_counter() - t0
                self.evaluate(s["position"])
                t0 = time.perf_counter()
                if s["done"]:
                    bar.close()
                    return
        with atomic():
            s["train_s"] += time.perf_counter() - t0
            s["epoch"] += 1
            s["next_batch"] = 0
            s["position"] = float(s["epoch"])
            self.hook("epoch", len(batches))
        if self.last_eval_step != s["step"]:
            self.evaluate(float(s["epoch"]))
        if not s["done"] and s["epoch"] < epochs:
            with atomic():
                checkpoint.save(self)
        bar.close()

    def forward_backward(self, enc: Any, rows_all: np.ndarray, last: bool, bi: int) -> None:
        """One micro-batch: this rank's shard forward, the loss, its gradients."""
        c = self.config
        if self.qat is not None:
            self.qat.switch(self.state["step"], self.model, self.ema, self.say)
        self.hook("batch", bi)
        rows = rows_all[self.dist.rank :: self.dist.world]  # this rank's shard
        pad = self.tokenizer.pad_token_id
        batch = {k: v.to(self.device) for k, v in collate(enc, rows, pad).items()}
        labels = self.labels[rows].to(self.device)
        self.backend.accumulation_boundary(last)
        with autocast(self.device, self.env["precision"]):
            logits = self.net(**batch).logits
        teacher = None if self.teacher_logits is None else self.teacher_logits[rows]
        if teacher is not None:
            t, a = c.distill_temperature, c.distill_alpha
            loss = distill.loss(self.loss_fn, logits.float(), labels, teacher, a, t)
        else:
            loss = self.loss_fn(logits.float(), labels)
        base = loss
        if self.qat is not None:
            precision = autocast(self.device, self.env["precision"])
            loss = self.qat.loss(loss, logits.float(), batch, precision)
        value = loss.item()  # the step synchronises here anyway
        if not math.isfinite(value):
            raise diverged(self.state, value, nonfinite_cause(logits, labels, teacher, base, c))
        loss = loss / c.grad_accum
        self.backend.backward(loss, self.scaler)
        self.loss_sum += value * len(rows)
        self.loss_n += len(rows)
        self.state["samples"] += len(rows_all)
        self.hook("backward", bi)

    def step(self, bi: int) -> None:
        """Optimizer, schedule, counter and moving average: called inside ``atomic()``."""
        self.backend.step(self.model, self.optimizer, self.scaler)
        self.hook("optimizer", bi)
        self.scheduler.step()
        self.hook("scheduler", bi)
        self.hook("zero_grad", bi)
        self.state["step"] += 1
        self.hook("counted", bi)
        if self.ema is not None:
            self.ema.update(self.state["step"])
        self.hook("ema", bi)
        self.state["next_batch"] = bi + 1

    def hook(self, point: str, batch: int) -> None:
        if self.on_step is not None:
            s = self.state
            self.on_step(StepEvent(point, s["step"], s["epoch"], batch, self.model, self.optimizer))

    def evaluation_due(self) -> bool:
        """Whether the step the run stopped at owed an evaluation it did not record."""
        s, c = self.state, self.config
        if s["step"] == 0 or self.last_eval_step == s["step"] or s["done"]:
            return False
        at_epoch_end = s["next_batch"] == 0
        return at_epoch_end or bool(c.eval_steps and s["step"] % c.eval_steps == 0)

    def mark_boundary(self) -> None:
        """Remember what a checkpoint taken now must hold (RNG and loss sums at this step)."""
        import torch

        self.boundary = (torch.get_rng_state(), self.loss_sum, self.loss_n, self.state["samples"])

    def weights(self) -> Any:
        """The weights evaluated and saved: the moving average where there is one."""
        return self.ema.swapped_in() if self.ema is not None else contextlib.nullcontext()

    def evaluate(self, epoch: float) -> None:
        if self.dist.enabled:  # the reported train loss is over every rank's rows
            self.loss_sum, self.loss_n = merged_loss(self.loss_sum, self.loss_n, self.device)
            if self.qat is not None:
                self.qat.merge_ranges(self.dist)
        # Every rank evaluates its share and receives the whole split's logits, so every rank
        # reaches the same figures and the same best / early-stop decisions.
        c, s = self.config, self.state
        with self.weights():
            m = self.evaluator.metrics(self.data.validation, self.data.label_names)
        lr = self.scheduler.get_last_lr()[0]
        entry = history_entry(epoch, s, self.loss_sum / max(self.loss_n, 1), m, lr)
        value = m[c.metric]
        best = s["best"]
        better = value < best["value"] if c.metric == "loss" else value > best["value"]
        if self.qat is not None and not self.qat.enabled:
            better = False  # a QAT run keeps only checkpoints trained against int8
        with self.signals.atomic():  # recorded wholly or not at all (resume evaluates again)
            self.loss_sum, self.loss_n = 0.0, 0
            self.mark_boundary()
            s["history"].append(entry)
            if better:
                best.update(value=value, step=s["step"], epoch=entry["epoch"])
                s["bad_evals"] = 0
                with self.weights():
                    checkpoint.save_best(self)
            else:
                s["bad_evals"] += 1
            stop = bool(c.patience and s["bad_evals"] >= c.patience)
            if stop:
                s["stopped_early"] = True
                s["done"] = True
            self.last_eval_step = s["step"]
            self.hook("evaluated", s["next_batch"])
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
                checkpoint.save(self)


def loss_function(config: TrainConfig, data: Data, device: Any) -> Any:
    """Cross-entropy, weighted by inverse class frequency with --class-weights balanced."""
    import torch

    weight = None
    if config.class_weights == "balanced":
        labelled = np.asarray(data.train.labels)
        labelled = labelled[labelled >= 0]  # rows without labels (distillation) weigh 1
        counts = np.bincount(labelled, minlength=data.num_labels).astype(np.float64)
        w = len(labelled) / (data.num_labels * np.maximum(counts, 1))
        weight = torch.tensor(w, dtype=torch.float32, device=device)
    return torch.nn.CrossEntropyLoss(weight=weight)


def fresh_state(metric: str) -> dict[str, Any]:
    """The loop's counters and records before the first step (what a checkpoint carries)."""
    return {
        "step": 0,
        "epoch": 0,
        "next_batch": 0,
        "position": 0.0,  # epochs done, as a fraction (what an evaluation is labelled)
        "samples": 0,
        "train_s": 0.0,
        "history": [],
        "best": {
            "metric": metric,
            "value": math.inf if metric == "loss" else -math.inf,
            "step": 0,
            "epoch": 0.0,
        },
        "bad_evals": 0,
        "stopped_early": False,
        "done": False,
    }


def history_entry(
    epoch: float, state: dict[str, Any], train_loss: float, m: dict[str, Any], lr: float
) -> dict[str, Any]:
    """One evaluation's record in the run's history (metrics.json)."""
    return {
        "epoch": round(epoch, 4),
        "step": state["step"],
        "train_loss": train_loss,
        "val_loss": m["loss"],
        "val_accuracy": m["accuracy"],
        "val_macro_f1": m["macro_f1"],
        "learning_rate": lr,
        "train_s": round(state["train_s"], 2),
    }


def diverged(state: dict[str, Any], value: float, cause: str) -> TrainingDiverged:
    """The error for a non-finite loss: stepping on it would fill every weight with NaN, and
    the run would go on to save them as its best."""
    return TrainingDiverged(
        f"training stopped at step {state['step']} (epoch {state['epoch'] + 1}): the loss is "
        f"{value}; {cause}; nothing of this step was applied, start again with --overwrite "
        "once fixed"
    )


def nonfinite_cause(logits: Any, labels: Any, teacher: Any, base: Any, c: TrainConfig) -> str:
    """Which term of a non-finite loss went wrong, and the likely cause (for the message)."""
    import torch

    if not bool(torch.isfinite(logits.float()).all()):
        return (
            "the model's own logits are not finite (its weights overflowed or hold NaN): "
            "lower --learning-rate, try --precision fp32, or check --model"
        )
    if teacher is None:
        if not bool(torch.isfinite(base)):
            return "the cross-entropy term is not finite; check the labels and --class-weights"
        return (
            "the QAT self-distillation term is not finite; lower --learning-rate or --qat-distill"
        )
    if not bool(torch.isfinite(teacher).all()):
        return (
            "the teacher's logits are not finite (its weights hold NaN or overflow): "
            "check --teacher"
        )
    return (
        f"the distillation term is not finite at --distill-temperature "
        f"{c.distill_temperature:g}; use a temperature near 1-4"
    )
