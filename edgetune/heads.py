"""Classifiers that are an encoder plus a head transformers has no class for.

``PooledClassifier``: sentence embedding (the checkpoint's pooling, then L2 normalisation) and a
linear head; what ``--strategy fewshot`` and zero-shot label prompts train. ``ClozeClassifier``:
a masked-LM whose prediction at the ``[MASK]`` of a template, read at the verbaliser's words,
gives the class logits (PET). Both take the tokenizer's plain encoding of the text and return
``logits``, so evaluation, export (one ONNX graph: the template, pooling and head are inside it),
the runtime and stock ONNX loaders see an ordinary sequence classifier.

On disk a saved model is its encoder as ``save_pretrained`` writes it (``AutoModel`` /
``AutoModelForMaskedLM`` load it; a pooled model also carries the sentence-transformers layout,
so ``SentenceTransformer(dir)`` loads its tuned embedder) plus ``edgetune_head.json`` and, for
a pooled model, ``edgetune_head.safetensors``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import ConfigError, ModelError
from .fsutil import existing

HEAD_CONFIG = "edgetune_head.json"
HEAD_WEIGHTS = "edgetune_head.safetensors"
POOLINGS = ("mean", "cls", "max", "mean_sqrt_len")
# sentence-transformers' names for them (``1_Pooling/config.json``: pooling_mode_<name>)
_ST_POOLING = {
    "mean": "mean_tokens",
    "cls": "cls_token",
    "max": "max_tokens",
    "mean_sqrt_len": "mean_sqrt_len_tokens",
}
MASK = "[MASK]"
TEXT = "{text}"
# Zero-shot logits: cosine similarity over a temperature of 0.05, so a 0.1 cosine margin
# gives odds of e^2; only the scale of the probabilities depends on it, not the argmax.
PROMPT_SCALE = 20.0


def is_head_model(path: str | Path) -> bool:
    """Whether ``path`` holds a model of this module (else a transformers classifier)."""
    return (Path(path) / HEAD_CONFIG).is_file()


def read_pooling(model_dir: str | Path | None) -> tuple[str, bool]:
    """The pooling a sentence-embedding checkpoint was trained with and whether it normalises,
    from its sentence-transformers files (``modules.json``, ``1_Pooling/config.json``); mean
    pooling and normalisation where it does not say."""
    if model_dir is None or not Path(model_dir).is_dir():
        return "mean", True
    root = Path(model_dir)
    try:
        modules = json.loads((root / "modules.json").read_text())
    except (OSError, ValueError):
        return "mean", True
    pooling, normalize = "mean", False
    for m in modules if isinstance(modules, list) else []:
        kind = str(m.get("type", "")) if isinstance(m, dict) else ""
        if kind.endswith("Normalize"):
            normalize = True
        if kind.endswith("Pooling"):
            try:
                cfg = json.loads((root / str(m.get("path", "")) / "config.json").read_text())
            except (OSError, ValueError):
                continue
            named = {st: ours for ours, st in _ST_POOLING.items()}
            modes = [
                named.get(k[len("pooling_mode_") :], k[len("pooling_mode_") :])
                for k, v in cfg.items()
                if k.startswith("pooling_mode_") and v
            ]
            if len(modes) != 1 or modes[0] not in POOLINGS:
                raise ModelError(
                    f"{root} pools with {'+'.join(modes) or 'nothing'}; --strategy fewshot "
                    f"supports one of {', '.join(POOLINGS)}"
                )
            pooling = modes[0]
    return pooling, normalize


def _encoder_inputs(encoder: Any, input_ids: Any, attention_mask: Any, token_type_ids: Any):
    kw = {"input_ids": input_ids, "attention_mask": attention_mask}
    if token_type_ids is not None:
        kw["token_type_ids"] = token_type_ids
    return kw


def _torch_module():
    import torch

    return torch.nn.Module


class PooledClassifier(_torch_module()):  # type: ignore[misc]
    """Encoder → pooling → L2 normalisation → linear head."""

    kind = "pooled"

    def __init__(
        self, encoder: Any, num_labels: int, pooling: str = "mean", normalize: bool = True
    ):
        import torch

        super().__init__()
        if pooling not in POOLINGS:
            raise ModelError(f"pooling {pooling!r}: use one of {', '.join(POOLINGS)}")
        self.encoder = encoder
        self.pooling, self.normalize = pooling, normalize
        hidden = (
            encoder.config.hidden_size
            if hasattr(encoder.config, "hidden_size")
            else encoder.config.dim
        )
        self.head = torch.nn.Linear(int(hidden), num_labels)

    @property
    def config(self) -> Any:
        return self.encoder.config

    def get_input_embeddings(self) -> Any:
        return self.encoder.get_input_embeddings()

    def embed(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
        """Sentence embeddings [batch, hidden], pooled and normalised as the head sees them."""
        import torch

        h = self.encoder(
            **_encoder_inputs(self.encoder, input_ids, attention_mask, token_type_ids)
        )[0]
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        if self.pooling == "cls":
            e = h[:, 0]
        elif self.pooling == "max":
            e = (h + (m - 1.0) * 1e9).max(1).values
        else:
            n = m.sum(1).clamp(min=1.0)
            e = (h * m).sum(1) / (n.sqrt() if self.pooling == "mean_sqrt_len" else n)
        return torch.nn.functional.normalize(e, dim=-1) if self.normalize else e

    def forward(
        self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None, **_: Any
    ):
        from transformers.modeling_outputs import SequenceClassifierOutput

        if attention_mask is None:
            import torch

            attention_mask = torch.ones_like(input_ids)
        e = self.embed(input_ids, attention_mask, token_type_ids)
        return SequenceClassifierOutput(logits=self.head(e.to(self.head.weight.dtype)))

    def head_config(self) -> dict[str, Any]:
        return {"kind": self.kind, "pooling": self.pooling, "normalize": self.normalize}

    def save_pretrained(self, path: str | Path, **kwargs: Any) -> None:
        """The encoder (transformers' layout), the head, and the sentence-transformers files."""
        from safetensors.torch import save_file

        path = Path(path)
        kwargs.pop("state_dict", None)  # whole-module state is this module's own to split
        self.encoder.save_pretrained(path, safe_serialization=True)
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in self.head.state_dict().items()},
            str(path / HEAD_WEIGHTS),
        )
        (path / HEAD_CONFIG).write_text(json.dumps(self.head_config(), indent=2) + "\n")
        write_sentence_transformers(path, self.pooling, self.normalize, self.head.in_features)

    @classmethod
    def from_pretrained(cls, path: str | Path, cfg: dict[str, Any]) -> PooledClassifier:
        from safetensors.torch import load_file
        from transformers import AutoModel

        encoder = AutoModel.from_pretrained(path, use_safetensors=True)
        model = cls(encoder, encoder.config.num_labels, cfg["pooling"], bool(cfg["normalize"]))
        model.head.load_state_dict(load_file(str(Path(path) / HEAD_WEIGHTS)))
        return model


def write_sentence_transformers(path: Path, pooling: str, normalize: bool, dim: int) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    if normalize:
        modules.append(
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize",
            }
        )
        (path / "2_Normalize").mkdir(exist_ok=True)
    (path / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
    (path / "1_Pooling").mkdir(exist_ok=True)
    cfg: dict[str, Any] = {"word_embedding_dimension": dim}
    cfg.update({f"pooling_mode_{m}": p == pooling for p, m in _ST_POOLING.items()})
    (path / "1_Pooling" / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")


# -- cloze (PET) --------------------------------------------------------------------------------


def parse_template(template: str, tokenizer: Any) -> dict[str, Any]:
    """Token ids of a cloze template around ``{text}``: what goes before the text, after it,
    and where the mask is. Refuses templates without exactly one ``{text}`` and one mask."""
    mask = tokenizer.mask_token
    t = template.replace(MASK, mask) if mask and mask != MASK else template
    if template.count(TEXT) != 1:
        raise ConfigError(
            f"--template {template!r} needs {TEXT} exactly once, e.g. '{{text}} It was [MASK].'"
        )
    if mask is None:
        raise ConfigError(
            "--template: this tokenizer has no mask token; use a masked-LM checkpoint"
        )
    if t.count(mask) != 1:
        raise ConfigError(
            f"--template {template!r} needs {MASK} exactly once, e.g. '{{text}} It was [MASK].'"
        )
    before, after = t.split(TEXT)

    def ids(s: str) -> list[int]:
        return list(tokenizer(s, add_special_tokens=False)["input_ids"]) if s.strip() else []

    # The suffix keeps its leading space (byte-level BPE marks it), the prefix loses its last.
    prefix, suffix = ids(before.strip()), ids(after.rstrip() if after.strip() else "")
    where = "prefix" if mask in before else "suffix"
    part = prefix if where == "prefix" else suffix
    if part.count(tokenizer.mask_token_id) != 1:
        raise ConfigError(
            f"--template {template!r}: the tokenizer splits {MASK} apart; check the template"
        )
    plain = tokenizer("a")["input_ids"]
    inner = tokenizer("a", add_special_tokens=False)["input_ids"]
    if len(plain) != len(inner) + 2 or tokenizer.padding_side != "right":
        raise ConfigError(
            "--template needs a tokenizer that wraps text in one start and one end token and "
            "pads on the right (BERT, DistilBERT, RoBERTa, MPNet)"
        )
    return {
        "template": template,
        "prefix_ids": prefix,
        "suffix_ids": suffix,
        "mask_in": where,
        "mask_offset": part.index(tokenizer.mask_token_id),
        "pad_id": int(tokenizer.pad_token_id),
    }


def parse_verbalizer(spec: str, label_names: list[str], tokenizer: Any) -> list[int]:
    """``negative=terrible,positive=great`` (or a file of such lines) → one token id per class."""
    pairs = _label_map(spec, "--verbalizer", label_names, multi=False)
    ids = []
    for name in label_names:
        word = pairs[name][0]
        toks = _word_tokens(word, tokenizer)
        if len(toks) != 1 or toks[0] == tokenizer.unk_token_id:
            what = (
                f"splits {word!r} into {len(toks)} tokens"
                if len(toks) != 1
                else f"does not know {word!r} (it reads as {tokenizer.unk_token})"
            )
            near = _nearest_word(word, tokenizer)
            hint = f", e.g. {name}={near}" if near else ""
            raise ConfigError(
                f"--verbalizer {name}={word}: the tokenizer {what}; choose a word that is one "
                f"token of its vocabulary{hint}"
            )
        ids.append(int(toks[0]))
    if len(set(ids)) != len(ids):
        raise ConfigError("--verbalizer gives two classes the same word; give each its own")
    return ids


def _word_tokens(word: str, tokenizer: Any) -> list[int]:
    # Mid-sentence, as after "It was": byte-level BPE marks the space; WordPiece ignores it.
    toks = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
    if len(toks) != 1:
        toks = tokenizer(word, add_special_tokens=False)["input_ids"]
    return list(toks)


def _nearest_word(word: str, tokenizer: Any) -> str | None:
    """The form of ``word`` nearest to it that is one known token: lower case, without
    accents, else the closest spelling among the vocabulary's whole words."""
    import difflib
    import unicodedata

    plain = "".join(
        ch for ch in unicodedata.normalize("NFKD", word) if not unicodedata.combining(ch)
    )
    for form in dict.fromkeys((word.lower(), plain, plain.lower())):
        toks = _word_tokens(form, tokenizer) if form.strip() else []
        if form != word and len(toks) == 1 and toks[0] != tokenizer.unk_token_id:
            return form
    # Whole words only: WordPiece marks pieces with ##, byte-level BPE marks a leading space.
    vocab = [t[1:] if t.startswith("\u0120") else t for t in tokenizer.get_vocab()]
    words = [t for t in vocab if t.isalpha() and len(t) > 1]
    close = difflib.get_close_matches(word.lower(), words, n=1, cutoff=0.6)
    return close[0] if close else None


def _label_map(spec: str, option: str, label_names: list[str], multi: bool) -> dict[str, list[str]]:
    """``a=x,b=y`` or a file with one ``label=text`` (or ``label<TAB>text``) per line."""
    import re

    path = existing(spec)
    if path is not None:
        lines = [ln for ln in _read_lines(path, option) if ln.strip()]
        if not lines:
            raise ConfigError(f"{option} {spec} is empty; write one label=text line per label")
        items = [re.split(r"\t|=", ln, maxsplit=1) for ln in lines]
    elif "=" not in spec:
        raise ConfigError(
            f"{option} {spec}: no such file, and not label=text pairs; give a file of "
            f"label=text lines or e.g. '{label_names[0]}=...'"
        )
    else:
        # Commas inside a text are kept: a new item starts only where "label=" follows.
        names = "|".join(re.escape(n) for n in sorted(label_names, key=len, reverse=True))
        parts = re.split(rf",\s*(?=(?:{names}|[^,=\s][^,=]*)=)", spec)
        items = [p.split("=", 1) for p in parts if p.strip()]
    out: dict[str, list[str]] = {}
    for item in items:
        if len(item) != 2 or not item[0].strip() or not item[1].strip():
            raise ConfigError(
                f"{option}: {'='.join(item)!r} is not label=text; write e.g. {label_names[0]}=..."
            )
        name, text = item[0].strip(), item[1].strip()
        if name not in label_names:
            raise ConfigError(
                f"{option} names label {name!r}, which the data lacks; labels: "
                f"{', '.join(label_names)}"
            )
        if name in out and not multi:
            raise ConfigError(f"{option} gives label {name!r} twice; give one per label")
        out.setdefault(name, []).append(text)
    missing = [n for n in label_names if n not in out]
    if missing:
        raise ConfigError(
            f"{option} has nothing for label(s) {', '.join(missing)}; give every "
            f"label one, e.g. {missing[0]}=..."
        )
    return out


def _read_lines(path: Path, option: str) -> list[str]:
    """A label=text file's lines, decoded as training data is (UTF-8, a BOM, UTF-16)."""
    from .textio import codec_name, text_encoding

    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder; give a file of label=text lines")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{option} {path} cannot be read ({e.strerror})") from None
    encoding = text_encoding(raw[:4096])
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        raise ConfigError(
            f"{option} {path} is not {codec_name(encoding)} text (binary, or another encoding "
            "such as Latin-1); save it as UTF-8"
        ) from None
    if "\x00" in text:
        raise ConfigError(
            f"{option} {path} holds binary data; give a text file of label=text lines"
        )
    return text.splitlines()


def parse_label_prompts(spec: str, label_names: list[str]) -> dict[str, list[str]]:
    """``--label-prompts``: one or more natural-language descriptions per class."""
    return _label_map(spec, "--label-prompts", label_names, multi=True)


class ClozeClassifier(_torch_module()):  # type: ignore[misc]
    """A masked-LM read at the template's mask: logits = its scores for the verbaliser's words.

    The template's tokens are put around the text inside ``forward`` (from the plain encoding
    ``[start] text [end] pad...``), so every caller tokenizes the raw text as usual.
    """

    kind = "cloze"

    def __init__(self, mlm: Any, template: dict[str, Any], verbalizer: list[int]) -> None:
        import torch

        super().__init__()
        self.mlm, self.template, self.verbalizer = mlm, dict(template), list(verbalizer)
        self.register_buffer(
            "prefix", torch.tensor(template["prefix_ids"], dtype=torch.long), persistent=False
        )
        self.register_buffer(
            "suffix", torch.tensor(template["suffix_ids"], dtype=torch.long), persistent=False
        )
        self.register_buffer("words", torch.tensor(verbalizer, dtype=torch.long), persistent=False)

    @property
    def config(self) -> Any:
        return self.mlm.config

    def get_input_embeddings(self) -> Any:
        return self.mlm.get_input_embeddings()

    def forward(
        self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None, **_: Any
    ):
        import torch
        from transformers.modeling_outputs import SequenceClassifierOutput

        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        b, width = input_ids.shape[0], input_ids.shape[1]
        p, s = self.prefix.shape[0], self.suffix.shape[0]
        n = attention_mask.sum(1, keepdim=True)  # tokens incl. the start and end token
        j = torch.arange(width + p + s, device=input_ids.device).unsqueeze(0)
        pad = torch.full(
            (b, 1), self.template["pad_id"], dtype=input_ids.dtype, device=input_ids.device
        )
        source = torch.cat(
            [input_ids, self.prefix.expand(b, p), self.suffix.expand(b, s), pad], dim=1
        )
        text_end = p + n - 1  # first position after the text
        idx = torch.where(
            j == 0,
            torch.zeros_like(j),
            torch.where(
                j <= p,
                width + j - 1,
                torch.where(
                    j < text_end,
                    j - p,
                    torch.where(
                        j < text_end + s,
                        width + p + (j - text_end),
                        torch.where(j == text_end + s, n - 1, torch.full_like(j, width + p + s)),
                    ),
                ),
            ),
        )
        ids = torch.gather(source, 1, idx)
        mask = (j <= text_end + s).to(attention_mask.dtype)
        kw = {"input_ids": ids, "attention_mask": mask}
        if token_type_ids is not None:
            kw["token_type_ids"] = torch.zeros_like(ids)
        scores = self.mlm(**kw).logits  # [b, width + p + s, vocab]
        off = self.template["mask_offset"]
        at = (
            (1 + off) * torch.ones_like(n)
            if self.template["mask_in"] == "prefix"
            else text_end + off
        )
        picked = torch.gather(scores, 1, at.unsqueeze(-1).expand(b, 1, scores.shape[-1])).squeeze(1)
        return SequenceClassifierOutput(logits=picked.index_select(1, self.words))  # type: ignore[arg-type]

    def head_config(self) -> dict[str, Any]:
        return {"kind": self.kind, "template": self.template, "verbalizer": self.verbalizer}

    def save_pretrained(self, path: str | Path, **kwargs: Any) -> None:
        kwargs["safe_serialization"] = True
        state = kwargs.pop("state_dict", None)
        if state is not None:  # a backend's full state: the masked-LM's keys under "mlm."
            kwargs["state_dict"] = {k[4:]: v for k, v in state.items() if k.startswith("mlm.")}
        self.mlm.save_pretrained(path, **kwargs)
        (Path(path) / HEAD_CONFIG).write_text(json.dumps(self.head_config(), indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, path: str | Path, cfg: dict[str, Any]) -> ClozeClassifier:
        from transformers import AutoModelForMaskedLM

        mlm = AutoModelForMaskedLM.from_pretrained(path, use_safetensors=True)
        return cls(mlm, cfg["template"], cfg["verbalizer"])


def load_head_model(path: str | Path) -> Any:
    """A saved ``PooledClassifier`` or ``ClozeClassifier``."""
    try:
        cfg = json.loads((Path(path) / HEAD_CONFIG).read_text())
        kind = cfg["kind"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ModelError(f"{Path(path) / HEAD_CONFIG} is unreadable; retrain the run") from None
    if kind == "pooled":
        return PooledClassifier.from_pretrained(path, cfg)
    if kind == "cloze":
        return ClozeClassifier.from_pretrained(path, cfg)
    raise ModelError(f"{Path(path) / HEAD_CONFIG}: unknown kind {kind!r}; retrain the run")
