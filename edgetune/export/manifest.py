"""What a bundle records about itself: the manifest, each variant's runtime requirements.

Also the transformers.js file layout, and the smoke test every variant passes first.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..errors import BundleError, ConfigError, first_line
from ..formats import bundle as bundlefmt
from ..presets import usable_positions

VERSIONED = ("torch", "transformers", "optimum", "onnx", "onnxruntime")  # in the manifest
# transformers.js looks for onnx/<file> by dtype: fp32, q8, int8, fp16.
_JS_FILES = {
    "fp32": "onnx/model.onnx",
    "int8-dynamic": "onnx/model_quantized.onnx",
    "int8-static": "onnx/model_int8.onnx",
    "fp16": "onnx/model_fp16.onnx",
}


def smoke_test(bundle_dir: Path, variants: dict[str, dict[str, Any]]) -> None:
    """Every variant loads in ONNX Runtime and produces finite logits."""
    import numpy as np

    from ..runtime import session

    for name, v in variants.items():
        if name == "fp16":
            continue  # fp16 targets GPUs; CPU kernels may be missing
        sess = session(bundle_dir / v["file"], threads=1)
        feed = {i.name: np.ones((1, 8), dtype=np.int64) for i in sess.get_inputs()}
        out = sess.run(None, feed)[0]
        if not np.all(np.isfinite(out)):
            raise BundleError(
                f"variant {name} produced non-finite logits; try --optimize O1 or --quantize none"
            )


def record_requirements(
    bundle_dir: Path, variants: dict[str, dict[str, Any]], min_runtime: str | None
) -> None:
    """Each variant's needs, from its graph's operators; refuse what ``min_runtime`` cannot load."""
    import onnx

    from ..ort_versions import requirements, satisfies

    for name, v in variants.items():
        try:
            req = requirements(onnx.load(str(bundle_dir / v["file"]), load_external_data=False))
        except ValueError as e:  # an operator whose onnxruntime support was never verified
            raise ConfigError(
                f"variant {name}: {first_line(e)}; edgetune cannot say which onnxruntime loads "
                "it: try --optimize O1 or leave the variant out"
            ) from None
        v["requires"] = {
            "onnxruntime": req["min_onnxruntime"],
            "because": req["because"],
            "opsets": req["opsets"],
            "ir_version": req["ir_version"],
        }
        if min_runtime and not satisfies(min_runtime, req["min_onnxruntime"]):
            raise ConfigError(
                f"variant {name} needs onnxruntime >= {req['min_onnxruntime']} (for "
                f"{req['because']}), above --min-runtime {min_runtime}; drop it from --variants "
                "or raise --min-runtime"
            )


def js_layout(bundle_dir: Path, variants: dict[str, dict[str, Any]]) -> None:
    """transformers.js's file names, as hard links (no extra disk) or copies; hashed like the rest."""
    for name, v in variants.items():
        if name not in _JS_FILES:
            continue
        dst = bundle_dir / _JS_FILES[name]
        dst.parent.mkdir(exist_ok=True)
        try:
            os.link(bundle_dir / v["file"], dst)
        except OSError:
            shutil.copy2(bundle_dir / v["file"], dst)
        v["transformers_js"] = _JS_FILES[name]


def build_manifest(
    export_config: dict[str, Any],
    default_variant: str,
    src: dict[str, Any],
    cfg: dict[str, Any],
    variants: dict[str, dict[str, Any]],
    fp32: Path,
) -> dict[str, Any]:
    """The manifest's content; ``export_config`` is the resolved ``ExportConfig.to_dict()``."""
    from ..envinfo import environment

    env = environment(*VERSIONED)
    labels = bundlefmt.config_labels(cfg)
    tok_cfg_path = src["model_dir"] / "tokenizer_config.json"
    max_length = 128
    if tok_cfg_path.is_file():
        max_length = int(
            min(json.loads(tok_cfg_path.read_text()).get("model_max_length", 128), 512)
        )
    positions = usable_positions(cfg)
    if positions is not None:
        max_length = min(max_length, positions)  # never beyond what the model can encode
    run_cfg = src["run_config"]
    thresholds = None
    if src["task"].multi_label:  # the decision rule travels with the logits
        from ..formats import rundir

        saved = rundir.read_thresholds(src["model_dir"])
        thresholds = saved["thresholds"] if saved else {n: 0.5 for n in labels}
    return {
        "task": src["task"].name,
        "thresholds": thresholds,
        "default_variant": default_variant,
        "variants": variants,
        "labels": labels,
        "max_length": max_length,
        "model_type": cfg.get("model_type"),
        "source": {
            "path": str(src["path"].resolve()),
            "model": run_cfg["config"]["model"] if run_cfg else str(src["model_dir"]),
            "run": str(src["path"].resolve()) if run_cfg else None,
            "qat": bool(run_cfg and run_cfg["config"].get("qat")),
            # --latency-budget of the run: validate gates the bundle against it again.
            "latency_budget": (run_cfg or {}).get("environment", {}).get("latency_budget"),
        },
        "export_config": export_config,
        "opset": export_config["opset"],
        "fp32_onnx_bytes": fp32.stat().st_size,
        "versions": {k: env.get(k) for k in ("edgetune", *VERSIONED)},
        "export_cpu": env["cpu"],
        "metrics": {},
    }
