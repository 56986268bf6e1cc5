"""The model's trainable part per ``--strategy`` and its optimizer."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError, first_line
from .config import TrainConfig

# Attention query/value projections per architecture; others fall back to peft's own table.
LORA_TARGETS = {
    "distilbert": ["q_lin", "v_lin"],
    "mpnet": ["q", "v"],
    "albert": ["query", "value"],
    "bert": ["query", "value"],
}


def prepare(model: Any, c: TrainConfig) -> Any:
    """Freeze what ``--strategy`` leaves alone (head: the encoder; full: word embeddings by
    default), or wrap the model in LoRA adapters."""
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
