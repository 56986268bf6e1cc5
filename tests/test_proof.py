"""The proof travels with the bundle: batch invariance, validation through the runtime, the
on-device self-check, a manifest that cannot be walked around, signing, and safe writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgetune.cli import main
from edgetune.errors import BundleError, ConfigError, LockedError, SelfCheckFailed
from edgetune.formats import bundle as bundlefmt
from edgetune.fsutil import UMASK
from edgetune.runtime import Classifier, check_bundle

from .conftest import ASSETS, rerecord_hashes
from .test_export import TEXTS

VARIANTS = ("int8-static", "fp32", "int8-dynamic")
# validate() settings that skip PyTorch and keep timing short: these tests judge answers.
QUICK = dict(
    rounds=3,
    warmup=0,
    pause_s=0,
    seq_lengths=(16,),
    memory=False,
    progress=False,
    threads=1,
    pytorch=False,
)
# Lengths from 2 to ~60 tokens, so batches mix short rows with long ones.
MIXED = TEXTS + [" ".join(TEXTS[: i + 1]) for i in range(len(TEXTS))] + ["ok", "bad"]


def _one_line_error(r, code=2):
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, r.output
    return lines[0]


# -- 1. a text's answer does not depend on its batch-mates ------------------------------------


def test_dynamic_int8_padded_batches_move_scores(bundle):
    """The problem: dynamic int8 takes activation ranges from the whole padded batch."""
    from transformers import AutoTokenizer

    from edgetune.runtime import session

    tok = AutoTokenizer.from_pretrained(bundle)
    sess = session(bundle / "model_int8_dynamic.onnx", 1)
    names = {i.name for i in sess.get_inputs()}
    enc = tok(MIXED, padding=True, return_tensors="np")
    batched = sess.run(None, {k: v.astype(np.int64) for k, v in enc.items() if k in names})[0]
    single = np.concatenate(
        [
            sess.run(
                None,
                {
                    k: v.astype(np.int64)
                    for k, v in tok([t], return_tensors="np").items()
                    if k in names
                },
            )[0]
            for t in MIXED
        ]
    )
    assert np.max(np.abs(batched - single)) > 1e-4


@pytest.mark.parametrize("variant", VARIANTS)
def test_predictions_are_batch_invariant_for_every_variant(bundle, variant):
    clf = Classifier.load(bundle, variant=variant, threads=1)
    assert clf.batching == ("row" if variant == "int8-dynamic" else "padded")
    batched = clf.predict(MIXED, batch_size=32, all_scores=True)
    for i, text in enumerate(MIXED):
        alone = clf.predict([text], batch_size=1, all_scores=True)[0]
        assert alone.label == batched[i].label
        for lb in clf.labels:
            assert abs(alone.scores[lb] - batched[i].scores[lb]) <= 1e-5
    # Other batch-mates, other order: the same answers.
    shuffled = list(reversed(MIXED))
    again = clf.predict(shuffled, batch_size=5)
    assert [p.label for p in again] == [p.label for p in reversed(batched)]


# -- 2. validation runs the code that ships ---------------------------------------------------


def test_validate_scores_onnx_variants_through_the_runtime(bundle, monkeypatch):
    from edgetune.data import load_data
    from edgetune.validate import validate

    calls: list[tuple[str, int]] = []
    real = Classifier.logits

    def spy(self, texts, **kw):
        calls.append((self.variant, kw.get("batch_size", 32)))
        return real(self, texts, **kw)

    monkeypatch.setattr(Classifier, "logits", spy)
    rep = validate(
        bundle=str(bundle),
        **QUICK,
    ).report
    assert {v for v, _ in calls} == set(VARIANTS) and {b for _, b in calls} >= {1, 32}
    monkeypatch.setattr(Classifier, "logits", real)
    data = load_data(str(ASSETS / "sentiment.csv"), val_size=0.25, test_size=0.25, seed=0)
    for name in VARIANTS:
        row = rep["variants"][name]
        inv = row["batch_invariance"]
        assert inv["flips"] == 0 and inv["max_score_diff"] <= 1e-5
        clf = Classifier.load(bundle, variant=name, threads=1)
        one_by_one = [clf.predict([t])[0].label for t in data.test.texts]
        labels = [data.label_names[y] for y in data.test.labels]
        acc = np.mean([a == b for a, b in zip(one_by_one, labels)])
        assert row["accuracy"] == pytest.approx(acc)  # validate's figure = single-row accuracy
    assert [g["gate"] for g in rep["gates"]] == ["max_batch_diff"] * 3
    assert all(g["passed"] for g in rep["gates"])


# -- 3. the on-device self-check --------------------------------------------------------------


def _break_default_variant(bundle):
    """Perturb the classifier bias of model.onnx and re-record every hash: a variant that loads,
    verifies and answers, wrongly (as a miscompiling int8 kernel would)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(bundle / "model.onnx"))
    out = m.graph.output[0].name
    node = next(n for n in m.graph.node if out in n.output)
    inits = {i.name: i for i in m.graph.initializer}
    bias = next(inits[x] for x in node.input if x in inits)
    arr = numpy_helper.to_array(bias).copy()
    arr[0] += 3.0
    bias.CopyFrom(numpy_helper.from_array(arr, bias.name))
    onnx.save(m, str(bundle / "model.onnx"))
    rerecord_hashes(bundle)


def test_golden_rows_are_recorded_at_export(bundle):
    m = bundlefmt.verify(bundle)
    g = bundlefmt.read_golden(bundle)
    kinds = [r["kind"] for r in g["rows"]]
    from_data = {"data", "near boundary", "longest", "rare tokens"}
    assert sum(k in from_data for k in kinds) >= 8 and {"longest", "rare tokens"} <= set(kinds)
    assert {"one word", "beyond max length", "non-ASCII"} <= set(kinds)
    assert len(g["reference"]["logits"]) == len(g["rows"])
    for name in VARIANTS:
        v = g["variants"][name]
        assert (
            v["file"] == m["variants"][name]["file"]
            and v["batching"] == m["variants"][name]["batching"]
        )
        assert 0 < v["tolerance"] and np.shape(v["logits"]) == (len(g["rows"]), 2)
    # fp32 ONNX reproduces PyTorch; int8 is allowed its own (recorded) distance.
    assert g["variants"]["fp32"]["reference_max_abs_diff"] < 1e-3


def test_golden_rows_take_the_narrow_the_long_and_the_rare():
    from edgetune.export import golden

    vocab: dict[str, int] = {}

    def tok(text, verbose=False):
        return {"input_ids": [vocab.setdefault(w, len(vocab)) for w in text.split()]}

    texts = [f"common words here row{i % 7}" for i in range(golden.POOL_ROWS)]
    texts[10] = "common words here " + "long " * 30  # the longest
    texts[20] = "common zyzzyva quixotic words"  # two tokens seen nowhere else
    narrow = {30: 0.01, 40: 0.02, 50: 0.03}
    for i in narrow:
        texts[i] = f"words here row{i % 7} common"

    def answer(batch, pairs):
        assert pairs is None and len(batch) == golden.POOL_ROWS
        return np.array([[0.0, narrow.get(texts.index(t), 5.0)] for t in batch])

    kinds = {r["text"]: r["kind"] for r in golden.rows(texts, None, tok, 64, answer)}
    assert kinds[texts[10]] == "longest" and kinds[texts[20]] == "rare tokens"
    for i in narrow:
        assert kinds[texts[i]] == "near boundary"
    assert len([k for k in kinds.values() if k != "data"]) >= 3 + 1 + len(narrow)
    assert len(golden.rows(texts, None, tok, 64, answer)) == golden.DATA_ROWS + 4  # edge cases
    # Margins: top minus runner-up; per token the narrowest token; multi-label the nearest cut.
    assert golden.margins(np.array([[1.0, 3.0, 2.5]])).tolist() == [0.5]
    assert golden.margins([np.array([[0.0, 4.0], [1.0, 1.5]])]).tolist() == [0.5]
    assert golden.margins(np.array([[2.0, -0.25]]), np.zeros(2)).tolist() == [0.25]


def test_self_check_passes_on_healthy_variants(bundle):
    result = check_bundle(bundle, threads=1)
    assert result.passed and [c.variant for c in result.checks] == list(VARIANTS)
    for c in result.checks:
        assert c.max_abs_diff <= c.tolerance and c.flips == 0
    r = CliRunner().invoke(main, ["check", str(bundle), "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert r.output.count("PASS") == 3 and "unsigned" in r.output


def test_self_check_refuses_a_broken_variant(bundle):
    _break_default_variant(bundle)
    bundlefmt.verify(bundle)  # the hashes alone cannot tell
    with pytest.raises(SelfCheckFailed, match="variant int8-static.*variant fp32 works here"):
        Classifier.load(bundle, threads=1)
    r = CliRunner().invoke(main, ["predict", str(bundle), "a delightful comedy"])
    line = _one_line_error(r, code=1)
    assert "int8-static" in line and "--variant fp32" in line
    # Told to, it falls back to a variant that passed, and says so.
    with pytest.warns(UserWarning, match="using variant fp32"):
        clf = Classifier.load(bundle, threads=1, fallback=True)
    assert clf.variant == "fp32"
    r = CliRunner().invoke(main, ["predict", str(bundle), "a delightful comedy", "--fallback"])
    assert r.exit_code == 0 and "using variant fp32" in r.output
    # Skipping the check is the user's explicit choice.
    assert Classifier.load(bundle, threads=1, self_check=False).variant == "int8-static"
    r = CliRunner().invoke(main, ["check", str(bundle), "--threads", "1", "--json"])
    assert r.exit_code == 1
    verdicts = {k: v["passed"] for k, v in json.loads(r.output)["variants"].items()}
    assert verdicts == {"int8-static": False, "fp32": True, "int8-dynamic": True}


def test_bundles_of_an_older_format_are_refused(bundle):
    # Version 1 had no golden.json: nothing to self-check and nothing to cross-check against.
    _edit_manifest(bundle, lambda m: m.update(version=1))
    r = CliRunner().invoke(main, ["predict", str(bundle), "fine", "--no-self-check"])
    assert "format version 1" in _one_line_error(r) and "re-export" in r.output


# -- 4. a manifest that cannot be walked around -----------------------------------------------


def _edit_manifest(bundle, edit):
    path = bundle / bundlefmt.MANIFEST
    m = json.loads(path.read_text())
    edit(m)
    path.write_text(json.dumps(m))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.pop("files"), "no `files` hashes"),
        (lambda m: m.update(files={}), "no `files` hashes"),
        (lambda m: m["files"].pop("model.onnx"), "not among the hashed files"),
        (lambda m: m["files"].pop("tokenizer.json"), "tokenizer.json is not among the hashed"),
        (lambda m: m["files"].update({"../evil.onnx": "0" * 64}), "not a plain relative path"),
        (lambda m: m["files"].update({"/etc/passwd": "0" * 64}), "not a plain relative path"),
        (lambda m: m["files"].update({"config.json": 5}), "not a SHA-256"),
        (lambda m: m.update(labels=list(reversed(m["labels"]))), "labels"),
        (lambda m: m.update(labels="negative,positive"), "`labels` is not a list"),
        (lambda m: m.update(max_length="128"), "`max_length`"),
        (lambda m: m.update(max_length=100000), "max_length"),
        (lambda m: m.pop("variants"), "no `variants`"),
        (lambda m: m.update(default_variant="int4"), "default_variant"),
        (
            lambda m: m["variants"]["int8-static"].update(file="model_fp32.onnx"),
            "differs from the one golden.json",
        ),
        (lambda m: m.update(version=99), "upgrade edgetune"),
        (lambda m: m.update(version=True), "`version` True"),
        (lambda m: m["variants"]["fp32"].update(requires="1.2"), "`requires` is not a mapping"),
        (
            lambda m: m["variants"]["fp32"].update(requires={"onnxruntime": "1.0"}),
            "differs from the one golden.json",
        ),
        (
            lambda m: m["files"].update({"tokenizer.json": "0" * 64}),
            "tokenizer.json does not match",
        ),
    ],
)
def test_malformed_or_walked_around_manifests_are_refused(bundle, edit, message):
    _edit_manifest(bundle, edit)
    with pytest.raises(BundleError, match=message.replace("(", r"\(")):
        Classifier.load(bundle, self_check=False)
    r = CliRunner().invoke(main, ["predict", str(bundle), "a gorgeous, witty film"])
    _one_line_error(r)


def test_variant_pointing_at_an_unlisted_file_is_refused(bundle):
    shutil.copy(bundle / "model_fp32.onnx", bundle / "evil.onnx")
    _edit_manifest(bundle, lambda m: m["variants"]["int8-static"].update(file="evil.onnx"))
    r = CliRunner().invoke(main, ["predict", str(bundle), "a gorgeous, witty film"])
    assert "evil.onnx" in _one_line_error(r) and "not among the hashed files" in r.output


def test_labels_come_from_the_hashed_config(bundle):
    # Reversing labels in both the manifest and config.json breaks config.json's hash instead.
    cfg = json.loads((bundle / "config.json").read_text())
    cfg["id2label"] = {"0": "positive", "1": "negative"}
    (bundle / "config.json").write_text(json.dumps(cfg))
    _edit_manifest(bundle, lambda m: m.update(labels=["positive", "negative"]))
    with pytest.raises(BundleError, match="config.json does not match its SHA-256"):
        Classifier.load(bundle)


def test_symlink_out_of_the_bundle_is_refused(bundle, tmp_path):
    outside = tmp_path / "outside.json"
    shutil.copy(bundle / "config.json", outside)
    (bundle / "config.json").unlink()
    (bundle / "config.json").symlink_to(outside)
    with pytest.raises(BundleError, match="links outside the bundle"):
        bundlefmt.verify(bundle)


def test_a_file_changed_with_only_the_manifest_rehashed_is_refused(bundle):
    # e.g. a tokenizer remapping one word: golden.json (hashed) still holds the old hash.
    tok = json.loads((bundle / "tokenizer.json").read_text())
    tok["model"]["vocab"]["[UNK]"], tok["model"]["vocab"]["the"] = (
        tok["model"]["vocab"]["the"],
        tok["model"]["vocab"]["[UNK]"],
    )
    (bundle / "tokenizer.json").write_text(json.dumps(tok))
    digest = bundlefmt.sha256(bundle / "tokenizer.json")
    _edit_manifest(bundle, lambda m: m["files"].update({"tokenizer.json": digest}))
    with pytest.raises(BundleError, match="differ from those golden.json records"):
        bundlefmt.verify(bundle)


def test_unlisted_files_are_refused(bundle):
    # Dropping a file from the list must not let it change unseen.
    _edit_manifest(bundle, lambda m: m["files"].pop("vocab.txt"))
    r = CliRunner().invoke(main, ["predict", str(bundle), "fine"])
    assert "vocab.txt, which edgetune.json does not list" in _one_line_error(r)


def test_malformed_golden_and_symlink_loops_get_one_line(bundle):
    g = json.loads((bundle / "golden.json").read_text())
    g["variants"]["fp32"] = "model_fp32.onnx"
    (bundle / "golden.json").write_text(json.dumps(g))
    _edit_manifest(
        bundle,
        lambda m: m["files"].update({"golden.json": bundlefmt.sha256(bundle / "golden.json")}),
    )
    r = CliRunner().invoke(main, ["check", str(bundle)])
    assert "golden.json is missing or malformed" in _one_line_error(r)
    (bundle / "vocab.txt").unlink()
    (bundle / "vocab.txt").symlink_to(bundle / "vocab.txt")
    r = CliRunner().invoke(main, ["predict", str(bundle), "fine"])
    assert "links outside the bundle" in _one_line_error(r)


# -- signing ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    pytest.importorskip("model_signing")
    from edgetune.signing import generate_key

    d = tmp_path_factory.mktemp("keys")
    generate_key(d / "owner.pem", d / "owner.pub")
    generate_key(d / "other.pem", d / "other.pub")
    return d


def test_signed_bundle_round_trip_and_tampering(bundle, keys):
    pub = str(keys / "owner.pub")
    r = CliRunner().invoke(main, ["predict", str(bundle), "fine", "--verify-key", pub])
    assert "is not signed" in _one_line_error(r)  # a key is required: unsigned is refused
    r = CliRunner().invoke(main, ["sign", str(bundle), "--key", str(keys / "owner.pem")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(
        main, ["predict", str(bundle), "a delightful comedy", "--verify-key", pub]
    )
    assert r.exit_code == 0, r.output
    assert Classifier.load(bundle, public_key=keys / "owner.pub").variant == "int8-static"
    with pytest.raises(BundleError):
        Classifier.load(bundle, public_key=keys / "other.pub")
    r = CliRunner().invoke(main, ["check", str(bundle), "--verify-key", pub, "--threads", "1"])
    assert r.exit_code == 0 and "signature verified" in r.output
    # Re-validating writes its report but leaves the signed manifest alone.
    from edgetune.validate import validate

    before = (bundle / bundlefmt.MANIFEST).read_bytes()
    res = validate(
        bundle=str(bundle),
        **QUICK,
    )
    assert res.note and "signed" in res.note
    assert (bundle / bundlefmt.MANIFEST).read_bytes() == before
    Classifier.load(bundle, public_key=keys / "owner.pub", self_check=False)
    # A model swapped after signing, hashes re-recorded: the manifest check passes, the signature does not.
    _break_default_variant(bundle)
    bundlefmt.verify(bundle)
    r = CliRunner().invoke(
        main, ["predict", str(bundle), "fine", "--verify-key", pub, "--no-self-check"]
    )
    assert "changed files" in _one_line_error(r)


def test_export_signs_the_finished_bundle(trained_run, keys, tmp_path):
    from edgetune.export import export

    out = tmp_path / "signed"
    export(
        source=str(trained_run),
        output=str(out),
        progress=False,
        validate=False,
        sign=str(keys / "owner.pem"),
    )
    assert (out / bundlefmt.SIGNATURE).is_file()
    Classifier.load(out, public_key=keys / "owner.pub")
    with pytest.raises(ConfigError, match="--sign .* does not exist"):
        export(
            source=str(trained_run),
            output=str(tmp_path / "x"),
            progress=False,
            sign=str(tmp_path / "nope.pem"),
        )


# -- 5. writing into a bundle loses nothing and corrupts nothing --------------------------------


def test_report_dir_that_is_not_a_report_is_never_deleted(bundle, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    r = CliRunner().invoke(
        main, ["validate", str(bundle), "--report-dir", str(mine), "--no-pytorch", "--quiet"]
    )
    assert "not an edgetune validation report" in _one_line_error(r)
    assert (mine / "notes.txt").read_text() == "keep me" and len(list(mine.iterdir())) == 1


_HOLD = """
import sys, time
from pathlib import Path
from edgetune.fsutil import locked
with locked(Path(sys.argv[1]), "bundle"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_a_second_writer_is_refused_while_the_first_writes(bundle, trained_run):
    from edgetune.export import export
    from edgetune.validate import validate

    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(bundle), "30"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(
            LockedError, match=f"being written by another edgetune process \\(pid {holder.pid}"
        ):
            validate(bundle=str(bundle), progress=False, pytorch=False)
        with pytest.raises(LockedError):
            export(source=str(trained_run), output=str(bundle), overwrite=True, progress=False)
        r = CliRunner().invoke(main, ["validate", str(bundle), "--no-pytorch", "--quiet"])
        assert "another edgetune process" in _one_line_error(r)
    finally:
        holder.kill()
        holder.wait()
    # A killed holder leaves no lock behind; its staging leftovers are removed by the next writer.
    (bundle / ".validation.tmp-killed").mkdir()
    (bundle / ".edgetune.json.tmp-killed").write_text("{")
    time.sleep(0.1)
    validate(
        bundle=str(bundle),
        **QUICK,
    )
    bundlefmt.verify(bundle)
    assert not [p.name for p in bundle.iterdir() if p.name.startswith(".")]


def test_one_lock_whatever_the_path_spelling_and_exact_cleanup(tmp_path, monkeypatch):
    from edgetune.fsutil import clean_stale, lock_path, locked

    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "b")
    assert lock_path(Path(".")) == lock_path(tmp_path / "b") == tmp_path / ".b.lock"
    with locked(Path("."), "bundle"):
        assert (tmp_path / ".b.lock").is_file()
    for name in (".b.old", ".b.staging-1", ".b.old.lock", ".b.old.staging-2", ".bb.tmp-3"):
        (tmp_path / name).mkdir()
    assert sorted(clean_stale(tmp_path, "b")) == [".b.old", ".b.staging-1"]
    assert {p.name for p in tmp_path.iterdir()} == {
        "b",
        ".b.old.lock",
        ".b.old.staging-2",
        ".bb.tmp-3",
    }


def test_files_get_the_users_permissions_and_leftovers_are_cleaned(trained_run, tmp_path):
    from edgetune.export import export

    out = tmp_path / "b"
    stale = tmp_path / ".b.staging-killed"
    stale.mkdir()
    (stale / "model.onnx").write_bytes(b"half")
    export(source=str(trained_run), output=str(out), progress=False, archive=True)
    assert not stale.exists()
    file_mode, dir_mode = 0o666 & ~UMASK, 0o777 & ~UMASK
    for p in [out, *out.rglob("*"), tmp_path / "b.tar.gz"]:
        assert (p.stat().st_mode & 0o777) == (dir_mode if p.is_dir() else file_mode), p
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".b")]
    # Readable by another user where the umask says so (a copied bundle loads for them).
    if UMASK & 0o004 == 0:
        assert os.stat(out / bundlefmt.MANIFEST).st_mode & 0o004


# -- 5. a fast second start: what is hashed, and passes remembered ---------------------------


def test_a_start_hashes_the_graph_it_loads_not_the_other_variants(bundle):
    """Only the loaded graph and the shared files are hashed; a tampered graph of another
    variant is still refused the moment it would be loaded (a fallback), and by check."""
    f = bundle / "model_int8_dynamic.onnx"
    data = bytearray(f.read_bytes())
    data[100] ^= 1
    f.write_bytes(bytes(data))
    assert Classifier.load(bundle, threads=1).variant == "int8-static"
    with pytest.raises(BundleError, match="model_int8_dynamic.onnx does not match its SHA-256"):
        Classifier.load(bundle, variant="int8-dynamic", threads=1)
    with pytest.raises(BundleError, match="does not match its SHA-256"):
        check_bundle(bundle, threads=1)
    _break_default_variant(bundle)  # int8-static fails its check: the fallback is fp32
    f.write_bytes(bytes(data))  # rerecord_hashes made it whole again
    r = CliRunner().invoke(main, ["predict", str(bundle), "fine", "--fallback"])
    assert r.exit_code == 0 and "using variant fp32" in r.output  # fp32 comes first


def test_a_manifest_edit_cannot_take_a_shared_file_out_of_the_hashing(bundle):
    """Only other variants' .onnx graphs are skipped: naming the tokenizer as another
    variant's transformers.js copy does not stop its hash from being checked."""
    _edit_manifest(bundle, lambda m: m["variants"]["fp32"].update(transformers_js="tokenizer.json"))
    rerecord_hashes(bundle)  # the manifest's own list is re-made; tokenizer.json then changes
    (bundle / "tokenizer.json").write_text((bundle / "tokenizer.json").read_text() + " ")
    with pytest.raises(BundleError, match="tokenizer.json does not match its SHA-256"):
        Classifier.load(bundle, threads=1)


def test_a_passed_self_check_is_remembered_on_this_device(bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGETUNE_CACHE", str(tmp_path / "cache"))
    first = Classifier.load(bundle, threads=1)
    assert first.checked is not None and first.checked.passed and not first.checked.remembered
    assert len(list((tmp_path / "cache" / "self-checks").glob("*.json"))) == 1
    second = Classifier.load(bundle, threads=1)
    assert second.checked is not None and second.checked.remembered
    assert second.checked.max_abs_diff == first.checked.max_abs_diff
    (record,) = (tmp_path / "cache" / "self-checks").glob("*.json")
    forged = json.loads(record.read_text())
    record.write_text(json.dumps({**forged, "max_abs_diff": forged["tolerance"] * 2}))
    assert not Classifier.load(bundle, threads=1).checked.remembered  # not a pass: run again
    assert not Classifier.load(bundle, threads=1, self_check="always").checked.remembered
    assert not Classifier.load(bundle, threads=2).checked.remembered  # other threads: again
    assert Classifier.load(bundle, threads=1, self_check="never").checked is None
    # A changed bundle is another bundle: its check runs, and a failure is never remembered.
    _break_default_variant(bundle)
    for _ in range(2):
        with pytest.raises(SelfCheckFailed):
            Classifier.load(bundle, threads=1)
    assert len(list((tmp_path / "cache" / "self-checks").glob("*.json"))) == 3
    r = CliRunner().invoke(main, ["predict", str(bundle), "fine", "--self-check", "never"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["predict", str(bundle), "fine", "--self-check", "sometimes"])
    assert r.exit_code == 2 and "'sometimes' is not one of" in r.output


def test_check_always_runs_and_its_passes_serve_later_starts(bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGETUNE_CACHE", str(tmp_path / "cache"))
    assert check_bundle(bundle, threads=1).passed
    assert check_bundle(bundle, threads=1).checks[0].remembered is False
    clf = Classifier.load(bundle, threads=1, variant="int8-dynamic")
    assert clf.checked is not None and clf.checked.remembered
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    monkeypatch.setenv("EDGETUNE_CACHE", str(blocked))  # a cache that cannot be written
    for _ in range(2):  # the check runs each time, and the bundle still serves
        clf = Classifier.load(bundle, threads=1)
        assert clf.checked is not None and clf.checked.passed and not clf.checked.remembered
