"""``--strategy fewshot``: a classifier from a handful of labelled rows, as SetFit trains one.

Two phases. The encoder learns from pairs of the labelled rows (same label: cosine similarity
pulled to 1; different labels: pushed to 0), which turns a few dozen labels into thousands of
training signals; then a logistic-regression head is fitted on the tuned, pooled and normalised
embeddings. Label prompts (``--label-prompts``) are embedded like texts: they join the rows
(and so the pairs), and their embeddings start the head and are what its L2 penalty pulls it
back to, so the label words carry knowledge the examples lack. With no rows at all the head is
the prompts' embeddings: a zero-shot classifier.
"""

from __future__ import annotations

import functools
import math
import shutil
import time
from typing import Any

import numpy as np

from ..data import Split
from ..errors import ConfigError
from ..formats import rundir
from ..heads import PROMPT_SCALE, parse_label_prompts
from ..tasks import task_named
from .batching import autocast, collate, encode
from .evaluate import Evaluator
from .parts import TrainerParts
from .signals import StepEvent

PAIRS_PER_ROW = 40  # SetFit's 20 iterations: each row in 20 positive and 20 negative pairs
MAX_DEFAULT_PAIRS = 2_000  # about 2 minutes of MiniLM-L6 on 2 CPU cores; --pairs for more
LEARNING_RATE = 2e-5  # SetFit's body learning rate
_ENUMERATE_UP_TO = 2048  # rows up to which every pair is listed (2.1M pairs)


def make_pairs(labels: list[Any] | np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` pairs ``[i, j, same]`` of row indices, half alike and half not.

    Two rows are alike when their labels are equal; with label sets (multi-label: a list of
    label ids per row, as SetFit pairs them) when the sets share a label or are both empty.
    Pairs are drawn without repeats until each kind runs out, then again in a new order (so
    tiny sets oversample rather than skew the balance); seeded, so a run is reproducible.
    """
    sets = len(labels) > 0 and isinstance(labels[0], (list, tuple))
    y = _set_matrix(labels) if sets else np.asarray(labels)
    rng = np.random.default_rng(seed)
    n = len(y)
    half = (count + 1) // 2
    if n <= _ENUMERATE_UP_TO:
        i, j = np.triu_indices(n, 1)
        same = _alike(y[i], y[j]) if sets else y[i] == y[j]
        kinds = [np.stack([i[s], j[s]], 1) for s in (same, ~same)]
        chosen = [_cycle(k, half, rng) for k in kinds]
    elif sets:  # what the tries found, cycled up to half (rare kinds oversample)
        chosen = [_cycle(_sample_sets(y, half, rng, same), half, rng) for same in (True, False)]
    else:
        chosen = [_sample(y, half, rng, want_same) for want_same in (True, False)]
    if any(len(c) == 0 for c in chosen):
        raise ConfigError(
            "--strategy fewshot needs two rows of one class and rows of two classes to form "
            "pairs; pass --shots 2 or more (or add --label-prompts)"
        )
    pos, neg = chosen
    out = np.concatenate(
        [np.column_stack([pos, np.ones(half, int)]), np.column_stack([neg, np.zeros(half, int)])]
    )
    return out[rng.permutation(len(out))]


def _set_matrix(labels: Any) -> np.ndarray:
    """Label-id lists as an ``[n, k]`` bool matrix."""
    k = 1 + max((max(ids) for ids in labels if len(ids)), default=0)
    out = np.zeros((len(labels), k), dtype=bool)
    for r, ids in enumerate(labels):
        out[r, list(ids)] = True
    return out


def _alike(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rows of two label-set matrices that share a label, or are both empty."""
    return (a & b).any(-1) | (~a.any(-1) & ~b.any(-1))


def _sample_sets(y: np.ndarray, k: int, rng: np.random.Generator, same: bool) -> np.ndarray:
    """``k`` random pairs of the wanted kind among many label sets (tries bounded: none of a
    kind in 50 tries per pair means there are practically none)."""
    out: list[tuple[int, int]] = []
    tries = 0
    while len(out) < k and tries < 50 * k:
        a, b = (int(x) for x in rng.integers(len(y), size=2))
        tries += 1
        if a != b and bool(_alike(y[a], y[b])) == same:
            out.append((a, b))
    return np.array(out, dtype=int).reshape(-1, 2)


def _cycle(pool: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    if len(pool) == 0:
        return pool
    reps = math.ceil(k / len(pool))
    order = np.concatenate([rng.permutation(len(pool)) for _ in range(reps)])[:k]
    return pool[order]


def _sample(y: np.ndarray, k: int, rng: np.random.Generator, same: bool) -> np.ndarray:
    by_class = {c: np.flatnonzero(y == c) for c in np.unique(y)}
    # First rows that have a partner of the wanted kind (a class mate, or another class).
    starts = np.flatnonzero([len(by_class[c]) > 1 if same else len(by_class) > 1 for c in y])
    if len(starts) == 0:
        return np.zeros((0, 2), int)
    out: list[tuple[int, int]] = []
    while len(out) < k:
        a = int(starts[rng.integers(len(starts))])
        pool = by_class[y[a]] if same else np.flatnonzero(y != y[a])
        b = int(pool[rng.integers(len(pool))])
        if a != b:
            out.append((a, b))
    return np.array(out)


def sample_shots(split: Any, k: int, seed: int, num_labels: int | None = None) -> Any:
    """``k`` rows of each class, stratified and seeded; refuses a ``k`` larger than a class.

    With label sets (multi-label) each label gets at least ``k`` rows that carry it: labels
    in turn, rarest first, take rows not yet picked until they have ``k``.
    """
    rng = np.random.default_rng(seed)
    if num_labels is not None and hasattr(split, "targets"):  # label sets: every label counts
        return split.subset(_shots_per_label(split.targets(num_labels) > 0, k, rng))
    y = np.asarray(split.labels)
    picked = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if len(idx) < k:
            raise ConfigError(
                f"--shots {k}: class {c} has only {len(idx)} training rows; "
                f"pass --shots {len(idx)} or less"
            )
        picked.append(rng.permutation(idx)[:k])
    return split.subset(np.sort(np.concatenate(picked)) if picked else np.array([], int))


def _shots_per_label(y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    picked = np.zeros(len(y), dtype=bool)
    for c in np.argsort(y.sum(0), kind="stable"):
        idx = np.flatnonzero(y[:, c])
        if len(idx) < k:
            raise ConfigError(
                f"--shots {k}: label {c} has only {len(idx)} training rows; "
                f"pass --shots {len(idx)} or less"
            )
        need = k - int(picked[idx].sum())
        if need > 0:
            picked[rng.permutation(idx[~picked[idx]])[:need]] = True
    return np.flatnonzero(picked)


class FewShotTrainer:
    """The ``Trainer`` interface ``train`` uses (fit, state, state_mb), for the two phases."""

    def __init__(self, parts: TrainerParts) -> None:
        config, env, data = parts.config, parts.env, parts.data
        self.config, self.env, self.data, self.tokenizer = config, env, data, parts.tokenizer
        self.work, self.say, self.progress, self.dist = (
            parts.work,
            parts.say,
            parts.progress,
            parts.dist,
        )
        self.backend, self.signals, self.on_step = parts.backend, parts.signals, parts.on_step
        self.device = env["device"]
        self.task = task_named(config.task)
        # bf16 autocast where the device has it; fp16 would need a loss scaler for a short
        # phase of a small model, so it trains in fp32 (recorded in the run)
        if env["precision"] == "fp16":
            env["precision"] = "fp32"
        self.model = parts.model.to(self.device)
        self.optimizer: Any = None
        self.prompts: dict[str, list[str]] = (
            parse_label_prompts(config.label_prompts, data.label_names)
            if config.label_prompts
            else {}
        )
        self.state: dict[str, Any] = {
            "step": 0,
            "epoch": 0,
            "samples": 0,
            "train_s": 0.0,
            "history": [],
            "best": {"metric": config.metric, "value": math.nan, "step": 0, "epoch": 0.0},
            "stopped_early": False,
        }

    def state_mb(self) -> float:
        if self.optimizer is None:  # zero-shot: weights only
            return sum(p.numel() * p.element_size() for p in self.model.parameters()) / 2**20
        tensors = self.backend.state_tensors(self.model, self.optimizer)
        return sum(t.numel() * t.element_size() for t in tensors) / 2**20

    def rows(self) -> Any:
        """The labelled rows the encoder and head learn from: training rows and prompts."""
        train = self.data.train
        names = self.data.label_names
        multi = self.task.multi_label
        texts = list(train.texts) + [p for n in names for p in self.prompts.get(n, [])]
        labels: list[Any] = list(train.labels) + [
            [i] if multi else i for i, n in enumerate(names) for _ in self.prompts.get(n, [])
        ]
        pairs = None
        if train.pairs is not None:
            pairs = list(train.pairs) + [""] * (len(texts) - len(train))
        return type(train)(texts, labels, pairs)

    def fit(self) -> None:
        c = self.config
        rows = self.rows()
        t0 = time.perf_counter()
        loss = math.nan
        if len(self.data.train):
            count = c.pairs or min(PAIRS_PER_ROW * len(rows), MAX_DEFAULT_PAIRS)
            self.say(
                f"few-shot: {len(self.data.train)} rows"
                + (f" + {len(rows) - len(self.data.train)} label prompts" if self.prompts else "")
                + f", {count} pairs x {c.epochs} epoch(s), then the head"
            )
            loss = self.tune_encoder(rows, count)
            self.fit_head(rows)
        else:
            self.say("zero-shot: the head is the label prompts' embeddings")
            self.set_head_from_prompts()
        self.state["train_s"] = time.perf_counter() - t0
        self.state["epoch"] = c.epochs or 1
        self.save_best(loss)

    # -- phase 1: the encoder learns from pairs ---------------------------------------------

    def tune_encoder(self, rows: Split, count: int) -> float:
        import torch
        from transformers import get_linear_schedule_with_warmup

        from .trainable import make_optimizer

        c = self.config
        model = self.model
        for p in model.head.parameters():
            p.requires_grad = False
        if c.freeze_embeddings:
            model.get_input_embeddings().weight.requires_grad = False
        enc = encode(self.tokenizer, rows, c)
        epochs = c.epochs or 1
        bs = max(1, c.batch_size // 2)  # --batch-size counts texts: two per pair
        steps = epochs * math.ceil(count / bs)
        self.optimizer = make_optimizer(model, c, self.device)
        scheduler = get_linear_schedule_with_warmup(
            self.optimizer, int(c.warmup_ratio * steps), steps
        )
        bar = _bar(steps, self.progress)
        model.train()
        total, seen = 0.0, 0
        for epoch in range(epochs):
            pairs = make_pairs(rows.labels, count, c.seed + epoch)
            for start in range(0, len(pairs), bs):
                chunk = pairs[start : start + bs]
                both = np.concatenate([chunk[:, 0], chunk[:, 1]])
                batch = {
                    k: v.to(self.device)
                    for k, v in collate(enc, both, self.tokenizer.pad_token_id).items()
                }
                with autocast(self.device, self.env["precision"]):
                    e = model.embed(**batch).float()
                u, v = e[: len(chunk)], e[len(chunk) :]
                cos = torch.nn.functional.cosine_similarity(u, v, dim=-1)
                target = torch.as_tensor(chunk[:, 2], dtype=cos.dtype, device=cos.device)
                loss = torch.nn.functional.mse_loss(cos, target)
                if not math.isfinite(float(loss.detach())):
                    from ..errors import TrainingDiverged

                    raise TrainingDiverged(
                        f"training stopped at contrastive step {self.state['step']}: the loss "
                        f"is {float(loss.detach())} (the encoder's embeddings are not finite); "
                        "lower --learning-rate or check --model"
                    )
                loss.backward()
                self.optimizer.step()
                scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.state["step"] += 1
                self.state["samples"] += 2 * len(chunk)
                total += float(loss.detach()) * len(chunk)
                seen += len(chunk)
                bar.update(1)
                bar.set_postfix(loss=f"{total / seen:.4f}", refresh=False)
                if self.on_step is not None:
                    self.on_step(
                        StepEvent("counted", self.state["step"], epoch, 0, model, self.optimizer)
                    )
        bar.close()
        model.eval()
        return total / max(seen, 1)

    # -- phase 2: the head ------------------------------------------------------------------

    def embeddings(self, split: Split) -> Any:
        import torch

        enc = encode(self.tokenizer, split, self.config)
        out = []
        self.model.eval()
        with torch.inference_mode():
            for s in range(0, len(split), 128):
                rows = np.arange(s, min(s + 128, len(split)))
                batch = {
                    k: v.to(self.device)
                    for k, v in collate(enc, rows, self.tokenizer.pad_token_id).items()
                }
                out.append(self.model.embed(**batch).float().cpu())
        return torch.cat(out)

    def prompt_weights(self) -> Any:
        """Each class's prompt embeddings, averaged and scaled: the head's prior (or None)."""
        import torch

        if not self.prompts:
            return None
        names = self.data.label_names
        texts = [p for n in names for p in self.prompts[n]]
        owner = [i for i, n in enumerate(names) for _ in self.prompts[n]]
        e = self.embeddings(Split(texts, [0] * len(texts)))
        w = torch.zeros(len(names), e.shape[1])
        w.index_add_(0, torch.tensor(owner), e)
        w = (
            torch.nn.functional.normalize(w, dim=-1)
            if self.model.normalize
            else w / torch.bincount(torch.tensor(owner), minlength=len(names)).unsqueeze(1)
        )
        return w * PROMPT_SCALE

    def set_head_from_prompts(self) -> None:
        import torch

        w = self.prompt_weights()
        with torch.no_grad():
            self.model.head.weight.copy_(w)
            self.model.head.bias.zero_()

    def fit_head(self, rows: Any) -> None:
        """Multinomial logistic regression (L-BFGS, as sklearn's default solver) on the
        embeddings, or for label sets one binary logistic regression per label (one-vs-rest,
        SetFit's multi-label head); the L2 penalty pulls toward the prompts' weights where there
        are any."""
        import torch

        x = self.embeddings(rows)
        k = self.data.num_labels
        fit: Any
        if self.task.multi_label:
            # Shots are drawn per label, so the rows' label rates are not the data's: each
            # label's positives and negatives weigh alike, and thresholds are tuned afterwards.
            y = torch.from_numpy(rows.targets(k))
            pos = y.sum(0)
            balance = (len(y) - pos) / pos.clamp(min=1)
            fit = functools.partial(
                torch.nn.functional.binary_cross_entropy_with_logits, pos_weight=balance
            )
        else:
            y = torch.tensor(rows.labels)
            fit = torch.nn.functional.cross_entropy
        prior = self.prompt_weights()
        w0 = prior if prior is not None else torch.zeros(k, x.shape[1])
        w = w0.clone().requires_grad_(True)
        b = torch.zeros(k, requires_grad=True)
        l2 = self.config.head_l2
        opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

        def closure() -> Any:
            opt.zero_grad()
            loss = fit(x @ w.T + b, y, reduction="sum")
            loss = loss + 0.5 * l2 * ((w - w0) ** 2).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        with torch.no_grad():
            self.model.head.weight.copy_(w.detach())
            self.model.head.bias.copy_(b.detach())

    # -- the result -------------------------------------------------------------------------

    def save_best(self, train_loss: float) -> None:
        ev = Evaluator(self.model, self.tokenizer, self.config, self.env, precision="fp32")
        m = ev.metrics(self.data.validation, self.data.label_names)
        s = self.state
        s["best"].update(value=m[self.config.metric], step=s["step"], epoch=float(s["epoch"]))
        s["history"].append(
            {"step": s["step"], "epoch": float(s["epoch"]), "train_loss": train_loss}
            | {f"val_{k}": m[k] for k in ("loss", "accuracy", "micro_f1", "macro_f1") if k in m}
        )
        tmp = self.work / (rundir.BEST + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        self.model.save_pretrained(tmp)
        self.tokenizer.save_pretrained(tmp)
        rundir.replace_dir(tmp, self.work / rundir.BEST)


def _bar(total: int, enabled: bool) -> Any:
    from ..console import progress_bar

    return progress_bar(total=total, desc="contrastive", unit="step", enabled=enabled)
