"""``edgetune validate``: every variant of a bundle against the PyTorch original, side by side.

Accuracy is task-level (a labelled split of real data, not random inputs); latency is measured
with all candidates interleaved in one process (see ``latency.py``), so speed-ups are paired
ratios that hold on noisy machines. The report is written next to the bundle's models
(``validation/report.{json,md,png}``) and its headline figures go into the manifest.

- ``config``: ``ValidateConfig`` (what is measured, which gates apply) and ``parse_speedup``.
- ``api``: ``validate()``, the stage: bundle, PyTorch original and labelled data in, report out.
- ``runners``: texts in, logits out for PyTorch and the runtime; latency timing, peak memory.
- ``gates``: accuracy, agreement, flipped rows, batch invariance, and the gates judging them.
- ``report``: the summary table, report.{json,md,png}, the figures written into the manifest.
"""

from .api import ValidationResult, labelled_split, pytorch_source, validate
from .config import PYTORCH, ValidateConfig, parse_speedup
from .report import REPORT_DIR, REPORT_FILES, SCHEMA, SCHEMA_VERSION, markdown, summary_table
from .runners import RuntimeRunner, TorchRunner, fixed_length_text

__all__ = [
    "PYTORCH",
    "REPORT_DIR",
    "REPORT_FILES",
    "SCHEMA",
    "SCHEMA_VERSION",
    "RuntimeRunner",
    "TorchRunner",
    "ValidateConfig",
    "ValidationResult",
    "fixed_length_text",
    "labelled_split",
    "markdown",
    "parse_speedup",
    "pytorch_source",
    "summary_table",
    "validate",
]
