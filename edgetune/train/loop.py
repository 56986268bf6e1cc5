"""The training loop: epochs, accumulation, atomic steps, evaluation, the best model, early
stopping. What varies lives in parts: the parallel backend, the checkpoint, the moving
average, quantization-aware training."""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

import numpy as np

from ..console import progress_bar
from ..data import Data
from ..errors import TrainingDiverged
from ..tasks import task_named
from . import checkpoint, distill
from .batching import autocast, collate, encode, epoch_encoding, global_batches
from .config import TrainConfig
from .counters import Counters, history_entry
from .ema import EMA
from .evaluate import Evaluator, merged_loss
from .parts import TrainerParts
from .signals import StepEvent
from .trainable import make_optimizer, make_schedule, prepare


class Trainer:
    def __init__(self, parts: TrainerParts) -> None:
        import torch

        config, env, data, tokenizer = parts.config, parts.env, parts.data, parts.tokenizer
        dist, backend, model = parts.dist, parts.backend, parts.model
        self.config, self.env, self.data, self.tokenizer = config, env, data, tokenizer
        self.work, self.say, self.progress, self.dist = parts.work, parts.say, parts.progress, dist
        self.backend, self.signals, self.on_step = backend, parts.signals, parts.on_step
        self.device = env["device"]
        fsdp = getattr(backend, "options", None)
        checkpointing = getattr(fsdp, "activation_checkpointing", False)
        self.model = prepare(model, config, self.device, checkpointing)
        backend.shard(self.model)
        self.train_enc = encode(tokenizer, data.train, config, data.label_names)
        # None: per-token labels travel in the encoding
        self.labels = task_named(config.task).row_labels(data.train, data.num_labels)
        self.loss_fn = loss_function(config, data, self.device)
        # Under DDP each global batch holds world_size x batch_size rows, one shard per rank.
        self.global_batch = config.batch_size * dist.world
        self.steps_per_epoch = math.ceil(len(self.global_batches(0)) / config.grad_accum)
        self.total_steps = self.steps_per_epoch * (config.epochs or 1)
        optimizer = make_optimizer(self.model, config, self.device)
        self.scheduler = make_schedule(optimizer, config, self.total_steps)
        self.qat: Any = None
        if config.qat:
            from .qat import QATControl

            self.qat = QATControl(self.model, config, self.steps_per_epoch, self.total_steps)
        self.scaler = torch.amp.GradScaler("cuda") if env["precision"] == "fp16" else None
        self.net, self.optimizer = backend.wrap(self.model, optimizer)
        self.evaluator = Evaluator(self.model, tokenizer, config, env, dist=dist)
        self.counters = Counters(config.metric)
        self.state = self.counters.state
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.ema = EMA(params, config.ema) if config.ema else None
        self.teacher_logits: Any = None

    def learn_from(self, logits: np.ndarray) -> None:
        """Distil: the teacher's logits on the training rows (per token: on their words) join
        the loss (``distill.loss``)."""
        c, train = self.config, self.data.train
        self.teacher_logits = distill.on_device(logits, train, self.tokenizer, c, self.device)

    def state_mb(self) -> float:
        """MB of weights and optimizer state this rank holds (its shard when sharded)."""
        tensors = self.backend.state_tensors(self.model, self.optimizer)
        return sum(t.numel() * t.element_size() for t in tensors) / 2**20

    def global_batches(self, epoch: int, enc: Any = None) -> list[np.ndarray]:
        return global_batches(
            enc or self.train_enc, self.global_batch, self.config, epoch, self.dist
        )

    def fit(self) -> None:
        c, s = self.config, self.state
        epochs = c.epochs or 1
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        self.say(
            f"training {c.model} ({c.strategy}, {trainable / 1e6:.2f}M trainable "
            f"parameters) on {self.device} in {self.env['precision']} for {epochs} epoch(s)"
        )
        self.model.train()
        if self.counters.evaluation_due(c.eval_steps):  # stopped between a step and its evaluation
            self.evaluate(s["position"])
        while s["epoch"] < epochs and not s["done"]:
            self.run_epoch(epochs)
        s["done"] = True
        self.hook("end", s["next_batch"])

    def run_epoch(self, epochs: int) -> None:
        c, s, atomic = self.config, self.state, self.signals.atomic
        epoch = s["epoch"]
        enc = epoch_encoding(self.tokenizer, self.data.train, self.config, epoch, self.train_enc)
        batches = self.global_batches(epoch, enc)
        bar = progress_bar(
            total=len(batches),
            initial=s["next_batch"],
            desc=f"epoch {epoch + 1}/{epochs}",
            unit="batch",
            enabled=self.progress,
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
                self.counters.mark_boundary()
                self.hook("boundary", bi)
            if bar.n % 20 == 0 or bi + 1 == len(batches):
                bar.set_postfix(loss=f"{self.counters.mean_loss:.4f}", refresh=False)
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
        if self.counters.last_eval_step != s["step"]:
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
        labels = batch.pop("labels") if self.labels is None else self.labels[rows].to(self.device)
        self.backend.accumulation_boundary(last)
        with autocast(self.device, self.env["precision"]):
            logits = self.net(**batch).logits
        teacher = None if self.teacher_logits is None else self.teacher_logits[rows]
        t, a = c.distill_temperature, c.distill_alpha
        loss = base = distill.loss(self.loss_fn, logits.float(), labels, teacher, a, t)
        if self.qat is not None:
            precision = autocast(self.device, self.env["precision"])
            loss = self.qat.loss(loss, logits.float(), batch, precision)
        value = loss.item()  # the step synchronises here anyway
        if not math.isfinite(value):
            raise diverged(self.state, value, nonfinite_cause(logits, labels, teacher, base, c))
        loss = loss / c.grad_accum
        self.backend.backward(loss, self.scaler)
        self.counters.add_loss(value, len(rows), len(rows_all))
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

    def state_dict(self) -> checkpoint.TrainingState:
        """What a checkpoint holds, at the last step boundary (every rank calls this)."""
        weights, opt_state = self.backend.checkpoint_state(self.model, self.optimizer)
        ema = self.ema.full() if self.ema is not None else None
        counters, rng = self.counters.saved()
        rngs = self.dist.gather([rng])  # each rank draws its own dropout masks
        counters["launch"] = self.backend.launch()
        if self.qat is not None:
            counters["qat_ranges"] = self.qat.scheme.ranges
        torch_state = {
            "optimizer": opt_state,
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "torch_rng": rng,
            "torch_rng_per_rank": rngs,
        }
        return checkpoint.TrainingState(
            counters,
            torch_state,
            weights=self.model if weights is None else weights,
            ema=ema,
            teacher=self.qat.teacher if self.qat is not None else None,
            write_shards=self.backend.save_shards,
            main=self.dist.main,
        )

    def load_state_dict(self, saved: checkpoint.Saved) -> None:
        """Continue exactly where ``state_dict`` was taken."""
        state = dict(saved.counters)
        checkpoint.check_launch(state.pop("launch", None), self.backend.launch())
        extra = saved.torch_state(self.device)
        self.backend.load_checkpoint(saved.folder, self.model, self.optimizer, extra)
        if self.ema is not None:
            full = saved.ema(self.device, len(self.ema.average))
            self.ema.average = self.backend.like_params(full, self.ema.params)
        self.scheduler.load_state_dict(extra["scheduler"])
        if self.scaler is not None and extra.get("scaler"):
            self.scaler.load_state_dict(extra["scaler"])
        ranges = state.pop("qat_ranges", None)
        if self.qat is not None and ranges is not None:
            self.qat.scheme.ranges = ranges
        rngs = extra.get("torch_rng_per_rank") or [extra["torch_rng"]]
        self.counters.restore(state, rngs[self.dist.rank if len(rngs) > 1 else 0])
        if self.qat is not None:
            self.qat.switch(self.state["step"], self.model, self.ema)
            if self.qat.teacher is not None:
                saved.load_teacher(self.qat.teacher, self.device)
        self.counters.resumed()

    def weights(self) -> Any:
        """The weights evaluated and saved: the moving average where there is one."""
        return self.ema.swapped_in() if self.ema is not None else contextlib.nullcontext()

    def evaluate(self, epoch: float) -> None:
        k = self.counters
        if self.dist.enabled:  # the reported train loss is over every rank's rows
            k.loss_sum, k.loss_n = merged_loss(k.loss_sum, k.loss_n, self.device)
            if self.qat is not None:
                self.qat.merge_ranges(self.dist)
        # Every rank evaluates its share and receives the whole split's logits, so every rank
        # reaches the same figures and the same best / early-stop decisions.
        c, s = self.config, self.state
        with self.weights():
            m = self.evaluator.metrics(self.data.validation, self.data.label_names)
        entry = history_entry(epoch, s, k.mean_loss, m, self.scheduler.get_last_lr()[0])
        # A QAT run keeps only checkpoints trained against int8.
        may_improve = self.qat is None or self.qat.enabled
        with self.signals.atomic():  # recorded wholly or not at all (resume evaluates again)
            better, stop = k.record(entry, m[c.metric], c.patience, may_improve)
            if better:
                with self.weights():
                    lora = c.strategy == "lora"
                    checkpoint.save_best(
                        self.work, self.model, self.tokenizer, self.backend, self.qat, lora
                    )
            self.hook("evaluated", s["next_batch"])
        self.say(evaluation_line(entry, m, better))
        if stop:
            self.say(f"early stop: no improvement in {c.patience} evaluation(s)")
        if c.eval_steps:
            with self.signals.atomic():
                checkpoint.save(self)


def evaluation_line(entry: dict[str, Any], m: dict[str, Any], better: bool) -> str:
    """The status line of one evaluation."""
    return (
        f"epoch {entry['epoch']:.2f} step {entry['step']}: train loss {entry['train_loss']:.4f}, "
        f"val loss {m['loss']:.4f}, val acc {m['accuracy'] * 100:.2f}%, "
        f"val macro F1 {m['macro_f1'] * 100:.2f}%"
        + (f", val entity F1 {m['f1'] * 100:.2f}%" if "f1" in m else "")
        + (f", val micro F1 {m['micro_f1'] * 100:.2f}%" if "micro_f1" in m else "")
        + ("  * best" if better else "")
    )


def loss_function(config: TrainConfig, data: Data, device: Any) -> Any:
    """Cross-entropy, weighted by inverse class frequency with --class-weights balanced; per
    token, over every labelled position (special tokens and padding are ignored)."""
    import torch

    task = task_named(config.task)
    if task.per_token:
        ce = torch.nn.CrossEntropyLoss()  # ignore_index -100: tasks.IGNORE
        return lambda logits, labels: ce(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
    if task.multi_label:
        return multi_label_loss(config, data, device)

    weight = None
    if config.class_weights == "balanced":
        labelled = np.asarray(data.train.labels)
        labelled = labelled[labelled >= 0]  # rows without labels (distillation) weigh 1
        counts = np.bincount(labelled, minlength=data.num_labels).astype(np.float64)
        w = len(labelled) / (data.num_labels * np.maximum(counts, 1))
        weight = torch.tensor(w, dtype=torch.float32, device=device)
    return torch.nn.CrossEntropyLoss(weight=weight)


def multi_label_loss(config: TrainConfig, data: Any, device: Any) -> Any:
    """Binary cross-entropy per label; with --class-weights balanced, each label's positives
    weigh (negatives / positives) in the train split (PyTorch's pos_weight)."""
    import torch

    pos_weight = None
    if config.class_weights == "balanced":
        t = data.train.targets(data.num_labels)
        pos = t.sum(0)
        pos_weight = torch.tensor(
            (len(t) - pos) / np.maximum(pos, 1), dtype=torch.float32, device=device
        )
    return torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)


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
