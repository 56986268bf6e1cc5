"""The model's trainable part per ``--strategy`` and its optimizer."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError, first_line
from ..tasks import task_named
from .config import TrainConfig

# Attention query/value projections per architecture; others fall back to peft's own table.
LORA_TARGETS = {
    "distilbert": ["q_lin", "v_lin"],
    "mpnet": ["q", "v"],
    "albert": ["query", "value"],
    "bert": ["query", "value"],
}


def prepare(model: Any, c: TrainConfig, device: str, checkpointing: bool = False) -> Any:
    """The model on ``device`` with what ``--strategy`` leaves alone frozen (head: the
    encoder; full: word embeddings by default) or in LoRA adapters; ``checkpointing``:
    activations recomputed in the backward pass."""
    model = _trainable(model, c).to(device)
    if checkpointing or c.gradient_checkpointing:
        base = getattr(model, "get_base_model", lambda: model)()
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def make_schedule(optimizer: Any, c: TrainConfig, total_steps: int) -> Any:
    """Linear warm-up over ``--warmup-ratio`` of the steps, then linear decay to zero."""
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(
        optimizer, int(c.warmup_ratio * total_steps), total_steps
    )


def _trainable(model: Any, c: TrainConfig) -> Any:
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
                    task_type=TaskType.TOKEN_CLS
                    if task_named(c.task).per_token
                    else TaskType.SEQ_CLS,
                    r=c.lora_r,
                    lora_alpha=c.lora_alpha,
                    lora_dropout=c.lora_dropout,
                    target_modules=LORA_TARGETS.get(model.config.model_type),
                ),
            )
        except ValueError as e:
            raise ConfigError(f"--strategy lora: {first_line(e)}; use --strategy full") from None
    elif c.freeze_embeddings:
        # Word embeddings are half of a small model's weights but gain little from
        # fine-tuning; freezing them skips their optimizer update and gradient.
        model.get_input_embeddings().weight.requires_grad = False
    return model


def make_optimizer(model: Any, c: TrainConfig, device: str) -> Any:
    """AdamW; no weight decay on biases and LayerNorm weights."""
    import torch

    decay: list[Any] = []
    no_decay: list[Any] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": c.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    lr = float(c.learning_rate or 5e-5)
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=device in ("cpu", "cuda"))
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=lr)


def keep_layers(model: Any, n: int) -> list[int]:
    """A shallower student: keep ``n`` of the model's transformer layers, evenly spaced from the
    first to the last (as DistilBERT's and TinyBERT's students start), with their weights.

    Returns the kept layer indices; refuses ``n`` beyond the model's depth.
    """
    import torch

    cfg = model.config
    attr = next((a for a in ("num_hidden_layers", "n_layers") if hasattr(cfg, a)), None)
    depth = getattr(cfg, attr) if attr else None
    lists = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.ModuleList) and len(m) == depth
    ]
    if depth is None or len(lists) != 1 or getattr(cfg, "model_type", "") == "albert":
        raise ConfigError(
            f"--layers: cannot find the transformer layers of this {cfg.model_type} model "
            "(or they are shared); drop --layers"
        )
    assert attr is not None
    if not 1 <= n <= depth:
        raise ConfigError(f"--layers {n}: the model has {depth} layers; pass 1 to {depth}")
    keep = [0] if n == 1 else [round(i * (depth - 1) / (n - 1)) for i in range(n)]
    name, layers = lists[0]
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    setattr(parent, name.rpartition(".")[2], torch.nn.ModuleList([layers[i] for i in keep]))
    setattr(cfg, attr, n)
    return keep


def start_at_label_rates(model: Any, targets: Any) -> bool:
    """A new multi-label head starts at each label's rate in the train split: its output bias
    becomes log(p / (1 - p)), so the first steps learn texts, not that most labels are absent
    (a zero bias says every label is 50% likely, and BCE spends its early steps unlearning it).

    ``targets`` is the ``[n, k]`` 0/1 matrix. Returns False, changing nothing, where the model
    has no single ``k``-output linear layer with a bias last.
    """
    import numpy as np
    import torch

    t = np.asarray(targets, dtype=np.float64)
    k = t.shape[1]
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    head = last[-1] if last else None
    if head is None or head.out_features != k or head.bias is None:
        return False
    p = np.clip(t.mean(0), 1.0 / (len(t) + 2), 1 - 1.0 / (len(t) + 2))
    with torch.no_grad():
        head.bias.copy_(torch.as_tensor(np.log(p / (1 - p)), dtype=head.bias.dtype))
    return True
