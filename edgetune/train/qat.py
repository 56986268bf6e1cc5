"""Quantization-aware training: fake quantization that mirrors the int8 arithmetic of the export.

The quantization module that simulates, with ``quant.py``'s settings, what
``export/quantize.py``'s graphs compute on the device.

What ``edgetune export`` runs on the device, and what is simulated here, operation for operation:

- Linear layers (MatMul / QAttention in ONNX): int8 symmetric weights, one scale per output
  channel (``max|w| / 127``) or per tensor; 7-bit (``/ 64``) on targets without VNNI.
- Their input activations: uint8 asymmetric with a per-tensor range that is either measured on
  each input (``dynamic``, ORT's DynamicQuantizeLinear) or learned during training as a moving
  average of batch minima and maxima (``static``, written into QDQ nodes at export).
- The word-embedding table: 4-bit blocks of 32 (``GatherBlockQuantized``) or uint8 per tensor.

Rounding is round-half-to-even on both sides, and gradients pass straight through the rounding.
The hooks patch ``forward`` of the existing modules, so parameter names, checkpoints and
``save_pretrained`` stay those of the plain model: the saved weights are the float weights,
whose quantization at export gives the same integers as the simulation.
"""

from __future__ import annotations

import contextlib
import types
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ModelError
from ..quant import (
    FUSED_ARCHITECTURES,
    QAT_FILE,
    QKV_PROJECTIONS,
    QATScheme,
    QuantizationConfig,
    read_scheme,
)
from .config import TrainConfig, parse_qat_start

# -- fake quantization (straight-through estimators) --------------------------------------------


def fake_quant_weight(w: Any, per_channel: bool, qmax: int) -> Any:
    """Symmetric int weights: ``round(w / s)`` clipped to ±qmax, scale ``max|w| / qmax``."""
    import torch

    wd = w.detach()
    amax = wd.abs().amax(dim=1, keepdim=True) if per_channel else wd.abs().amax()
    scale = torch.where(amax > 0, amax / qmax, torch.ones_like(amax))
    q = torch.clamp(torch.round(wd / scale), -qmax, qmax)
    return w + (q * scale - wd)


def _uint8(x: Any, rmin: Any, rmax: Any) -> Any:
    import torch

    rmin = torch.clamp(rmin, max=0.0)
    rmax = torch.clamp(rmax, min=0.0)
    scale = (rmax - rmin) / 255.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zp = torch.clamp(torch.round(-rmin / scale), 0, 255)
    xd = x.detach()
    q = torch.clamp(torch.round(xd / scale) + zp, 0, 255)
    return x + ((q - zp) * scale - xd)


def fake_quant_dynamic(x: Any) -> Any:
    """uint8 with the range of this tensor (ONNX DynamicQuantizeLinear)."""
    xd = x.detach()
    return _uint8(x, xd.min(), xd.max())


def fake_quant_int4_blocks(w: Any, block: int) -> Any:
    """4-bit blocks along the hidden axis, as the export's GatherBlockQuantized stores them."""
    import torch

    v, h = w.shape
    wd = w.detach().reshape(v, h // block, block)
    scale = wd.abs().amax(-1, keepdim=True) / 7.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.clamp(torch.round(wd / scale) + 8, 0, 15) - 8
    return w + ((q * scale).reshape(v, h) - w.detach())


# -- attaching to a model -----------------------------------------------------------------------


def _linears(model: Any) -> list[tuple[str, Any]]:
    """(name, module) of every linear layer; a LoRA layer counts once, with its merged weight."""
    import torch

    out: list[tuple[str, Any]] = []
    skip: set[int] = set()
    for name, m in model.named_modules():
        if id(m) in skip:
            continue
        base = getattr(m, "base_layer", None)
        if isinstance(base, torch.nn.Linear) and hasattr(m, "get_delta_weight"):
            out.append((name, m))
            skip.update(id(x) for x in m.modules())
        elif isinstance(m, torch.nn.Linear):
            out.append((name, m))
    return out


def canonical_name(name: str) -> str:
    """Module name without PEFT's wrappers, as in the merged model saved to ``best/``."""
    for prefix in ("base_model.model.",):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return name.replace(".modules_to_save.default", "").replace(".original_module", "")


class QATState:
    """Fake-quantization hooks on a model; switched on and off as a whole."""

    def __init__(self, model: Any, scheme: QATScheme, model_type: str | None) -> None:
        self.scheme = scheme
        self.model = model
        self.enabled = False
        self.observe = True
        fused = model_type in FUSED_ARCHITECTURES
        plain_qmax = 64 if scheme.reduce_range else 127
        self.layers: dict[str, tuple[Any, int]] = {}
        for name, m in _linears(model):
            is_qkv = fused and name.rsplit(".", 1)[-1] in QKV_PROJECTIONS
            if is_qkv and scheme.mode == "static":
                continue  # the static export keeps the fused attention in fp32
            self.layers[canonical_name(name)] = (m, plain_qmax)
        for cname, (m, qmax) in self.layers.items():
            self._patch_linear(m, cname, qmax)
        emb = model.get_input_embeddings()
        self.embedding = emb if scheme.embeddings in ("int4", "int8") else None
        if self.embedding is not None:
            self._patch_embedding(self.embedding)

    @contextlib.contextmanager
    def suspended(self):
        """The plain modules, e.g. to deep-copy or save the model without the hooks."""
        mods = [m for m, _ in self.layers.values()] + ([self.embedding] if self.embedding else [])
        saved = [(m, m.__dict__.pop("forward")) for m in mods if "forward" in m.__dict__]
        try:
            yield
        finally:
            for m, f in saved:
                m.forward = f

    # patched forwards look the state up at call time, so enabling is a flag flip
    def _patch_linear(self, m: Any, cname: str, qmax: int) -> None:
        import torch.nn.functional as F

        state = self
        lora = hasattr(m, "get_delta_weight")
        original = m.forward

        def forward(self_: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
            if not state.enabled:
                return original(x, *args, **kwargs)
            base = self_.base_layer if lora else self_
            w = base.weight
            if lora:
                for adapter in self_.active_adapters:
                    w = w + self_.get_delta_weight(adapter)
            xq = state._activation(cname, x.float())
            wq = fake_quant_weight(w.float(), state.scheme.per_channel, qmax)
            return F.linear(
                xq.to(x.dtype), wq.to(x.dtype), None if base.bias is None else base.bias.to(x.dtype)
            )

        m.forward = types.MethodType(forward, m)

    def _patch_embedding(self, emb: Any) -> None:
        import torch.nn.functional as F

        state = self
        original = emb.forward

        def forward(self_: Any, ids: Any) -> Any:
            if not state.enabled:
                return original(ids)
            return F.embedding(ids, state.embedding_table(), self_.padding_idx)

        emb.forward = types.MethodType(forward, emb)
        self._table_cache: tuple[int, Any] | None = None

    def embedding_table(self) -> Any:
        assert self.embedding is not None
        w = self.embedding.weight
        if not w.requires_grad:  # frozen: quantize once, reuse until the weights change
            key = w._version
            if self._table_cache is None or self._table_cache[0] != key:
                self._table_cache = (key, self._quant_table(w.detach()))
            return self._table_cache[1]
        return self._quant_table(w)

    def _quant_table(self, w: Any) -> Any:
        if self.scheme.embeddings == "int4":
            return fake_quant_int4_blocks(w.float(), self.scheme.block_size).to(w.dtype)
        return fake_quant_dynamic(w.float()).to(w.dtype)  # uint8 per tensor

    def _activation(self, cname: str, x: Any) -> Any:
        import torch

        if self.scheme.mode == "dynamic":
            return fake_quant_dynamic(x)
        r = self.scheme.ranges.get(cname)
        if self.observe and self.model.training:
            lo, hi = float(x.detach().min()), float(x.detach().max())
            if r is None:
                r = [lo, hi]
            else:
                a = self.scheme.momentum
                r = [r[0] + a * (lo - r[0]), r[1] + a * (hi - r[1])]
            self.scheme.ranges[cname] = r
        if r is None:
            return x  # never observed (evaluation before any training step)
        return _uint8(x, torch.tensor(r[0], device=x.device), torch.tensor(r[1], device=x.device))


def attach(model: Any, scheme: QATScheme, enabled: bool = True) -> QATState:
    """Install the fake-quantization hooks on ``model`` (a HF model, or PEFT-wrapped)."""
    cfg = getattr(model, "config", None)
    state = QATState(model, scheme, getattr(cfg, "model_type", None))
    state.enabled = enabled
    return state


def load_fake_quant(model_dir: str | Path) -> Any:
    """A saved QAT model with its fake quantization on: the PyTorch twin of its int8 export."""
    from ..modeling import load_saved

    scheme = read_scheme(Path(model_dir))
    if scheme is None:
        raise ModelError(f"{model_dir} was not trained with --qat (no {QAT_FILE})")
    model = load_saved(Path(model_dir)).eval()
    attach(model, scheme)
    return model


def qat_scheme(config: TrainConfig) -> QATScheme:
    """The int8 scheme a QAT run simulates: the export's settings for ``--qat-target``."""
    q = QuantizationConfig.for_target(config.qat_target, config.qat_per_channel)
    return QATScheme(
        mode=config.qat or "dynamic",
        per_channel=q.per_channel,
        reduce_range=q.reduce_range,
        target=q.target,
        embeddings=config.qat_embeddings,
    )


class QATControl:
    """Quantization-aware training within a run: the step it starts at, its frozen float
    teacher (``--qat-distill``) and the loss that learns from it."""

    def __init__(
        self, model: Any, config: TrainConfig, steps_per_epoch: int, total_steps: int
    ) -> None:
        self.fq = attach(model, qat_scheme(config), enabled=False)
        n, unit = parse_qat_start(config.qat_start)
        self.start_step = n if unit == "steps" else n * steps_per_epoch
        if self.start_step >= total_steps:
            raise ConfigError(
                f"--qat-start {config.qat_start} is at or after the end of training "
                f"({total_steps} steps); start earlier or train longer"
            )
        self.distill = config.qat_distill
        self.teacher: Any = None  # the float model as QAT starts

    @property
    def scheme(self) -> QATScheme:
        return self.fq.scheme

    @property
    def enabled(self) -> bool:
        return self.fq.enabled

    def suspended(self) -> Any:
        return self.fq.suspended()

    def merge_ranges(self, dist: Any) -> None:
        """Static QAT: each rank learned ranges from its shard; all use their mean."""
        if not self.scheme.ranges:
            return
        import numpy as np

        every = dist.gather([self.scheme.ranges])
        self.scheme.ranges = {
            k: [float(np.mean([r[k][i] for r in every])) for i in (0, 1)] for k in sorted(every[0])
        }

    def switch(self, step: int, model: Any, ema: Any, say: Any = None) -> None:
        """Fake quantization on from the start step (and the teacher taken then)."""
        if self.fq.enabled or step < self.start_step:
            return
        self.fq.enabled = True
        if self.distill and self.teacher is None:
            self.teacher = self._frozen_copy(model, ema)
        if say is not None:
            say(
                f"quantization-aware training ({self.scheme.mode} int8, target "
                f"{self.scheme.target}) from step {step}"
            )

    def _frozen_copy(self, model: Any, ema: Any) -> Any:
        """A frozen float copy of the model as it stands (EMA weights where averaged)."""
        import copy

        with self.fq.suspended(), ema.swapped_in() if ema else contextlib.nullcontext():
            teacher = copy.deepcopy(model)
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad = False
        return teacher

    def loss(self, loss: Any, logits: Any, batch: dict[str, Any], autocast: Any) -> Any:
        """Self-distillation: the fake-quantized student also matches the float model's class
        distribution, which carries more than the hard label (KL at temperature 1)."""
        if self.teacher is None:
            return loss
        import torch
        import torch.nn.functional as F

        with torch.no_grad(), autocast:
            target = F.softmax(self.teacher(**batch).logits.float(), dim=-1)
        kd = F.kl_div(F.log_softmax(logits, dim=-1), target, reduction="batchmean")
        return (1 - self.distill) * loss + self.distill * kd
