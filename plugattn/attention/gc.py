"""GC — the Global Context block of GCNet.

Y. Cao, J. Xu, S. Lin, F. Wei, H. Hu, "GCNet: Non-local Networks Meet Squeeze-Excitation Networks and
Beyond", ICCV Workshops 2019. https://arxiv.org/abs/1904.11492 — authors' code:
https://github.com/xvjiarui/GCNet (``ContextBlock``, also in mmcv).
"""

from __future__ import annotations

import torch
from torch import nn

from plugattn._checks import check_int
from plugattn._dims import check_spatial_dims, conv_nd
from plugattn.attention._common import check_feature_map, reduced_channels
from plugattn.attention.registry import register_attention

__all__ = ["GlobalContext"]


class _ContextNorm(nn.LayerNorm):
    """The transform's LayerNorm over ``(C_r, 1, 1)`` applied to a context of any dimension.

    Off 2-D the context is ``(B, C_r, 1)`` or ``(B, C_r, 1, 1, 1)``: it is normalised as the same
    ``C_r`` values laid out ``(B, C_r, 1, 1)``, so the affine keeps the 2-D shape ``(C_r, 1, 1)`` (2-D
    weights load as they are, and a 3-D module still converts to ``channels_last_3d``, which a rank-4
    parameter would refuse).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.reshape(x.shape[:2] + (1, 1))).reshape(x.shape)


@register_attention("gc", paper="Cao et al., ICCVW 2019, GCNet")
class GlobalContext(nn.Module):
    r"""Global context block: attention pooling to one context vector, a bottleneck transform, add.

    With ``x`` of shape ``(B, C, H, W)``, ``N = H·W`` and ``C_r`` the reduced width:

    * (1) context modelling: ``α = softmax_N(W_k x)`` with ``W_k`` a 1×1 conv ``C → 1`` (with bias) —
      ``(B, 1, N)``, one weight per position, the same for every channel.
    * (2) ``z = Σ_j α_j · x_j`` — ``(B, C, 1, 1)``, the attention-pooled global context.
    * (3) transform: ``t = W_v2 · ReLU(LN(W_v1 · z))`` with ``W_v1`` a 1×1 conv ``C → C_r``, ``LN`` a
      LayerNorm over ``(C_r, 1, 1)`` and ``W_v2`` a 1×1 conv ``C_r → C`` (all with bias).
    * (4) fusion by addition: ``out = x + t`` (broadcast over positions) — not a multiplicative gate.

    Args:
        channels: input channels C.
        rd_ratio: bottleneck ratio r of the transform (default 1/16, the paper's r = 16).
        rd_channels: bottleneck width, overriding ``rd_ratio`` (default ``None``: ``max(1, floor(C·r))``,
            by :func:`plugattn.attention._common.reduced_channels`).
        spatial_dims: spatial axes of the input: 1 ``(B, C, L)``, 2 (default) ``(B, C, H, W)``, 3
            ``(B, C, D, H, W)``.
        device, dtype: factory keywords, as torch layers take them.

    In 1-D and 3-D: ``N`` is every position (``L``, or ``D·H·W``), the 1×1 convs are convs of that
    dimension (the same numbers in weights of shape ``(·, ·, 1)`` or ``(·, ·, 1, 1, 1)``), the context
    ``z`` is ``(B, C, 1)`` or ``(B, C, 1, 1, 1)``, and the LayerNorm normalises the same ``C_r`` values,
    its affine ``(C_r, 1, 1)`` as in 2-D. On a map with a length-1 axis it equals the module of one
    dimension less.

    Parameters: ``(C + 1) + (C·C_r + C_r) + 2·C_r + (C_r·C + C)``; 653 at C=64, 8753 at C=256.
    Gate: ``gate`` is the softmax over positions of (1); it outputs ``(B, 1, N)``. On a 1×1 map it is
    well defined: a softmax over one position is 1, so ``z = x``.

    Below 32 channels the default gives ``C_r = 1``: a LayerNorm over one value outputs its bias
    whatever the input, so the block adds a learned constant and the context path gets no gradient.
    That is the paper's module at that width; pass ``rd_channels >= 2`` for a working context path.

    Init (as the authors' ``reset_parameters``): ``conv_mask`` Kaiming-normal (fan_in, ReLU) with zero
    bias; the last conv of the transform zero (weight and bias), so the block starts as the identity
    and the residual network it sits in starts unchanged. Layers in between keep torch's defaults.

    Differences from the paper:
        * None in function. ``rd_channels`` is floored (``C // 16``, at least 1) where the authors' code
          takes ``int(C · ratio)`` — equal for every ``C >= 16``; below that we keep one unit instead of
          building an empty layer.
        * Only the paper's chosen variant (attention pooling, add fusion) is built; the authors' code
          also offers average pooling and multiplicative fusion as ablations.
    """

    def __init__(
        self,
        channels: int,
        *,
        rd_ratio: float = 1 / 16,
        rd_channels: int | None = None,
        spatial_dims: int = 2,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        channels = check_int("channels", channels, minimum=1)
        self.channels = channels
        self.rd_channels = reduced_channels(channels, rd_ratio, rd_channels)
        self.spatial_dims = check_spatial_dims(spatial_dims, "GlobalContext")
        factory = {"device": device, "dtype": dtype}
        conv = conv_nd(spatial_dims)
        self.conv_mask = conv(channels, 1, 1, **factory)
        self.gate = nn.Softmax(dim=-1)
        self.transform = nn.Sequential(
            conv(channels, self.rd_channels, 1, **factory),
            (nn.LayerNorm if spatial_dims == 2 else _ContextNorm)((self.rd_channels, 1, 1), **factory),
            nn.ReLU(inplace=True),
            conv(self.rd_channels, channels, 1, **factory),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The authors' init: Kaiming-normal context conv, zero last transform conv (identity start)."""
        nn.init.kaiming_normal_(self.conv_mask.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.conv_mask.bias)
        last = self.transform[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(self, x)
        b, c = x.shape[:2]
        logits = self.conv_mask(x).flatten(2)  # (B, 1, N)
        alpha = self.gate(logits)  # (B, 1, N), Eq. (1)
        context = torch.bmm(x.flatten(2), alpha.transpose(1, 2))  # (B, C, 1), Eq. (2)
        context = context.reshape((b, c) + (1,) * self.spatial_dims)  # (B, C, 1, 1) in 2-D
        t = self.transform(context)  # (B, C, 1, 1) in 2-D, Eq. (3)
        return x + t  # Eq. (4)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, rd_channels={self.rd_channels}"
