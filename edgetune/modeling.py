"""Loading models and tokenizers: from a preset, a run, a local directory or the hub.

Weights load from safetensors only; a model's own Python code runs only when the caller passes
``trust_remote_code`` (the CLI's ``--trust-remote-code``).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

from .errors import ModelError, first_line
from .presets import ModelSource


def quiet_transformers():
    """Transformers' own warnings off (their advice is for its Trainer, not for edgetune)."""
    import transformers

    @contextlib.contextmanager
    def ctx():
        level = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()
        try:
            yield
        finally:
            transformers.logging.set_verbosity(level)

    return ctx()


def _unwrap_without_deepspeed() -> None:
    """Keep ``save_pretrained`` from importing DeepSpeed in runs that do not use it.

    transformers unwraps a model before saving it with accelerate, which imports all of
    deepspeed whenever it is installed, only to test for its engine: DeepSpeed then prints
    "Setting accelerator to CPU" inside the progress bar of every CPU run. A model can be
    wrapped in that engine only once deepspeed is imported (the DeepSpeed backend's ``wrap``,
    before training), so until then accelerate is told DeepSpeed is absent.
    """
    try:
        from accelerate.utils import other
    except ImportError:
        return
    installed = getattr(other, "is_deepspeed_available", None)
    if installed is None or installed.__module__ == __name__:
        return

    def is_deepspeed_available() -> bool:
        return "deepspeed" in sys.modules and bool(installed())

    other.is_deepspeed_available = is_deepspeed_available


def model_config(source: ModelSource, trust_remote_code: bool = False) -> dict[str, Any]:
    """The model's config.json as a dict (the preset's for models built from a config)."""
    if source.kind == "config":
        assert source.preset is not None
        return dict(source.preset.config)
    from transformers import AutoConfig

    with quiet_transformers():
        try:
            cfg = AutoConfig.from_pretrained(source.location, trust_remote_code=trust_remote_code)
        except (OSError, ValueError):
            return {}  # _load reports it with its own message
    return cfg.to_dict()


def load_for_training(source: ModelSource, config: Any, label_names: list[str]):
    """Tokenizer and classifier for ``config`` (a ``TrainConfig``; its task picks sequence or
    token classification), with the label map in the model's config; and whether its
    classifier (or more) is newly initialised.
    """
    from transformers import AutoConfig, AutoTokenizer

    from .tasks import task_named

    task = task_named(config.task)
    auto = task.auto_class()

    _unwrap_without_deepspeed()  # every model a run saves is loaded here first
    id2label = dict(enumerate(label_names))
    label2id = {n: i for i, n in enumerate(label_names)}
    trust = config.trust_remote_code
    where = source.location
    if source.kind == "local" and not any(Path(where).glob("*.safetensors")):
        raise ModelError(
            f"{where} has no safetensors weights; edgetune does not load pickled weights. "
            "Convert with `model.save_pretrained(dir, safe_serialization=True)`"
        )
    with quiet_transformers():
        try:
            tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=trust)
            if source.kind == "config":
                assert source.preset is not None
                spec = dict(source.preset.config)
                cfg = AutoConfig.for_model(spec.pop("model_type"), **spec)
                cfg.vocab_size = len(tokenizer)
                cfg.pad_token_id = tokenizer.pad_token_id
            else:
                cfg = AutoConfig.from_pretrained(where, trust_remote_code=trust)
            cfg.num_labels = len(label_names)
            cfg.id2label, cfg.label2id = id2label, label2id
            if task.multi_label:  # stock loaders (pipelines, Optimum) apply a sigmoid per label
                cfg.problem_type = "multi_label_classification"
            if config.dropout is not None:
                _set_dropout(cfg, config.dropout)
            if config.strategy == "fewshot" or config.template:
                model, new_weights = _load_headed(source, config, cfg, tokenizer, label_names)
            elif source.kind == "config":
                model = auto.from_config(cfg)
                new_weights = True
            else:
                model, info = auto.from_pretrained(
                    where,
                    config=cfg,
                    trust_remote_code=trust,
                    use_safetensors=True,
                    ignore_mismatched_sizes=True,
                    output_loading_info=True,
                )
                new_weights = bool(info.get("missing_keys") or info.get("mismatched_keys"))
        except ValueError as e:
            msg = first_line(e)
            if "trust_remote_code" in msg:
                raise ModelError(
                    f"model {config.model} needs its own code from the hub; "
                    "pass --trust-remote-code only if you trust its authors"
                ) from None
            raise ModelError(
                f"model {config.model} cannot be used for {config.task}: {msg}; "
                "use a BERT-class encoder (e.g. a preset)"
            ) from None
        except OSError as e:
            raise ModelError(
                f"cannot load model {config.model!r} ({first_line(e)}); check the id and network, "
                "or pass a local directory or a preset"
            ) from None
    if tokenizer.pad_token_id is None:
        raise ModelError(
            f"the tokenizer of {config.model} has no padding token; set one and save it"
        )
    tokenizer.model_max_length = config.max_length
    return tokenizer, model, new_weights


def _set_dropout(cfg: Any, p: float) -> None:
    """Every dropout probability the architecture's config names, set to ``p``."""
    for name in (
        "hidden_dropout_prob",
        "attention_probs_dropout_prob",
        "dropout",
        "attention_dropout",
        "seq_classif_dropout",
        "classifier_dropout",
    ):
        if hasattr(cfg, name):
            setattr(cfg, name, p)


def _load_headed(
    source: ModelSource, config: Any, cfg: Any, tokenizer: Any, label_names: list[str]
):
    """An encoder with a ``heads`` head: pooled (``--strategy fewshot``) or cloze (``--template``)."""
    from transformers import AutoModel, AutoModelForMaskedLM

    from .heads import ClozeClassifier, PooledClassifier, parse_template, parse_verbalizer

    cls = AutoModelForMaskedLM if config.template else AutoModel
    if source.kind == "config":
        base, missing = cls.from_config(cfg), []
    else:
        base, info = cls.from_pretrained(
            source.location,
            config=cfg,
            trust_remote_code=config.trust_remote_code,
            use_safetensors=True,
            output_loading_info=True,
        )
        missing = list(info.get("missing_keys") or [])
    if config.template:
        template = parse_template(config.template, tokenizer)
        words = parse_verbalizer(str(config.verbalizer), label_names, tokenizer)
        out = base.get_output_embeddings()
        if any(k.startswith(("cls.", "lm_head.", "vocab_")) for k in missing) or out is None:
            raise ModelError(
                f"model {config.model} has no trained masked-LM head, so its predictions at "
                "[MASK] mean nothing; use a masked-LM checkpoint (e.g. distilbert-base-uncased) "
                "or --strategy fewshot"
            )
        return ClozeClassifier(base, template, words), False
    pooling, normalize = source_pooling(source)
    return PooledClassifier(base, len(label_names), pooling, normalize), True


def source_pooling(source: ModelSource) -> tuple[str, bool]:
    """How ``source`` pools sentence embeddings: ``heads.read_pooling`` on its
    sentence-transformers files, fetched first from the hub for a hub id (mean pooling and
    normalisation where it has none)."""
    from .heads import read_pooling as read_local

    if source.kind != "hub":
        return read_local(source.location if source.kind == "local" else None)
    try:
        from huggingface_hub import snapshot_download

        where = snapshot_download(source.location, allow_patterns=["modules.json", "*/config.json"])
    except Exception:  # no sentence-transformers files there, or offline: the defaults
        return read_local(None)
    return read_local(where)


def load_saved(path: Path) -> Any:
    """A saved classifier (safetensors only), e.g. a run's ``best/``: a transformers sequence
    or token classifier (by its architecture), or an encoder with one of ``heads``' heads
    (few-shot, cloze)."""
    from .heads import is_head_model, load_head_model

    with quiet_transformers():
        if is_head_model(path):
            return load_head_model(path)
        auto = saved_task(path).auto_class()
        return auto.from_pretrained(path, use_safetensors=True)


def saved_task(path: Path) -> Any:
    """The task of a saved transformers model, from its config's architectures."""
    import json

    from .tasks import MULTI_TASK, TOKEN_TASK, task_named

    cfg = json.loads((Path(path) / "config.json").read_text())
    if TOKEN_TASK.fits(cfg.get("architectures") or []):
        return TOKEN_TASK
    if cfg.get("problem_type") == "multi_label_classification":
        return MULTI_TASK
    return task_named(None)
