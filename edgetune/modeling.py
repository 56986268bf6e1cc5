"""Loading models and tokenizers: from a preset, a run, a local directory or the hub.

Weights load from safetensors only; a model's own Python code runs only when the caller passes
``trust_remote_code`` (the CLI's ``--trust-remote-code``).
"""

from __future__ import annotations

import contextlib
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
    """Tokenizer and sequence-classification model for ``config`` (a ``TrainConfig``), with the
    label map in the model's config; and whether its classifier (or more) is newly initialised.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

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
            if config.dropout is not None:
                for name in (
                    "hidden_dropout_prob",
                    "attention_probs_dropout_prob",
                    "dropout",
                    "attention_dropout",
                    "seq_classif_dropout",
                    "classifier_dropout",
                ):
                    if hasattr(cfg, name):
                        setattr(cfg, name, config.dropout)
            if source.kind == "config":
                model = AutoModelForSequenceClassification.from_config(cfg)
                new_weights = True
            else:
                model, info = AutoModelForSequenceClassification.from_pretrained(
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
                f"model {config.model} cannot be used for sequence classification: {msg}; "
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


def load_saved(path: Path) -> Any:
    """A saved sequence classifier (safetensors only), e.g. a run's ``best/``."""
    from transformers import AutoModelForSequenceClassification

    with quiet_transformers():
        return AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True)
