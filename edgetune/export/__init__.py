"""``edgetune export``: a run (or Hugging Face model directory) to a validated ONNX bundle.

One module per step, in the order they run:

- ``api``: ``ExportConfig``, ``ExportResult`` and ``export()``, which resolves the source and
  drives the steps below.
- ``graph``: the ONNX export through Optimum, graph optimization, the CPU graph rewrites.
- ``quantize``: each variant (fp32, fp16, int8 dynamic, portable and static QDQ).
- ``manifest``: the manifest, each variant's runtime requirements, the transformers.js layout,
  the smoke test.
- ``golden``: the self-check's texts and each variant's recorded answers.
"""

from __future__ import annotations

from ..quant import EMBEDDINGS, TARGETS, QuantizationConfig
from .api import (
    LAYOUTS,
    OPTIMIZE,
    QUANTIZE,
    VARIANTS,
    ExportConfig,
    ExportResult,
    Validator,
    export,
)
from .manifest import VERSIONED

__all__ = [
    "EMBEDDINGS",
    "LAYOUTS",
    "OPTIMIZE",
    "QUANTIZE",
    "TARGETS",
    "VARIANTS",
    "VERSIONED",
    "ExportConfig",
    "ExportResult",
    "QuantizationConfig",
    "Validator",
    "export",
]
