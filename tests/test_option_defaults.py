"""An option that is a field of its command's config has that field's default: one source."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import click
import pytest
from click.testing import CliRunner

from edgetune.bench import BenchConfig, parse_fraction
from edgetune.cli import main
from edgetune.export import ExportConfig
from edgetune.train import TrainConfig
from edgetune.validate import ValidateConfig, parse_speedup

CONFIGS: dict[str, type] = {
    "train": TrainConfig,
    "export": ExportConfig,
    "validate": ValidateConfig,
    "bench": BenchConfig,
}
NO_CONFIG = {"predict", "check", "sign", "presets"}  # they call the runtime with plain arguments
# What each command needs to parse, every other option left at its default.
REQUIRED = {
    "train": ["--output", "run"],
    "export": ["run", "--output", "bundle"],
    "validate": ["bundle"],
    "bench": ["bundle"],
}


def _names(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


def _ints(value: str) -> tuple[int, ...]:
    return tuple(int(v) for v in _names(value))


# Options spelled otherwise than their field, turned into the field's value as the command does.
SPELLED: dict[tuple[str, str], Callable[[Any], Any]] = {
    ("train", "label_names"): _names,
    # Repeatable: one --label-column is the field label_column; several are label_columns.
    ("train", "label_column"): lambda columns: columns[0] if len(columns) == 1 else None,
    ("export", "variants"): _names,
    ("validate", "variants"): _names,
    ("validate", "seq_lengths"): _ints,
    ("validate", "min_speedup"): lambda specs: tuple(parse_speedup(s) for s in specs),
    ("bench", "batch_sizes"): _ints,
    ("bench", "seq_lengths"): _ints,
    ("bench", "max_regression"): lambda spec: parse_fraction(spec) if spec else None,
}

# Intended differences, as (option default, field default). Both sides are pinned, so a change
# to either one is a decision this list has to record.
DIFFERENT: dict[tuple[str, str], tuple[Any, Any]] = {
    # Absent, --threads passes None; the field's 0 is the library's spelling of the same thing:
    # all cores (the config resolves both to os.cpu_count()). --help says "[default: all cores]".
    ("validate", "threads"): (None, 0),
    ("bench", "threads"): (None, 0),
}


def test_every_command_is_covered():
    assert set(main.commands) == set(CONFIGS) | NO_CONFIG


@pytest.mark.parametrize("command", sorted(CONFIGS))
def test_option_defaults_are_the_config_defaults(command):
    cmd = main.commands[command]
    fields = {f.name: f for f in dataclasses.fields(CONFIGS[command])}
    parsed = cmd.make_context(command, list(REQUIRED[command])).params
    compared = []
    for param in cmd.params:
        field = fields.get(str(param.name))
        if not isinstance(param, click.Option) or field is None:
            continue
        if field.default is dataclasses.MISSING:  # required: no default to drift from
            continue
        key, value = (command, str(param.name)), parsed[param.name]
        if key in DIFFERENT:
            assert (value, field.default) == DIFFERENT[key], f"{key}: update DIFFERENT, or align"
        else:
            value = SPELLED.get(key, lambda v: v)(value)
            # Typed too: 0 is not 0.0, and True is not 1.
            assert (type(value), value) == (type(field.default), field.default), key
        compared.append(key)
    assert len(compared) > 5, compared
    stale = {k for k in (*SPELLED, *DIFFERENT) if k[0] == command} - set(compared)
    assert not stale, f"no such option with a field default: {stale}"


def test_help_shows_the_config_defaults():
    def help_text(command: str) -> str:
        return " ".join(CliRunner().invoke(main, [command, "--help"]).output.split())

    assert "[default: 16,32,128]" in help_text("validate")
    assert f"[default: {ValidateConfig.rounds}]" in help_text("validate")
    assert "[default: 1,8,32]" in help_text("bench")
    assert f"[default: {BenchConfig.rounds}]" in help_text("bench")
    assert f"[default: {TrainConfig.batch_size}]" in help_text("train")
    assert "[default: per-channel]" in help_text("export")


def test_the_top_level_help_loads_no_stage_config_it_does_not_show():
    code = (
        "import sys\n"
        "from edgetune.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in ('edgetune.validate', 'edgetune.bench', 'edgetune.runtime', "
        "'torch', 'onnxruntime') if m in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"
