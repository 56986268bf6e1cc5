"""Quantization settings shared by export and quantization-aware training: the int8 presets per
instruction set, the architectures whose attention ONNX Runtime fuses, and the QAT scheme that
a run records and its export reproduces (no heavy imports).

One of three quantization modules: this one decides (settings, no arithmetic);
``export/quantize.py`` builds the quantized ONNX variants from them; ``train/qat.py``
simulates the same arithmetic in PyTorch during training.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

TARGETS = ("auto", "avx2", "avx512", "avx512_vnni", "arm64")
EMBEDDINGS = ("int4", "int8", "fp32")
QAT_MODES = ("dynamic", "static")
QAT_FILE = "qat.json"
# Architectures whose attention and LayerNorm ONNX Runtime's transformer optimizer fuses, and
# the optimizer model type it fuses them as. Export optimizes these; QAT simulates the fused
# QKV projections of these (the one list both must agree on).
FUSED_ARCHITECTURES = {
    "bert": "bert",
    "distilbert": "bert",
    "roberta": "bert",
    "xlm-roberta": "bert",
    "electra": "bert",
    "mpnet": "bert",
    "albert": "bert",
}
# The attention's query/key/value projections by module name (the ones fused into Attention).
QKV_PROJECTIONS = frozenset({"query", "key", "value", "q_lin", "k_lin", "v_lin", "q", "k", "v"})


@dataclass(frozen=True)
class QuantizationConfig:
    """Int8 settings for one instruction set (like optimum's ``AutoQuantizationConfig``).

    Without VNNI, x86 int8 kernels multiply u8 x s8 pairs into saturating 16-bit sums
    (``vpmaddubsw``); 7-bit weights (``reduce_range``) keep those sums from overflowing.
    """

    target: str
    per_channel: bool = True
    reduce_range: bool = False
    embeddings: str = "int4"
    block_size: int = 32

    @classmethod
    def avx2(cls, per_channel: bool = True) -> QuantizationConfig:
        return cls("avx2", per_channel, reduce_range=True)

    @classmethod
    def avx512(cls, per_channel: bool = True) -> QuantizationConfig:
        return cls("avx512", per_channel, reduce_range=True)

    @classmethod
    def avx512_vnni(cls, per_channel: bool = True) -> QuantizationConfig:
        return cls("avx512_vnni", per_channel, reduce_range=False)

    @classmethod
    def arm64(cls, per_channel: bool = True) -> QuantizationConfig:
        return cls("arm64", per_channel, reduce_range=False)

    @classmethod
    def for_target(cls, target: str = "auto", per_channel: bool = True) -> QuantizationConfig:
        """The preset for ``target``; ``auto`` detects this CPU's features at run time."""
        if target == "auto":
            from .hw import cpu_features

            f = cpu_features()
            if f["neon"]:
                target = "arm64"
            elif f["avx512_vnni"] or f["avx_vnni"]:
                target = "avx512_vnni"
            elif f["avx512"]:
                target = "avx512"
            else:
                target = "avx2"
        presets = {
            "avx2": cls.avx2,
            "avx512": cls.avx512,
            "avx512_vnni": cls.avx512_vnni,
            "arm64": cls.arm64,
        }
        if target not in presets:
            raise ConfigError(f"--target must be one of {', '.join(TARGETS)}")
        return presets[target](per_channel)


@dataclass
class QATScheme:
    """The int8 scheme simulated in training and reproduced by the export."""

    mode: str = "dynamic"
    per_channel: bool = True
    reduce_range: bool = False
    target: str = "auto"
    embeddings: str = "int4"
    block_size: int = 32
    momentum: float = 0.01  # static ranges: moving-average weight of each new batch
    ranges: dict[str, list[float]] = field(default_factory=dict)  # static: input (min, max)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QATScheme:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def static_scale_zp(rmin: float, rmax: float) -> tuple[float, int]:
    """The uint8 scale and zero point of a static range, as ORT computes them."""
    import numpy as np

    lo, hi = np.float32(min(rmin, 0.0)), np.float32(max(rmax, 0.0))
    scale = np.float32((hi - lo) / np.float32(255.0))
    if scale == 0:
        return 1.0, 0
    zp = int(np.clip(np.rint(-lo / scale), 0, 255))
    return float(scale), zp


def write_scheme(model_dir: Path, scheme: QATScheme) -> None:
    """Record the scheme (and learned static ranges) next to the saved weights."""
    data = {"format": "edgetune-qat", "version": 1, **scheme.to_dict()}
    (Path(model_dir) / QAT_FILE).write_text(json.dumps(data, indent=2) + "\n")


def read_scheme(model_dir: Path) -> QATScheme | None:
    """The QAT scheme saved with a model, or None for a model trained without QAT."""
    path = Path(model_dir) / QAT_FILE
    if not path.is_file():
        return None
    return QATScheme.from_dict(json.loads(path.read_text()))
