"""``edgetune check``: verify a bundle and self-check each of its variants on this device."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..formats import bundle as bundlefmt
from . import passes
from .classifier import SelfCheck, default_threads, try_variant


@dataclass
class BundleCheck:
    """``edgetune check``: the bundle's verdict on this device, variant by variant."""

    bundle: str
    signature: str  # "verified with KEY", "signed (not verified: no key given)", "unsigned"
    checks: list[SelfCheck]
    skipped: dict[str, str]  # variant -> why it has no self-check
    environment: dict[str, Any]

    @property
    def passed(self) -> bool:
        """Every variant that can run here answers right (and at least one can)."""
        return bool(self.checks) and all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "bundle": self.bundle,
            "passed": self.passed,
            "signature": self.signature,
            "variants": {c.variant: c.to_dict() for c in self.checks},
            "skipped": self.skipped,
            "environment": self.environment,
        }

    def summary(self) -> str:
        lines = [
            f"bundle     {self.bundle}: hashes verified; {self.signature}",
            f"{'variant':16}{'verdict':>8}{'max |Δlogit|':>14}{'tolerance':>11}"
            f"{'median row':>12}{'tolerance':>11}{'flips':>7}{'rows':>6}{'ms':>8}",
        ]
        for c in self.checks:
            lines.append(
                f"{c.variant:16}{'PASS' if c.passed else 'FAIL':>8}{c.max_abs_diff:>14.3g}"
                f"{c.tolerance:>11.3g}{c.typical_diff:>12.3g}{c.typical_tolerance:>11.3g}"
                f"{c.flips:>7}{c.rows:>6}{c.time_ms:>8.0f}"
            )
        for name, why in self.skipped.items():
            lines.append(f"{name:16}{'SKIP':>8}  {why}")
        env = self.environment
        cpu = env["cpu"]
        lines.append(
            f"device     {cpu['name']} ({cpu['machine']}; {', '.join(cpu['features']) or 'no extra features'}); "
            f"onnxruntime {env['onnxruntime']}"
        )
        return "\n".join(lines)


def check_bundle(
    bundle: str | os.PathLike[str],
    *,
    variants: Sequence[str] = (),
    threads: int | None = None,
    public_key: str | os.PathLike[str] | None = None,
) -> BundleCheck:
    """Verify hashes (and the signature with ``public_key``), then self-check each variant."""
    import onnxruntime

    from ..hw import cpu_description

    root = Path(bundle).expanduser()
    signed = (root / bundlefmt.SIGNATURE).is_file()
    if public_key is not None:
        from ..signing import verify as verify_signature

        verify_signature(root, Path(public_key).expanduser())
        signature = f"signature verified with {public_key}"
    else:
        signature = "signed (signature not verified: pass --verify-key)" if signed else "unsigned"
    manifest = bundlefmt.verify(root)
    golden = bundlefmt.read_golden(root)
    names = [bundlefmt.pick_variant(manifest, v, root) for v in variants] or list(
        manifest["variants"]
    )
    threads = threads or default_threads()
    checks, skipped = [], {}
    for name in names:
        clf, why, _ = try_variant(root, manifest, golden, name, threads, "never")
        if clf is None:
            skipped[name] = f"cannot load here: {why}"
        elif "logits" not in golden["variants"][name]:
            skipped[name] = "no expected answers recorded (fp16 is built for GPUs)"
        else:
            checks.append(clf.self_check())  # always run here; a pass lets predict skip it
            passes.remember(passes.key(root, name, threads), checks[-1].to_dict())
    env = {"cpu": cpu_description(), "onnxruntime": onnxruntime.__version__}
    return BundleCheck(str(root), signature, checks, skipped, env)
