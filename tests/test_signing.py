"""Bundle signing: offline EC keys, every file but the signature and validation/ is covered."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("model_signing")

from edgetune import signing  # noqa: E402
from edgetune.errors import BundleError, LockedError  # noqa: E402
from edgetune.formats import bundle as bundlefmt  # noqa: E402
from edgetune.fsutil import locked  # noqa: E402


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("keys")
    signing.generate_key(d / "key.pem", d / "key.pub")
    return d / "key.pem", d / "key.pub"


@pytest.fixture
def bundle(tmp_path) -> Path:
    b = tmp_path / "bundle"
    (b / "golden").mkdir(parents=True)
    (b / "model.onnx").write_bytes(os.urandom(4096))
    (b / "model_fp32.onnx").write_bytes(os.urandom(4096))
    (b / "config.json").write_text('{"id2label": {"0": "neg", "1": "pos"}}')
    (b / "tokenizer.json").write_text("{}")
    (b / "golden" / "inputs.jsonl").write_text('{"text": "hi"}\n')
    # Signing refuses a bundle whose files its manifest does not vouch for: record them.
    variants = {"int8-dynamic": {"file": "model.onnx"}, "fp32": {"file": "model_fp32.onnx"}}
    labels, rows = ["neg", "pos"], [{"text": "hi"}]
    golden_variants = {k: {**v, "batching": "row"} for k, v in variants.items()}
    golden = {"format": bundlefmt.GOLDEN_FORMAT, "max_length": 16, "labels": labels}
    bundlefmt.write_golden(b, {**golden, "rows": rows, "variants": golden_variants})
    manifest = {"default_variant": "int8-dynamic", "variants": variants, "labels": labels}
    bundlefmt.write_manifest(b, {**manifest, "max_length": 16})
    return b


def _fails(b: Path, pub: Path, match: str = "fails signature verification") -> None:
    with pytest.raises(BundleError, match=match) as e:
        signing.verify(b, pub)
    assert "\n" not in str(e.value)


def test_round_trip(bundle, keys):
    sig = signing.sign(bundle, keys[0])
    assert sig == bundle / signing.SIGNATURE and signing.is_signed(bundle)
    signing.verify(bundle, keys[1])
    assert [p.name for p in bundle.iterdir() if p.name.endswith(".tmp")] == []
    signing.sign(bundle, keys[0])  # re-signing over an old signature
    signing.verify(bundle, keys[1])


@pytest.mark.parametrize("rel", ["model.onnx", "edgetune.json", "golden/inputs.jsonl"])
def test_modified_file_fails(bundle, keys, rel):
    signing.sign(bundle, keys[0])
    with open(bundle / rel, "ab") as f:
        f.write(b"x")
    _fails(bundle, keys[1], f"changed files: {rel}")


@pytest.mark.parametrize("rel", ["extra.onnx", "golden/more.jsonl", ".gitignore"])
def test_added_file_fails(bundle, keys, rel):
    signing.sign(bundle, keys[0])
    (bundle / rel).write_text("new")
    _fails(bundle, keys[1], f"extra files: {rel}")


def test_deleted_file_fails(bundle, keys):
    signing.sign(bundle, keys[0])
    (bundle / "tokenizer.json").unlink()
    _fails(bundle, keys[1], "missing files: tokenizer.json")


def test_wrong_key_fails(bundle, keys, tmp_path):
    signing.sign(bundle, keys[0])
    signing.generate_key(tmp_path / "other.pem", tmp_path / "other.pub")
    _fails(bundle, tmp_path / "other.pub", "Key mismatch")


def test_corrupt_signature_fails(bundle, keys):
    sig = signing.sign(bundle, keys[0])
    sig.write_text(sig.read_text()[:100])
    _fails(bundle, keys[1], "edgetune.sig is corrupt")


def test_unsigned_bundle(bundle, keys):
    assert not signing.is_signed(bundle)
    _fails(bundle, keys[1], "is not signed; sign it with `edgetune export --sign KEY`")


def test_validation_report_is_not_covered(bundle, keys):
    signing.sign(bundle, keys[0])
    (bundle / "validation").mkdir()
    (bundle / "validation" / "report.json").write_text("{}")
    signing.verify(bundle, keys[1])


def test_signature_mode_follows_umask(bundle, keys):
    old = os.umask(0o022)
    try:
        sig = signing.sign(bundle, keys[0])
    finally:
        os.umask(old)
    assert stat.S_IMODE(sig.stat().st_mode) == 0o644
    assert stat.S_IMODE(keys[0].stat().st_mode) == 0o600


def test_symlinked_bundle_dir(bundle, keys, tmp_path):
    link = tmp_path / "latest"
    link.symlink_to(bundle)
    signing.sign(link, keys[0])
    signing.verify(link, keys[1])


def test_encrypted_key(bundle, tmp_path):
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    enc = ser.BestAvailableEncryption(b"pw")
    (tmp_path / "k.pem").write_bytes(
        key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, enc)
    )
    pub = key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "k.pub").write_bytes(pub)
    with pytest.raises(BundleError, match="not a usable private key"):
        signing.sign(bundle, tmp_path / "k.pem")
    signing.sign(bundle, tmp_path / "k.pem", password=b"pw")
    signing.verify(bundle, tmp_path / "k.pub")


def test_bad_keys(bundle, keys, tmp_path):
    (tmp_path / "junk.pem").write_text("not a key")
    for key, match in [
        (tmp_path / "none.pem", "cannot read private key"),
        (tmp_path / "junk.pem", "not a usable private key"),
        (keys[1], "not a usable private key"),
    ]:
        with pytest.raises(BundleError, match=match):
            signing.sign(bundle, key)
    assert not signing.is_signed(bundle)
    signing.sign(bundle, keys[0])
    with pytest.raises(BundleError, match="cannot read public key"):
        signing.verify(bundle, tmp_path / "none.pub")
    with pytest.raises(BundleError, match="not a usable public key"):
        signing.verify(bundle, keys[0])
    with pytest.raises(BundleError, match="already exists"):
        signing.generate_key(keys[0], tmp_path / "x.pub")


def test_not_a_bundle(tmp_path, keys):
    with pytest.raises(BundleError, match="not an edgetune bundle"):
        signing.sign(tmp_path, keys[0])


def test_missing_extra(monkeypatch, bundle, keys):
    monkeypatch.setitem(sys.modules, "model_signing", None)
    with pytest.raises(BundleError, match=r"pip install 'edgetune\[sign\]'"):
        signing.sign(bundle, keys[0])


_HOLD = """
import sys, time
from pathlib import Path
from edgetune.fsutil import locked
with locked(Path(sys.argv[1]), "bundle"):
    print("held", flush=True)
    time.sleep(30)
"""


def test_sign_refuses_a_bundle_another_process_writes(bundle, keys):
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(bundle)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=f"another edgetune process \\(pid {holder.pid}"):
            signing.sign(bundle, keys[0])
        assert not signing.is_signed(bundle)
    finally:
        holder.kill()
        holder.wait()
    # The writer is gone; a lock this thread holds (export signing its own output) lets it sign.
    with locked(bundle, "bundle"):
        signing.sign(bundle, keys[0])
    signing.verify(bundle, keys[1])


@pytest.mark.parametrize(
    "tamper, match",
    [
        (lambda b: (b / "model.onnx").write_bytes(os.urandom(4096)), "does not match its SHA-256"),
        (lambda b: (b / "extra.onnx").write_text("new"), "which edgetune.json does not list"),
    ],
)
def test_sign_refuses_a_bundle_its_manifest_does_not_vouch_for(bundle, keys, tamper, match):
    (bundle / ".edgetune.json.tmp-killed").write_text("{")  # a killed writer's leftover
    tamper(bundle)
    with pytest.raises(BundleError, match=match):
        signing.sign(bundle, keys[0])
    assert not signing.is_signed(bundle)
    assert not (bundle / ".edgetune.json.tmp-killed").exists()
