"""Outputs: never a source, only edgetune's own, nothing installed unchecked, and one-line errors
(exit 2) for read-only file systems, full disks and files where folders must be."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgetune.cli import main

from .conftest import ASSETS

TRAIN = ["train", "--model", "tiny-distilbert", "--epochs", "1", "--precision", "fp32", "--quiet"]


def _digest(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_export_never_overwrites_its_source_or_foreign_folders(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = _digest(run)
    for out in (run / "best", run, run / "bundle"):
        r = CliRunner().invoke(main, ["export", str(run), "--output", str(out), "--overwrite"])
        assert r.exit_code == 2, r.output
        assert "which the export reads" in r.output or "--output is the source" in r.output
    assert _digest(run) == before
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"\xff\xd8")
    r = CliRunner().invoke(main, ["export", str(run), "--output", str(foreign), "--overwrite"])
    assert r.exit_code == 2 and "not an edgetune bundle" in r.output, r.output
    assert (foreign / "cat.jpg").read_bytes() == b"\xff\xd8"


def test_export_with_data_of_other_labels_installs_nothing(trained_run, tmp_path):
    data = tmp_path / "other.csv"
    data.write_text("text,label\n" + "".join(f"row {i},{'abc'[i % 3]}\n" for i in range(30)))
    out = tmp_path / "bundle"
    r = CliRunner().invoke(
        main, ["export", str(trained_run), "--output", str(out), "--data", str(data)]
    )
    assert r.exit_code == 2 and "do not match the model's" in r.output, r.output
    assert not out.exists() and not [p for p in tmp_path.iterdir() if "staging" in p.name]


def test_outputs_under_a_file_are_refused_before_any_work(trained_run, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    # The data does not exist either: the output is what is named, so it was checked first.
    r = CliRunner().invoke(
        main, TRAIN + ["--data", str(tmp_path / "missing.csv"), "--output", str(blocker / "run")]
    )
    assert r.exit_code == 2 and "is a file, not a folder" in r.output, r.output
    r = CliRunner().invoke(main, ["export", str(trained_run), "--output", str(blocker / "b")])
    assert r.exit_code == 2 and "is a file, not a folder" in r.output, r.output


def _in_tmpfs(tmp_path: Path, options: str, argv: list[str]) -> subprocess.CompletedProcess:
    """Run ``edgetune ARGV`` with ``tmp_path/mnt`` a fresh tmpfs (read-only or tiny), in a
    private mount namespace so the mount dies with the process."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare is not installed")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    probe = subprocess.run(
        [unshare, "-rm", "sh", "-c", f"mount -t tmpfs -o {options} tmpfs {mnt}"],
        capture_output=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {probe.stderr.decode().strip()}")
    cmd = " ".join(
        [
            "mount -t tmpfs -o",
            options,
            "tmpfs",
            str(mnt),
            "&&",
            "exec",
            sys.executable,
            "-m",
            "edgetune.cli",
            *(f"'{a}'" for a in argv),
        ]
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [unshare, "-rm", "sh", "-c", cmd], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.mark.parametrize("fs", ["read-only", "full"])
def test_train_on_a_read_only_or_full_file_system(fs, tmp_path):
    options = "ro" if fs == "read-only" else "size=64k"
    out = tmp_path / "mnt" / "run"
    r = _in_tmpfs(
        tmp_path, options, TRAIN + ["--data", str(ASSETS / "sentiment.csv"), "--output", str(out)]
    )
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    want = "not writable" if fs == "read-only" else "no space left on device"
    assert want in r.stderr


@pytest.mark.parametrize("fs", ["read-only", "full"])
def test_export_on_a_read_only_or_full_file_system(fs, trained_run, tmp_path):
    options = "ro" if fs == "read-only" else "size=64k"
    out = tmp_path / "mnt" / "bundle"
    r = _in_tmpfs(tmp_path, options, ["export", str(trained_run), "--output", str(out), "--quiet"])
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    want = "not writable" if fs == "read-only" else "no space left on device"
    assert want in r.stderr


def test_export_output_holds_no_runtime_advice(trained_run, tmp_path):
    """ONNX Runtime's quantizer advises pre-processing on every call; export keeps it out."""
    out = tmp_path / "b"
    r = CliRunner().invoke(
        main,
        [
            "export",
            str(trained_run),
            "--output",
            str(out),
            "--variants",
            "int8-static",
            "--no-validate",
            "--quiet",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "pre-processing" not in r.output and (out / "edgetune.json").is_file()
