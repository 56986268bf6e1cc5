"""edgetune: fine-tune compact transformers and ship them to the edge as validated ONNX bundles.

Heavy libraries (torch, transformers, onnxruntime) are imported only inside the functions that
need them, so ``import edgetune`` and ``edgetune --help`` stay instant. The training names below
are loaded on first use: ``import edgetune.runtime`` on a device never loads a stage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["TrainConfig", "TrainResult", "load_result", "train", "__version__"]

if TYPE_CHECKING:
    from .train import TrainConfig, TrainResult, load_result, train

_FROM_TRAIN = ("TrainConfig", "TrainResult", "load_result")


def __getattr__(name: str) -> Any:
    # ``train`` is the package edgetune.train, which is callable (see its __init__): importing
    # any edgetune.train.* module binds that attribute to the package anyway, so a function
    # bound here would not last.
    if name == "train" or name in _FROM_TRAIN:
        import importlib

        # Not ``from . import train``: its check for an attribute ``train`` would land here again.
        package = importlib.import_module(f"{__name__}.train")
        return package if name == "train" else getattr(package, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
