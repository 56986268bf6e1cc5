"""Refusals that leave stdout empty, keys model-signing cannot use, and third-party noise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgetune.cli import main

from .conftest import ASSETS

FIX_PUB = (
    "pass the signer's EC public key in PEM (`openssl ec -in KEY -pubout`); a bundle signed "
    "with another key type must be re-signed with an EC key"
)


def _refused(args: list[str]) -> str:
    """The one error line of a command that must exit 2 having written nothing to stdout."""
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, r.output
    assert r.stdout == ""
    assert r.exception is None or isinstance(r.exception, SystemExit)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: "), r.stderr
    return r.stderr.removeprefix("error: ").rstrip("\n")


# -- 14: keys --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    pytest.importorskip("model_signing")
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import rsa

    from edgetune.signing import generate_key

    d = tmp_path_factory.mktemp("keys")
    generate_key(d / "ec.pem", d / "ec.pub")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)
    (d / "rsa.pub").write_bytes(pub)
    (d / "garbage.pub").write_bytes(b"\x00\xffnot a key\n")
    return d


@pytest.fixture
def signed(tmp_path, keys) -> Path:
    """A signed bundle of random bytes: the key is judged before any model loads."""
    from edgetune.formats import bundle as bundlefmt
    from edgetune.signing import sign

    b = tmp_path / "bundle"
    b.mkdir()
    (b / "model.onnx").write_bytes(os.urandom(256))
    (b / "config.json").write_text('{"id2label": {"0": "neg", "1": "pos"}}')
    (b / "tokenizer.json").write_text("{}")
    # Signing refuses a bundle whose files its manifest does not vouch for: record them.
    labels, variant = ["neg", "pos"], {"file": "model.onnx"}
    golden = {"format": bundlefmt.GOLDEN_FORMAT, "max_length": 16, "labels": labels}
    golden_variant = {**variant, "batching": "row"}
    bundlefmt.write_golden(
        b, {**golden, "rows": [{"text": "hi"}], "variants": {"int8-dynamic": golden_variant}}
    )
    manifest = {"default_variant": "int8-dynamic", "variants": {"int8-dynamic": variant}}
    bundlefmt.write_manifest(b, {**manifest, "labels": labels, "max_length": 16})
    sign(b, keys / "ec.pem")
    return b


@pytest.mark.parametrize("command", ["predict", "check"])
def test_unusable_verify_keys_get_one_line(signed, keys, command):
    extra = ["hello"] if command == "predict" else []
    for name, why in [
        ("rsa.pub", "an RSA key; only EC keys on P-256, P-384 or P-521 are supported"),
        ("garbage.pub", "not a PEM file"),
        ("ec.pem", "it is a private key; pass its public half"),
    ]:
        key = str(keys / name)
        got = _refused([command, str(signed), "--verify-key", key, *extra])
        assert got == f"{key} is not a usable public key ({why}); {FIX_PUB}"


def test_rsa_key_refused_before_the_bundle_is_judged(tmp_path, keys):
    unsigned = tmp_path / "unsigned"
    unsigned.mkdir()
    got = _refused(["check", str(unsigned), "--verify-key", str(keys / "rsa.pub")])
    assert got.startswith(f"{keys / 'rsa.pub'} is not a usable public key (an RSA key;")


# -- 15: predict refuses before its first byte -------------------------------------------------


def test_predict_refuses_bad_input_before_any_output(bundle_dir, tmp_path):
    b = str(bundle_dir)
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("a,b\nx,y\n")
    missing = tmp_path / "missing.txt"
    cases = [
        (["--top-k", "0", "hi"], "--top-k must be at least 1, got 0"),
        (["--batch-size", "-1", "hi"], "--batch-size must be at least 1, got -1"),
        (["--threads", "-2", "hi"], "--threads must be at least 1, got -2"),
        (
            ["--input", str(missing), "--format", "csv"],
            f"--input {missing} does not exist; pass a text, CSV, TSV or JSONL file",
        ),
    ]
    for args, message in cases:
        assert _refused(["predict", b, *args]) == message
    for fmt in ("table", "csv", "jsonl"):
        got = _refused(["predict", b, "--input", str(nocol), "--format", fmt])
        assert got.startswith(f"{nocol} has no text column (text, sentence, review, content);")

    good = tmp_path / "good.csv"
    good.write_text("text\na delightful comedy\n")
    r = CliRunner().invoke(main, ["predict", b, "--input", str(good), "--format", "csv"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == "index,label,score,top_k,note" and len(lines) == 2
    assert lines[1].split(",")[1] in ("negative", "positive")


# -- 16: no third-party noise ------------------------------------------------------------------

PIPELINE = """
import sys
from edgetune.cli import main

data, out = sys.argv[1], sys.argv[2]
tiny = ["--model", "tiny-distilbert", "--data", data, "--epochs", "1", "--precision", "fp32"]
for args in (
    ["train", *tiny, "--output", out + "/full"],
    ["train", *tiny, "--output", out + "/fewshot", "--strategy", "fewshot"],
    ["export", out + "/fewshot", "--output", out + "/bundle", "--no-validate"],
    # 64 is the model's limit: the text timed at that length is cut from a longer one.
    ["validate", out + "/bundle", "--seq-lengths", "16,64", "--rounds", "3", "--warmup", "0",
     "--no-memory"],
):
    try:
        main(args, standalone_mode=False)
    except SystemExit as e:
        if e.code:
            raise
print("deepspeed modules:", sorted(m for m in sys.modules if m.split(".")[0] == "deepspeed"))
"""


def test_train_export_validate_print_no_third_party_noise(tmp_path):
    # A fresh process: other tests may have imported deepspeed into this one.
    r = subprocess.run(
        [sys.executable, "-c", PIPELINE, str(ASSETS / "sentiment.csv"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert (tmp_path / "bundle" / "validation" / "report.json").is_file()
    assert "deepspeed modules: []" in r.stdout
    for noise in (
        "Setting accelerator to CPU",  # DeepSpeed, on import
        "symbolic shape inference disabled or failed",  # ORT's fusions, logged
        "failed in shape inference",  # ORT's fusions, printed
        "Token indices sequence length is longer",  # transformers' tokenizer
    ):
        assert noise not in out
