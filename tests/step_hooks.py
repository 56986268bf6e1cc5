"""Step hooks for the resume tests: a real signal at an exact point, and the final state.

Also a script for launchers (``torchrun ... tests/step_hooks.py OPTIONS_JSON OUT_DIR POINT...``):
a reference run, then for each POINT a run that receives SIGINT there and is resumed; every
run writes its final weights and optimizer state to ``OUT_DIR/<name>.pt`` (rank 0).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

FIRST_STEP = 3  # one epoch of the test data: its checkpoint exists


def interrupt_at(point: str, step: int = FIRST_STEP, signum: int = signal.SIGINT):
    """A hook that sends this process ``signum`` at the first ``point`` from ``step`` on."""
    fired = {"done": False}

    def hook(e: Any) -> None:
        if not fired["done"] and e.point == point and e.step >= step:
            fired["done"] = True
            os.kill(os.getpid(), signum)

    return hook


def capture_end(store: dict[str, Any]):
    """A hook that keeps copies of the weights and optimizer state when training ends."""
    import copy

    def hook(e: Any) -> None:
        if e.point == "end":
            store["model"] = {k: v.detach().clone() for k, v in e.model.state_dict().items()}
            store["optimizer"] = copy.deepcopy(e.optimizer.state_dict())

    return hook


def chain(*hooks):
    def hook(e: Any) -> None:
        for h in hooks:
            h(e)

    return hook


def assert_same_state(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Weights and optimizer state are bit for bit the same."""
    import torch

    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    oa, ob = a["optimizer"], b["optimizer"]
    assert oa["param_groups"] == ob["param_groups"]
    assert oa["state"].keys() == ob["state"].keys()
    for i in oa["state"]:
        for k, v in oa["state"][i].items():
            w = ob["state"][i][k]
            assert torch.equal(v, w) if torch.is_tensor(v) else v == w, (i, k)


def _main(options_json: str, out_dir: str, points: list[str]) -> None:
    import torch
    import torch.distributed as td

    import edgetune
    from edgetune.train import TrainingInterrupted

    # One process group for every run of this script (train() leaves a caller's group alone).
    td.init_process_group("gloo")
    options = json.loads(options_json)
    out = Path(out_dir)
    rank = int(os.environ.get("RANK", "0"))

    def dump(name: str, store: dict[str, Any]) -> None:
        if rank == 0:
            torch.save(store, out / f"{name}.pt")

    store: dict[str, Any] = {}
    edgetune.train(output=str(out / "ref"), on_step=capture_end(store), **options)
    dump("ref", store)
    for point in points:
        run = str(out / point)
        try:
            edgetune.train(output=run, on_step=interrupt_at(point), **options)
            raise SystemExit(f"{point}: the run was not interrupted")
        except TrainingInterrupted:
            pass
        store = {}
        edgetune.train(output=run, resume=True, on_step=capture_end(store), progress=False)
        dump(point, store)
    td.destroy_process_group()


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2], sys.argv[3:])
