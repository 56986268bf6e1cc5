"""Texts in, logits out, for the PyTorch original and a bundle's variants: what every
measurement (validate, bench, export's golden texts, the latency budget) runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .arrays import pad_batch
from .errors import ConfigError
from .formats import rundir

PYTORCH = "pytorch-fp32"  # the PyTorch original's name among the measured candidates


# -- runners: texts in, logits out ---------------------------------------------------------------


class TorchRunner:
    """The PyTorch original with its transformers tokenizer (length-sorted padded batches)."""

    kind = "pytorch"

    def __init__(self, path: Path, threads: int, max_length: int = 512) -> None:
        import torch
        from transformers import AutoTokenizer

        from .modeling import load_saved, saved_task

        torch.set_num_threads(threads)
        self.path, self.threads, self.max_length = path, threads, max_length
        self.model = load_saved(path).eval()
        self.per_token = saved_task(path).per_token
        self.names = set(_forward_args(self.model))
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.pad_id = self.tokenizer.pad_token_id or 0

    def prepare(self, feed: dict[str, np.ndarray]) -> Any:
        import torch

        return {k: torch.from_numpy(v) for k, v in feed.items() if k in self.names}

    def run(self, prepared: Any) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model(**prepared).logits.float().numpy()

    def token_logits(self, texts: list[str], batch_size: int) -> list[np.ndarray]:
        """Per-token logits [content tokens, tags] per text, in the runtime's windows."""
        from .runtime.tokens import content_logits, content_tokens, special_ids, untruncated

        tok = untruncated(self.tokenizer.backend_tokenizer)
        tokens = content_tokens(tok, texts)
        run = lambda feed: self.run(self.prepare(feed))  # noqa: E731
        specials = special_ids(tok)
        return content_logits(tokens, run, self.pad_id, self.max_length, specials, batch_size)

    def logits(self, texts: list[str], pairs: list[str] | None, batch_size: int) -> Any:
        """[texts, labels]; per token, one [content tokens, tags] array per text."""
        if self.per_token:
            return self.token_logits(texts, batch_size)
        enc = self.tokenizer(texts, pairs, truncation=True, max_length=self.max_length)
        enc = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
        lengths = [len(x) for x in enc["input_ids"]]
        order = np.argsort(lengths, kind="stable")
        out = np.zeros((len(texts), self.model.config.num_labels), dtype=np.float32)
        for i in range(0, len(order), batch_size):
            rows = order[i : i + batch_size]
            out[rows] = self.run(self.prepare(pad_batch(enc, rows, self.pad_id)))
        return out


def _forward_args(model: Any) -> list[str]:
    import inspect

    return list(inspect.signature(model.forward).parameters)


class RuntimeRunner:
    """A bundle variant served by ``edgetune.runtime.Classifier``, the code devices run."""

    kind = "onnx"

    def __init__(self, clf: Any) -> None:
        self.clf = clf
        self.path = clf.root / clf.manifest["variants"][clf.variant]["file"]
        self.threads = clf.threads

    def prepare(self, feed: dict[str, np.ndarray]) -> Any:
        return feed

    def run(self, prepared: Any) -> np.ndarray:
        return self.clf.run_feed(prepared)

    def logits(self, texts: list[str], pairs: list[str] | None, batch_size: int) -> Any:
        """[texts, labels]; per token, one [content tokens, tags] array per text."""
        if self.clf.task.per_token:
            return self.clf.token_logits(texts, batch_size=batch_size)
        return self.clf.logits(texts, pairs=pairs, batch_size=batch_size)


# -- timing inputs --------------------------------------------------------------------------------


def fixed_length_text(tok: Any, texts: list[str], length: int) -> str:
    """A text of real words that tokenizes to exactly ``length`` tokens (specials included)."""
    joined, i = "", 0
    while i < len(texts) and len(tok(joined, verbose=False)["input_ids"]) <= length:
        joined += " " + texts[i]
        i += 1
    while len(tok(joined, verbose=False)["input_ids"]) <= length:
        joined += " " + (joined or "word")  # very short data: repeat what there is
    joined = joined.strip()
    # ``joined`` runs past ``length``, which may be the model's limit: it is cut below, so the
    # tokenizer's "longer than the specified maximum" warning does not apply.
    enc = tok(joined, return_offsets_mapping=True, add_special_tokens=False, verbose=False)
    specials = len(tok("")["input_ids"])
    offsets = enc["offset_mapping"]
    # Cut after a token, then step back until the count fits (word pieces can merge).
    for n in range(length - specials, 0, -1):
        text = joined[: offsets[n - 1][1]]
        if len(tok(text)["input_ids"]) == length:
            return text
    return joined


def pytorch_source(manifest: dict[str, Any], source: str | None) -> Path:
    """The PyTorch original: ``source`` if given, else the run or model the bundle came from."""
    given = source or (manifest.get("source") or {}).get("path")
    path = Path(given).expanduser() if given else None
    if path is not None and rundir.is_run(path):
        path = path / rundir.BEST
    if path is None or not (path / "config.json").is_file():
        raise ConfigError(
            f"the PyTorch original ({given or 'unknown'}) is not available here; pass "
            "--source RUN_OR_MODEL_DIR, or --no-pytorch to compare the ONNX variants only"
        )
    return path
