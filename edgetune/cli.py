"""The ``edgetune`` command line: thin wrappers over the library functions."""

from __future__ import annotations

import sys
from typing import Any

import click

from .errors import ConfigError, EdgetuneError, GateFailed
from .export import EMBEDDINGS, LAYOUTS, OPTIMIZE, QUANTIZE, TARGETS
from .formats.bundle import SELF_CHECK_MODES
from .fsutil import storage_error
from .quant import QAT_MODES
from .train.config import CLASS_WEIGHTS, DEVICES, METRICS, PRECISIONS, STRATEGIES, TASKS


class _Group(click.Group):
    """Turns domain errors into a one-line message and an exit code (never a traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (EdgetuneError, GateFailed) as e:
            click.secho(f"error: {e}", fg="red", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.secho("error: interrupted; nothing was changed", fg="red", err=True)
            sys.exit(130)
        except ModuleNotFoundError as e:
            # The base install is the runtime; training, export and validation are an extra.
            if (e.name or "").split(".")[0] not in _TRAIN_EXTRA:
                raise
            click.secho(
                f"error: `edgetune {ctx.invoked_subcommand}` needs {e.name}, which the runtime-only "
                "install lacks; install the training extra: pip install 'edgetune[train]'",
                fg="red",
                err=True,
            )
            sys.exit(2)
        except Exception as e:
            # Full disk, read-only file system, a file where a folder must be: one line, the
            # path. Libraries in Rust or C++ (safetensors, tokenizers, torch) wrap the OS error.
            problem = storage_error(e)
            if problem is None:
                raise
            click.secho(
                f"error: {problem}; free space or choose another output path, then run again",
                fg="red",
                err=True,
            )
            sys.exit(2)


def _require_training_extra() -> None:
    """Commands of the training extra say it is missing before they judge their input."""
    import importlib.util

    for name in ("torch", "transformers"):
        if importlib.util.find_spec(name) is None:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


class _FieldOption(click.Option):
    """An option whose default is the same-named field of a stage's config, so the two never
    drift apart (a tuple field is spelled comma-separated, as its option is parsed).

    The config is imported when the command runs or shows its help, not when the CLI loads:
    validate's and bench's configs pull the runtime in, which ``edgetune --help`` must not wait for.
    """

    def __init__(self, *decls: Any, config: str, **attrs: Any) -> None:
        super().__init__(*decls, **attrs)
        self._config = config

    def get_default(self, ctx: click.Context, call: bool = True) -> Any:
        if self._config:
            import dataclasses
            import importlib

            module, _, name = self._config.rpartition(".")
            cls = getattr(importlib.import_module(module, __package__), name)
            value = {f.name: f.default for f in dataclasses.fields(cls)}[str(self.name)]
            if isinstance(value, tuple) and not self.multiple:
                value = ",".join(map(str, value))
            self.default, self._config = value, ""
        return super().get_default(ctx, call=call)


def _field_option(config: str) -> Any:
    """``click.option`` for the fields of ``config`` (``.module.Class``) that have a default."""

    def option(*decls: str, **attrs: Any) -> Any:
        return click.option(*decls, cls=_FieldOption, config=config, **attrs)

    return option


_train_option = _field_option(".train.config.TrainConfig")
_export_option = _field_option(".export.api.ExportConfig")
_validate_option = _field_option(".validate.config.ValidateConfig")
_bench_option = _field_option(".bench.BenchConfig")


def _header_option(f: Any) -> Any:
    return click.option(
        "--header/--no-header",
        default=None,
        help="CSV/TSV: whether the first row names the columns (with --no-header they are 0, "
        "1, ...) [default: it does; a first row that looks like data is refused].",
    )(f)


_TRAIN_EXTRA = {
    "torch",
    "transformers",
    "optimum",
    "onnx",
    "datasets",
    "pandas",
    "pyarrow",
    "safetensors",
    "peft",
    "matplotlib",
    "tqdm",
}


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgetune")
def main() -> None:
    """Fine-tune compact transformers and ship them to the edge as validated ONNX bundles."""


def _presets_help() -> str:
    from .presets import list_presets

    return ", ".join(list_presets())


@main.command()
@click.option("--model", required=False, help="Preset name, local HF-format directory, or hub id.")
@click.option(
    "--data",
    required=False,
    help="CSV/TSV/JSON/JSONL/Parquet file, folder of splits, or HF dataset (name[:config]).",
)
@click.option("--output", required=True, type=click.Path(), help="Run directory to create.")
@_train_option(
    "--task",
    type=click.Choice(TASKS),
    show_default=True,
    help="One label per text, any number of labels per text, or one tag per word (NER, PII); "
    "auto: token classification for CoNLL, token and tag lists or character spans, "
    "multi-label for label lists, delimited labels or several label columns.",
)
@click.option(
    "--text-column",
    "text_columns",
    multiple=True,
    help="Text column (twice for sentence pairs; the token-list column for token "
    "classification). Detected if omitted.",
)
@click.option(
    "--label-column",
    "label_column",
    multiple=True,
    help="Label (or tag-list) column; several 0/1 columns (repeat it) for multi-label. "
    "Detected if omitted.",
)
@_header_option
@click.option(
    "--label-names", help="Comma-separated names for integer labels 0..k-1, e.g. negative,positive."
)
@_train_option(
    "--label-sep",
    show_default=True,
    help="Multi-label: the separator of labels in one cell, e.g. sports,politics.",
)
@_train_option(
    "--threshold",
    show_default=True,
    help="Multi-label decision rule: a probability, or tuned (each label's best F1 on validation).",
)
@_train_option(
    "--val-size",
    type=float,
    show_default=True,
    help="Validation rows carved from train if absent (fraction or count).",
)
@_train_option(
    "--test-size",
    type=float,
    show_default=True,
    help="Test rows carved from train if absent (fraction or count).",
)
@click.option("--max-length", type=int, help="Truncate to this many tokens [preset, else 128].")
@_train_option(
    "--strategy",
    type=click.Choice(STRATEGIES),
    show_default=True,
    help="Train all weights, only the head, LoRA adapters (merged at the end), or fewshot: "
    "contrastive pairs tune a sentence encoder, then a head is fitted (8-64 rows per class; "
    "one-vs-rest for label sets).",
)
@click.option("--epochs", type=int, help="Epochs [preset, else 3].")
@click.option("--learning-rate", type=float, help="Peak learning rate [preset, else 5e-5].")
@_train_option("--batch-size", type=int, show_default=True)
@_train_option("--grad-accum", type=int, show_default=True, help="Gradient accumulation steps.")
@_train_option(
    "--warmup-ratio",
    type=float,
    show_default=True,
    help="Linear warm-up share of all steps.",
)
@_train_option("--weight-decay", type=float, show_default=True, help="AdamW weight decay (L2).")
@click.option("--dropout", type=float, help="Override the model's dropout probabilities.")
@_train_option("--seed", type=int, show_default=True)
@_train_option(
    "--class-weights",
    type=click.Choice(CLASS_WEIGHTS),
    show_default=True,
    help="Weight the loss by inverse class frequency.",
)
@click.option(
    "--eval-steps", type=int, help="Validate every N optimizer steps (default: every epoch)."
)
@_train_option(
    "--metric",
    type=click.Choice(METRICS),
    show_default=True,
    help="Validation metric that picks the best checkpoint; auto: accuracy, or entity F1 (f1) "
    "for token classification.",
)
@_train_option(
    "--label-all-subwords",
    is_flag=True,
    help="Token classification: every sub-word learns its word's tag (default: the first).",
)
@click.option("--patience", type=int, help="Stop after N evaluations without improvement.")
@_train_option(
    "--augment",
    type=float,
    show_default=True,
    help="Word deletion/swap/noise probability (training split only).",
)
@click.option(
    "--ema",
    type=float,
    help="Evaluate and keep an exponential moving average of the weights with this decay, e.g. 0.999; 0 = off [preset, else 0].",
)
@_train_option("--device", type=click.Choice(DEVICES), show_default=True)
@_train_option(
    "--precision",
    type=click.Choice(PRECISIONS),
    show_default=True,
    help="Mixed precision; auto picks bf16 on CPUs with AMX/AVX-512-BF16 and on recent GPUs.",
)
@_train_option(
    "--freeze-embeddings/--train-embeddings",
    help="Keep word embeddings frozen in full fine-tuning (faster) [default: frozen for pretrained models].",
)
@_train_option(
    "--group-by-length/--no-group-by-length",
    show_default=True,
    help="Batch rows of similar length together (less padding).",
)
@_train_option("--lora-r", type=int, show_default=True)
@_train_option("--lora-alpha", type=int, show_default=True)
@_train_option("--lora-dropout", type=float, show_default=True)
@_train_option(
    "--qat",
    type=click.Choice(QAT_MODES),
    is_flag=False,
    flag_value="dynamic",
    help="Quantization-aware training against the export's int8 (bare --qat: dynamic).",
)
@_train_option(
    "--qat-start",
    show_default=True,
    help="Plain training first: N epochs, or Nsteps optimizer steps.",
)
@_train_option("--qat-per-channel/--qat-per-tensor", show_default=True, help="Weight scales.")
@_train_option(
    "--qat-target",
    type=click.Choice(TARGETS),
    show_default=True,
    help="Instruction set whose int8 kernels are simulated (as export --target).",
)
@_train_option(
    "--qat-embeddings",
    type=click.Choice(EMBEDDINGS),
    show_default=True,
    help="Word-embedding precision simulated (as export --embeddings).",
)
@_train_option(
    "--qat-distill",
    type=float,
    show_default=True,
    help="QAT also learns the float model's predictions (self-distillation): weight in [0, 1).",
)
@click.option(
    "--layers",
    type=int,
    help="A shallower student: keep this many of the model's layers, evenly spaced.",
)
@click.option(
    "--latency-budget",
    help="The deepest student whose int8 export takes at most this here, e.g. 3ms@128 "
    "(batch 1; candidates are exported and timed before training).",
)
@click.option(
    "--teacher",
    help="Distil from this fine-tuned run or model (its labels must be the data's), e.g. "
    "runs/teacher.",
)
@_train_option(
    "--distill-alpha",
    type=float,
    show_default=True,
    help="Weight of the teacher's probabilities in the loss (0 = labels only).",
)
@_train_option(
    "--distill-temperature",
    type=float,
    show_default=True,
    help="Softmax temperature of the distillation term (scaled by its square).",
)
@click.option(
    "--unlabeled",
    help="Texts without labels (a file, folder or dataset) that the student learns from "
    "the teacher alone; rows found in the labelled data are dropped.",
)
@_train_option(
    "--distill-augment",
    type=int,
    show_default=True,
    help="Also learn the teacher's view of N augmented copies of each training text "
    "(word deletion/swap/typos at --augment's probability, else 0.1).",
)
@click.option(
    "--shots",
    type=int,
    help="Train on K rows per class of the training split (stratified, seeded by --seed; "
    "multi-label: at least K rows per label); 0 with --label-prompts: zero-shot.",
)
@click.option(
    "--label-prompts",
    help="fewshot: each class in words, 'negative=This review is negative.,positive=...' or a "
    "file of label=prompt lines; starts the head (zero-shot without rows) and joins the pairs.",
)
@click.option(
    "--pairs", type=int, help="fewshot: contrastive pairs per epoch [40 per row, at most 2,000]."
)
@_train_option(
    "--head-l2",
    type=float,
    show_default=True,
    help="fewshot: L2 penalty of the logistic-regression head (toward the prompts if given).",
)
@click.option(
    "--template",
    help="Cloze (PET) with a masked-LM checkpoint: e.g. '{text} It was [MASK].'; needs "
    "--verbalizer.",
)
@click.option(
    "--verbalizer",
    help="Cloze: the word read at [MASK] for each class, e.g. negative=terrible,positive=great.",
)
@click.option(
    "--fsdp",
    is_flag=True,
    help="Under torchrun: shard weights, gradients and optimizer state (PyTorch FSDP2) instead "
    "of DDP; an accelerate FSDP config turns it on too.",
)
@click.option(
    "--gradient-checkpointing",
    is_flag=True,
    help="Recompute activations in the backward pass: less memory, about 30% slower.",
)
@click.option(
    "--trust-remote-code", is_flag=True, help="Allow a hub model to run its own Python code."
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the unfinished run at --output from its last checkpoint.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing run at --output.")
@click.option("--quiet", is_flag=True, help="No progress bars or status lines.")
def train(
    resume: bool, overwrite: bool, quiet: bool, label_names: str | None, **options: Any
) -> None:
    """Fine-tune a compact transformer for text classification (one label or any number of
    labels per text) or token classification.

    \b
    Example:
      edgetune train --model minilm-l6 --data examples/sst2-sample --output runs/sst2
      edgetune train --model minilm-l6 --data data/conll2003 --output runs/ner
      edgetune train --model minilm-l6 --data tickets.jsonl --output runs/tags --threshold tuned
      edgetune train --model minilm-l6 --data examples/sst2-sample --output runs/fs16 \
          --strategy fewshot --shots 16 --label-names negative,positive \
          --label-prompts "negative=This review is negative.,positive=This review is positive."
    """
    _require_training_extra()
    from .train import TrainConfig
    from .train import train as run_train

    columns = options.pop("label_column") or ()
    if len(columns) > 1:  # multi-label: one 0/1 column per label
        options["label_columns"] = tuple(columns)
    else:
        options["label_column"] = columns[0] if columns else None

    if resume:
        # Options typed beside --resume must match the run's own (the library checks them).
        ctx = click.get_current_context()
        given = {
            k: v
            for k, v in {**options, "label_names": label_names}.items()
            if ctx.get_parameter_source(k) is click.core.ParameterSource.COMMANDLINE
        }
        if "label_names" in given:
            given["label_names"] = tuple(n.strip() for n in given["label_names"].split(","))
        result = run_train(resume=True, progress=not quiet, **given)
    else:
        if not (options["model"] and options["data"]):
            raise click.UsageError("--model and --data are required (unless --resume)")
        options["label_names"] = (
            tuple(n.strip() for n in label_names.split(",")) if label_names else ()
        )
        config = TrainConfig(**options)
        result = run_train(config, overwrite=overwrite, progress=not quiet)
    if result is not None:  # under torchrun, rank 0 reports
        click.echo(result.summary())


@main.command()
@click.argument("source", type=click.Path())
@click.option("--output", required=True, type=click.Path(), help="Bundle directory to create.")
@_export_option(
    "--optimize",
    type=click.Choice(OPTIMIZE),
    show_default=True,
    help="Graph optimization: O1 basic, O2 transformer fusions, O3 + GELU approximation; auto = O2.",
)
@_export_option(
    "--quantize",
    type=click.Choice(QUANTIZE),
    show_default=True,
    help="The default variant: fp32, int8 dynamic, int8 static (fixed ranges: batches), int8 "
    "portable (loads on onnxruntime 1.15+), or fp16 (GPU); auto = static where there are "
    "calibration texts (a run's training data, --calibration-data), else dynamic; a QAT run's "
    "scheme.",
)
@_export_option(
    "--per-channel/--per-tensor",
    show_default=True,
    help="Int8 weight scales per output channel.",
)
@_export_option(
    "--target",
    type=click.Choice(TARGETS),
    show_default=True,
    help="Instruction set the int8 settings are chosen for; auto = this CPU.",
)
@_export_option(
    "--variants",
    help="Extra variants to build beside the default, e.g. fp32,int8-static.",
)
@_export_option(
    "--embeddings",
    type=click.Choice(EMBEDDINGS),
    show_default=True,
    help="Word-embedding table precision in int8 variants (int4: 4-bit blocks of 32).",
)
@click.option(
    "--calibration-data", help="Texts for static calibration (default: the run's training data)."
)
@_export_option("--calibration-samples", type=int, show_default=True)
@_export_option("--opset", type=int, show_default=True)
@_export_option(
    "--validate/--no-validate",
    show_default=True,
    help="Validate the bundle against the PyTorch original at the end (needs labelled data).",
)
@click.option("--data", help="Labelled data for that validation [default: the run's data].")
@click.option("--archive", is_flag=True, help="Also write BUNDLE.tar.gz.")
@click.option(
    "--min-runtime",
    help="Oldest onnxruntime every variant must load on, e.g. 1.17 (int4 embeddings become int8 "
    "where needed).",
)
@click.option(
    "--max-int8-drop",
    type=float,
    help="Choose the default by measurement: build every int8 kind, run them on the validation "
    "split through the runtime, and make the fastest within this many accuracy points of fp32 "
    "the default (none: fp32), e.g. 0.2.",
)
@click.option("--sign", type=click.Path(), help="Sign the bundle with this private key (PEM).")
@_export_option(
    "--layout",
    type=click.Choice(LAYOUTS),
    show_default=True,
    help="transformers.js: also write onnx/model.onnx (fp32), onnx/model_quantized.onnx (int8 "
    "dynamic), onnx/model_int8.onnx (int8 static), as hard links.",
)
@click.option("--trust-remote-code", is_flag=True, help="Allow the model's own Python code to run.")
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle at --output.")
@click.option("--quiet", is_flag=True, help="No status lines.")
def export(source: str, overwrite: bool, quiet: bool, variants: str, **options: Any) -> None:
    """Export a run (or HF model directory) SOURCE to an ONNX bundle.

    \b
    Examples:
      edgetune export runs/sst2 --output bundles/sst2 --variants fp32
      edgetune export runs/sst2 --output bundles/sst2 --sign keys/owner.pem
      edgetune export runs/sst2 --output bundles/sst2 --max-int8-drop 0.2
    """
    _require_training_extra()
    from .export import ExportConfig
    from .export import export as run_export
    from .validate import validate as run_validate

    config = ExportConfig(source=source, variants=_csv(variants), **options)
    result = run_export(config, overwrite=overwrite, progress=not quiet, validator=run_validate)
    click.echo(result.summary())


def _csv(value: str, cast=str, option: str = "") -> tuple:
    try:
        return tuple(cast(v.strip()) for v in value.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{option} takes comma-separated integers, e.g. 16,32,128") from None


@main.command()
@click.argument("bundle", type=click.Path())
@click.option("--data", help="Labelled data; its --split is used [default: the run's data].")
@_validate_option(
    "--split",
    type=click.Choice(["test", "validation", "train"]),
    show_default=True,
)
@click.option("--text-column", "text_columns", multiple=True, help="Text column(s) of --data.")
@click.option("--label-column", help="Label column of --data.")
@_header_option
@click.option("--source", help="The PyTorch original (run or HF dir) [default: from the manifest].")
@_validate_option("--pytorch/--no-pytorch", help="Compare with the PyTorch original.")
@_validate_option("--variants", help="Variants to measure [default: all in the bundle].")
@_validate_option(
    "--seq-lengths",
    show_default=True,
    help="Batch-1 latency at these sequence lengths.",
)
@_validate_option(
    "--data-lengths/--no-data-lengths",
    help="Also time batch 1 over the data's own lengths.",
)
@_validate_option("--batch-size", type=int, show_default=True, help="Throughput batch.")
@click.option(
    "--threads", type=int, help="Intra-op threads for every variant [default: all cores]."
)
@_validate_option(
    "--rounds",
    type=int,
    show_default=True,
    help="Interleaved rounds per case (3 timed calls each).",
)
@_validate_option("--warmup", type=int, show_default=True, help="Untimed rounds first.")
@_validate_option(
    "--pause",
    "pause_s",
    type=float,
    show_default=True,
    help="Idle seconds before each candidate's turn, so spinning thread pools settle.",
)
@click.option("--max-samples", type=int, help="Evaluate at most this many rows (random, seeded).")
@_validate_option("--memory/--no-memory", help="Measure peak memory per variant.")
@click.option("--max-accuracy-drop", type=float, help="Gate: points the default may lose.")
@click.option(
    "--max-f1-drop",
    type=float,
    help="Gate (token classification): entity F1 points the default may lose.",
)
@click.option("--min-agreement", type=float, help="Gate: share of labels equal to the baseline.")
@click.option(
    "--min-speedup",
    multiple=True,
    help="Gate: default vs PyTorch fp32, e.g. 3 (every length) or 128:3 (repeatable).",
)
@click.option(
    "--max-latency",
    help="Gate: the default's p50 at batch 1, e.g. 3ms@128 [default: the run's "
    "--latency-budget, if it had one].",
)
@_validate_option(
    "--budget/--no-budget",
    help="Gate on the --latency-budget the run was trained for (when no --max-latency).",
)
@_validate_option(
    "--max-batch-diff",
    type=float,
    show_default=True,
    help="Gate, every variant: 0 label flips and at most this score difference between "
    "batch 1 and --batch-size.",
)
@click.option(
    "--report-dir",
    type=click.Path(),
    help="Empty/new folder, or an earlier report [default: BUNDLE/validation].",
)
@click.option("--quiet", is_flag=True, help="No status lines.")
def validate(
    variants: str, seq_lengths: str, min_speedup: tuple[str, ...], quiet: bool, **options: Any
) -> None:
    """Measure every variant of BUNDLE against the PyTorch original; gate for CI (exit 1).

    \b
    Example:
      edgetune validate bundles/sst2 --max-accuracy-drop 0.5 --min-speedup 128:3
      edgetune validate bundles/ner --max-f1-drop 0.5 --min-speedup 128:2.5
    """
    _require_training_extra()
    from .validate import ValidateConfig, parse_speedup
    from .validate import validate as run_validate

    config = ValidateConfig(
        variants=_csv(variants),
        seq_lengths=_csv(seq_lengths, int, "--seq-lengths") if seq_lengths else (),
        min_speedup=tuple(parse_speedup(s) for s in min_speedup),
        **options,
    )
    result = run_validate(config, progress=not quiet, raise_on_failure=False)
    click.echo(result.summary())  # a signed bundle's note is part of it
    for line in result.failures:
        click.secho(line, fg="red", err=True)
    if result.failures:
        sys.exit(GateFailed.exit_code)


@main.command()
@click.argument("bundle", type=click.Path())
@click.argument("texts", nargs=-1)
@click.option(
    "--input",
    "input_path",
    help="Texts from a file: plain lines, or .csv/.tsv/.jsonl with a text column; - for stdin.",
)
@click.option("--text-column", help="Column of --input holding the text [detected].")
@_header_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "jsonl", "csv"]),
    default="table",
    show_default=True,
)
@click.option("--top-k", type=int, default=1, show_default=True, help="Labels per text.")
@click.option("--all-scores", is_flag=True, help="Every label's probability (jsonl).")
@click.option(
    "--aggregation",
    type=click.Choice(["none", "simple", "first", "average", "max"]),
    default="first",
    show_default=True,
    help="Token bundles: how sub-words group into entities (transformers' pipeline strategies; "
    "first reads each word at its first sub-word, where edgetune trains the tag).",
)
@click.option(
    "--redact", is_flag=True, help="Token bundles: print each text with entities as [LABEL]."
)
@click.option(
    "--stride",
    type=int,
    help="Token bundles: tokens shared by the windows of a text beyond the max length "
    "[default: a quarter of a window].",
)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--threads", type=int, help="Intra-op threads [default: cores, at most 4].")
@click.option("--variant", help="Variant to run [default: the bundle's default].")
@click.option(
    "--self-check",
    "self_check",
    type=click.Choice(SELF_CHECK_MODES),
    default="auto",
    show_default=True,
    help="Run the bundle's golden texts first and refuse a variant that answers them wrongly "
    "here; auto: unless this device passed them before (same bundle, variant, threads, "
    "onnxruntime, CPU).",
)
@click.option(
    "--no-self-check",
    "self_check",
    flag_value="never",
    help="Skip the self-check (= --self-check never).",
)
@click.option(
    "--fallback", is_flag=True, help="If the variant fails the self-check, use one that passes."
)
@click.option(
    "--verify-key",
    type=click.Path(),
    help="Run only if the bundle is signed by this public key (PEM).",
)
def predict(
    bundle: str,
    texts: tuple[str, ...],
    input_path: str | None,
    text_column: str | None,
    header: bool | None,
    fmt: str,
    top_k: int,
    all_scores: bool,
    aggregation: str,
    redact: bool,
    stride: int | None,
    batch_size: int,
    threads: int | None,
    variant: str | None,
    self_check: str,
    fallback: bool,
    verify_key: str | None,
) -> None:
    """Classify TEXTS (or --input FILE, or stdin) with BUNDLE, or tag their entities with a
    token-classification bundle; needs no torch.

    \b
    Examples:
      edgetune predict bundles/sst2 "a gorgeous film" "dull and lifeless"
      edgetune predict bundles/sst2 --input reviews.csv --format jsonl > predictions.jsonl
      edgetune predict bundles/ner "Ada Lovelace met Babbage in London." --aggregation first
      edgetune predict bundles/pii --input notes.txt --redact > redacted.txt
    """
    import itertools
    import warnings

    from .runtime import Classifier, check_predict_options, iter_inputs, text_item

    if texts and input_path:
        raise click.UsageError("give TEXTS or --input, not both")
    check_predict_options(top_k=top_k, batch_size=batch_size, threads=threads)

    def show(message: Any, *args: Any, **kwargs: Any) -> None:
        click.secho(f"warning: {message}", fg="yellow", err=True)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show  # as they happen, one line each
        items: Any = (
            (text_item(i, t) for i, t in enumerate(texts))
            if texts
            else iter_inputs(input_path, text_column, header=header)
        )
        if input_path not in (None, "-"):
            # Reading the first item opens the file and finds its text column: a bad input is
            # refused before the bundle loads. Stdin is not waited on before the bundle.
            head = list(itertools.islice(items, 1))
            items = itertools.chain(head, items)
        clf = Classifier.load(
            bundle,
            variant=variant,
            threads=threads,
            self_check=self_check,
            fallback=fallback,
            public_key=verify_key,
        )
        options: dict[str, Any] = {"top_k": top_k, "all_scores": all_scores}
        if clf.task.per_token:
            fmt = "redacted" if redact and fmt == "table" else fmt
            options = {"aggregation": aggregation, "redact": redact, "stride": stride}
        elif redact or stride is not None or aggregation != "first":
            raise ConfigError(
                f"--redact, --stride and --aggregation are for token-classification bundles; "
                f"{bundle} classifies whole texts"
            )
        results = _predict_results(clf, items, batch_size, options)
        # Nothing reaches stdout until the first answer exists: an exit 2 leaves it empty.
        answered = list(itertools.islice(results, 1))
        write = _write_entities if clf.task.per_token else _write_predictions
        write(itertools.chain(answered, results), fmt)


def _predict_results(clf: Any, items: Any, batch_size: int, options: dict[str, Any]) -> Any:
    """(item, answer) pairs: Predictions, or a token bundle's Tagged entities."""
    from .runtime import Tagger, predict_items

    if clf.task.per_token:
        if options["stride"] is not None and options["stride"] < 0:
            raise click.BadParameter("must be 0 or more", param_hint="--stride")
        return predict_items(Tagger(clf), items, batch_size=batch_size, **options)
    return predict_items(clf, items, batch_size=batch_size, **options)


def _write_entities(results: Any, fmt: str) -> None:
    """A token bundle's answers: entities per text (table, jsonl, csv), or redacted texts."""
    import csv as csvlib
    import json

    out = sys.stdout
    writer: Any = csvlib.writer(out) if fmt == "csv" else None
    if writer:
        writer.writerow(["index", "label", "text", "start", "end", "score", "note"])
    elif fmt == "table":
        out.write(f"{'#':>5}  {'label':10} {'score':>7}  {'span':>11}  text\n")
    for item, tagged in results:
        note = item.error or item.warning or ""
        if fmt == "redacted":
            out.write((tagged.redacted if tagged else "") + "\n")
        elif fmt == "jsonl":
            row: dict[str, Any] = {"index": item.index}
            row |= tagged.to_dict() if tagged else {"error": item.error}
            if item.warning:
                row["warning"] = item.warning
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        elif writer:
            for e in tagged.entities if tagged else []:
                writer.writerow([item.index, e.label, e.text, e.start, e.end, f"{e.score:.6f}", ""])
            if note or not tagged:
                writer.writerow([item.index, "", "", "", "", "", note])
        else:
            for e in tagged.entities if tagged else []:
                span = f"{e.start}:{e.end}"
                out.write(f"{item.index:>5}  {e.label:10} {e.score:>7.4f}  {span:>11}  {e.text}\n")
            if note:
                out.write(f"{item.index:>5}  [{note}]\n")
        if fmt != "table":
            out.flush()


def _write_predictions(results: Any, fmt: str) -> None:
    import csv as csvlib
    import json

    out = sys.stdout
    writer: Any = csvlib.writer(out) if fmt == "csv" else None
    if writer:
        writer.writerow(["index", "label", "score", "top_k", "note"])
    elif fmt == "table":
        out.write(f"{'#':>5}  {'label':16} {'score':>7}  text\n")
    for item, pred in results:
        note = item.error or item.warning or ""
        if fmt == "jsonl":
            row: dict[str, Any] = {"index": item.index}
            row |= pred.to_dict() if pred else {"error": item.error}
            if item.warning:
                row["warning"] = item.warning
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        elif writer:
            top = ";".join(f"{lb}:{s:.4f}" for lb, s in pred.top_k) if pred else ""
            writer.writerow(
                [
                    item.index,
                    pred.label if pred else "",
                    f"{pred.score:.6f}" if pred else "",
                    top,
                    note,
                ]
            )
        else:
            text = (item.text or "").replace("\n", " ")
            text = text if len(text) <= 60 else text[:57] + "..."
            label = (pred.label or "-") if pred else "-"  # multi-label: the empty set
            score = f"{pred.score:.4f}" if pred else "-"
            extra = f"  [{note}]" if note else ""
            if pred and len(pred.top_k) > 1:
                extra = "  (" + ", ".join(f"{lb} {s:.3f}" for lb, s in pred.top_k[1:]) + ")" + extra
            out.write(f"{item.index:>5}  {label:16} {score:>7}  {text}{extra}\n")
        if fmt != "table":
            out.flush()  # stream line by line to whatever reads the pipe


@main.command()
@click.argument("bundle", type=click.Path())
@click.option("--variant", "variants", multiple=True, help="Check only this variant (repeatable).")
@click.option("--threads", type=int, help="Intra-op threads [default: cores, at most 4].")
@click.option("--verify-key", type=click.Path(), help="Also require a signature by this key.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdicts as JSON.")
def check(
    bundle: str,
    variants: tuple[str, ...],
    threads: int | None,
    verify_key: str | None,
    as_json: bool,
) -> None:
    """Prove BUNDLE on this device: hashes, signature, and each variant's self-check (exit 1).

    \b
    Examples:
      edgetune check bundles/sst2
      edgetune check bundles/sst2 --variant int8-dynamic --verify-key keys/owner.pub
    """
    import json

    from .runtime import check_bundle

    result = check_bundle(bundle, variants=variants, threads=threads, public_key=verify_key)
    click.echo(json.dumps(result.to_dict(), indent=2) if as_json else result.summary())
    if not result.passed:
        sys.exit(GateFailed.exit_code)


@main.command()
@click.argument("bundle", type=click.Path())
@click.option("--key", required=True, type=click.Path(), help="Private key (PEM, e.g. EC P-256).")
def sign(bundle: str, key: str) -> None:
    """Sign BUNDLE (OpenSSF model-signing) so devices can require it with --verify-key.

    \b
    Example:
      openssl ecparam -name prime256v1 -genkey -noout -out owner.pem
      openssl ec -in owner.pem -pubout -out owner.pub
      edgetune sign bundles/sst2 --key owner.pem
      edgetune predict bundles/sst2 --verify-key owner.pub "a gorgeous film"
    """
    from pathlib import Path

    from .signing import sign as sign_bundle

    root = Path(bundle).expanduser()
    sig = sign_bundle(root, Path(key).expanduser())
    click.echo(f"signed     {root} -> {sig}")


@main.command()
@click.argument("bundle", type=click.Path())
@click.option("--variant", help="Variant to time [default: the bundle's default].")
@click.option(
    "--compare",
    help="Time side by side with OTHER_BUNDLE, or `pytorch` for the original model.",
)
@click.option("--compare-variant", help="Variant of --compare [default: its default].")
@_bench_option("--batch-sizes", show_default=True)
@_bench_option("--seq-lengths", show_default=True)
@click.option("--threads", type=int, help="Intra-op threads [default: all cores].")
@_bench_option(
    "--rounds",
    type=int,
    show_default=True,
    help="Interleaved rounds per cell (3 timed calls each).",
)
@_bench_option("--warmup", type=int, show_default=True)
@_bench_option("--pause", "pause_s", type=float, show_default=True)
@click.option(
    "--baseline", type=click.Path(), help="An earlier --output JSON to compare ratios with."
)
@click.option(
    "--max-regression",
    help="Gate: e.g. 10% — the latency ratio (vs --compare, or vs --baseline's ratio) may grow this much.",
)
@click.option("--output", type=click.Path(), help="Write the results as JSON.")
@click.option("--markdown", type=click.Path(), help="Write a Markdown summary (CI job summary).")
@click.option("--junit", type=click.Path(), help="Write JUnit XML (one test per gated cell).")
@click.option("--quiet", is_flag=True)
def bench(
    batch_sizes: str, seq_lengths: str, max_regression: str | None, quiet: bool, **options: Any
) -> None:
    """Latency of BUNDLE over a batch x sequence grid; gate regressions by ratio (exit 1).

    \b
    Examples:
      edgetune bench bundles/sst2 --compare pytorch --output bench.json
      edgetune bench bundles/new --compare bundles/old --max-regression 10% --junit bench.xml
      edgetune bench bundles/sst2 --compare pytorch --baseline bench.json --max-regression 10%
    """
    from .bench import BenchConfig, parse_fraction
    from .bench import bench as run_bench

    config = BenchConfig(
        batch_sizes=_csv(batch_sizes, int, "--batch-sizes"),
        seq_lengths=_csv(seq_lengths, int, "--seq-lengths"),
        max_regression=parse_fraction(max_regression) if max_regression else None,
        **options,
    )
    result = run_bench(config, progress=not quiet, raise_on_failure=False)
    click.echo(result.summary())
    for line in result.failures:
        click.secho(line, fg="red", err=True)
    if result.failures:
        sys.exit(GateFailed.exit_code)


@main.command()
def presets() -> None:
    """List the model presets (`--model NAME`).

    \b
    Example:
      edgetune presets
    """
    from .presets import list_presets

    for name, p in list_presets().items():
        where = {
            "package": f"pip package {p.pip}",
            "parts": f"{len(p.parts)} pip packages {p.parts[0]}..." if p.parts else "",
            "hub": f"hub {p.hub_id}",
            "config": "random init",
        }[p.source]
        click.echo(
            f"{name:26} {p.description}  [{where}; max_length {p.max_length}, lr {p.learning_rate:g}]"
        )


if __name__ == "__main__":
    main()
