"""``edgetune bench``: latency over a batch x sequence-length grid, with regression gates for CI.

Absolute times from another machine mean little, so gates judge ratios measured side by side:
``--compare OTHER`` (another bundle, or ``pytorch`` for the original model) runs interleaved with
the bundle in this process, and ``--baseline OLD.json`` compares today's ratio with the ratio
an earlier run recorded against the same kind of comparator.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from .errors import ConfigError, GateFailed
from .formats import bundle as bundlefmt
from .fsutil import write_json, write_text
from .hw import keeps_torch_threads
from .latency import PAUSE_S, SEQ_LENGTHS, WARMUP
from .tables import markdown_table, text_table

SCHEMA = "edgetune-bench"
SCHEMA_VERSION = 1
MARKDOWN_TITLE = "### edgetune bench:"
JUNIT_SUITE = '<testsuite name="edgetune bench"'


@dataclass
class BenchConfig:
    """What ``bench`` measures and judges; validated on construction."""

    bundle: str
    variant: str | None = None
    compare: str | None = None  # another bundle directory, or "pytorch"
    compare_variant: str | None = None
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    seq_lengths: tuple[int, ...] = SEQ_LENGTHS
    threads: int = 0  # 0: all cores
    rounds: int = 30
    warmup: int = WARMUP
    pause_s: float = PAUSE_S
    baseline: str | None = None
    max_regression: float | None = None  # fraction, e.g. 0.10
    output: str | None = None
    markdown: str | None = None
    junit: str | None = None

    def __post_init__(self) -> None:
        self.batch_sizes = tuple(sorted({int(b) for b in self.batch_sizes}))
        self.seq_lengths = tuple(sorted({int(s) for s in self.seq_lengths}))
        if not self.threads:
            self.threads = os.cpu_count() or 1
        checks = [
            (bool(self.batch_sizes) and min(self.batch_sizes) >= 1, "--batch-sizes must be >= 1"),
            (bool(self.seq_lengths) and min(self.seq_lengths) >= 2, "--seq-lengths must be >= 2"),
            (self.threads >= 1, "--threads must be at least 1"),
            (self.rounds >= 3, "--rounds must be at least 3"),
            (self.pause_s >= 0, "--pause must be 0 or more seconds"),
            (
                self.max_regression is None or self.max_regression >= 0,
                "--max-regression must be 0 or more, e.g. 10%",
            ),
            (
                self.max_regression is None or self.compare is not None,
                "--max-regression judges a ratio: add --compare OTHER_BUNDLE or --compare pytorch",
            ),
            (
                self.baseline is None or self.compare is not None,
                "--baseline compares ratios, not absolute times: add --compare (the same "
                "comparator the baseline used)",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)
        from .formats.outputs import check_distinct, check_result_file

        results = {"--output": self.output, "--markdown": self.markdown, "--junit": self.junit}
        check_distinct(results)
        for option, path in results.items():
            if path:
                check_result_file(path, option, _recognisers()[option], what=_WHAT[option])

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["batch_sizes"], d["seq_lengths"] = list(self.batch_sizes), list(self.seq_lengths)
        return d


def _recognisers() -> dict[str, Any]:
    from .formats.outputs import json_with_schema, text_starting

    return {
        "--output": json_with_schema(SCHEMA),
        "--markdown": text_starting(MARKDOWN_TITLE),
        "--junit": text_starting("<?xml", JUNIT_SUITE),
    }


_WHAT = {"--output": "bench JSON", "--markdown": "bench summary", "--junit": "bench JUnit file"}


def parse_fraction(spec: str) -> float:
    """``"10%"`` or ``"0.1"`` → 0.1."""
    try:
        s = spec.strip()
        value = float(s[:-1]) / 100 if s.endswith("%") else float(s)
    except ValueError:
        raise ConfigError(
            f"--max-regression {spec!r} is not a fraction; write 10% or 0.1"
        ) from None
    if not s.endswith("%") and value >= 1:
        # "10" is far likelier to mean 10% than 1000%: make the user say which.
        raise ConfigError(
            f"--max-regression {spec} is ambiguous: write {s}% for percent, or a fraction below 1 "
            f"(0.1 = 10%)"
        )
    return value


@dataclass
class BenchResult:
    report: dict[str, Any]
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        return table(self.report)


@keeps_torch_threads
def bench(
    config: BenchConfig | None = None,
    /,
    *,
    progress: bool = True,
    raise_on_failure: bool = True,
    **options: Any,
) -> BenchResult:
    """Time the bundle (and the comparator, interleaved) over the grid; apply the gates."""
    if config is None:
        config = BenchConfig(**options)
    elif options:
        config = replace(config, **options)
    from .console import sayer
    from .latency import lengths_within

    say = sayer(progress)
    t0 = time.perf_counter()
    root = Path(config.bundle).expanduser()
    manifest = bundlefmt.verify(root)
    name = bundlefmt.pick_variant(manifest, config.variant, root)
    runners, compare_info = _runners(root, manifest, name, config)
    baseline = _read_baseline(config.baseline) if config.baseline else None

    max_len = int(manifest.get("max_length", 512))
    lengths, skipped = lengths_within(config.seq_lengths, max_len)
    if not lengths:
        raise ConfigError(f"every --seq-lengths value exceeds the model's max length {max_len}")
    grid = _time_grid(runners, config, lengths, _vocab_size(root), say)
    gates, failures = _gates(grid, config, baseline)
    from .envinfo import environment

    report = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "bundle": str(root.resolve()),
        "variant": name,
        "compare": compare_info,
        "threads": config.threads,
        "grid": grid,
        "skipped_seq_lengths": list(skipped),
        "max_length": max_len,
        "baseline": config.baseline,
        "gates": gates,
        "passed": not failures,
        "environment": environment("onnxruntime", "torch"),
        "config": config.to_dict(),
        "time_s": round(time.perf_counter() - t0, 1),
    }
    _write_outputs(report, config)
    result = BenchResult(report, failures)
    if failures and raise_on_failure:
        raise GateFailed("\n".join(failures))
    return result


def _runners(
    root: Path, manifest: dict[str, Any], name: str, config: BenchConfig
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The bundle's variant and the comparator (``pytorch`` or another bundle), ready to time."""
    from .runners import PYTORCH, RuntimeRunner, TorchRunner, pytorch_source
    from .runtime import Classifier

    # Timed as the runtime serves it: one row per call where the variant must (dynamic int8).
    runners: dict[str, Any] = {
        "bundle": RuntimeRunner(
            Classifier(root, manifest, name, config.threads, bundlefmt.read_golden(root))
        )
    }
    compare_info: dict[str, Any] | None = None
    if config.compare == "pytorch":
        src = pytorch_source(manifest, None)
        runners["compare"] = TorchRunner(src, config.threads)
        compare_info = {"kind": "pytorch", "path": str(src), "variant": PYTORCH}
    elif config.compare:
        other = Path(config.compare).expanduser()
        om = bundlefmt.verify(other)
        ov = bundlefmt.pick_variant(om, config.compare_variant, other)
        clf = Classifier(other, om, ov, config.threads, bundlefmt.read_golden(other))
        runners["compare"] = RuntimeRunner(clf)
        compare_info = {"kind": "bundle", "path": str(other.resolve()), "variant": ov}
    return runners, compare_info


def _time_grid(
    runners: dict[str, Any],
    config: BenchConfig,
    lengths: tuple[int, ...],
    vocab: int,
    say: Any,
) -> list[dict[str, Any]]:
    """Each batch x length cell: every runner interleaved on the same random ids."""
    from .latency import BLOCK, measure, speedup

    rng = np.random.default_rng(0)
    grid = []
    for b, s in [(b, s) for b in config.batch_sizes for s in lengths]:
        say(f"timing batch {b} x sequence {s}")
        ids = rng.integers(min(1000, vocab - 1), vocab, size=(b, s))
        feed = {
            "input_ids": ids.astype(np.int64),
            "attention_mask": np.ones((b, s), dtype=np.int64),
            "token_type_ids": np.zeros((b, s), dtype=np.int64),
        }
        cands: dict[str, Any] = {}
        for key, r in runners.items():
            prepared = r.prepare(feed)
            cands[key] = lambda r=r, p=prepared: r.run(p)
        t = measure(
            cands, rounds=config.rounds, warmup=config.warmup, block=BLOCK, pause_s=config.pause_s
        )
        cell: dict[str, Any] = {"batch_size": b, "seq_len": s, **t["bundle"].summary(b)}
        if "compare" in t:
            cell["compare"] = t["compare"].summary(b)
            # latency ratio bundle / comparator: below 1 the bundle is faster
            cell["ratio"] = speedup(t["bundle"], t["compare"])
        grid.append(cell)
    return grid


def _vocab_size(root: Path) -> int:
    try:
        return int(json.loads((root / "config.json").read_text()).get("vocab_size") or 1000)
    except (OSError, ValueError):
        return 1000


def _read_baseline(path: str) -> dict[str, Any]:
    p = Path(path).expanduser()
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"--baseline {path} is not a readable bench JSON ({e}); write one with --output"
        ) from None
    if data.get("schema") != SCHEMA or not data.get("compare"):
        raise ConfigError(
            f"--baseline {path} holds no comparison ratios; record it with `edgetune bench BUNDLE "
            "--compare ... --output FILE`"
        )
    return data


def _gates(
    grid: list[dict[str, Any]], config: BenchConfig, baseline: dict[str, Any] | None
) -> tuple[list[dict[str, Any]], list[str]]:
    gates: list[dict[str, Any]] = []
    if config.max_regression is None:
        return gates, []
    limit = 1 + config.max_regression
    base_cells = {(c["batch_size"], c["seq_len"]): c for c in (baseline or {}).get("grid", [])}
    for cell in grid:
        key = (cell["batch_size"], cell["seq_len"])
        rr = cell["ratio"]
        r, lo = rr["ratio"], rr["ci_low"]
        where = f"batch {key[0]} x sequence {key[1]}"
        if baseline is None:
            value, low = r, lo
            what = f"latency of the bundle / comparator at {where}: {r:.3f} (95% CI from {lo:.3f})"
        else:
            b = base_cells.get(key)
            if b is None or "ratio" not in b:
                raise ConfigError(f"--baseline has no ratio at {where}; use the baseline's grid")
            value, low = r / b["ratio"]["ratio"], lo / b["ratio"]["ratio"]
            what = (
                f"ratio at {where}: {r:.3f} now vs {b['ratio']['ratio']:.3f} in the baseline "
                f"({value:.3f}x, 95% CI from {low:.3f}x)"
            )
        # A regression is declared only when the whole confidence interval lies beyond the
        # limit: noise alone does not fail a build, a real slow-down does.
        ok = low <= limit
        gates.append(
            {
                "gate": "max_regression",
                "batch_size": key[0],
                "seq_len": key[1],
                "value": value,
                "threshold": limit,
                "passed": ok,
                "message": f"{what} (limit {limit:.2f})",
            }
        )
    failures = [f"gate failed: {g['message']}" for g in gates if not g["passed"]]
    return gates, failures


# -- output -------------------------------------------------------------------------------------


def _rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    cmp = report["compare"]
    head = ["batch", "seq", "p50 ms", "p90 ms", "p99 ms", "rows/s"]
    if cmp:
        head += [f"{cmp['variant']} p50 ms", "ratio (95% CI)"]
    rows = []
    for c in report["grid"]:
        row = [
            str(c["batch_size"]),
            str(c["seq_len"]),
            f"{c['p50_ms']:.2f}",
            f"{c['p90_ms']:.2f}",
            f"{c['p99_ms']:.2f}",
            f"{c['throughput_per_s']:.0f}",
        ]
        if cmp:
            r = c["ratio"]
            row += [
                f"{c['compare']['p50_ms']:.2f}",
                f"{r['ratio']:.3f} ({r['ci_low']:.3f}-{r['ci_high']:.3f})",
            ]
        rows.append(row)
    return head, rows


def table(report: dict[str, Any]) -> str:
    """The printed table: one row per grid cell, gates below."""
    head, rows = _rows(report)
    cmp = report["compare"]
    out = [
        f"bench      {report['bundle']} ({report['variant']}), {report['threads']} thread(s)"
        + (f"; vs {cmp['variant']} ({cmp['path']}), ratio = latency / comparator's" if cmp else ""),
        *text_table(head, rows),
    ]
    out += [f"{'PASS' if g['passed'] else 'FAIL'}  {g['message']}" for g in report["gates"]]
    from .latency import skipped_note

    out += skipped_note(report.get("skipped_seq_lengths"), report.get("max_length"))
    return "\n".join(out)


def markdown(report: dict[str, Any]) -> str:
    """A summary fit for a CI job summary (e.g. ``$GITHUB_STEP_SUMMARY``)."""
    head, rows = _rows(report)
    verdict = "passed" if report["passed"] else "**FAILED**"
    cpu = report["environment"]["cpu"]
    md = [
        f"{MARKDOWN_TITLE} {Path(report['bundle']).name} ({report['variant']}) {verdict if report['gates'] else ''}".rstrip(),
        "",
        *markdown_table(head, rows),
        "",
    ]
    md += [f"- {'PASS' if g['passed'] else '**FAIL**'}: {g['message']}" for g in report["gates"]]
    md += ["", f"{cpu['name']}, {report['threads']} thread(s); {', '.join(cpu['features'])}.", ""]
    return "\n".join(md)


def junit(report: dict[str, Any]) -> str:
    """JUnit XML: one test case per gate (per grid cell), failures with the reason."""
    gates = report["gates"]
    fails = sum(not g["passed"] for g in gates)
    cases = []
    for g in gates:
        name = f"{g['gate']} batch{g['batch_size']} seq{g['seq_len']}"
        body = (
            ""
            if g["passed"]
            else f"<failure message={quoteattr(g['message'])}>{escape(g['message'])}</failure>"
        )
        cases.append(
            f'  <testcase classname="edgetune.bench" name={quoteattr(name)}>{body}</testcase>'
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'{JUNIT_SUITE} tests="{len(gates)}" failures="{fails}" time="{report["time_s"]}">\n'
        + "\n".join(cases)
        + "\n</testsuite>\n"
    )


def _write_outputs(report: dict[str, Any], config: BenchConfig) -> None:
    for path, text in (
        (config.output, None),
        (config.markdown, markdown(report)),
        (config.junit, junit(report)),
    ):
        if not path:
            continue
        p = Path(path).expanduser()
        p.parent.mkdir(parents=True, exist_ok=True)
        if text is None:
            write_json(p, report)
        else:
            write_text(p, text)
