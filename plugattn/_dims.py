"""Layer types by number of spatial axes: one class serves signals, images and volumes.

``spatial_dims`` is 1 for signals ``(B, C, L)``, 2 for images ``(B, C, H, W)`` and 3 for volumes or clips
``(B, C, D, H, W)``; these pick ``nn.Conv{1,2,3}d``, ``nn.BatchNorm{1,2,3}d`` and the pools, as MONAI's
layer factories do, so a 2-D layer is exactly what it was before (same types, same state-dict keys).
Shared by the attention modules and the blocks.
"""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = [
    "SPATIAL_DIMS",
    "adaptive_avg_pool_nd",
    "batch_norm_nd",
    "check_spatial_dims",
    "conv_nd",
    "max_pool_nd",
]

SPATIAL_DIMS = (1, 2, 3)

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_BATCH_NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_MAX_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_ADAPTIVE_AVG_POOL = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}


def check_spatial_dims(spatial_dims: Any, owner: str = "", allowed: tuple[int, ...] = SPATIAL_DIMS) -> int:
    """``spatial_dims`` is 1, 2 or 3 (a bool is not).

    ``allowed`` narrows the choice for a layer with no sensible form in some dimension; the error then
    says that ``owner`` itself has none, not only that the number is out of range.
    """
    if type(spatial_dims) is not int or spatial_dims not in SPATIAL_DIMS:  # refuses True, 2.0 and "2"
        raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims!r}")
    if spatial_dims not in allowed:
        raise ValueError(
            f"{owner or 'this layer'} has no {spatial_dims}-D form (spatial_dims={spatial_dims}); it "
            f"supports spatial_dims in {list(allowed)}"
        )
    return spatial_dims


def conv_nd(spatial_dims: int) -> type[nn.Module]:
    """``nn.Conv1d``, ``nn.Conv2d`` or ``nn.Conv3d``."""
    return _CONV[check_spatial_dims(spatial_dims)]


def batch_norm_nd(spatial_dims: int) -> type[nn.Module]:
    """``nn.BatchNorm1d``, ``nn.BatchNorm2d`` or ``nn.BatchNorm3d``."""
    return _BATCH_NORM[check_spatial_dims(spatial_dims)]


def max_pool_nd(spatial_dims: int) -> type[nn.Module]:
    """``nn.MaxPool1d``, ``nn.MaxPool2d`` or ``nn.MaxPool3d``."""
    return _MAX_POOL[check_spatial_dims(spatial_dims)]


def adaptive_avg_pool_nd(spatial_dims: int) -> type[nn.Module]:
    """``nn.AdaptiveAvgPool1d``, ``nn.AdaptiveAvgPool2d`` or ``nn.AdaptiveAvgPool3d``."""
    return _ADAPTIVE_AVG_POOL[check_spatial_dims(spatial_dims)]
