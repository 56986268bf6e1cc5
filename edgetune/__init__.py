"""edgetune: fine-tune compact transformers and ship them to the edge as validated ONNX bundles.

Heavy libraries (torch, transformers, onnxruntime) are imported only inside the functions that
need them, so ``import edgetune`` and ``edgetune --help`` stay instant.
"""

from __future__ import annotations

__version__ = "0.1.0"

# Bound after the submodule import so ``edgetune.train`` is the function, not the module.
from .train import TrainConfig, TrainResult, load_result, train  # noqa: E402

__all__ = ["TrainConfig", "TrainResult", "load_result", "train", "__version__"]
