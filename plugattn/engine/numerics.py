"""Numerics chosen by the hardware: autocast dtype and memory layout for ``amp``/``channels_last`` "auto".

bf16 autocast pays only where the device computes in bf16 natively: on a CPU without it (AVX2, no
AVX-512 BF16/AMX), oneDNN emulates bf16 and convolutions run 10–20× slower than fp32 (on this project's
2-core AVX2 machine ResNet-20 + HAM trained at 36 img/s in bf16 against 308 in fp32, one SGD step, batch
256, 1×28×28). So "auto" is bf16 on CUDA devices that support it and on CPUs whose oneDNN reports native
bf16, and fp32 everywhere else; fp16 is never chosen by default (it needs loss scaling; ask for it).
channels_last "auto" is on only for CUDA with reduced-precision autocast, where tensor-core convolutions
want NHWC; on that CPU it was slower for ResNet-20 + HAM in fp32 (291 vs 308 img/s) and is left off.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

__all__ = ["Numerics", "native_bf16", "resolve_numerics"]


@dataclass(frozen=True)
class Numerics:
    """What a run computes in: ``amp`` ("none" | "bf16" | "fp16"), ``channels_last``, and why."""

    amp: str
    channels_last: bool
    reason: str

    def describe(self) -> str:
        precision = {"none": "fp32", "bf16": "bf16 autocast", "fp16": "fp16 autocast"}[self.amp]
        layout = "channels_last" if self.channels_last else "contiguous layout"
        return f"numerics: {precision}, {layout} ({self.reason})"


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively (CUDA: ``is_bf16_supported``; CPU: oneDNN's check)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def _cpu_name() -> str:
    return f"this CPU ({torch.backends.cpu.get_cpu_capability()})"


def resolve_numerics(amp: str, channels_last: bool | str, device: torch.device) -> Numerics:
    """Resolve ``"auto"`` values for ``device``; explicit values are kept (bf16 on a CPU without native
    support warns that it is emulated and slow)."""
    where = _cpu_name() if device.type == "cpu" else f"{device.type} device"
    native = native_bf16(device)
    if amp == "auto":
        amp = "bf16" if native else "none"
        reason = f"{where} {'runs' if native else 'has no native'} bf16"
    else:
        reason = f"amp={amp} as asked"
        if amp == "bf16" and device.type == "cpu" and not native:
            warnings.warn(
                f"amp='bf16' on {where} without native bf16: autocast is emulated and runs many times "
                "slower than fp32; amp='auto' picks fp32 here",
                RuntimeWarning,
                stacklevel=2,
            )
    if channels_last == "auto":
        channels_last = device.type == "cuda" and amp != "none"
    return Numerics(amp=amp, channels_last=bool(channels_last), reason=reason)
