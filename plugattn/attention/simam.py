"""SimAM — a Simple, parameter-free Attention Module.

L. Yang, R.-Y. Zhang, L. Li, X. Xie, "SimAM: A Simple, Parameter-Free Attention Module for
Convolutional Neural Networks", ICML 2021 (PMLR 139:11863-11874).
https://proceedings.mlr.press/v139/yang21o.html — authors' code: https://github.com/ZjjConan/SimAM
"""

from __future__ import annotations

import math

import torch
from torch import nn

from plugattn._checks import check_float, check_int
from plugattn._dims import check_spatial_dims
from plugattn.attention._common import check_feature_map, spatial_axes
from plugattn.attention.registry import register_attention

__all__ = ["SimAM"]


@register_attention("simam", paper="Yang et al., ICML 2021, SimAM")
class SimAM(nn.Module):
    r"""SimAM: a 3-D (per-position, per-channel) gate from each neuron's minimal energy, no parameters.

    With ``x`` of shape ``(B, C, H, W)``, per sample and channel, over its ``M = H·W`` positions:

    * (1) ``μ = mean_{H,W}(x)``, ``d = (x - μ)²``, ``n = M - 1``.
    * (2) ``σ̂² = Σ_{H,W} d / n`` (the unbiased variance).
    * (3) inverse minimal energy ``1/e* = d / (4(σ̂² + λ)) + 0.5`` (paper Eq. 5 inverted, as the
      authors' code computes it).
    * (4) ``out = x · sigmoid(1/e*)`` (paper Eq. 6).

    Args:
        channels: input channels C; SimAM has no parameters, so it is only validated (it is taken so
            every module shares one signature).
        e_lambda: λ, the energy's regulariser (default 1e-4), > 0.
        spatial_dims: spatial axes of the input: 1 ``(B, C, L)``, 2 (default) ``(B, C, H, W)``, 3
            ``(B, C, D, H, W)``.
        device, dtype: accepted for the common signature; there is nothing to create.

    In 1-D and 3-D: the statistics (1)-(2) run over every position of a channel, ``M = L`` or
    ``M = D·H·W``; the gate has the input's shape. On a map with a length-1 axis it equals the module of
    one dimension less (the same positions).

    Gate: ``gate`` (a sigmoid) outputs ``sigmoid(1/e*)`` ``(B, C, H, W)``.

    Differences from the paper:
        * For a 1×1 map ``M - 1 = 0`` and the paper's ``σ̂²`` is 0/0; we use ``n = max(M - 1, 1)``, so
          ``d = 0`` gives ``1/e* = 0.5`` and ``out = x · sigmoid(0.5)`` (finite; the authors' code gives
          NaN). Every map with ``M >= 2`` is unchanged.
    """

    def __init__(
        self,
        channels: int,
        *,
        e_lambda: float = 1e-4,
        spatial_dims: int = 2,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        channels = check_int("channels", channels, minimum=1)
        check_float("e_lambda", e_lambda, low=0, low_open=True)
        self.spatial_dims = check_spatial_dims(spatial_dims, "SimAM")
        self.channels = channels
        self.e_lambda = e_lambda
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(self, x)
        axes = spatial_axes(x)
        n = max(math.prod(x.shape[2:]) - 1, 1)
        d = (x - x.mean(dim=axes, keepdim=True)).pow(2)  # (B, C, H, W) in 2-D
        v = d.sum(dim=axes, keepdim=True) / n  # (B, C, 1, 1) in 2-D
        e_inv = d / (4 * (v + self.e_lambda)) + 0.5
        return x * self.gate(e_inv)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, e_lambda={self.e_lambda}"
