"""The loop's counters and records: steps and epochs, loss sums, the history of evaluations,
the best so far, early stopping, and the step boundary a checkpoint is taken at."""

from __future__ import annotations

import math
from typing import Any


class Counters:
    """What the loop counts; ``saved()`` and ``restore()`` carry it through a checkpoint."""

    def __init__(self, metric: str) -> None:
        self.state = fresh_state(metric)
        self.loss_sum, self.loss_n, self.last_eval_step = 0.0, 0, -1
        self.boundary: tuple[Any, ...] = ()
        self.mark_boundary()

    def add_loss(self, value: float, rows: int, samples: int) -> None:
        """One micro-batch: its mean loss over ``rows`` rows; ``samples`` rows on every rank."""
        self.loss_sum += value * rows
        self.loss_n += rows
        self.state["samples"] += samples

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / max(self.loss_n, 1)

    def mark_boundary(self) -> None:
        """Remember what a checkpoint taken now must hold (RNG and loss sums at this step)."""
        import torch

        self.boundary = (torch.get_rng_state(), self.loss_sum, self.loss_n, self.state["samples"])

    def evaluation_due(self, eval_steps: int | None) -> bool:
        """Whether the step the run stopped at owed an evaluation it did not record."""
        s = self.state
        if s["step"] == 0 or self.last_eval_step == s["step"] or s["done"]:
            return False
        return s["next_batch"] == 0 or bool(eval_steps and s["step"] % eval_steps == 0)

    def record(
        self, entry: dict[str, Any], value: float, patience: int | None, may_improve: bool
    ) -> tuple[bool, bool]:
        """One evaluation into the history: whether it is the best so far (never when
        ``may_improve`` is false) and whether to stop (``patience`` evaluations without one)."""
        s, best = self.state, self.state["best"]
        better = value < best["value"] if best["metric"] == "loss" else value > best["value"]
        better = better and may_improve
        self.loss_sum, self.loss_n = 0.0, 0
        self.mark_boundary()
        s["history"].append(entry)
        if better:
            best.update(value=value, step=s["step"], epoch=entry["epoch"])
            s["bad_evals"] = 0
        else:
            s["bad_evals"] += 1
        stop = bool(patience and s["bad_evals"] >= patience)
        if stop:
            s["stopped_early"] = s["done"] = True
        self.last_eval_step = s["step"]
        return better, stop

    def saved(self) -> tuple[dict[str, Any], Any]:
        """The counters and random state at the last step boundary: interrupted
        mid-accumulation, a checkpoint rolls back to the last optimizer step."""
        rng, loss_sum, loss_n, samples = self.boundary
        return {**self.state, "samples": samples, "loss_sum": loss_sum, "loss_n": loss_n}, rng

    def restore(self, counters: dict[str, Any], rng: Any) -> None:
        """Take ``saved()``'s counters and this rank's random state back (``resumed()``
        follows once the rest is loaded)."""
        import torch

        torch.set_rng_state(rng.cpu())
        counters = dict(counters)
        self.loss_sum, self.loss_n = counters.pop("loss_sum", 0.0), counters.pop("loss_n", 0)
        self.state.update(counters)
        history = counters.get("history")
        self.last_eval_step = history[-1]["step"] if history else -1

    def resumed(self) -> None:
        """Resuming is a step boundary; this process's samples and time count from zero."""
        self.mark_boundary()
        self.state["samples"], self.state["train_s"] = 0, 0.0


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
    """One evaluation's record in the run's history (metrics.json); ``val_f1`` is the entity
    F1 of a per-token task."""
    entry = {
        "epoch": round(epoch, 4),
        "step": state["step"],
        "train_loss": train_loss,
        "val_loss": m["loss"],
        "val_accuracy": m["accuracy"],
        "val_macro_f1": m["macro_f1"],
        "learning_rate": lr,
        "train_s": round(state["train_s"], 2),
    }
    for key in ("f1", "micro_f1"):  # entity F1 (tokens), micro F1 (multi-label)
        if key in m:
            entry[f"val_{key}"] = m[key]
    return entry
