"""HAM — Hybrid Attention Module.

G. Li, Q. Fang, L. Zha, X. Gao, N. Zheng, "HAM: Hybrid attention module in deep convolutional neural
networks for image classification", Pattern Recognition 129 (2022) 108785.
https://doi.org/10.1016/j.patcog.2022.108785

Implemented exactly as ``spec/ham.md`` of this project resolves the paper's ambiguities; float32 CPU maps run
its passes over the map as fused C kernels (``ham_fast.py``), everything else as lean pure-torch passes
(``ham_passes.py``), computing the same function.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from plugattn._checks import check_float, check_int
from plugattn._dims import batch_norm_nd, check_spatial_dims, conv_nd
from plugattn.attention import ham_channel, ham_fast, ham_passes, ham_spatial
from plugattn.attention._common import check_feature_map, eca_kernel_size, eca_rule, hooked, spatial_axes
from plugattn.attention.registry import register_attention

__all__ = ["HAM", "HAMChannel", "HAMSpatial", "ham_important_channels"]

_ADAPTIVE_MAX_POOL = {1: F.adaptive_max_pool1d, 2: F.adaptive_max_pool2d, 3: F.adaptive_max_pool3d}


def ham_important_channels(channels: int, separation_rate: float) -> int:
    """Size of HAM's important group: the nearest even of ``separation_rate * channels`` (step 5 of
    the docstring of :class:`HAM` and of spec/ham.md; the paper states it in words).

    ``t = ⌊rate · C⌋``; ``t`` if even else ``t + 1`` (C=16→10, 64→38, 256→154, 2048→1228 at 0.6).
    The product is exact: the rate is taken as the decimal it prints as (``0.7`` is 7/10, not the binary
    float just below it), so λ = 0.7, C = 90 gives ⌊63⌋ → 64, where float arithmetic gives ⌊62.99…⌋ → 62.
    """
    t = math.floor(Fraction(repr(float(separation_rate))) * channels)
    return t if t % 2 == 0 else t + 1


class HAMChannel(nn.Module):
    """HAM's channel submodule: adaptive avg/max mix, then a fast 1-D conv across channels.

    ``forward`` takes ``(B, C, *S)`` (``spatial_dims`` axes in ``S``, pooled together) and returns the
    channel map ``a_c`` of shape ``(B, C)``; the caller rescales the input.
    """

    def __init__(
        self,
        channels: int,
        *,
        kernel_size: int,
        adaptive: bool = True,
        spatial_dims: int = 2,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.spatial_dims = check_spatial_dims(spatial_dims, "HAMChannel")
        self.adaptive = adaptive
        if adaptive:
            # Learnable, unconstrained scalars (the paper says "between 0 and 1" but enforces nothing).
            self.alpha = nn.Parameter(torch.full((1,), 0.5, **factory))
            self.beta = nn.Parameter(torch.full((1,), 0.5, **factory))
        # ECA-style: one input and one output channel sliding across the C channels, no bias.
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False, **factory)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f_avg = x.mean(dim=spatial_axes(x))  # (B, C)
        # The spatial max by max pooling: the same values as amax over (H, W), 5x faster forward and
        # backward on the CPU (amax's backward compares the whole input with the max; pooling's scatters
        # to the arg-max). On a tie the gradient goes to one position instead of being shared.
        f_max = _ADAPTIVE_MAX_POOL[self.spatial_dims](x, 1).flatten(1)  # (B, C)
        return self.mix(f_avg, f_max)

    def mix(self, f_avg: torch.Tensor, f_max: torch.Tensor, native: bool = False) -> torch.Tensor:
        """Steps (2)-(3) from the pooled ``f_avg``, ``f_max`` ``(B, C)``: the channel map ``a_c``;
        ``native`` (HAM's native path): all of it as one C call (:func:`ham_channel.channel_map`) where
        :meth:`_fuses`, else the 1-D conv as :func:`_shifted_sum` instead of ``self.conv``'s call (its
        weight, not its hooks)."""
        if native and self._fuses():
            alpha, beta = (self.alpha, self.beta) if self.adaptive else (None, None)
            return ham_channel.channel_map(f_avg, f_max, self.conv.weight, alpha, beta)
        f_add = 0.5 * (f_avg + f_max)
        if self.adaptive:
            f_add = f_add + self.alpha * f_avg + self.beta * f_max  # Eq. (2)
        if native:
            return self.gate(_shifted_sum(f_add, self.conv.weight))
        a_c = self.conv(f_add.unsqueeze(1))  # (B, 1, C)
        return self.gate(a_c.squeeze(1))  # (B, C)

    def _fuses(self) -> bool:
        """Whether the native mix can run as one C call: the gate exactly ``nn.Sigmoid`` without hooks (it
        has to see its call: ``capture_attention_maps`` hooks it) and no global hook."""
        return type(self.gate) is nn.Sigmoid and not hooked([self.gate])


def _shifted_sum(f: Tensor, weight: Tensor) -> Tensor:
    """The 1→1-channel conv across channels (zero padding ``k//2``, no bias) of ``f`` ``(B, C)`` with
    ``weight`` ``(1, 1, k)``, as ``k`` shifted multiply-adds: ``out[:, c] = Σ_j w_j · f[:, c + j - k//2]``.
    On the CPU, forward + backward took a quarter to a half of ``F.conv1d``'s time at (256, 1, C),
    C = 16…256 (oneDNN's backward of a one-channel conv is slow), side by side, 2026-12-03."""
    k = weight.shape[-1]
    c = f.shape[1]
    w = weight.reshape(k)
    padded = F.pad(f, (k // 2, k // 2))  # (B, C + k - 1)
    out = padded[:, 0:c] * w[0]
    for j in range(1, k):
        out = out + padded[:, j : j + c] * w[j]
    return out


class HAMSpatial(nn.Module):
    """HAM's spatial submodule: one shared conv, a BatchNorm per channel group, ReLU, sigmoid.

    ``forward(d_important, d_subimportant)`` takes the two ``(B, 2, *S)`` descriptors (``(B, 2, H, W)``
    in 2-D) and returns both spatial maps stacked as ``(B, 2, *S)`` — channel 0 the important group's,
    1 the sub-important's — produced by a single call of ``gate`` so one hook sees both. The conv and
    the norms have ``spatial_dims`` axes (kernel ``k`` in each).
    """

    def __init__(
        self,
        kernel_size: int = 7,
        *,
        spatial_dims: int = 2,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.spatial_dims = check_spatial_dims(spatial_dims, "HAMSpatial")
        conv, norm = conv_nd(spatial_dims), batch_norm_nd(spatial_dims)
        self.conv = conv(2, 1, kernel_size, padding=kernel_size // 2, bias=False, **factory)
        self.norm_important = norm(1, **factory)
        self.norm_subimportant = norm(1, **factory)
        self.gate = nn.Sigmoid()

    def forward(self, d_important: torch.Tensor, d_subimportant: torch.Tensor) -> torch.Tensor:
        b = d_important.shape[0]
        weight = self.conv.weight
        if (
            self.spatial_dims == 2
            and weight.shape[-1] == weight.shape[-2]
            and ham_fast.usable(d_important, d_subimportant, weight)
        ):
            s = ham_spatial.spatial_conv(d_important, d_subimportant, weight)  # (2, B, H, W), C conv
            if self._fuses_gates(s):
                return ham_spatial.gates(s, (self.norm_important, self.norm_subimportant))  # one C pass
            s_im, s_sub = s.unbind(0)
            return self._gates(s_im, s_sub)
        # One conv call for both groups (the conv is shared): stack the groups along the batch.
        d = torch.cat((d_important, d_subimportant), dim=0)  # (2B, 2, *S)
        # channels_last (channels_last_3d for volumes): oneDNN runs this 2-to-1-channel conv (and its
        # backward) several times faster than in the contiguous layout; with one output channel the
        # result's layout is the same. Signals (1-D) have no such layout.
        layout = ham_passes.CHANNELS_LAST.get(d.dim())
        s = self.conv(d if layout is None else d.contiguous(memory_format=layout))  # (2B, 1, *S)
        # Split the groups through a channel-free view: slicing the one-channel channels_last output
        # directly gives strides (HW, 1, W, 1) that inductor cannot order under dynamic shapes
        # ("1 < s0"); these views have plain contiguous strides. No copy in eager mode.
        s_im, s_sub = s.reshape(2, b, *s.shape[2:]).unbind(0)  # (B, *S) each
        return self._gates(s_im, s_sub)

    def _fuses_gates(self, s: torch.Tensor) -> bool:
        """Whether step (9) on the native conv's output ``s`` ``(2, B, H, W)`` can run as one C pass
        (:func:`ham_spatial.gates`): both norms exactly ``nn.BatchNorm2d`` of one feature with float32 CPU
        tensors, in the same mode and with the same eps, the gate exactly ``nn.Sigmoid``, no hook on any
        of them (each would have to see its call), and more than one value per group in training (where
        ``nn.BatchNorm2d`` raises)."""
        norms = (self.norm_important, self.norm_subimportant)
        if not all(type(n) is nn.BatchNorm2d and n.num_features == 1 for n in norms):
            return False
        tensors = [
            t for n in norms for t in (n.weight, n.bias, n.running_mean, n.running_var) if t is not None
        ]
        batch_stats = [n.training or n.running_mean is None for n in norms]
        return (
            type(self.gate) is nn.Sigmoid
            and all(ham_fast.plain(t) for t in tensors)
            and batch_stats[0] == batch_stats[1]
            and norms[0].eps == norms[1].eps
            and (not batch_stats[0] or s[0].numel() > 1)
            and not hooked([*norms, self.gate])
        )

    def _gates(self, s_im: torch.Tensor, s_sub: torch.Tensor) -> torch.Tensor:
        """Step (9) from the conv's output of each group ``(B, *S)``: both maps as ``(B, 2, *S)``."""
        s = torch.cat(
            (self.norm_important(s_im.unsqueeze(1)), self.norm_subimportant(s_sub.unsqueeze(1))), dim=1
        )
        return self.gate(F.relu(s))


@register_attention("ham", paper="Li et al., Pattern Recognition 2022, HAM")
class HAM(nn.Module):
    r"""Hybrid Attention Module: channel attention, then channel separation and two spatial maps.

    With ``x`` of shape ``(B, C, H, W)``:

    * (1) ``f_avg = mean_{H,W}(x)``, ``f_max = max_{H,W}(x)`` — ``(B, C)``.
    * (2) ``f_add = ½(f_avg + f_max) + α·f_avg + β·f_max`` (paper Eq. 5; α = β = 0.5 at init,
      unconstrained); ``adaptive=False`` gives ``f_add = ½(f_avg + f_max)``.
    * (3) ``a_c = σ(conv1d_k(f_add))`` across channels, ``k`` = ECA's rule from C (paper Eq. 6:
      ``k = |(log2 C + b) / γ|_odd`` with γ = ``kernel_slope`` = 2, b = ``kernel_offset`` = 1).
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
        kernel_slope, kernel_offset: γ and b of ECA's rule (defaults 2 and 1). Their old names ``gamma``
            and ``b`` still work, with a ``FutureWarning``.
        adaptive: learn α and β (default ``True``); ``False`` is the paper's "no adaptive" ablation.
        spatial_dims: 1 for signals ``(B, C, L)``, 2 (default) for images ``(B, C, H, W)``, 3 for
            volumes ``(B, C, D, H, W)``.
        device, dtype: factory keywords, as torch layers take them.

    In 1-D and 3-D: (1) pools over all spatial axes (``L``, or ``D, H, W``); the channel part (2)-(6)
    is unchanged; (7) takes the channel-wise mean and max at every position; (8)-(9) use a shared
    ``Conv1d``/``Conv3d`` with kernel ``k`` in every axis and two ``BatchNorm1d``/``BatchNorm3d``. The
    same state-dict keys as in 2-D; only the spatial kernel's shape differs (``(1, 2, k)``,
    ``(1, 2, k, k, k)``). On a map with one row, ``(B, C, 1, L)``, the 2-D module equals the 1-D one whose
    kernel is the middle row of the 2-D kernel (zero padding: the other rows only see zeros); on a
    depth-1 volume the 3-D module equals the 2-D one whose kernel is the middle depth slice.

    Gates: ``channel.gate`` outputs ``a_c`` ``(B, C)``; ``spatial.gate`` outputs both spatial maps as
    ``(B, 2, *S)`` (important, sub-important), so :func:`plugattn.capture_attention_maps` sees them.

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
        kernel_slope: float = 2,
        kernel_offset: float = 1,
        adaptive: bool = True,
        spatial_dims: int = 2,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        gamma: float | None = None,
        b: float | None = None,
    ) -> None:
        super().__init__()
        channels = check_int("channels", channels, minimum=1)
        self.spatial_dims = check_spatial_dims(spatial_dims, "HAM")
        check_float("separation_rate", separation_rate, low=0, high=1, low_open=True, high_open=True)
        check_int("spatial_kernel_size", spatial_kernel_size, minimum=1, odd=True)
        slope, offset = eca_rule("HAM", kernel_slope, kernel_offset, gamma, b)
        if channel_kernel_size is None:
            channel_kernel_size = eca_kernel_size(channels, slope, offset)
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
        factory = {"device": device, "dtype": dtype, "spatial_dims": spatial_dims}
        self.channel = HAMChannel(channels, kernel_size=channel_kernel_size, adaptive=adaptive, **factory)
        self.spatial = HAMSpatial(spatial_kernel_size, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(self, x)
        params = tuple(self.parameters())
        if ham_fast.usable(x, *params):
            return self._forward_native(x, params)
        if ham_fast.usable_in_float32(x, *params):  # CPU autocast: HAM in float32, natively
            with torch.autocast("cpu", enabled=False):
                if x.dtype == torch.bfloat16:  # the passes read and write the bf16 map as it is
                    return self._forward_native(x, params)
                return self._forward_native(x.float(), params).to(x.dtype)
        a_c = self.channel(x)  # (B, C)
        w1, w2 = self._separate(a_c)
        if not (torch.is_grad_enabled() and (x.requires_grad or a_c.requires_grad)):
            # Inference: nothing to keep for a backward, so fewer and larger operations.
            weights = torch.stack((w1, w2), dim=1)  # (B, 2, C)
            sizes = (self.important_channels, self.subimportant_channels)
            a_s = self.spatial(*ham_passes.descriptors_inference(x, weights, sizes))  # (B, 2, *S)
            return ham_passes.recombine_inference(x, weights, a_s)
        d1, d2 = ham_passes.GroupDescriptors.apply(
            x, w1, w2, self.important_channels, self.subimportant_channels
        )  # (B, 2, *S) each
        a_s = self.spatial(d1, d2)  # (B, 2, *S)
        return ham_passes.Recombine.apply(x, w1, w2, a_s[:, 0:1], a_s[:, 1:2])

    def _separate(self, a_c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Step (6) as the group weights ``w1 = a_c·m1``, ``w2 = a_c·(1 - m1)`` ``(B, C)``: hard, per
        sample, the mask without gradient (it reaches a_c through F'); F1 = x·w1, F2 = x·w2 as masking
        F' = x·a_c gives, without materialising F'; w2 is exactly 0 where m1 = 1."""
        # Unsorted: the same set (torch's CPU top-k selects first and then only sorts the selection),
        # and a fifth to a sixth of the time at 64-256 channels (268 against 45 µs at 256 × 64).
        top = a_c.detach().topk(self.important_channels, dim=1, sorted=False).indices  # (B, c_im)
        w1 = a_c * torch.zeros_like(a_c).scatter_(1, top, 1.0)  # (B, C)
        return w1, a_c - w1

    def _forward_native(self, x: torch.Tensor, params: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The same steps with the passes over ``x`` as fused C kernels (:mod:`.ham_fast`); ``params``: the
        module's parameters."""
        sizes = (self.important_channels, self.subimportant_channels)
        if not (torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params))):
            return self._forward_fused(x) if self._fuses(x) else self._forward_steps(x)
        f_avg, f_max, token, tape = ham_fast.pool_with_autograd(x, sizes)
        w1, w2 = self._separate(self.channel.mix(f_avg, f_max, native=True))
        d1, d2 = ham_fast.descriptors_with_autograd(x, w1, w2, token, tape)
        return ham_fast.recombine_with_autograd(x, w1, w2, self.spatial(d1, d2), token, tape)

    def _forward_steps(self, x: Tensor) -> Tensor:
        """Native inference pass by pass: the module's own layers (and their hooks) between the kernels."""
        f_avg, f_max, _ = ham_fast.pool(x)
        w1, w2 = self._separate(self.channel.mix(f_avg, f_max, native=True))
        d1, d2, _, _ = ham_fast.descriptors(x, w1, w2, self.important_channels, self.subimportant_channels)
        return ham_fast.recombine(x, w1, w2, self.spatial(d1, d2))

    def _fuses(self, x: Tensor) -> bool:
        """Whether an inference call on ``x`` (native) can run as :func:`ham_fast.evaluate`: a 2-D map, a
        square spatial kernel, both BatchNorms in eval mode with running statistics, the submodules HAM's
        own classes, and no hook on any of them (each would have to see its call)."""
        channel, spatial = self.channel, self.spatial
        if (type(channel), type(spatial)) != (HAMChannel, HAMSpatial):
            return False
        norms = (spatial.norm_important, spatial.norm_subimportant)
        # The layers the steps would call (or stand in for): listed, not walked, to keep a batch-1 call
        # cheap; their classes are fixed, so nothing else is reached.
        parts = (channel, channel.conv, channel.gate, spatial, spatial.conv, *norms, spatial.gate)
        return (
            self.spatial_dims == 2
            and spatial.conv.weight.shape[-1] == spatial.conv.weight.shape[-2]
            and all(type(n) is nn.BatchNorm2d and not n.training and n.running_var is not None for n in norms)
            and all(type(g) is nn.Sigmoid for g in (channel.gate, spatial.gate))
            and not hooked(parts)
        )

    def _forward_fused(self, x: Tensor) -> Tensor:
        """Eval-mode inference in one C pass per sample; the samples it leaves (a value that is not
        finite, or a near-tie at the border of the important group) go through the steps one by one."""
        scale_shift = []
        for norm in (self.spatial.norm_important, self.spatial.norm_subimportant):  # one feature each
            scale = 1 / math.sqrt(norm.running_var.item() + norm.eps)
            scale = scale if norm.weight is None else scale * norm.weight.item()
            shift = -norm.running_mean.item() * scale + (0.0 if norm.bias is None else norm.bias.item())
            scale_shift += [scale, shift]
        norm = torch.tensor(scale_shift, dtype=torch.float32)
        mix = (self.channel.alpha.item(), self.channel.beta.item()) if self.channel.adaptive else None
        out, flags = ham_fast.evaluate(
            x, self.channel.conv.weight, mix, self.important_channels, self.spatial.conv.weight, norm
        )
        if flags.any():
            left = flags.nonzero().squeeze(1)
            out[left] = self._forward_steps(x[left])
        return out

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, separation_rate={self.separation_rate}, "
            f"important_channels={self.important_channels}"
        ) + (f", spatial_dims={self.spatial_dims}" if self.spatial_dims != 2 else "")
