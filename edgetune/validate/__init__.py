"""``edgetune validate``: every variant of a bundle against the PyTorch original, side by side.

Accuracy is task-level (a labelled split of real data, not random inputs); latency is measured
with all candidates interleaved in one process (see ``latency.py``), so speed-ups are paired
ratios that hold on noisy machines. The report is written next to the bundle's models
(``validation/report.{json,md,png}``) and its headline figures go into the manifest.

- ``config``: ``ValidateConfig`` (what is measured, which gates apply) and ``parse_speedup``.
- ``api``: ``validate()``, the stage: bundle, PyTorch original and labelled data in, report out.
- ``timing``: the latency cases (fixed lengths, the data's rows, a batch) and peak memory;
  the runners and the timing protocol are the shared layer below (``edgetune.runners``,
  ``edgetune.latency``).
- ``gates``: accuracy, agreement, flipped rows, batch invariance, and the gates judging them.
- ``report``: the summary table, report.{json,md,png}, the figures written into the manifest.
"""

from ..data.labelled import labelled_split
from ..runners import PYTORCH, RuntimeRunner, TorchRunner, fixed_length_text, pytorch_source
from .api import ValidationResult, validate
from .config import ValidateConfig, parse_speedup
from .report import REPORT_DIR, REPORT_FILES, SCHEMA, SCHEMA_VERSION, markdown, summary_table

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
