"""SST-2 x MiniLM-L6 train -> export -> validate: accuracy, agreement, latency, size per variant.

Trains RUN first when it does not exist yet (``edgetune train --model minilm-l6 --data DATA
--label-names negative,positive``: about 25 minutes on 2 cores), then exports it with
``edgetune export`` in its own process (so its time and peak memory are its
own), then runs ``edgetune validate`` with the issue's gates: accuracy drop <= 0.5 points,
speed-up >= 4x at sequence 32 and >= 3x at 128 (batch 1, --threads). Duration: about
3 minutes for MiniLM-L6 on 2 cores.

    python bench/export_validate.py runs/sst2 --data ../shared/data/sst2 --threads 2
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import export_in_own_process, write_results  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data" / "sst2"))
    ap.add_argument("--model", default="minilm-l6")
    ap.add_argument("--label-names", default="negative,positive")
    ap.add_argument("--variants", default="fp32,int8-static")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="export_validate")
    a = ap.parse_args()

    from edgetune.validate import markdown as _markdown
    from edgetune.validate import validate

    train_s = None
    if not Path(a.run).exists():
        t0 = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "edgetune.cli",
                "train",
                "--model",
                a.model,
                "--data",
                a.data,
                "--output",
                a.run,
                "--label-names",
                a.label_names,
                "--quiet",
            ],
            check=True,
        )
        train_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / Path(a.run).name
        export_s, peak_mb = export_in_own_process(a.run, out, a.variants)
        result = validate(
            bundle=str(out),
            threads=a.threads,
            max_accuracy_drop=0.5,
            min_speedup=((32, 4.0), (128, 3.0)),
            raise_on_failure=False,
        )
    report = result.report
    print(result.summary())
    body = _markdown(report).splitlines()[2:]  # the title is write_results'
    body += [
        "",
        f"Export of {len(report['variants']) - 1} variants: {export_s:.0f} s, peak memory "
        f"{peak_mb:.0f} MB (one process: model load, ONNX export, optimization, calibration).",
    ]
    if train_s is not None:
        body.append(f"Training the run took {train_s / 60:.0f} minutes.")
    write_results(
        a.name,
        {
            "run": a.run,
            "train_s": train_s,  # None: the run existed already
            "export_s": export_s,
            "export_peak_rss_mb": peak_mb,
            "validation": report,
        },
        f"Export and validation of {Path(a.run).name}",
        body,
    )


if __name__ == "__main__":
    main()
