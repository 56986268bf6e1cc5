"""``edgetune export``: the stage's config, result and orchestration.

Resolves the source (a run or a model directory), checks ``--data`` and gathers calibration
texts before any work, then exports, optimizes, builds each variant, records the manifest and
the golden self-check, installs the bundle, validates and signs it.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Protocol

from ..errors import BundleError, ConfigError, ModelError, first_line
from ..formats import bundle as bundlefmt
from ..formats import rundir
from ..fsutil import clean_stale, locked, temp_dir
from ..hw import keeps_torch_threads
from ..quant import EMBEDDINGS, TARGETS, QuantizationConfig
from .graph import build_cpu_graph, export_onnx, optimize
from .manifest import build_manifest, js_layout, record_requirements, smoke_test
from .quantize import build_variant, without_preprocessing_advice

QUANTIZE = ("auto", "none", "dynamic", "static", "portable", "fp16")
OPTIMIZE = ("auto", "O1", "O2", "O3")
VARIANTS = ("fp32", "int8-dynamic", "int8-static", "int8-portable", "fp16")
LAYOUTS = ("edgetune", "transformers.js")
_DEFAULT_VARIANT = {
    "none": "fp32",
    "dynamic": "int8-dynamic",
    "static": "int8-static",
    "portable": "int8-portable",
    "fp16": "fp16",
}


@dataclass
class ExportConfig:
    """What ``export`` builds; validated on construction."""

    source: str
    output: str
    optimize: str = "auto"
    quantize: str = "auto"  # static int8 where there are calibration texts; a QAT run's mode
    per_channel: bool = True
    target: str = "auto"
    variants: tuple[str, ...] = ()
    embeddings: str = "int4"
    calibration_data: str | None = None
    calibration_samples: int = 256
    opset: int = 18
    instance_norm: bool = True
    validate: bool = True
    data: str | None = None
    archive: bool = False
    trust_remote_code: bool = False
    sign: str | None = None  # private key (PEM) to sign the finished bundle with
    layout: str = "edgetune"  # transformers.js: also onnx/model*.onnx, as that library expects
    min_runtime: str | None = None  # every variant must load on this onnxruntime (e.g. "1.17")
    max_int8_drop: float | None = None  # choose the default by measurement (accuracy points)

    def __post_init__(self) -> None:
        self.variants = tuple(self.variants)
        checks = [
            (self.optimize in OPTIMIZE, f"--optimize must be one of {', '.join(OPTIMIZE)}"),
            (self.quantize in QUANTIZE, f"--quantize must be one of {', '.join(QUANTIZE)}"),
            (self.target in TARGETS, f"--target must be one of {', '.join(TARGETS)}"),
            (self.embeddings in EMBEDDINGS, f"--embeddings must be one of {', '.join(EMBEDDINGS)}"),
            (self.layout in LAYOUTS, f"--layout must be one of {', '.join(LAYOUTS)}"),
            (
                all(v in VARIANTS for v in self.variants),
                f"--variants takes a comma-separated list of {', '.join(VARIANTS)}",
            ),
            (self.calibration_samples >= 1, "--calibration-samples must be at least 1"),
            (
                self.max_int8_drop is None or self.max_int8_drop >= 0,
                "--max-int8-drop is the accuracy points int8 may lose, e.g. 0.2",
            ),
            (14 <= self.opset <= 20, "--opset must be between 14 and 20"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)
        if self.min_runtime is not None:
            from ..ort_versions import parse_version

            try:
                parse_version(self.min_runtime)
            except ValueError:
                raise ConfigError(
                    f"--min-runtime {self.min_runtime!r} is not a version; write e.g. 1.17"
                ) from None
        if Path(self.output).expanduser().resolve() == Path(self.source).expanduser().resolve():
            raise ConfigError("--output is the source; choose a new directory for the bundle")

    @property
    def default_variant(self) -> str:
        return _DEFAULT_VARIANT["dynamic" if self.quantize == "auto" else self.quantize]

    def all_variants(self) -> list[str]:
        out = [self.default_variant]
        out += [v for v in self.variants if v != self.default_variant]
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["variants"] = list(self.variants)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExportConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class Validator(Protocol):
    """What ``export`` calls to validate the installed bundle: ``edgetune.validate.validate``."""

    def __call__(self, *, bundle: str, data: str | None, progress: bool) -> Any: ...


@dataclass
class ExportResult:
    output: str
    default_variant: str
    variants: dict[str, dict[str, Any]]
    fp32_onnx_bytes: int
    archive: str | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    time_s: float = 0.0
    validation: Any = None  # ValidationResult, when validated
    note: str | None = None

    def summary(self) -> str:
        lines = [
            f"bundle     {self.output}" + (f"  (archive {self.archive})" if self.archive else "")
        ]
        lines.append(f"{'variant':16}{'file':26}{'size':>10}{'vs fp32':>9}  settings")
        for name, v in self.variants.items():
            mark = " (default)" if name == self.default_variant else ""
            size = v["size_bytes"]
            lines.append(
                f"{name:16}{v['file']:26}{size / 1e6:>8.1f}MB{size / self.fp32_onnx_bytes * 100:>8.1f}%  "
                f"{_settings(v)}{mark}"
            )
        choice = self.manifest.get("default_choice")
        if choice:
            lines.append(f"default    {choice['why']}")
            for name, f in choice["candidates"].items():
                lines.append(
                    f"           {name:14} validation accuracy {f['accuracy'] * 100:6.2f}% "
                    f"({0.0 - f['drop_points']:+.2f} +- {f.get('ci95_points', 0):.2f})  "
                    f"{f['rows_per_s']:6.0f} rows/s at batch {choice['batch_size']} "
                    f"({f['batching']} batching)"
                )
        lines.append(f"time       {self.time_s:.0f} s")
        if self.validation is not None:
            lines.append(self.validation.summary())
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)


def _settings(v: dict[str, Any]) -> str:
    parts = [v.get("optimization", "")]
    q = v.get("quantization")
    if q:
        parts.append(
            f"{q['mode']}, {'per-channel' if q['per_channel'] else 'per-tensor'}"
            f"{', reduced range' if q.get('reduce_range') else ''}, target {q['target']}, "
            f"embeddings {q['embeddings']}"
        )
    return "; ".join(p for p in parts if p)


# -- the stage ----------------------------------------------------------------------------------


@keeps_torch_threads
def export(
    config: ExportConfig | None = None,
    /,
    *,
    overwrite: bool = False,
    progress: bool = True,
    validator: Validator | None = None,
    **options: Any,
) -> ExportResult:
    """Export a run (or HF model directory) to an ONNX bundle with the requested variants.

    Validation is a stage of its own: pass ``validator=edgetune.validate.validate`` to run it on
    the installed bundle before it is signed and archived (the ``export`` command does).
    """
    if config is None:
        config = ExportConfig(**options)
    elif options:
        config = replace(config, **options)
    t0 = time.perf_counter()
    output = Path(config.output).expanduser()
    sources = (config.source, config.data, config.calibration_data, config.sign)
    src = _resolve_source(Path(config.source).expanduser())
    _check_outputs(output, overwrite, sources, config.archive)
    if config.validate and config.data:
        _check_data(config, src)  # before minutes of export, and before anything is installed
    if config.max_int8_drop is not None and config.quantize != "auto":
        raise ConfigError(
            f"--max-int8-drop chooses the default variant, --quantize {config.quantize} names "
            "it; give one of them"
        )
    qat, auto = src["qat"], config.quantize == "auto"
    config, quant, calibration = _settle(config, src)
    from ..console import sayer

    say = sayer(progress)
    if auto and config.quantize == "dynamic" and qat is None:
        say(
            "default variant int8-dynamic (served one row per call): a model directory has no "
            "texts to calibrate on; --calibration-data FILE makes it int8-static, which batches"
        )
    if config.sign:
        if not Path(config.sign).expanduser().is_file():
            raise ConfigError(f"--sign {config.sign} does not exist; pass a private key file (PEM)")
        from ..signing import check_private_key

        check_private_key(Path(config.sign).expanduser())
    choosing = None
    if config.max_int8_drop is not None:
        choosing = _choice_split(config, src)
    static = "int8-static" in config.all_variants() or choosing is not None
    if static and not (qat and qat.mode == "static") and calibration is None:
        calibration = _calibration_texts(config, src)

    with locked(output, "bundle"):
        # Leftovers of killed exports to this path; nobody else writes it while we hold the lock.
        clean_stale(output.parent, output.name)
        _check_outputs(output, overwrite, sources, config.archive)
        with without_preprocessing_advice():
            built = _export(config, output, src, quant, calibration, say, choosing)
    return _finish(config, built, src, say, progress, validator, t0)


def _settle(
    config: ExportConfig, src: dict[str, Any]
) -> tuple[ExportConfig, QuantizationConfig, list[str] | None]:
    """The autos resolved: the default variant (a QAT run's scheme; else int8-static where
    there are texts to fix its ranges on, dynamic int8 where not), the int8 preset and the
    optimization level; with the calibration texts when they were read."""
    qat = src["qat"]
    calibration = None
    if qat is not None:
        # A QAT run is exported with the scheme it was trained against.
        if config.quantize == "auto":
            config = replace(config, quantize=qat.mode)
        quant = QuantizationConfig(
            qat.target, qat.per_channel, qat.reduce_range, qat.embeddings, qat.block_size
        )
    else:
        if config.quantize == "auto":
            # Batch-invariant int8 with fixed ranges where there are texts to fix them on.
            calibration = _auto_calibration(config, src)
            config = replace(config, quantize="static" if calibration else "dynamic")
        quant = replace(
            QuantizationConfig.for_target(config.target, config.per_channel),
            embeddings=config.embeddings,
        )
    if config.min_runtime and quant.embeddings == "int4" and not _int4_loads_on(config.min_runtime):
        # 4-bit blocks (GatherBlockQuantized) need a newer runtime; int8 tables load everywhere.
        quant = replace(quant, embeddings="int8")
    if config.optimize == "auto":
        # O2 (fusions, exact maths) is safe on every CPU target; O3 approximates GELU.
        config = replace(config, optimize="O2")
    return config, quant, calibration


def _choice_split(config: ExportConfig, src: dict[str, Any]) -> Any:
    """The labelled validation rows ``--max-int8-drop`` measures the candidates on."""
    from ..data.labelled import labelled_split
    from .choose import check_task

    check_task(src["task"])
    if not (src["run_config"] or config.data):
        raise ConfigError(
            "--max-int8-drop measures the int8 variants on a validation split: export a run, "
            "or pass --data FILE_OR_FOLDER"
        )
    cfg = json.loads((src["model_dir"] / "config.json").read_text())
    labels = bundlefmt.config_labels(cfg)
    # A run's own validation split (never rows it trained on), else --data's.
    data = None if src["run_config"] else config.data
    split, _ = labelled_split(labels, src["run_config"], data=data, split="validation")
    if not len(split):
        raise ConfigError("--max-int8-drop: the validation split is empty; pass --data with one")
    return split


def _check_outputs(
    output: Path, overwrite: bool, sources: tuple[str | None, ...], archive: bool
) -> None:
    """The bundle folder, and with --archive ``BUNDLE.tar.gz`` (replaced only with --overwrite,
    and only when it is an archive of this bundle)."""
    bundlefmt.check_output(output, overwrite, sources)
    if not archive:
        return
    from ..formats.outputs import bundle_archive, check_result_file

    dst = bundlefmt.archive_path(output)
    for src in filter(None, sources):
        if Path(src).expanduser().resolve() == dst.resolve():
            raise BundleError(f"--archive would replace {src}, which the export reads")
    check_result_file(
        dst, "--archive", bundle_archive(output.name), what="bundle archive", overwrite=overwrite
    )


def _export(
    config: ExportConfig,
    output: Path,
    src: dict[str, Any],
    quant: QuantizationConfig,
    calibration: list[str] | None,
    say: Any,
    choosing: Any = None,
) -> tuple[Path, dict[str, dict[str, Any]], dict[str, Any]]:
    """Build every variant, the manifest and the self-check in a staging folder; install it.

    With ``choosing`` (the validation split of ``--max-int8-drop``) the candidates are built
    first, measured, and the default is the one chosen."""
    staging = temp_dir(output.parent, f".{output.name}.staging-")
    try:
        work = staging / "work"
        bundle_dir = staging / "bundle"
        say(f"exporting {src['model_dir']} to ONNX (opset {config.opset})")
        fp32 = export_onnx(
            src["model_dir"],
            work / "onnx",
            config.opset,
            config.trust_remote_code,
            src["task"].optimum_task,
        )
        bundle_dir.mkdir()
        for f in (work / "onnx").iterdir():
            if f.suffix != ".onnx" and f.is_file():
                shutil.copy2(f, bundle_dir / f.name)
        model_cfg = json.loads((src["model_dir"] / "config.json").read_text())
        say(f"optimizing the graph ({config.optimize})")
        optimized = optimize(fp32, work / "optimized.onnx", model_cfg, config.optimize)
        cpu_graph = build_cpu_graph(optimized, work / "optimized-cpu.onnx", config.instance_norm)

        def build(name: str, dst: Path) -> dict[str, Any]:
            say(f"building variant {name}")
            graph = optimized if name == "fp16" else cpu_graph  # fp16 targets GPU kernels
            info = build_variant(
                name, fp32, graph, dst, work, model_cfg, config.optimize, quant, calibration, src
            )
            if graph is not optimized and config.instance_norm:
                info["layernorm"] = "InstanceNormalization"
            return info

        built: dict[str, tuple[Path, dict[str, Any]]] = {}
        choice = None
        if choosing is not None:
            preview = build_manifest(config.to_dict(), "fp32", src, model_cfg, {}, fp32)
            qat = src["qat"] is not None
            config, choice, built = _choose(config, bundle_dir, preview, choosing, build, say, qat)
        variants: dict[str, dict[str, Any]] = {}
        for name in config.all_variants():
            dst = bundle_dir / bundlefmt.variant_file(name, name == config.default_variant)
            if name in built:
                shutil.move(built[name][0], dst)
                info = built[name][1]
            else:
                info = build(name, dst)
            info["file"] = dst.name
            info["size_bytes"] = dst.stat().st_size
            variants[name] = info
        smoke_test(bundle_dir, variants)
        record_requirements(bundle_dir, variants, config.min_runtime)
        if config.layout == "transformers.js":
            js_layout(bundle_dir, variants)
        manifest = build_manifest(
            config.to_dict(), config.default_variant, src, model_cfg, variants, fp32
        ) | ({"default_choice": choice} if choice else {})
        say("recording the self-check: golden texts answered by PyTorch and every variant")
        golden = _golden(config, src, bundle_dir, manifest)
        for name, g in golden["variants"].items():
            variants[name]["batching"] = g["batching"]
        bundlefmt.write_golden(bundle_dir, golden)
        shutil.rmtree(work)
        manifest = bundlefmt.write_manifest(bundle_dir, manifest)
        bundlefmt.install(bundle_dir, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output, variants, manifest


_MODE = {variant: mode for mode, variant in _DEFAULT_VARIANT.items()}


def _choose(
    config: ExportConfig,
    bundle_dir: Path,
    preview: dict[str, Any],
    split: Any,
    build: Callable[[str, Path], dict[str, Any]],
    say: Any,
    qat: bool,
) -> tuple[ExportConfig, dict[str, Any], dict[str, tuple[Path, dict[str, Any]]]]:
    """Build every candidate, measure them on ``split`` through the runtime, and make the
    chosen one the default (``config.quantize``); the built graphs are kept for the bundle."""
    from ..runtime import default_threads
    from .choose import CANDIDATES, choose

    # A QAT run was trained for one scheme: it competes with fp32 only.
    candidates = ("fp32", config.default_variant) if qat else CANDIDATES
    built = {}
    for name in candidates:
        path = bundle_dir / f".candidate-{name}.onnx"  # hidden: never hashed or shipped
        built[name] = (path, build(name, path))
    say(f"measuring {', '.join(candidates)} on {len(split)} validation rows (--max-int8-drop)")
    graphs = {n: p.name for n, (p, _) in built.items()}
    assert config.max_int8_drop is not None
    limit, threads = config.max_int8_drop, default_threads()
    choice = choose(bundle_dir, graphs, preview, split, limit, threads, qat)
    say(f"default variant {choice['why']}")
    config = replace(config, quantize=_MODE[choice["chosen"]])
    keep = set(config.all_variants())
    for name, (path, _) in list(built.items()):
        if name not in keep:
            path.unlink()
            del built[name]
    return config, choice, built


def _finish(
    config: ExportConfig,
    built: tuple[Path, dict[str, dict[str, Any]], dict[str, Any]],
    src: dict[str, Any],
    say: Any,
    progress: bool,
    validator: Validator | None,
    t0: float,
) -> ExportResult:
    """Validate, sign and archive the installed bundle, in that order (each seals the last)."""
    output, variants, manifest = built
    validation, note = None, None
    if config.validate and not (config.data or src["run_config"]):
        note = (
            "not validated: the source is not a run with data; run "
            f"`edgetune validate {output} --data FILE` (or export with --data FILE)"
        )
    elif config.validate and validator is None:
        note = f"not validated: run `edgetune validate {output}`"
    elif config.validate and validator is not None:
        say("validating the bundle against the PyTorch original")
        validation = validator(bundle=str(output), data=config.data, progress=progress)
        manifest = validation.manifest
    if config.sign:
        from ..signing import sign

        say(f"signing the bundle with {config.sign}")
        sign(output, Path(config.sign).expanduser())
    archive = str(bundlefmt.archive(output)) if config.archive else None
    return ExportResult(
        output=str(output),
        default_variant=manifest["default_variant"],  # --max-int8-drop may have chosen it
        variants=variants,
        fp32_onnx_bytes=manifest["fp32_onnx_bytes"],
        archive=archive,
        manifest=manifest,
        time_s=time.perf_counter() - t0,
        validation=validation,
        note=note,
    )


def _int4_loads_on(version: str) -> bool:
    from ..ort_versions import ORT_SINCE, satisfies

    return satisfies(version, ORT_SINCE[("com.microsoft", "GatherBlockQuantized")])


def _golden(
    config: ExportConfig, src: dict[str, Any], bundle_dir: Path, manifest: dict[str, Any]
) -> dict[str, Any]:
    """The self-check's rows, the PyTorch original's answers, and each variant's."""
    from transformers import AutoTokenizer

    from ..data import load_texts
    from ..data.labelled import load_run_data, load_task_data
    from ..labelsets import threshold_logits
    from ..runners import PYTORCH, TorchRunner
    from ..runtime import default_threads
    from . import golden

    texts: list[str] = []
    pairs: list[str] | None = None
    task = src["task"]
    if src["run_config"] or config.data:
        if src["run_config"]:
            test = load_run_data(src["run_config"]).test  # held out from training
        else:
            test = load_task_data(str(config.data), task.name).test
        texts, pairs = test.texts, test.pairs
    elif config.calibration_data:
        texts = load_texts(config.calibration_data)
    tok = AutoTokenizer.from_pretrained(bundle_dir)
    threads = default_threads()
    torch_runner = TorchRunner(src["model_dir"], threads, manifest["max_length"])

    def answer(texts: list[str], pairs: list[str] | None) -> Any:
        if task.per_token:
            return torch_runner.token_logits(texts, 16)
        return torch_runner.logits(texts, pairs, 16)

    cuts = None
    if manifest.get("thresholds"):
        cuts = threshold_logits([manifest["thresholds"][n] for n in manifest["labels"]])
    rows = golden.rows(texts, pairs, tok, manifest["max_length"], answer, cuts)
    reference = answer([r["text"] for r in rows], bundlefmt.golden_pairs(rows))
    return golden.build(bundle_dir, manifest, rows, reference, PYTORCH, threads)


# -- source -------------------------------------------------------------------------------------


def _check_data(config: ExportConfig, src: dict[str, Any]) -> None:
    """Refuse --data the validation could not use (missing, unreadable, other labels)."""
    from ..data.labelled import labelled_label_sets, labelled_split, labelled_token_split

    cfg = json.loads((src["model_dir"] / "config.json").read_text())
    labels = bundlefmt.config_labels(cfg)
    task = src["task"]
    measured_on: Any = labelled_split
    if task.per_token:
        measured_on = labelled_token_split
    elif task.multi_label:
        measured_on = labelled_label_sets
    measured_on(labels, src["run_config"], data=config.data)


def _resolve_source(path: Path) -> dict[str, Any]:
    """A finished run (uses ``best/``) or an HF-format sequence-classification directory."""
    run_cfg = None
    if rundir.partial_path(path).exists() and not path.exists():
        raise BundleError(
            f"run {path} is unfinished (no finished checkpoint); finish it with "
            f"`edgetune train --resume --output {path}`"
        )
    if rundir.is_run(path):
        run_cfg = rundir.read_json(path / rundir.CONFIG)
        model_dir = path / rundir.BEST
    elif (path / "config.json").is_file():
        model_dir = path
    elif path.is_dir() and (path / rundir.CHECKPOINT).exists():
        raise BundleError(f"{path} has no finished checkpoint; finish the run first")
    else:
        raise BundleError(
            f"{path} is not an edgetune run or a Hugging Face model directory "
            "(no metrics.json + best/, no config.json); pass a run or model directory"
        )
    cfg = json.loads((model_dir / "config.json").read_text())
    archs = cfg.get("architectures") or []
    from ..heads import is_head_model  # torch: imported only when exporting
    from ..modeling import saved_task
    from ..tasks import TASKS

    task = saved_task(model_dir)
    if not is_head_model(model_dir) and not task.fits(archs):
        raise ModelError(
            f"{model_dir} holds {', '.join(archs) or 'an unknown architecture'}, not a model for "
            f"{' or '.join(TASKS)}; export a model fine-tuned with `edgetune train` (or any "
            "*ForSequenceClassification / *ForTokenClassification)"
        )
    if not any(model_dir.glob("*.safetensors")):
        raise ModelError(
            f"{model_dir} has no safetensors weights; save it with safe_serialization=True"
        )
    _refuse_nonfinite(model_dir)
    from ..quant import read_scheme

    qat = read_scheme(model_dir)
    return {"path": path, "model_dir": model_dir, "run_config": run_cfg, "qat": qat, "task": task}


def _refuse_nonfinite(model_dir: Path) -> None:
    """NaN or inf weights (a diverged run) would fail deep in quantization; say so at once."""
    import torch
    from safetensors import safe_open

    for f in sorted(model_dir.glob("*.safetensors")):
        try:
            with safe_open(str(f), framework="pt") as st:
                for name in st.keys():
                    t = st.get_tensor(name)
                    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                        bad = int((~torch.isfinite(t)).sum())
                        raise ModelError(
                            f"{f} holds non-finite weights ({bad} NaN/inf values in {name}): "
                            "the training that wrote it diverged; train again (a lower "
                            "--learning-rate, or --precision fp32) and export that run"
                        )
        except ModelError:
            raise
        except Exception as e:  # safetensors raises its own error type
            raise ModelError(
                f"{f} cannot be read ({first_line(e)}); it may be truncated: copy or train it again"
            ) from None


def _auto_calibration(config: ExportConfig, src: dict[str, Any]) -> list[str] | None:
    """Calibration texts for ``--quantize auto``: --calibration-data's, else the run's training
    texts; None (int8-dynamic) for a bare model directory without --calibration-data."""
    if not (config.calibration_data or src["run_config"]):
        return None
    return _calibration_texts(config, src)


def _calibration_texts(config: ExportConfig, src: dict[str, Any]) -> list[str]:
    import random

    from ..data import load_texts

    if config.calibration_data:
        texts = load_texts(config.calibration_data)
    elif src["run_config"] and src["task"].name != "text-classification":
        from ..data.labelled import load_run_data

        # The run's own reader and settings (a token run's sentences, its words joined).
        texts = load_run_data(src["run_config"]).train.texts
    elif src["run_config"]:
        spec, kw = rundir.data_spec(src["run_config"])
        texts = load_texts(spec, text_columns=kw["text_columns"])
    else:
        raise ConfigError(
            "static quantization needs calibration texts: pass --calibration-data FILE "
            "(the source is a model directory, not a run with training data)"
        )
    rng = random.Random(0)
    if len(texts) > config.calibration_samples:
        texts = rng.sample(texts, config.calibration_samples)
    return texts
