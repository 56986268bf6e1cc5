"""Nothing lost, nothing silently wrong: result files that would destroy what is there, inputs
inside an output, non-finite losses and weights, and the one-line refusals of odd input."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgetune.cli import main

from .conftest import ASSETS

DATA = str(ASSETS / "sentiment.csv")
TINY = ["--model", "tiny-distilbert", "--epochs", "1", "--precision", "fp32", "--quiet"]
PROMPTS = "negative=This movie is bad.,positive=This movie is good."


def _cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def _one_line_exit_2(r, message: str) -> None:
    assert r.exit_code == 2, r.output
    assert message in r.output, r.output
    assert "Traceback" not in r.output
    errors = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and len(errors[0]) < 400, r.output


# -- bench result files ---------------------------------------------------------------------


def _bench(bundle, *extra):
    return _cli(
        "bench", bundle, "--batch-sizes", "1", "--seq-lengths", "16", "--rounds", "3",
        "--warmup", "0", "--pause", "0", "--quiet", *extra,
    )  # fmt: skip


@pytest.mark.parametrize("option", ["--output", "--markdown", "--junit"])
def test_bench_never_replaces_what_it_did_not_write(bundle, tmp_path, option):
    manifest = bundle / "edgetune.json"
    before = manifest.read_bytes()
    r = _bench(bundle, option, manifest)
    _one_line_exit_2(r, f"is inside the bundle {bundle.resolve()}")
    assert manifest.read_bytes() == before
    r = _cli("check", bundle)
    assert r.exit_code == 0, r.output

    data = tmp_path / "reviews.csv"
    data.write_text("text,label\ngood,1\n")
    _one_line_exit_2(_bench(bundle, option, data), "exists and is not an edgetune bench")
    assert data.read_text() == "text,label\ngood,1\n"

    target = tmp_path / "target.txt"
    target.write_text("keep me")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    _one_line_exit_2(_bench(bundle, option, link), "is a symbolic link, not a regular file")
    assert link.is_symlink() and target.read_text() == "keep me"

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    _one_line_exit_2(_bench(bundle, option, fifo), "is a FIFO (named pipe), not a regular file")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)

    folder = tmp_path / "folder"
    folder.mkdir()
    _one_line_exit_2(_bench(bundle, option, folder), "is a folder, not a regular file")


def test_bench_never_replaces_a_device_node(bundle, tmp_path):
    node = tmp_path / "null"
    try:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # what /dev/null is
    except PermissionError:
        pytest.skip("creating a device node needs root")
    _one_line_exit_2(_bench(bundle, "--output", node), "is a device, not a regular file")
    assert stat.S_ISCHR(os.lstat(node).st_mode)


def test_bench_refreshes_its_own_files_and_takes_empty_ones(bundle, tmp_path):
    out, md, xml = tmp_path / "b.json", tmp_path / "b.md", tmp_path / "b.xml"
    md.touch()  # an empty file loses nothing: `mktemp` makes these
    r = _bench(bundle, "--output", out, "--markdown", md, "--junit", xml)
    assert r.exit_code == 0, r.output
    first = json.loads(out.read_text())
    assert first["schema"] == "edgetune-bench" and md.read_text().startswith("### edgetune")
    r = _bench(bundle, "--output", out, "--markdown", md, "--junit", xml)
    assert r.exit_code == 0, r.output  # a file edgetune wrote is replaced
    assert json.loads(out.read_text())["time_s"] >= 0 and xml.read_text().startswith("<?xml")
    r = _bench(bundle, "--output", out, "--markdown", out)
    _one_line_exit_2(r, "--output and --markdown name the same file")


# -- inputs inside outputs ------------------------------------------------------------------


def test_train_overwrite_never_replaces_an_input_of_the_run(trained_run, tmp_path):
    teacher = tmp_path / "teacher"
    shutil.copytree(trained_run, teacher)
    before = sorted(p.name for p in teacher.iterdir())
    r = _cli("train", *TINY, "--data", DATA, "--teacher", teacher, "--output", teacher,
             "--overwrite")  # fmt: skip
    _one_line_exit_2(r, f"holds --teacher {teacher}, which this run reads")
    assert sorted(p.name for p in teacher.iterdir()) == before
    out = tmp_path / "run"
    shutil.copytree(trained_run, out)
    extra = out / "extra.txt"
    extra.write_text("text\na film\n")
    r = _cli("train", *TINY, "--data", DATA, "--teacher", teacher, "--unlabeled", extra,
             "--output", out, "--overwrite")  # fmt: skip
    _one_line_exit_2(r, f"holds --unlabeled {extra}")
    prompts = out / "prompts.txt"
    prompts.write_text("negative=bad\npositive=good\n")
    r = _cli("train", *TINY, "--data", DATA, "--strategy", "fewshot", "--label-prompts", prompts,
             "--output", out, "--overwrite")  # fmt: skip
    _one_line_exit_2(r, f"holds --label-prompts {prompts}")
    assert extra.is_file() and prompts.is_file() and (out / "metrics.json").is_file()


def test_export_archive_is_not_replaced_without_overwrite(bundle_dir, trained_run, tmp_path):
    out = tmp_path / "b"
    archive = tmp_path / "b.tar.gz"
    archive.write_bytes(b"someone's archive")
    for extra in ([], ["--overwrite"]):
        r = _cli("export", trained_run, "--output", out, "--archive", "--no-validate", *extra)
        _one_line_exit_2(r, "exists and is not an edgetune bundle archive")
        assert not out.exists() and archive.read_bytes() == b"someone's archive"
    # An archive of this bundle, written by export, is replaced with --overwrite only.
    shutil.copy(bundle_dir.with_name("b.tar.gz"), archive)
    before = archive.read_bytes()
    r = _cli("export", trained_run, "--output", out, "--archive", "--no-validate")
    _one_line_exit_2(r, "b.tar.gz already exists; pass --overwrite")
    assert not out.exists() and archive.read_bytes() == before
    r = _cli("export", trained_run, "--output", out, "--archive", "--no-validate", "--overwrite",
             "--variants", "fp32")  # fmt: skip
    assert r.exit_code == 0, r.output
    import tarfile

    with tarfile.open(archive) as tar:
        assert "b/model_fp32.onnx" in tar.getnames()


# -- non-finite losses, logits and weights --------------------------------------------------


def _nan_model(tiny_model_dir: Path, dst: Path) -> Path:
    from safetensors.torch import load_file, save_file

    shutil.copytree(tiny_model_dir, dst)
    weights = load_file(dst / "model.safetensors")
    name = next(k for k in weights if k.endswith("classifier.weight"))
    weights[name][0, 0] = float("nan")
    save_file(weights, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def test_a_nan_loss_stops_training_with_the_cause(tiny_model_dir, tmp_path):
    model = _nan_model(tiny_model_dir, tmp_path / "nan-model")
    r = _cli("train", "--model", model, "--data", DATA, "--output", tmp_path / "r",
             "--epochs", "1", "--precision", "fp32", "--quiet")  # fmt: skip
    _one_line_exit_2(r, "training stopped at step 0 (epoch 1): the loss is nan")
    assert "the model's own logits are not finite" in r.output
    assert not (tmp_path / "r").exists() and not (tmp_path / "r.partial").exists()


def test_a_teacher_with_nan_logits_is_refused_before_the_student_trains(trained_run, tmp_path):
    teacher = _nan_model(trained_run / "best", tmp_path / "teacher")
    r = _cli("train", *TINY, "--data", DATA, "--teacher", teacher, "--output", tmp_path / "r")
    _one_line_exit_2(r, "gives non-finite logits on")
    r = _cli("train", *TINY, "--data", DATA, "--teacher", teacher, "--output", tmp_path / "r",
             "--distill-temperature", "inf")  # fmt: skip
    _one_line_exit_2(r, "--distill-temperature inf is not a finite number")


def test_the_loss_term_that_went_non_finite_is_named():
    import torch

    from edgetune.train import TrainConfig
    from edgetune.train.loop import nonfinite_cause

    c = TrainConfig(model="m", data="d", output="o", teacher="t", distill_temperature=1e-30)
    ok, nan = torch.zeros(2, 2), torch.full((2, 2), float("nan"))
    labels, bad = torch.tensor([0, 1]), torch.tensor(float("nan"))
    assert "model's own logits" in nonfinite_cause(nan, labels, ok, bad, c)
    assert "teacher's logits" in nonfinite_cause(ok, labels, nan, bad, c)
    assert "distillation term" in nonfinite_cause(ok, labels, ok, bad, c)
    assert "--distill-temperature 1e-30" in nonfinite_cause(ok, labels, ok, bad, c)
    assert "cross-entropy" in nonfinite_cause(ok, labels, None, bad, c)
    assert "QAT" in nonfinite_cause(ok, labels, None, torch.tensor(1.0), c)


def test_export_refuses_non_finite_and_truncated_weights(tiny_model_dir, tmp_path):
    model = _nan_model(tiny_model_dir, tmp_path / "nan-model")
    r = _cli("export", model, "--output", tmp_path / "b", "--no-validate", "--quiet")
    _one_line_exit_2(r, "holds non-finite weights (1 NaN/inf values in")
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    r = _cli("export", model, "--output", tmp_path / "b", "--no-validate", "--quiet")
    _one_line_exit_2(r, "cannot be read")
    assert not (tmp_path / "b").exists()


# -- teachers that are not there ------------------------------------------------------------


def test_teacher_messages_name_what_is_wrong(trained_run, tmp_path, monkeypatch):
    import huggingface_hub.constants

    # Read when the hub library is imported: set here too, so no lookup waits on retries.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    partial = tmp_path / "t.partial"
    shutil.copytree(trained_run, partial)
    (partial / "metrics.json").unlink()
    r = _cli("train", *TINY, "--data", DATA, "--teacher", partial, "--output", tmp_path / "r")
    _one_line_exit_2(r, "is a run still training (or stopped before it finished)")
    assert f"--resume --output {tmp_path / 't'}" in r.output
    for missing in (tmp_path / "nonexistent", "runs/nonexistent"):
        r = _cli("train", *TINY, "--data", DATA, "--teacher", missing, "--output", tmp_path / "r")
        _one_line_exit_2(r, f"--teacher: no run, model folder or hub id at {missing}")
    truncated = tmp_path / "truncated"
    shutil.copytree(trained_run, truncated)
    weights = truncated / "best" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:500])
    r = _cli("train", *TINY, "--data", DATA, "--teacher", truncated, "--output", tmp_path / "r")
    _one_line_exit_2(r, f"--teacher {truncated} cannot be loaded")
    assert not (tmp_path / "r").exists() and not (tmp_path / "r.partial").exists()


# -- options' own bad input -----------------------------------------------------------------


def test_verbaliser_words_must_be_known_tokens():
    from transformers import AutoTokenizer

    from edgetune.errors import ConfigError
    from edgetune.heads import parse_verbalizer
    from edgetune.presets import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("tiny-distilbert").location)
    names = ["negative", "positive"]
    with pytest.raises(ConfigError, match="does not know '☃' \\(it reads as \\[UNK\\]\\)"):
        parse_verbalizer("negative=☃,positive=❄", names, tok)
    with pytest.raises(ConfigError, match="e.g. positive=good"):
        parse_verbalizer("negative=bad,positive=gooood", names, tok)
    ids = parse_verbalizer("negative=bad,positive=good", names, tok)
    assert tok.convert_ids_to_tokens(ids) == ["bad", "good"]


def test_label_prompt_files_are_read_like_data(tmp_path):
    from edgetune.errors import ConfigError
    from edgetune.heads import parse_label_prompts

    names = ["negative", "positive"]
    want = {"negative": ["Bad, très mauvais."], "positive": ["Good."]}
    text = "negative=Bad, très mauvais.\npositive=Good.\n"
    for name, data in {
        "bom.txt": b"\xef\xbb\xbf" + text.encode(),
        "utf16.txt": text.encode("utf-16"),
        "crlf.txt": text.replace("\n", "\r\n").encode(),
    }.items():
        (tmp_path / name).write_bytes(data)
        assert parse_label_prompts(str(tmp_path / name), names) == want, name
    (tmp_path / "latin1.txt").write_bytes(text.encode("latin-1"))
    (tmp_path / "binary.bin").write_bytes(bytes(range(256)) * 4)
    for name in ("latin1.txt", "binary.bin"):
        with pytest.raises(ConfigError, match="save it as UTF-8|holds binary data"):
            parse_label_prompts(str(tmp_path / name), names)
    with pytest.raises(ConfigError, match="missing.txt: no such file, and not label=text"):
        parse_label_prompts(str(tmp_path / "missing.txt"), names)
    with pytest.raises(ConfigError, match="is a folder; give a file of label=text lines"):
        parse_label_prompts(str(tmp_path), names)
    long = "negative=" + "bad " * 100 + ",positive=" + "good " * 100
    assert len(parse_label_prompts(long, names)["negative"][0]) > 255  # no file name that long


def test_label_prompt_file_errors_through_the_cli(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("negative=très\npositive=bon\n".encode("latin-1"))
    for spec, message in [
        (tmp_path / "missing.txt", "missing.txt: no such file, and not label=text pairs"),
        (tmp_path / "latin1.txt", "is not UTF-8 text"),
    ]:
        r = _cli("train", *TINY, "--data", DATA, "--strategy", "fewshot", "--label-prompts", spec,
                 "--output", tmp_path / "r")  # fmt: skip
        _one_line_exit_2(r, message)


def test_latency_budget_beyond_the_max_length_is_refused(tmp_path):
    r = _cli("train", *TINY, "--data", DATA, "--latency-budget", "5ms@99999", "--output",
             tmp_path / "r")  # fmt: skip
    _one_line_exit_2(r, "--latency-budget 5ms@99999 times 99999 tokens, beyond this run's max")
    assert not (tmp_path / "r").exists() and not (tmp_path / "r.partial").exists()


def test_repeated_column_names_are_refused(tmp_path):
    data = tmp_path / "dup.csv"
    rows = "".join(f"text {i},{i % 2},{1 - i % 2}\n" for i in range(40))
    data.write_text("sentence,label,label\n" + rows)
    r = _cli("train", *TINY, "--data", data, "--output", tmp_path / "r")
    _one_line_exit_2(r, "names column 'label' 2 times (columns 1, 2)")
    data.write_text("sentence\tlabel\tlabel\n" + rows.replace(",", "\t"))
    tsv = data.rename(tmp_path / "dup.tsv")
    r = _cli("train", *TINY, "--data", tsv, "--output", tmp_path / "r")
    _one_line_exit_2(r, "names column 'label' 2 times")


def test_sequence_lengths_beyond_the_model_are_refused_or_reported(bundle_dir):
    r = _cli("validate", bundle_dir, "--seq-lengths", "16,999", "--no-pytorch", "--quiet",
             "--report-dir", bundle_dir.parent / "rep")  # fmt: skip
    _one_line_exit_2(r, "--seq-lengths 999 exceed the model's max length")
    r = _bench(bundle_dir)
    assert r.exit_code == 0
    r = _cli("bench", bundle_dir, "--seq-lengths", "16,999", "--quiet")
    _one_line_exit_2(r, "--seq-lengths 999 exceed the model's max length")
    r = _cli("bench", bundle_dir, "--batch-sizes", "1", "--rounds", "3", "--warmup", "0",
             "--pause", "0", "--quiet")  # fmt: skip  # the default lengths: 128 > 64 is said
    assert r.exit_code == 0, r.output
    assert "sequence length(s) 128 not timed: beyond the model's max length 64" in r.output


# -- few-shot under a launcher --------------------------------------------------------------


def test_fewshot_under_torchrun_trains_on_rank_0_without_a_traceback(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed")
    out = tmp_path / "fs"
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "edgetune.cli", "train",
           *TINY, "--data", DATA, "--output", str(out), "--strategy", "fewshot", "--shots", "4",
           "--label-prompts", PROMPTS, "--pairs", "8"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and "ChildFailedError" not in r.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["environment"]["world_size"] == 1 and metrics["data"]["shots"] == 4


def test_stages_give_the_callers_torch_thread_count_back(trained_run, tmp_path):
    """export (its golden texts), validate and bench time PyTorch on every core; a training later in
    the same process must run on the caller's count, or its sums differ in the last bit."""
    import torch

    from edgetune.export import export

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        export(source=str(trained_run), output=str(tmp_path / "b"), variants=("fp32",),
               progress=False, validate=False)  # fmt: skip
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
