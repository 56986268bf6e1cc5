"""One process vs two with DDP, FSDP or DeepSpeed ZeRO-2: speed, memory per rank and accuracy.

Trains the model on the same data, epochs and seed four ways: a single process (global batch
B), ``torchrun --nproc_per_node 2`` with DDP, the same with ``--fsdp``, and ``accelerate
launch`` with a DeepSpeed ZeRO-2 config (batch B/2 per process, so the same global batches;
the last only where deepspeed is installed); reports training samples/s, each rank's peak RSS and the
weights + optimizer state it holds, and test accuracy. On CPU the two processes share the
cores (one thread each), so the speed figures describe this machine, not a multi-GPU node.
Duration: about 8 minutes for MiniLM-L6 on the shipped 10k-row SST-2 sample on 2 cores.

    python bench/train_sharding.py --data examples/sst2-sample
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import write_results  # noqa: E402

ZERO2 = """\
compute_environment: LOCAL_MACHINE
distributed_type: DEEPSPEED
deepspeed_config:
  zero_stage: 2
num_machines: 1
num_processes: 2
mixed_precision: 'no'
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HERE.parent / "examples" / "sst2-sample"))
    ap.add_argument("--model", default="minilm-l6")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32, help="global batch")
    ap.add_argument("--label-names", default="negative,positive")
    ap.add_argument("--name", default="train_sharding")
    a = ap.parse_args()

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    common = ["train", "--model", a.model, "--data", a.data, "--epochs", str(a.epochs)]
    common += ["--label-names", a.label_names, "--quiet"]
    cli = [sys.executable, "-m", "edgetune.cli"]
    two = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "edgetune.cli"]
    half = ["--batch-size", str(a.batch_size // 2)]
    setups = {
        "1 process": (cli, ["--batch-size", str(a.batch_size)], {}),
        "2 processes, DDP": (two, half, {"OMP_NUM_THREADS": "1"}),
        "2 processes, FSDP": (two, half + ["--fsdp"], {"OMP_NUM_THREADS": "1"}),
    }
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            import deepspeed  # noqa: F401

            cfg = Path(tmp) / "zero2.yaml"
            cfg.write_text(ZERO2)
            accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
            launch = [accelerate, "launch", "--config_file", str(cfg), "-m", "edgetune.cli"]
            setups["2 processes, DeepSpeed ZeRO-2"] = (launch, half, {"OMP_NUM_THREADS": "1"})
        except ImportError:
            print("deepspeed is not installed: no ZeRO-2 row", file=sys.stderr)
        for name, (launch, extra, env) in setups.items():
            out = Path(tmp) / name.replace(" ", "_").replace(",", "")
            cmd = launch + common + ["--output", str(out)] + extra
            subprocess.run(cmd, check=True, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
            m = json.loads((out / "metrics.json").read_text())
            mem = m["timing"]["memory_per_rank"]
            results[name] = {
                "parallel": m["environment"]["parallel"],
                "samples_per_s": m["timing"]["samples_per_s"],
                "test_accuracy": m["test"]["accuracy"],
                "peak_rss_mb_per_rank": [r["peak_rss_mb"] for r in mem],
                "model_state_mb_per_rank": [r["model_state_mb"] for r in mem],
            }
    table = [
        "| setup | samples/s | peak RSS per rank (MB) | weights + optimizer state per rank (MB) "
        "| test accuracy |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {k} | {v['samples_per_s']:.1f} | "
            f"{' / '.join(f'{x:.0f}' for x in v['peak_rss_mb_per_rank'])} | "
            f"{' / '.join(f'{x:.1f}' for x in v['model_state_mb_per_rank'])} | "
            f"{v['test_accuracy'] * 100:.2f}% |"
            for k, v in results.items()
        ),
        "",
        f"{a.model}, {a.epochs} epoch(s) of {a.data}, global batch {a.batch_size}, same seed; "
        "two processes share this machine's cores (one thread each).",
    ]
    write_results(
        a.name,
        {
            "data": a.data,
            "model": a.model,
            "epochs": a.epochs,
            "global_batch": a.batch_size,
            "results": results,
        },
        "Training in one process, DDP, FSDP and DeepSpeed ZeRO-2",
        table,
    )


if __name__ == "__main__":
    main()
