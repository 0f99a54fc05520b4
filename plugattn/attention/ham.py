"""HAM — Hybrid Attention Module.

G. Li, Q. Fang, L. Zha, X. Gao, N. Zheng, "HAM: Hybrid attention module in deep convolutional neural
networks for image classification", Pattern Recognition 129 (2022) 108785.
https://doi.org/10.1016/j.patcog.2022.108785

Implemented exactly as ``spec/ham.md`` of this project resolves the paper's ambiguities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from plugattn._checks import check_float, check_int
from plugattn.attention._common import eca_kernel_size
from plugattn.attention.registry import register_attention

__all__ = ["HAM", "HAMChannel", "HAMSpatial", "ham_important_channels"]


def ham_important_channels(channels: int, separation_rate: float) -> int:
    """Size of HAM's important group: the nearest even of ``separation_rate * channels`` (Eq. 5).

    ``t = int(rate * C)``; ``t`` if even else ``t + 1`` (C=16→10, 64→38, 256→154, 2048→1228 at 0.6).
    """
    t = int(separation_rate * channels)
    return t if t % 2 == 0 else t + 1


class HAMChannel(nn.Module):
    """HAM's channel submodule: adaptive avg/max mix, then a fast 1-D conv across channels.

    ``forward`` returns the channel map ``a_c`` of shape ``(B, C)``; the caller rescales the input.
    """

    def __init__(
        self,
        channels: int,
        *,
        kernel_size: int,
        adaptive: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.adaptive = adaptive
        if adaptive:
            # Learnable, unconstrained scalars (the paper says "between 0 and 1" but enforces nothing).
            self.alpha = nn.Parameter(torch.full((1,), 0.5, **factory))
            self.beta = nn.Parameter(torch.full((1,), 0.5, **factory))
        # ECA-style: one input and one output channel sliding across the C channels, no bias.
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False, **factory)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f_avg = x.mean(dim=(2, 3))  # (B, C)
        f_max = x.amax(dim=(2, 3))  # (B, C)
        f_add = 0.5 * (f_avg + f_max)
        if self.adaptive:
            f_add = f_add + self.alpha * f_avg + self.beta * f_max  # Eq. (2)
        a_c = self.conv(f_add.unsqueeze(1))  # (B, 1, C)
        return self.gate(a_c.squeeze(1))  # (B, C)


class HAMSpatial(nn.Module):
    """HAM's spatial submodule: one shared conv, a BatchNorm per channel group, ReLU, sigmoid.

    ``forward(d_important, d_subimportant)`` takes the two ``(B, 2, H, W)`` descriptors and returns both
    spatial maps stacked as ``(B, 2, H, W)`` — channel 0 the important group's, 1 the sub-important's —
    produced by a single call of ``gate`` so one hook sees both.
    """

    def __init__(
        self,
        kernel_size: int = 7,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False, **factory)
        self.norm_important = nn.BatchNorm2d(1, **factory)
        self.norm_subimportant = nn.BatchNorm2d(1, **factory)
        self.gate = nn.Sigmoid()

    def forward(self, d_important: torch.Tensor, d_subimportant: torch.Tensor) -> torch.Tensor:
        b = d_important.shape[0]
        # One conv call for both groups (the conv is shared): stack the groups along the batch.
        d = torch.cat((d_important, d_subimportant), dim=0)  # (2B, 2, H, W)
        # channels_last: oneDNN runs this 2-to-1-channel conv (and its backward) several times faster
        # than in the contiguous layout; with one output channel the result's layout is the same.
        s = self.conv(d.contiguous(memory_format=torch.channels_last))  # (2B, 1, H, W)
        s = torch.cat((self.norm_important(s[:b]), self.norm_subimportant(s[b:])), dim=1)  # (B,2,H,W)
        return self.gate(F.relu(s))


@register_attention("ham", paper="Li et al., Pattern Recognition 2022, HAM")
class HAM(nn.Module):
    r"""Hybrid Attention Module: channel attention, then channel separation and two spatial maps.

    With ``x`` of shape ``(B, C, H, W)``:

    * (1) ``f_avg = mean_{H,W}(x)``, ``f_max = max_{H,W}(x)`` — ``(B, C)``.
    * (2) ``f_add = ½(f_avg + f_max) + α·f_avg + β·f_max`` (paper Eq. 5; α = β = 0.5 at init,
      unconstrained); ``adaptive=False`` gives ``f_add = ½(f_avg + f_max)``.
    * (3) ``a_c = σ(conv1d_k(f_add))`` across channels, ``k`` = ECA's rule from C (γ=2, b=1).
    * (4) ``F' = x · a_c``.
    * (5) ``c_im`` = nearest even of ``separation_rate · C``; ``c_sub = C - c_im``.
    * (6) per sample, ``m1`` = 1 on the ``c_im`` channels of largest ``a_c`` (no gradient),
      ``m2 = 1 - m1``; ``F1 = F'·m1``, ``F2 = F'·m2``.
    * (7) ``d_i = [Σ_c F_i / c_i ; max_c F_i]`` — ``(B, 2, H, W)``, the sum divided by the group's own
      size, the max over all C channels of the masked tensor.
    * (8)-(9) ``a_s,i = σ(ReLU(BN_i(conv7×7(d_i))))`` — the conv shared, one BatchNorm per group.
    * (10) ``F'' = F1·a_s,1 + F2·a_s,2``.

    HAM has no residual of its own; it goes at the end of a residual branch, after the last BN.

    Args:
        channels: input channels C.
        separation_rate: λ, the share of channels in the important group (default 0.6); ``c_im`` must
            fall in ``[1, C-1]``.
        spatial_kernel_size: odd kernel of the shared spatial conv (default 7).
        channel_kernel_size: odd kernel of the channel conv; ``None`` (default) uses ECA's rule.
        gamma, b: ECA's rule parameters (defaults 2 and 1).
        adaptive: learn α and β (default ``True``); ``False`` is the paper's "no adaptive" ablation.
        device, dtype: factory keywords, as torch layers take them.

    Gates: ``channel.gate`` outputs ``a_c`` ``(B, C)``; ``spatial.gate`` outputs both spatial maps as
    ``(B, 2, H, W)`` (important, sub-important), so :func:`plugattn.capture_attention_maps` sees them.

    Differences from the paper:
        * The channel 1-D conv is ECA's (1→1 channel); the authors' TensorFlow code uses a dense C×C
          layer, which contradicts the paper's own parameter counts.
        * BatchNorm follows the module's train/eval mode; the authors' code hard-codes training mode.
        * The paper leaves rounding and tie-breaking open: we round ``λC`` to the nearest even as
          above and break ties in ``a_c`` by ``torch.topk`` order.
    """

    def __init__(
        self,
        channels: int,
        *,
        separation_rate: float = 0.6,
        spatial_kernel_size: int = 7,
        channel_kernel_size: int | None = None,
        gamma: float = 2,
        b: float = 1,
        adaptive: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_int("channels", channels, minimum=1)
        check_float("separation_rate", separation_rate, low=0, high=1, low_open=True, high_open=True)
        check_int("spatial_kernel_size", spatial_kernel_size, minimum=1, odd=True)
        if channel_kernel_size is None:
            channel_kernel_size = eca_kernel_size(channels, gamma, b)
        check_int("channel_kernel_size", channel_kernel_size, minimum=1, odd=True)
        if not isinstance(adaptive, bool):
            raise ValueError(f"adaptive must be True or False, got {adaptive!r}")
        c_im = ham_important_channels(channels, separation_rate)
        if not 1 <= c_im <= channels - 1:
            raise ValueError(
                f"channels={channels} with separation_rate={separation_rate} gives an important group "
                f"of {c_im} channels; it must lie in [1, channels - 1], so use channels >= 3 or "
                f"another separation_rate"
            )
        self.channels = channels
        self.separation_rate = separation_rate
        self.important_channels = c_im
        self.subimportant_channels = channels - c_im
        factory = {"device": device, "dtype": dtype}
        self.channel = HAMChannel(channels, kernel_size=channel_kernel_size, adaptive=adaptive, **factory)
        self.spatial = HAMSpatial(spatial_kernel_size, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a_c = self.channel(x)  # (B, C)
        # Hard per-sample separation; the mask carries no gradient (it reaches a_c through F').
        top = a_c.detach().topk(self.important_channels, dim=1).indices  # (B, c_im)
        m1 = torch.zeros_like(a_c).scatter_(1, top, 1.0)  # (B, C)
        # F1 = F'·m1 and F2 = F'·(1 - m1) built straight from x with per-channel weights: one pass
        # over the map each, and bitwise the same values as masking F' = x·a_c.
        w1 = a_c * m1
        w2 = a_c - w1  # a_c where m1 = 0, exactly 0 where m1 = 1
        f1 = x * w1[:, :, None, None]  # (B, C, H, W)
        f2 = x * w2[:, :, None, None]  # (B, C, H, W)
        # max(dim) rather than amax: the same values, and a backward that scatters to the arg-max
        # instead of building a tie mask over the whole map (only exact ties differ).
        d1 = torch.cat(
            (f1.sum(dim=1, keepdim=True) / self.important_channels, f1.max(dim=1, keepdim=True).values),
            dim=1,
        )  # (B, 2, H, W)
        d2 = torch.cat(
            (f2.sum(dim=1, keepdim=True) / self.subimportant_channels, f2.max(dim=1, keepdim=True).values),
            dim=1,
        )  # (B, 2, H, W)
        a_s = self.spatial(d1, d2)  # (B, 2, H, W)
        return torch.addcmul(f1 * a_s[:, 0:1], f2, a_s[:, 1:2])

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, separation_rate={self.separation_rate}, "
            f"important_channels={self.important_channels}"
        )
