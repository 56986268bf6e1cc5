"""The validation report: summary table, report.{json,md,png} in their folder, manifest figures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..formats import bundle as bundlefmt
from ..fsutil import temp_dir
from ..gates import lead_figure
from ..latency import skipped_note
from ..tables import markdown_table, text_table

SCHEMA = "edgetune-validation"
SCHEMA_VERSION = 1
REPORT_DIR = bundlefmt.REPORT_DIR
REPORT_FILES = ("report.json", "report.md", "report.png")


# -- the report folder --------------------------------------------------------------------------


def check_report_dir(out: Path) -> None:
    """Refuse, before any work, to replace a folder that is not one of our reports."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"--report-dir {out} is a file; choose a folder path")
    names = {p.name for p in out.iterdir()}
    ours = False
    if names and names <= set(REPORT_FILES) and "report.json" in names:
        try:
            ours = json.loads((out / "report.json").read_text()).get("schema") == SCHEMA
        except (OSError, ValueError, AttributeError):
            ours = False
    if names and not ours:
        raise ConfigError(
            f"--report-dir {out} holds files that are not an edgetune validation report; "
            "choose an empty or new folder"
        )


# -- tables -------------------------------------------------------------------------------------


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _table_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    seqs = [f"seq{s}" for s in report["settings"]["seq_lengths"]]
    any_row = next(iter(report["variants"].values()))
    seqs = [s for s in seqs if s in any_row.get("latency", {})]
    per_token = "per_type" in any_row  # entity figures lead; agreement is per sentence
    sets = "per_label" in any_row  # multi-label: macro F1 leads; agreement is per label set
    head = ["variant", "accuracy", "Δ points", "agreement", "macro F1"]
    if per_token:
        head = ["variant", "entity F1", "Δ points", "agreement", "token acc"]
    elif sets:
        head = ["variant", "macro F1", "Δ points", "agreement", "micro F1"]
    head += [f"p50 ms @{s[3:]}" for s in seqs] + [f"speed-up @{s[3:]}" for s in seqs]
    bcase = f"batch{report['settings']['batch_size']}"
    head += ["p50 ms data", f"rows/s b{report['settings']['batch_size']}", "size MB", "peak MB"]
    head += [f"flips b1/b{report['settings']['batch_size']}", "max Δscore"]
    lines = []
    for name, r in report["variants"].items():
        lat = r.get("latency", {})
        mark = "*" if name == report["default_variant"] else ""
        lead, delta, last = ("accuracy", "accuracy_delta_points", "macro_f1")
        if per_token:
            lead, delta, last = ("f1", "f1_delta_points", "accuracy")
        elif sets:
            lead, delta, last = ("macro_f1", "f1_delta_points", "micro_f1")
        cells = [
            name + mark,
            f"{r[lead] * 100:.2f}",
            _fmt(r.get(delta), "+.2f"),
            _fmt(r["agreement"] * 100 if "agreement" in r else None, ".2f"),
            f"{r[last] * 100:.2f}",
        ]
        cells += [_fmt(lat.get(s, {}).get("p50_ms"), ".2f") for s in seqs]
        cells += [
            _fmt(lat.get(s, {}).get("speedup", {}).get("ratio"), ".2f")
            + ("x" if "speedup" in lat.get(s, {}) else "")
            for s in seqs
        ]
        cells += [
            _fmt(lat.get("data", {}).get("p50_ms"), ".2f"),
            _fmt(lat.get(bcase, {}).get("throughput_per_s"), ".0f"),
            _fmt(r.get("size_bytes", 0) / 1e6 if r.get("size_bytes") else None, ".1f"),
            _fmt(r.get("peak_rss_mb"), ".0f"),
        ]
        inv = r.get("batch_invariance") or {}
        cells += [str(inv.get("flips", "-")), _fmt(inv.get("max_score_diff"), ".1e")]
        lines.append(cells)
    return head, lines


def summary_table(report: dict[str, Any]) -> str:
    """The one-screen table printed at the end of ``validate``."""
    head, rows = _table_rows(report)
    s = report["settings"]
    out = [
        f"validated  {report['bundle']} on {report['data']['rows']} {report['data']['split']} rows "
        f"of {report['data']['source']}; {s['threads']} thread(s); * = default variant",
        *text_table(head, rows, align="l"),
    ]
    for g in report["gates"]:
        out.append(f"{'PASS' if g['passed'] else 'FAIL'}  {g['message']}")
    out += skipped_note(s.get("skipped_seq_lengths"), s.get("max_length"))
    return "\n".join(out)


def markdown(report: dict[str, Any]) -> str:
    """report.md: the summary table, gates, per-class F1, flipped rows and the environment."""
    head, rows = _table_rows(report)
    s = report["settings"]
    env = report["environment"]
    md = [
        f"# Validation of {Path(report['bundle']).name}",
        "",
        f"Data: {report['data']['rows']} rows of the {report['data']['split']} split of "
        f"`{report['data']['source']}`. Baseline: {report['baseline'] or 'none'}. "
        f"Default variant (gated): **{report['default_variant']}** (marked *).",
        f"Latency: batch 1, {s['threads']} thread(s), {s['warmup']} warm-up + at least {s['rounds']} "
        "interleaved rounds per case; speed-ups are medians of per-call ratios paired within a round vs "
        "PyTorch fp32 (95% bootstrap intervals in report.json).",
        "",
        *markdown_table(head, rows, align="l"),
        "",
    ]
    if report["gates"]:
        md += ["## Gates", ""]
        md += [
            f"- {'PASS' if g['passed'] else '**FAIL**'}: {g['message']}" for g in report["gates"]
        ]
        md.append("")
    first = next(iter(report["variants"].values()))
    key, title = (
        ("per_type", "Per entity type") if "per_type" in first else ("per_class", "Per class")
    )
    if "per_label" in first:
        key, title = "per_label", "Per label"
    labels = list(first[key]) if key == "per_type" else report["data"]["label_names"]
    per_class = [
        [name, *(f"{r[key][c]['f1'] * 100:.2f}" for c in labels)]
        for name, r in report["variants"].items()
    ]
    md += [f"## {title} (F1)", "", *markdown_table(["variant", *labels], per_class, align="l")]
    md.append("")
    for name, ex in report["flipped_examples"].items():
        n = report["variants"][name].get("flipped", 0)
        md += [f"## Flipped vs {report['baseline']}: {name} ({n} rows, first {len(ex)} shown)", ""]
        if ex:
            cells = []
            for e in ex:
                text = e["text"].replace("|", "\\|")
                text = text if len(text) <= 120 else text[:117] + "..."
                cells.append([str(e["index"]), text, e["label"], e[report["baseline"]], e[name]])
            cols = ["#", "text", "label", report["baseline"], name]
            md += markdown_table(cols, cells, align="rllll")
        md.append("")
    cpu = env["cpu"]
    md += [
        "## Environment",
        "",
        f"{cpu['name']} ({cpu['machine']}, {cpu['cores']} cores; {', '.join(cpu['features']) or 'no extra features'}); "
        f"Python {env['python']}, edgetune {env['edgetune']}, onnxruntime {env['onnxruntime']}"
        + (f", torch {env['torch']}" if "torch" in env else "")
        + f". Took {report['time_s']:.0f} s.",
        "",
    ]
    return "\n".join(md)


# -- files and manifest ------------------------------------------------------------------------


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seqs = [f"seq{s}" for s in report["settings"]["seq_lengths"]]
    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=110)
    for name, r in report["variants"].items():
        lat = r.get("latency", {})
        case = next((c for c in reversed(seqs) if c in lat), None) or "data"
        x = lat.get(case, {}).get("p50_ms")
        if x is None:
            continue
        size = (r.get("size_bytes") or 0) / 1e6
        ax.scatter([x], [r.get("f1", r["accuracy"]) * 100], s=max(size, 1) * 6, alpha=0.6)
        ax.annotate(
            f"{name}\n{size:.1f} MB",
            (x, r.get("f1", r["accuracy"]) * 100),
            fontsize=8,
            xytext=(6, 4),
            textcoords="offset points",
        )
    ax.set_xlabel(
        f"batch-1 p50 latency at the longest measured length (ms), {report['settings']['threads']} threads"
    )
    figure = lead_figure(next(iter(report["variants"].values())))
    ax.set_ylabel(f"{report['data']['split']} {figure} (%)")
    ax.set_title("Accuracy vs latency (marker area ∝ file size)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(report: dict[str, Any], out: Path) -> None:
    """report.json, report.md and report.png, written together (temporary folder, then moved)."""
    tmp = temp_dir(out.parent, f".{out.name}.tmp-")
    try:
        (tmp / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
        (tmp / "report.md").write_text(markdown(report))
        _plot(report, tmp / "report.png")
        bundlefmt.install(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def manifest_metrics(report: dict[str, Any]) -> dict[str, Any]:
    """The headline figures that travel with the bundle."""
    per = {}
    for name, r in report["variants"].items():
        entry = {
            k: r[k]
            for k in (
                "accuracy",
                "macro_f1",
                "agreement",
                "accuracy_delta_points",
                "f1",
                "f1_delta_points",
                "token_agreement",
                "micro_f1",
                "label_agreement",
            )
            if k in r
        }
        entry["p50_ms"] = {c: v["p50_ms"] for c, v in r.get("latency", {}).items()}
        entry["speedup"] = {
            c: v["speedup"]["ratio"] for c, v in r.get("latency", {}).items() if "speedup" in v
        }
        if "batch_invariance" in r:
            entry["batch_invariance"] = r["batch_invariance"]
        per[name] = entry
    return {
        "validation": {
            "data": report["data"],
            "baseline": report["baseline"],
            "threads": report["settings"]["threads"],
            "cpu": report["environment"]["cpu"]["name"],
            "variants": per,
            "gates": [
                {k: g[k] for k in ("gate", "value", "threshold", "passed")} for g in report["gates"]
            ],
            "passed": report["passed"],
        }
    }
