"""Helpers shared by the benchmark scripts: machine description and result files."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine_info() -> dict[str, Any]:
    """edgetune's environment capture, plus torch's thread count and the date."""
    import torch

    from edgetune.envinfo import environment

    info = environment("torch", "transformers", "onnxruntime")
    info["torch_threads"] = torch.get_num_threads()
    info["date"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return info


def write_results(name: str, result: dict[str, Any], title: str, table: list[str]) -> None:
    """Write ``results/NAME.json`` and ``results/NAME.md``, with the benchmark's name and machine."""
    result = {"benchmark": name, **result, "machine": machine_info()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    m = result["machine"]
    md = [
        f"# {title}",
        "",
        *table,
        "",
        f"Machine: {m['cpu']['name']}, {m['cpu']['cores']} cores "
        f"({', '.join(m['cpu']['features'])}); torch {m['torch']}, {m['torch_threads']} threads; "
        f"{m['date']}.",
        "",
    ]
    (RESULTS / f"{name}.md").write_text("\n".join(md))
    print("\n".join(md))
