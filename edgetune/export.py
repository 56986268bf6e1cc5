"""``edgetune export``: Optimum ONNX export, graph optimization, quantization, and a bundle."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import BundleError, ConfigError, ModelError, first_line
from .formats import bundle as bundlefmt
from .formats import run as rundir
from .fsutil import clean_stale, locked, temp_dir
from .presets import usable_positions
from .quant import EMBEDDINGS, FUSED_ARCHITECTURES, TARGETS, QuantizationConfig

QUANTIZE = ("auto", "none", "dynamic", "static", "portable", "fp16")
OPTIMIZE = ("auto", "O1", "O2", "O3")
VARIANTS = ("fp32", "int8-dynamic", "int8-static", "int8-portable", "fp16")
LAYOUTS = ("edgetune", "transformers.js")
VERSIONED = ("torch", "transformers", "optimum", "onnx", "onnxruntime")  # in the manifest
# transformers.js looks for onnx/<file> by dtype: fp32, q8, int8, fp16.
_JS_FILES = {
    "fp32": "onnx/model.onnx",
    "int8-dynamic": "onnx/model_quantized.onnx",
    "int8-static": "onnx/model_int8.onnx",
    "fp16": "onnx/model_fp16.onnx",
}
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
    quantize: str = "auto"  # dynamic int8; a QAT run's own mode
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
            (14 <= self.opset <= 20, "--opset must be between 14 and 20"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)
        if self.min_runtime is not None:
            from .compat import parse_version

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


def export(
    config: ExportConfig | None = None,
    /,
    *,
    overwrite: bool = False,
    progress: bool = True,
    **options: Any,
) -> ExportResult:
    """Export a run (or HF model directory) to an ONNX bundle with the requested variants."""
    if config is None:
        config = ExportConfig(**options)
    elif options:
        config = replace(config, **options)
    t0 = time.perf_counter()
    output = Path(config.output).expanduser()
    sources = (config.source, config.data, config.calibration_data, config.sign)
    src = _resolve_source(Path(config.source).expanduser())
    bundlefmt.check_output(output, overwrite, sources)
    if config.validate and config.data:
        _check_data(config, src)  # before minutes of export, and before anything is installed
    qat = src["qat"]
    if qat is not None:
        # A QAT run is exported with the scheme it was trained against.
        if config.quantize == "auto":
            config = replace(config, quantize=qat.mode)
        quant = QuantizationConfig(
            qat.target, qat.per_channel, qat.reduce_range, qat.embeddings, qat.block_size
        )
    else:
        if config.quantize == "auto":
            config = replace(config, quantize="dynamic")
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
    from .console import sayer

    say = sayer(progress)
    if config.sign:
        if not Path(config.sign).expanduser().is_file():
            raise ConfigError(f"--sign {config.sign} does not exist; pass a private key file (PEM)")
        from .signing import check_private_key

        check_private_key(Path(config.sign).expanduser())
    calibration = None
    if "int8-static" in config.all_variants() and not (qat and qat.mode == "static"):
        calibration = _calibration_texts(config, src)

    with locked(output, "bundle"):
        # Leftovers of killed exports to this path; nobody else writes it while we hold the lock.
        clean_stale(output.parent, output.name)
        bundlefmt.check_output(output, overwrite, sources)
        with _without_preprocessing_advice():
            return _export(config, output, src, quant, calibration, say, progress, t0)


class _PreprocessingAdvice(logging.Filter):
    """ONNX Runtime's quantizer advises shape pre-processing on every call (a root-logger
    warning); the graphs it quantizes here are already optimized and shape-inferred."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextlib.contextmanager
def _without_preprocessing_advice():
    f = _PreprocessingAdvice()
    logging.getLogger().addFilter(f)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(f)


def _export(
    config: ExportConfig,
    output: Path,
    src: dict[str, Any],
    quant: QuantizationConfig,
    calibration: list[str] | None,
    say: Any,
    progress: bool,
    t0: float,
) -> ExportResult:
    staging = temp_dir(output.parent, f".{output.name}.staging-")
    try:
        work = staging / "work"
        bundle_dir = staging / "bundle"
        say(f"exporting {src['model_dir']} to ONNX (opset {config.opset})")
        fp32 = _export_onnx(src["model_dir"], work / "onnx", config)
        bundle_dir.mkdir()
        for f in (work / "onnx").iterdir():
            if f.suffix != ".onnx" and f.is_file():
                shutil.copy2(f, bundle_dir / f.name)
        model_cfg = json.loads((src["model_dir"] / "config.json").read_text())
        say(f"optimizing the graph ({config.optimize})")
        optimized = _optimize(fp32, work / "optimized.onnx", model_cfg, config.optimize)
        cpu_graph = _cpu_graph(optimized, work / "optimized-cpu.onnx", config.instance_norm)
        variants: dict[str, dict[str, Any]] = {}
        for name in config.all_variants():
            say(f"building variant {name}")
            default = name == config.default_variant
            dst = bundle_dir / bundlefmt.variant_file(name, default)
            graph = optimized if name == "fp16" else cpu_graph  # fp16 targets GPU kernels
            info = _build_variant(
                name, fp32, graph, dst, work, model_cfg, config, quant, calibration, src
            )
            if graph is not optimized and config.instance_norm:
                info["layernorm"] = "InstanceNormalization"
            info["file"] = dst.name
            info["size_bytes"] = dst.stat().st_size
            variants[name] = info
        _smoke_test(bundle_dir, variants)
        _record_requirements(bundle_dir, variants, config.min_runtime)
        if config.layout == "transformers.js":
            _js_layout(bundle_dir, variants)
        manifest = _manifest(config, src, model_cfg, variants, fp32)
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
    validation, note = None, None
    if config.validate and (config.data or src["run_config"]):
        from .validate import validate

        say("validating the bundle against the PyTorch original")
        validation = validate(bundle=str(output), data=config.data, progress=progress)
        manifest = validation.manifest
    elif config.validate:
        note = (
            "not validated: the source is not a run with data; run "
            f"`edgetune validate {output} --data FILE` (or export with --data FILE)"
        )
    if config.sign:
        from .signing import sign

        say(f"signing the bundle with {config.sign}")
        sign(output, Path(config.sign).expanduser())
    archive = str(bundlefmt.archive(output)) if config.archive else None
    return ExportResult(
        output=str(output),
        default_variant=config.default_variant,
        variants=variants,
        fp32_onnx_bytes=manifest["fp32_onnx_bytes"],
        archive=archive,
        manifest=manifest,
        time_s=time.perf_counter() - t0,
        validation=validation,
        note=note,
    )


def _int4_loads_on(version: str) -> bool:
    from .compat import ORT_SINCE, satisfies

    return satisfies(version, ORT_SINCE[("com.microsoft", "GatherBlockQuantized")])


def _record_requirements(
    bundle_dir: Path, variants: dict[str, dict[str, Any]], min_runtime: str | None
) -> None:
    """Each variant's needs, from its graph's operators; refuse what ``min_runtime`` cannot load."""
    import onnx

    from .compat import requirements, satisfies

    for name, v in variants.items():
        try:
            req = requirements(onnx.load(str(bundle_dir / v["file"]), load_external_data=False))
        except ValueError as e:  # an operator whose onnxruntime support was never verified
            raise ConfigError(
                f"variant {name}: {first_line(e)}; edgetune cannot say which onnxruntime loads "
                "it: try --optimize O1 or leave the variant out"
            ) from None
        v["requires"] = {
            "onnxruntime": req["min_onnxruntime"],
            "because": req["because"],
            "opsets": req["opsets"],
            "ir_version": req["ir_version"],
        }
        if min_runtime and not satisfies(min_runtime, req["min_onnxruntime"]):
            raise ConfigError(
                f"variant {name} needs onnxruntime >= {req['min_onnxruntime']} (for "
                f"{req['because']}), above --min-runtime {min_runtime}; drop it from --variants "
                "or raise --min-runtime"
            )


def _js_layout(bundle_dir: Path, variants: dict[str, dict[str, Any]]) -> None:
    """transformers.js's file names, as hard links (no extra disk) or copies; hashed like the rest."""
    for name, v in variants.items():
        if name not in _JS_FILES:
            continue
        dst = bundle_dir / _JS_FILES[name]
        dst.parent.mkdir(exist_ok=True)
        try:
            os.link(bundle_dir / v["file"], dst)
        except OSError:
            shutil.copy2(bundle_dir / v["file"], dst)
        v["transformers_js"] = _JS_FILES[name]


def _golden(
    config: ExportConfig, src: dict[str, Any], bundle_dir: Path, manifest: dict[str, Any]
) -> dict[str, Any]:
    """The self-check's rows, the PyTorch original's answers, and each variant's."""
    from transformers import AutoTokenizer

    from . import golden
    from .data import load_data, load_texts
    from .runtime import default_threads
    from .validate import PYTORCH, _TorchRunner

    texts: list[str] = []
    pairs: list[str] | None = None
    if src["run_config"] or config.data:
        spec, kw = rundir.data_spec(src["run_config"]) if src["run_config"] else (config.data, {})
        test = load_data(str(spec), **kw).test  # held out from training
        texts, pairs = test.texts, test.pairs
    elif config.calibration_data:
        texts = load_texts(config.calibration_data)
    tok = AutoTokenizer.from_pretrained(bundle_dir)
    rows = golden.rows(texts, pairs, tok, manifest["max_length"])
    threads = default_threads()
    torch_runner = _TorchRunner(src["model_dir"], threads, manifest["max_length"])
    reference = torch_runner.logits([r["text"] for r in rows], bundlefmt.golden_pairs(rows), 16)
    return golden.build(bundle_dir, manifest, rows, reference, PYTORCH, threads)


# -- source -------------------------------------------------------------------------------------


def _check_data(config: ExportConfig, src: dict[str, Any]) -> None:
    """Refuse --data the validation could not use (missing, unreadable, other labels)."""
    from .validate import ValidateConfig, labelled_split

    cfg = json.loads((src["model_dir"] / "config.json").read_text())
    id2label = cfg.get("id2label") or {}
    labels = [str(id2label[k]) for k in sorted(id2label, key=int)]
    labelled_split(
        labels, src["run_config"], ValidateConfig(bundle=config.output, data=config.data)
    )


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
    if not any(a.endswith("ForSequenceClassification") for a in archs):
        raise ModelError(
            f"{model_dir} holds {', '.join(archs) or 'an unknown architecture'}, not a sequence "
            "classifier; export a model fine-tuned with `edgetune train` (or any *ForSequenceClassification)"
        )
    if not any(model_dir.glob("*.safetensors")):
        raise ModelError(
            f"{model_dir} has no safetensors weights; save it with safe_serialization=True"
        )
    from .quant import read_scheme

    qat = read_scheme(model_dir)
    return {"path": path, "model_dir": model_dir, "run_config": run_cfg, "qat": qat}


def _calibration_texts(config: ExportConfig, src: dict[str, Any]) -> list[str]:
    import random

    from .data import load_texts

    if config.calibration_data:
        texts = load_texts(config.calibration_data)
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


# -- building blocks ----------------------------------------------------------------------------


def _export_onnx(model_dir: Path, out: Path, config: ExportConfig) -> Path:
    import warnings

    from optimum.exporters.onnx import main_export

    from .modeling import quiet_transformers

    try:
        with quiet_transformers(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer chatter about constants in the trace
            main_export(
                str(model_dir),
                output=str(out),
                task="text-classification",
                library_name="transformers",
                opset=config.opset,
                do_validation=False,
                trust_remote_code=config.trust_remote_code,
            )
    except (ValueError, KeyError, NotImplementedError) as e:
        msg = first_line(e)
        raise ModelError(f"Optimum cannot export {model_dir} to ONNX: {msg}") from None
    path = out / "model.onnx"
    import onnx

    onnx.checker.check_model(str(path))
    return path


def _heads_hidden(cfg: dict[str, Any]) -> tuple[int, int]:
    heads = cfg.get("num_attention_heads") or cfg.get("n_heads") or 0
    hidden = cfg.get("hidden_size") or cfg.get("dim") or 0
    return int(heads), int(hidden)


def _optimize(src: Path, dst: Path, cfg: dict[str, Any], level: str) -> Path:
    """O1: ORT's basic graph rewrites; O2: + transformer fusions; O3: + GELU approximation."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    model_type = FUSED_ARCHITECTURES.get(cfg.get("model_type", ""))
    heads, hidden = _heads_hidden(cfg)
    if level == "O1" or model_type is None:
        m = optimize_model(str(src), model_type="bert", opt_level=1, only_onnxruntime=True)
    else:
        opts = FusionOptions(model_type)
        # The word-embedding Gather stays separate so it can be quantized on its own.
        opts.enable_embed_layer_norm = False
        opts.enable_gelu_approximation = level == "O3"
        m = optimize_model(
            str(src),
            model_type=model_type,
            num_heads=heads,
            hidden_size=hidden,
            optimization_options=opts,
            opt_level=0,
        )
    m.save_model_to_file(str(dst))
    return dst


def _cpu_graph(src: Path, dst: Path, instance_norm: bool) -> Path:
    """The graph the CPU variants are built from: the rewrites below, one load and one save."""
    import onnx

    model = onnx.load(str(src))
    _gemm_as_matmul(model)
    if instance_norm:
        _layernorm_as_instancenorm(model)
    onnx.save(model, str(dst))
    return dst


def _gemm_as_matmul(model: Any) -> None:
    """Rewrite linear-layer Gemm nodes (2-D inputs, e.g. classifier heads) as MatMul + Add.

    The int8 quantizers handle MatMul in every mode, so every linear layer of every architecture
    is quantized alike (and as quantization-aware training simulated it).
    """
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    nodes = []
    for n in g.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if (
            n.op_type != "Gemm"
            or n.input[1] not in inits
            or attrs.get("transA", 0)
            or attrs.get("alpha", 1.0) != 1.0
            or attrs.get("beta", 1.0) != 1.0
        ):
            nodes.append(n)
            continue
        w = numpy_helper.to_array(inits[n.input[1]])
        if attrs.get("transB", 0):
            w = w.T
        name = n.name or n.output[0]
        wname = f"{n.input[1]}/matmul_b"
        g.initializer.append(numpy_helper.from_array(w.copy(), wname))
        has_bias = len(n.input) > 2 and n.input[2]
        mm_out = f"{name}/matmul" if has_bias else n.output[0]
        nodes.append(
            helper.make_node("MatMul", [n.input[0], wname], [mm_out], name=f"{name}/MatMul")
        )
        if has_bias:
            nodes.append(
                helper.make_node("Add", [mm_out, n.input[2]], [n.output[0]], name=f"{name}/Add")
            )
    del g.node[:]
    g.node.extend(nodes)
    used = {i for n in g.node for i in n.input}
    for t in [t for t in g.initializer if t.name not in used]:
        g.initializer.remove(t)


def _layernorm_as_instancenorm(model: Any) -> None:
    """Compute each LayerNorm over the hidden axis with ONNX InstanceNormalization.

    ORT's CPU (Skip)LayerNormalization kernel accumulates row statistics in a scalar loop; its
    InstanceNormalization kernel is vectorized. Measured at batch 1, sequence 128, hidden 384:
    134 us vs 58 us per normalization, about 1 ms of an 8 ms int8 MiniLM-L6 forward pass.
    The maths is the same: rows of [tokens, hidden] are reshaped to [tokens, 1, hidden],
    normalized, reshaped back, then scaled by gamma and shifted by beta.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    consumers: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1
    graph_outputs = {o.name for o in g.output}
    added: set[str] = set()

    def const(name: str, value: np.ndarray) -> str:
        if name not in added:
            g.initializer.append(numpy_helper.from_array(value, name))
            added.add(name)
        return name

    new_nodes = []
    for n in g.node:
        is_sln = n.op_type == "SkipLayerNormalization" and n.domain == "com.microsoft"
        is_ln = n.op_type == "LayerNormalization" and n.domain in ("", "ai.onnx")
        gamma_name = n.input[2] if is_sln else (n.input[1] if is_ln else "")
        gamma = inits.get(gamma_name)
        # Mean and inverse std-dev outputs have no equivalent here; SLN's sum output does.
        stats_used = any(o and (consumers.get(o) or o in graph_outputs) for o in n.output[1:3])
        axis = next((a.i for a in n.attribute if a.name == "axis"), -1)
        if (
            not (is_sln or is_ln)
            or gamma is None
            or len(gamma.dims) != 1
            or axis != -1
            or stats_used
        ):
            new_nodes.append(n)
            continue
        eps = next((a.f for a in n.attribute if a.name == "epsilon"), 1e-5)
        hidden = int(gamma.dims[0])
        p = n.name or n.output[0]
        x = n.input[0]
        beta = n.input[3] if is_sln else (n.input[2] if len(n.input) > 2 else "")
        if is_sln:
            summed = f"{p}/sum"
            new_nodes.append(
                helper.make_node("Add", [n.input[0], n.input[1]], [summed], name=f"{p}/add")
            )
            x = summed
            if len(n.input) > 4 and n.input[4]:
                new_nodes.append(
                    helper.make_node(
                        "Add", [x, n.input[4]], [f"{p}/sum_bias"], name=f"{p}/add_bias"
                    )
                )
                x = f"{p}/sum_bias"
            if len(n.output) == 4 and n.output[3]:
                new_nodes.append(
                    helper.make_node("Identity", [x], [n.output[3]], name=f"{p}/sum_out")
                )
        rows = const(f"edgetune/ln_rows_{hidden}", np.array([-1, 1, hidden], dtype=np.int64))
        one = const("edgetune/ln_one", np.ones(1, dtype=np.float32))
        zero = const("edgetune/ln_zero", np.zeros(1, dtype=np.float32))
        new_nodes += [
            helper.make_node("Shape", [x], [f"{p}/shape"], name=f"{p}/shape"),
            helper.make_node("Reshape", [x, rows], [f"{p}/rows"], name=f"{p}/to_rows"),
            helper.make_node(
                "InstanceNormalization",
                [f"{p}/rows", one, zero],
                [f"{p}/norm"],
                name=f"{p}/norm",
                epsilon=eps,
            ),
            helper.make_node(
                "Reshape", [f"{p}/norm", f"{p}/shape"], [f"{p}/back"], name=f"{p}/from_rows"
            ),
        ]
        if beta:
            new_nodes += [
                helper.make_node(
                    "Mul", [f"{p}/back", gamma_name], [f"{p}/scaled"], name=f"{p}/gamma"
                ),
                helper.make_node("Add", [f"{p}/scaled", beta], [n.output[0]], name=f"{p}/beta"),
            ]
        else:
            new_nodes.append(
                helper.make_node("Mul", [f"{p}/back", gamma_name], [n.output[0]], name=f"{p}/gamma")
            )
    del g.node[:]
    g.node.extend(new_nodes)


def _word_gather(model: Any, cfg: dict[str, Any]) -> Any:
    import onnx

    vocab = cfg.get("vocab_size")
    _, hidden = _heads_hidden(cfg)
    inits = {t.name: t for t in model.graph.initializer}
    for n in model.graph.node:
        t = inits.get(n.input[0]) if n.op_type == "Gather" else None
        if (
            t is not None
            and list(t.dims) == [vocab, hidden]
            and t.data_type == onnx.TensorProto.FLOAT
        ):
            return n
    return None


def _gather_to_int4(model: Any, node: Any, block: int) -> None:
    """Replace the fp32 word-embedding Gather by com.microsoft GatherBlockQuantized (4-bit)."""
    import numpy as np
    from onnx import helper, numpy_helper

    init = next(t for t in model.graph.initializer if t.name == node.input[0])
    w = numpy_helper.to_array(init).astype(np.float32)
    v, h = w.shape
    blk = w.reshape(v, h // block, block)
    scale = np.abs(blk).max(-1) / 7.0
    scale[scale == 0] = 1.0
    q = (np.clip(np.rint(blk / scale[..., None]) + 8, 0, 15).astype(np.uint8)).reshape(v, h)
    packed = (q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8)  # low nibble = even column
    model.graph.initializer.remove(init)
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(packed, init.name + "_q4"),
            numpy_helper.from_array(scale.astype(np.float32), init.name + "_scales"),
        ]
    )
    idx = list(model.graph.node).index(node)
    new = helper.make_node(
        "GatherBlockQuantized",
        [init.name + "_q4", node.input[1], init.name + "_scales"],
        list(node.output),
        name=node.name + "_q4",
        domain="com.microsoft",
        block_size=block,  # bits: 4 is the default; writing it would need onnxruntime 1.23
        gather_axis=0,
        quantize_axis=1,
    )
    model.graph.node.remove(node)
    model.graph.node.insert(idx, new)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))


def _build_variant(
    name: str,
    fp32: Path,
    optimized: Path,
    dst: Path,
    work: Path,
    cfg: dict[str, Any],
    config: ExportConfig,
    quant: QuantizationConfig,
    calibration: list[str] | None,
    src: dict[str, Any],
) -> dict[str, Any]:
    import onnx

    info: dict[str, Any] = {"optimization": config.optimize}
    if name == "fp32":
        shutil.copy2(optimized, dst)
        return info
    if name == "fp16":
        from onnxruntime.transformers.onnx_model import OnnxModel

        m = OnnxModel(onnx.load(str(optimized)))
        m.convert_float_to_float16(keep_io_types=True)
        m.save_model_to_file(str(dst))
        info["precision"] = "fp16"
        return info
    portable = name == "int8-portable"
    if portable and quant.embeddings == "int4":
        quant = replace(quant, embeddings="int8")  # GatherBlockQuantized needs onnxruntime 1.22
    proto = onnx.load(str(optimized))
    word = _word_gather(proto, cfg)
    exclude = [word.name] if word is not None and quant.embeddings == "int4" else []
    # The portable variant keeps attention in fp32 (QAttention is not needed to be portable
    # and its asymmetric-weight path is untested) and quantizes MatMul weights asymmetrically:
    # loads on onnxruntime 1.15+, and stays off the SME kernels of DynamicQuantizeMatMul.
    ops = ["MatMul"] + ([] if portable else ["Attention"])
    ops += ["Gather"] if quant.embeddings != "fp32" else []
    qat = src["qat"]
    if qat is not None:
        # Only what training simulated is quantized: position and type embeddings stay fp32.
        exclude += [
            n.name
            for n in proto.graph.node
            if n.op_type == "Gather" and (word is None or n.name != word.name)
        ]
    extra = {"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT}
    tmp = work / f"{name}.onnx"
    from onnxruntime.quantization import QuantType

    dynamic = name in ("int8-dynamic", "int8-portable")
    if dynamic:
        from onnxruntime.quantization import quantize_dynamic

        quantize_dynamic(
            str(optimized),
            str(tmp),
            op_types_to_quantize=ops,
            per_channel=quant.per_channel,
            reduce_range=quant.reduce_range,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude,
            extra_options={**extra, "WeightSymmetric": not portable},
        )
    elif qat is not None and qat.mode == "static":
        _quantize_static_learned(optimized, tmp, work, src, quant, qat, exclude, extra)
    else:
        _quantize_static(optimized, tmp, work, cfg, src, quant, calibration or [], exclude, extra)
    m = onnx.load(str(tmp))
    if exclude:
        node = next(n for n in m.graph.node if n.name == exclude[0])
        _gather_to_int4(m, node, quant.block_size)
    onnx.save(m, str(dst))
    info["quantization"] = {
        "mode": "dynamic" if dynamic else "static",
        "format": "QOperator" if dynamic else "QDQ",
        "weights": "int8 asymmetric" if portable else "int8 symmetric",
        "activations": "uint8 dynamic per-tensor" if dynamic else "uint8 static (MinMax)",
        "per_channel": quant.per_channel,
        "reduce_range": quant.reduce_range,
        "target": quant.target,
        "embeddings": quant.embeddings,
        "embedding_block_size": quant.block_size if quant.embeddings == "int4" else None,
        "operators": ops,
    }
    if name == "int8-static" and not (qat and qat.mode == "static"):
        info["quantization"]["calibration_samples"] = len(calibration or [])
    if qat is not None:
        info["quantization"]["qat"] = True
        if qat.mode == "static" and name == "int8-static":
            info["quantization"]["activations"] = "uint8 static (ranges learned in QAT)"
    return info


def _qdq(
    src: Path,
    dst: Path,
    reader: Any,
    quant: QuantizationConfig,
    exclude: list[str],
    extra: dict[str, Any],
) -> None:
    """ORT's static QDQ quantizer with our settings (ranges from ``reader`` or overrides)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(
        str(src),
        str(dst),
        reader,
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul"] + (["Gather"] if quant.embeddings == "int8" else []),
        per_channel=quant.per_channel,
        reduce_range=quant.reduce_range,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        nodes_to_exclude=exclude,
        # MatMul outputs stay float: their consumers (bias + GELU, residual add) run in fp32
        # anyway, and a QDQ pair there adds a rounding step that serves no int8 kernel.
        extra_options={**extra, "OpTypesToExcludeOutputQuantization": ["MatMul"]},
    )


def _quantize_static(
    src: Path,
    dst: Path,
    work: Path,
    cfg: dict[str, Any],
    srcinfo: dict[str, Any],
    quant: QuantizationConfig,
    texts: list[str],
    exclude: list[str],
    extra: dict[str, Any],
) -> None:
    """QDQ int8 with MinMax ranges collected chunk by chunk (bounded memory)."""
    import numpy as np
    from onnxruntime.quantization import (
        CalibrationDataReader,
    )
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(srcinfo["model_dir"])
    import onnx

    graph = onnx.load(str(src), load_external_data=False).graph
    names = {i.name for i in graph.input} - {t.name for t in graph.initializer}
    max_len = min(int(getattr(tok, "model_max_length", 128) or 128), 512)
    feeds = []
    for t in texts:
        enc = tok(t, truncation=True, max_length=max_len, return_tensors="np")
        feeds.append({k: v.astype(np.int64) for k, v in enc.items() if k in names})

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.start, self.end, self.i = 0, len(feeds), 0

        def get_next(self):
            if self.i >= self.end:
                return None
            self.i += 1
            return feeds[self.i - 1]

        def __len__(self) -> int:
            return len(feeds)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.start, self.end, self.i = start_index, end_index, start_index

    # ORT's symbolic shape inference knows the fused contrib ops; without it the quantizer
    # cannot type the tensors between them and silently skips those MatMuls.
    from onnxruntime.quantization.shape_inference import quant_pre_process

    inferred = work / "static-inferred.onnx"
    quant_pre_process(str(src), str(inferred), skip_optimization=True, auto_merge=True)
    # Ranges are collected in strides of `stride` samples and merged, so memory holds one
    # stride's reduced outputs at a time (ORT's own max-intermediate-outputs option drops data).
    stride = max(d for d in range(1, min(32, len(feeds)) + 1) if len(feeds) % d == 0)
    _qdq(inferred, dst, Reader(), quant, exclude, {**extra, "CalibStridedMinMax": stride})


def _quantize_static_learned(
    src: Path,
    dst: Path,
    work: Path,
    srcinfo: dict[str, Any],
    quant: QuantizationConfig,
    qat: Any,
    exclude: list[str],
    extra: dict[str, Any],
) -> None:
    """QDQ int8 whose activation scales are the ranges a static QAT run learned (no calibration).

    Each ONNX MatMul is matched to its PyTorch linear layer by its weight values (the export
    stores ``W^T``), and the layer's learned (min, max) becomes the scale and zero point of the
    MatMul's input, computed as the training simulation computed them.
    """
    import hashlib

    import numpy as np
    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization import (
        CalibrationDataReader,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from safetensors.numpy import load_file

    from .quant import static_scale_zp

    def key(a: np.ndarray) -> str:
        return hashlib.sha1(np.ascontiguousarray(a, dtype=np.float32).tobytes()).hexdigest()

    by_weight: dict[str, str] = {}
    for f in sorted(srcinfo["model_dir"].glob("*.safetensors")):
        for name, t in load_file(str(f)).items():
            if name.endswith(".weight") and t.ndim == 2:
                by_weight[key(t.T)] = name[: -len(".weight")]
    inferred = work / "static-inferred.onnx"
    quant_pre_process(str(src), str(inferred), skip_optimization=True, auto_merge=True)
    model = onnx.load(str(inferred))
    inits = {t.name: t for t in model.graph.initializer}
    overrides: dict[str, list[dict[str, Any]]] = {}
    missing = []
    for n in model.graph.node:
        if n.op_type != "MatMul" or n.input[1] not in inits:
            continue
        layer = by_weight.get(key(numpy_helper.to_array(inits[n.input[1]])))
        r = qat.ranges.get(layer) if layer else None
        if r is None:
            missing.append(layer or n.name)
            continue
        scale, zp = static_scale_zp(*r)
        overrides[n.input[0]] = [
            {"scale": np.array(scale, dtype=np.float32), "zero_point": np.array(zp, dtype=np.uint8)}
        ]
    if missing or not overrides:
        raise BundleError(
            f"the static QAT run has no learned range for {', '.join(map(str, missing[:3])) or 'any layer'}; "
            "retrain with --qat static (ranges are learned while QAT is on)"
        )
    feed_names = [i.name for i in model.graph.input if i.name not in inits]

    class One(CalibrationDataReader):  # every quantized tensor has an override; one row suffices
        def __init__(self) -> None:
            self.done = False

        def get_next(self):
            if self.done:
                return None
            self.done = True
            return {k: np.ones((1, 4), dtype=np.int64) for k in feed_names}

    _qdq(inferred, dst, One(), quant, exclude, {**extra, "TensorQuantOverrides": overrides})


def _smoke_test(bundle_dir: Path, variants: dict[str, dict[str, Any]]) -> None:
    """Every variant loads in ONNX Runtime and produces finite logits."""
    import numpy as np
    import onnxruntime as ort

    for name, v in variants.items():
        if name == "fp16":
            continue  # fp16 targets GPUs; CPU kernels may be missing
        sess = ort.InferenceSession(str(bundle_dir / v["file"]), providers=["CPUExecutionProvider"])
        feed = {i.name: np.ones((1, 8), dtype=np.int64) for i in sess.get_inputs()}
        out = sess.run(None, feed)[0]
        if not np.all(np.isfinite(out)):
            raise BundleError(
                f"variant {name} produced non-finite logits; try --optimize O1 or --quantize none"
            )


def _manifest(
    config: ExportConfig,
    src: dict[str, Any],
    cfg: dict[str, Any],
    variants: dict[str, dict[str, Any]],
    fp32: Path,
) -> dict[str, Any]:
    from .envinfo import environment

    env = environment(*VERSIONED)
    labels = [cfg["id2label"][str(i)] for i in range(len(cfg.get("id2label", {})))]
    tok_cfg_path = src["model_dir"] / "tokenizer_config.json"
    max_length = 128
    if tok_cfg_path.is_file():
        max_length = int(
            min(json.loads(tok_cfg_path.read_text()).get("model_max_length", 128), 512)
        )
    positions = usable_positions(cfg)
    if positions is not None:
        max_length = min(max_length, positions)  # never beyond what the model can encode
    run_cfg = src["run_config"]
    return {
        "default_variant": config.default_variant,
        "variants": variants,
        "labels": labels,
        "max_length": max_length,
        "model_type": cfg.get("model_type"),
        "source": {
            "path": str(src["path"].resolve()),
            "model": run_cfg["config"]["model"] if run_cfg else str(src["model_dir"]),
            "run": str(src["path"].resolve()) if run_cfg else None,
            "qat": bool(run_cfg and run_cfg["config"].get("qat")),
        },
        "export_config": config.to_dict(),
        "opset": config.opset,
        "fp32_onnx_bytes": fp32.stat().st_size,
        "versions": {k: env.get(k) for k in ("edgetune", *VERSIONED)},
        "export_cpu": env["cpu"],
        "metrics": {},
    }
