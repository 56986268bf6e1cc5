"""Run-time hardware detection: CPU instruction-set features and the training device."""

from __future__ import annotations

import functools
import platform
import sys
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def keeps_torch_threads(fn: F) -> F:
    """A stage that times PyTorch sets its process-wide intra-op thread count; give the
    caller's count back when it returns, so a training run later in the same process is not
    run (and summed) on another count."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        torch = sys.modules.get("torch")
        before = torch.get_num_threads() if torch is not None else None
        try:
            return fn(*args, **kwargs)
        finally:
            torch = sys.modules.get("torch")
            if torch is not None and before is not None and torch.get_num_threads() != before:
                torch.set_num_threads(before)

    return wrapper  # type: ignore[return-value]


_X86 = {
    "avx2": "avx2",
    "avx512f": "avx512",
    "avx512_vnni": "avx512_vnni",
    "avx_vnni": "avx_vnni",
    "avx512_bf16": "avx512_bf16",
    "amx_bf16": "amx_bf16",
    "amx_int8": "amx_int8",
    "f16c": "f16c",
}


_ARM = ("neon", "arm_dotprod", "arm_i8mm", "arm_bf16", "arm_sve", "arm_sve2", "arm_sme")
# Linux arm64 auxiliary-vector bits (uapi/asm/hwcap.h): what the kernel, or an emulator such as
# qemu-user, says this CPU executes; /proc/cpuinfo may describe the host under emulation.
_HWCAP = {"asimddp": 1 << 20, "sve": 1 << 22}
_HWCAP2 = {"sve2": 1 << 1, "i8mm": 1 << 13, "bf16": 1 << 14, "sme": 1 << 23}


def _is_arm(machine: str) -> bool:
    return machine in ("arm64", "aarch64")


@lru_cache(maxsize=1)
def cpu_features() -> dict[str, bool]:
    """Instruction-set features of this CPU, read at run time (never assumed)."""
    feats = {name: False for name in (*_X86.values(), *_ARM)}
    machine = platform.machine().lower()
    flags: set[str] = set()
    if sys.platform.startswith("linux") and _is_arm(machine):
        flags.update(_linux_arm_flags())
    elif sys.platform.startswith("linux"):
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    flags.update(value.split())
                    break
        except OSError:
            pass
    elif sys.platform == "darwin" and _is_arm(machine):
        flags.update(_darwin_arm_flags())
    if _is_arm(machine):
        feats["neon"] = True
        feats["arm_dotprod"] = "asimddp" in flags or "dotprod" in flags
        for name in ("i8mm", "bf16", "sve", "sve2", "sme"):
            feats[f"arm_{name}"] = name in flags
    else:
        for flag, name in _X86.items():
            feats[name] = flag in flags
    return feats


def _linux_arm_flags() -> set[str]:
    import ctypes

    try:
        getauxval = ctypes.CDLL(None).getauxval
        getauxval.restype = ctypes.c_ulong
        hwcap, hwcap2 = getauxval(16), getauxval(26)  # AT_HWCAP, AT_HWCAP2
    except (OSError, AttributeError):
        return set()
    return {n for n, b in _HWCAP.items() if hwcap & b} | {
        n for n, b in _HWCAP2.items() if hwcap2 & b
    }


def _darwin_arm_flags() -> set[str]:
    import subprocess

    out = set()
    for key, flag in (("FEAT_DotProd", "dotprod"), ("FEAT_I8MM", "i8mm"), ("FEAT_BF16", "bf16")):
        try:
            r = subprocess.run(
                ["sysctl", "-n", f"hw.optional.arm.{key}"],
                capture_output=True,
                text=True,
                timeout=2,
            )
            if r.stdout.strip() == "1":
                out.add(flag)
        except (OSError, subprocess.SubprocessError):
            pass
    return out


def cpu_description() -> dict[str, object]:
    """Processor name, core count and features, for reports and manifests."""
    import os

    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            # Under user-mode emulation /proc/cpuinfo is the host's: trust it on x86 only.
            if line.startswith("model name") and not _is_arm(platform.machine().lower()):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "name": name,
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "features": [k for k, v in cpu_features().items() if v],
    }


def cpu_supports_bf16() -> bool:
    """True where bf16 matrix maths runs natively (AMX or AVX-512-BF16)."""
    f = cpu_features()
    return f["amx_bf16"] or f["avx512_bf16"]


def pick_device(requested: str = "auto") -> str:
    """The training device: ``cuda`` if present, then ``mps``, else ``cpu``."""
    import torch

    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB (VmHWM on Linux, else ru_maxrss)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20 if sys.platform == "darwin" else 1024)
