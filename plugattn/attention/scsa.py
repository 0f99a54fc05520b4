"""SCSA — Spatial and Channel Synergistic Attention.

Y. Si, H. Xu, X. Zhu, W. Zhang, Y. Dong, Y. Chen, H. Li, "SCSA: Exploring the Synergistic Effects
Between Spatial and Channel Attention", arXiv 2407.05128 (Neurocomputing 2025).
https://arxiv.org/abs/2407.05128 — authors' code: https://github.com/HZAI-ZJNU/SCSA

Implemented as ``spec/scsa.md`` of this project says: the same function and the same state-dict keys
as the authors' module, so their checkpoints load and give the same outputs, with their bugs fixed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from plugattn._checks import check_choice, check_divisible, check_float, check_int
from plugattn._dims import check_spatial_dims, conv_nd
from plugattn.attention import pcsa_fast, scsa_fast, scsa_gates
from plugattn.attention._common import GateHolder, check_feature_map, hooked, spatial_axes
from plugattn.attention.registry import register_attention

__all__ = ["SCSA"]

_DOWN_SAMPLE_MODES = ("avg_pool", "max_pool")
_GATE_LAYERS = ("sigmoid", "softmax")
_CONV_NAMES = ("local_dwc", "global_dwc_s", "global_dwc_m", "global_dwc_l")
# SMSA's GroupNorm of each spatial axis, by the axis's letter: a signal's L is the last axis (W), a
# volume adds D in front, so 2-D has the reference's norm_h and norm_w.
_AXIS_NORMS = ("norm_d", "norm_h", "norm_w")
_HALF = (torch.bfloat16, torch.float16)
_POOLS = {
    "avg_pool": {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d},
    "max_pool": {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d},
}


@register_attention("scsa", paper="Si et al., arXiv 2407.05128, SCSA", position="before_last_conv")
class SCSA(nn.Module):
    r"""Spatial and Channel Synergistic Attention: SMSA guiding PCSA.

    With ``x`` of shape ``(B, C, H, W)`` and ``G = C / 4``:

    SMSA (shareable multi-semantic spatial attention):

    * (1) ``x_h = mean_W(x)`` ``(B, C, H)``; ``x_w = mean_H(x)`` ``(B, C, W)``.
    * (2) channel group ``i`` of both goes through its own depthwise ``Conv1d(G, G, k_i)``,
      ``k = (3, 5, 7, 9)``; the same four convs serve the H and the W sequences.
    * (3) ``a_h = σ(GN_h(concat_i ...))`` ``(B, C, H, 1)``, ``a_w = σ(GN_w(...))`` ``(B, C, 1, W)``,
      ``GroupNorm(4, C)`` each.
    * (4) ``x_s = x · a_h · a_w``.

    PCSA (progressive channel-wise self-attention), on ``x_s``:

    * (5) ``y = Pool_{w×w, stride w}(x_s)``, ``N = h'·w'`` (``window_size=-1``: global average).
    * (6) ``y = GN(y)``, ``GroupNorm(1, C)``.
    * (7) ``q, k, v`` = depthwise 1×1 convs of ``y`` (per-channel scales).
    * (8) per head, channels are the tokens: ``attn = softmax(q kᵀ · (C/heads)^-½)``, then dropout.
    * (9) ``a_c = σ(mean_N(attn · v))`` ``(B, C, 1, 1)`` (computed as ``attn · mean_N(v)``, equal since
      the mean is linear).
    * (10) output ``a_c · x_s``.

    ``gate_layer='softmax'`` replaces the spatial sigmoid by a softmax over positions and the channel
    sigmoid by a softmax over channels (as the reference supports).

    Args:
        channels: input channels C, a multiple of 4 and of ``head_num``.
        head_num: attention heads of PCSA (default 1, as every official config).
        window_size: pooling window of PCSA (default 7); ``-1`` pools globally.
        group_kernel_sizes: the four odd kernel sizes of SMSA's depthwise convs (default (3, 5, 7, 9)).
        qkv_bias: biases on q, k, v (default False).
        down_sample_mode: ``'avg_pool'`` (default) or ``'max_pool'``.
        attn_drop_ratio: dropout on the attention matrix (default 0; the ResNet-101 config uses 0.1).
        gate_layer: ``'sigmoid'`` (default) or ``'softmax'``: a name, as the reference's configs give it,
            not a layer class as in SE/ECA/CBAM, because it sets how *both* gates normalise (softmax
            over positions for the spatial maps, over channels for the channel weights).
        spatial_dims: 1 for signals ``(B, C, L)``, 2 (default) for images ``(B, C, H, W)``, 3 for
            volumes ``(B, C, D, H, W)``.
        device, dtype: factory keywords, as torch layers take them.

    In 1-D and 3-D: SMSA pools along each spatial axis — for each axis the mean over the other spatial
    axes, a ``(B, C, n_axis)`` sequence (a signal is its own sequence) — runs every sequence through the
    same four depthwise convs, then the axis's own ``GroupNorm(4, C)`` and the gate; ``x_s`` is ``x``
    times each axis's gate broadcast along that axis. PCSA pools with a ``w`` window in every spatial
    axis (``min(w, n)`` per axis), ``N`` the number of pooled positions; q, k, v are depthwise 1×1
    convs with ``spatial_dims`` axes; the attention across channels is unchanged. The per-axis norms
    are named after the axes: ``norm_w`` alone in 1-D, ``norm_d, norm_h, norm_w`` in 3-D, so the
    state-dict keys are the 2-D keys less ``norm_h.*`` in 1-D and plus ``norm_d.*`` in 3-D
    (``16·C - 2·C`` and ``16·C + 2·C`` parameters); q/k/v weights are ``(C, 1, 1)`` and
    ``(C, 1, 1, 1, 1)``. The 2-D module on a one-row map ``(B, C, 1, L)`` is not the 1-D module: its
    H sequence has length 1 and becomes a per-channel gate ``σ(GN_h(...))`` that 1-D has not (likewise
    the D gate of a depth-1 volume in 3-D). With ``gate_layer='softmax'`` that gate is a softmax over
    one position, exactly 1, and the modules agree.

    State-dict keys (2-D) equal the reference's: ``local_dwc.*``, ``global_dwc_{s,m,l}.*``, ``norm_h.*``,
    ``norm_w.*``, ``norm.*``, ``{q,k,v}.weight`` (+ biases with ``qkv_bias``): 16·C parameters with the
    defaults. Gates: ``spatial.gate`` fires once per spatial axis, twice in 2-D (``a_h`` then ``a_w``,
    ``(B, C, n)`` before the reshape), ``channel.gate`` once (``a_c``).

    Differences from the reference code (none change its function where it runs):
        * Maps smaller than the window are pooled with ``min(window_size, H) × min(window_size, W)``
          instead of crashing ("Output size is too small"); equal to the reference wherever it runs.
        * ``channels % 4``, ``channels % head_num``, unknown ``down_sample_mode``/``gate_layer`` and
          the unimplemented ``'recombination'`` mode raise ``ValueError`` at construction.
        * The four SMSA convs run as one depthwise conv whose kernel zero-pads each group's kernel to
          the largest, over both directions in one call (same function, fewer kernel launches).
        * ``window_size=-1`` pools globally by average whatever ``down_sample_mode`` says, as the
          reference does.
        * The reference's unused ``fuse_bn``, ``norm_cfg`` and ``act_cfg`` arguments are not taken.
    """

    def __init__(
        self,
        channels: int,
        *,
        head_num: int = 1,
        window_size: int = 7,
        group_kernel_sizes: Sequence[int] = (3, 5, 7, 9),
        qkv_bias: bool = False,
        down_sample_mode: str = "avg_pool",
        attn_drop_ratio: float = 0.0,
        gate_layer: str = "sigmoid",
        spatial_dims: int = 2,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        channels = check_int("channels", channels, minimum=4)
        self.spatial_dims = check_spatial_dims(spatial_dims, "SCSA")
        check_divisible("channels", channels, 4, "the number of SMSA groups")
        check_int("head_num", head_num, minimum=1)
        check_divisible("channels", channels, head_num, "head_num")
        check_int("window_size", window_size, minimum=-1)
        if window_size == 0:
            raise ValueError("window_size must be a positive window or -1 (global pooling), got 0")
        if isinstance(group_kernel_sizes, (str, bytes)) or len(group_kernel_sizes) != 4:
            raise ValueError(
                f"group_kernel_sizes must be a sequence of 4 odd kernel sizes, got {group_kernel_sizes!r}"
            )
        for i, k in enumerate(group_kernel_sizes):
            check_int(f"group_kernel_sizes[{i}]", k, minimum=1, odd=True)
        if not isinstance(qkv_bias, bool):
            raise ValueError(f"qkv_bias must be True or False, got {qkv_bias!r}")
        if down_sample_mode == "recombination":
            raise ValueError(
                "down_sample_mode='recombination' is not supported (the reference crashes on it at "
                "construction); use 'avg_pool' or 'max_pool'"
            )
        check_choice("down_sample_mode", down_sample_mode, _DOWN_SAMPLE_MODES)
        check_float("attn_drop_ratio", attn_drop_ratio, low=0, high=1, high_open=True)
        check_choice("gate_layer", gate_layer, _GATE_LAYERS)

        factory = {"device": device, "dtype": dtype}
        self.channels = channels
        self.head_num = head_num
        self.head_dim = channels // head_num
        self.scaler = self.head_dim**-0.5
        self.window_size = window_size
        self.group_kernel_sizes = tuple(group_kernel_sizes)
        self.down_sample_mode = down_sample_mode
        self.gate_layer = gate_layer
        self.group_chans = g = channels // 4

        for name, k in zip(_CONV_NAMES, self.group_kernel_sizes, strict=True):
            self.add_module(name, nn.Conv1d(g, g, k, padding=k // 2, groups=g, **factory))
        self._axis_norms = _AXIS_NORMS[-spatial_dims:]  # ("norm_h", "norm_w") in 2-D
        for name in self._axis_norms:
            self.add_module(name, nn.GroupNorm(4, channels, **factory))
        self.norm = nn.GroupNorm(1, channels, **factory)
        conv = conv_nd(spatial_dims)
        self.q = conv(channels, channels, 1, groups=channels, bias=qkv_bias, **factory)
        self.k = conv(channels, channels, 1, groups=channels, bias=qkv_bias, **factory)
        self.v = conv(channels, channels, 1, groups=channels, bias=qkv_bias, **factory)
        self.attn_drop = nn.Dropout(attn_drop_ratio)
        softmax = gate_layer == "softmax"
        # Spatial gate over positions (dim 2 of (B, C, L)); channel gate over channels.
        self.spatial = GateHolder(nn.Softmax(dim=2) if softmax else nn.Sigmoid())
        self.channel = GateHolder(nn.Softmax(dim=1) if softmax else nn.Sigmoid())
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The reference backbones' init: q/k/v Kaiming-normal (fan_out, ReLU), GroupNorm 1/0."""
        for conv in (self.q, self.k, self.v):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        for norm in self._norms():
            nn.init.ones_(norm.weight)
            nn.init.zeros_(norm.bias)

    def _group_convs(self) -> list[nn.Module]:
        """SMSA's four depthwise convs, smallest kernel group first (the state dict's order)."""
        return [getattr(self, name) for name in _CONV_NAMES]

    def _norms(self) -> list[nn.Module]:
        """The axes' GroupNorms (``norm_h``, ``norm_w`` in 2-D), then PCSA's ``norm``."""
        return [getattr(self, name) for name in self._axis_norms] + [self.norm]

    def _smsa_kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The four group convs as one depthwise kernel ``(C, 1, k_max)`` and bias ``(C,)``."""
        k_max = max(self.group_kernel_sizes)
        weights, biases = [], []
        for conv in self._group_convs():
            pad = (k_max - conv.kernel_size[0]) // 2
            weights.append(F.pad(conv.weight, (pad, pad)))  # (G, 1, k_max), centred
            biases.append(conv.bias)
        return torch.cat(weights), torch.cat(biases)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(self, x)
        if self.spatial_dims == 2 and self.down_sample_mode == "avg_pool":
            params = tuple(self.parameters())
            if scsa_fast.usable(x, *params):
                return self._forward_native(x, params)
            if scsa_fast.usable_in_float32(x, *params):  # CPU autocast: float32, natively
                with torch.autocast("cpu", enabled=False):
                    if x.dtype == torch.bfloat16 and scsa_fast.reads_bf16(x):  # the bf16 map as it is
                        return self._forward_native(x, params)
                    return self._forward_native(x.float(), params).to(x.dtype)
        return self._pcsa(self._smsa(x))

    def _forward_native(self, x: torch.Tensor, params: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The same steps with the passes over ``x`` as fused C kernels (:mod:`.scsa_fast`); ``x_s`` is
        never stored. The global pooling (``window_size=-1``) is the window of the whole map. ``params``:
        the module's parameters."""
        h, w = x.shape[2:]
        window = (h, w) if self.window_size == -1 else (min(self.window_size, h), min(self.window_size, w))
        if not (torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params))):
            return self._forward_fused(x, window) if self._fuses() else self._forward_steps(x, window)
        x_h, x_w, token, tape = scsa_fast.means_with_autograd(x, window)
        a_h, a_w = self._smsa_gates([x_h, x_w], native=True)
        a_c = self._pcsa_gate(scsa_fast.window_pool_with_autograd(x, a_h, a_w, token, tape), native=True)
        return scsa_fast.output_with_autograd(x, a_h, a_w, a_c, token, tape)

    def _forward_steps(self, x: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
        """Native inference pass by pass: the module's own layers (and their hooks) between the kernels."""
        a_h, a_w = self._smsa_gates(list(scsa_fast.means(x)), native=True)
        a_c = self._pcsa_gate(scsa_fast.window_pool(x, a_h, a_w, window), native=True)
        return scsa_fast.output(x, a_h, a_w, a_c)

    def _fuses(self) -> bool:
        """Whether a native inference call can run as :func:`scsa_fast.evaluate`: both gates' parts as
        :meth:`_fuses_smsa` and :meth:`_fuses_pcsa` ask."""
        return self._fuses_smsa() and self._fuses_pcsa()

    def _fuses_pcsa(self) -> bool:
        """Whether PCSA's gate of a native call can run as one C pass (:mod:`.scsa_gates`): a sigmoid
        channel gate, the norm and q, k, v SCSA's own classes (the norm affine with one group), no active
        dropout on the attention, and no hook on any of them."""
        parts = [self.channel, self.channel.gate, self.norm, self.q, self.k, self.v, self.attn_drop]
        return (
            type(self.channel.gate) is nn.Sigmoid
            and type(self.norm) is nn.GroupNorm
            and self.norm.affine
            and self.norm.num_groups == 1
            and all(type(conv) is nn.Conv2d for conv in (self.q, self.k, self.v))
            and not (self.training and self.attn_drop.p > 0)
            and not hooked(parts)
        )

    def _fuses_smsa(self) -> bool:
        """Whether SMSA's gates of a native call can run as one C pass (:mod:`.scsa_gates`): a 2-D map,
        a sigmoid gate, the four convs and both axis norms SCSA's own classes (the norms affine, 4 groups),
        and no hook on any of them (each would have to see its call)."""
        if self.spatial_dims != 2:
            return False
        convs, norms = self._group_convs(), [self.norm_h, self.norm_w]
        # The layers the steps would call: listed, not walked, to keep a batch-1 call cheap.
        return (
            type(self.spatial.gate) is nn.Sigmoid
            and all(type(conv) is nn.Conv1d for conv in convs)
            and all(conv.weight.shape == (self.group_chans, 1, conv.kernel_size[0]) for conv in convs)
            and all(type(n) is nn.GroupNorm and n.affine and n.num_groups == 4 for n in norms)
            and not hooked([self.spatial, self.spatial.gate, *convs, *norms])
        )

    def _forward_fused(self, x: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
        """Inference in one C pass per sample; the samples it leaves (means that are not finite) go
        through the steps one by one."""
        convs = self._group_convs()
        tensors = [conv.weight for conv in convs] + [conv.bias for conv in convs]
        for norm in self._norms():  # norm_h, norm_w, norm: 2-D
            tensors += [norm.weight, norm.bias]
        for conv in (self.q, self.k, self.v):
            tensors += [conv.weight, conv.bias]
        if not all(t is None or t.is_contiguous() for t in tensors):
            tensors = [t if t is None else t.contiguous() for t in tensors]
        sizes = tuple(conv.kernel_size[0] for conv in convs)
        params = scsa_fast.pack(tensors, sizes, self.channels)
        eps = (float(self.norm_h.eps), float(self.norm_w.eps), float(self.norm.eps))
        out, flags = scsa_fast.evaluate(x, params, max(sizes), eps, window, self.head_num, self.scaler)
        if flags.any():
            left = flags.nonzero().squeeze(1)
            out[left] = self._forward_steps(x[left], window)
        return out

    def _smsa(self, x: torch.Tensor) -> torch.Tensor:
        """Steps (1)-(4): ``x_s = x · Π_axis a_axis`` for ``x`` ``(B, C, *S)``."""
        b, c = x.shape[:2]
        axes = spatial_axes(x)
        # One sequence per spatial axis, the mean over the other spatial axes: (B, C, n_axis) each
        # (x_h = mean_W, x_w = mean_H in 2-D; a signal is its own sequence).
        seqs = [x.mean(dim=tuple(o for o in axes if o != a)) if len(axes) > 1 else x for a in axes]
        for i, a in enumerate(self._smsa_gates(seqs)):
            shape = [b, c] + [1] * len(axes)
            shape[2 + i] = a.shape[2]
            x = x * a.reshape(shape)  # a_h (B, C, H, 1), a_w (B, C, 1, W) in 2-D
        return x

    def _smsa_gates(self, seqs: list[torch.Tensor], native: bool = False) -> list[torch.Tensor]:
        """Steps (2)-(3): each axis's gate ``(B, C, n_axis)`` from its pooled sequence; ``native``: both
        gates as one C pass (:func:`scsa_gates.smsa_gates`) where :meth:`_fuses_smsa`, else the depthwise
        convolution as the native path's C kernel instead of ``F.conv1d``."""
        b, c = seqs[0].shape[:2]
        weight, bias = self._smsa_kernel()
        if native and self._fuses_smsa():
            return list(scsa_gates.smsa_gates(*seqs, weight, bias, (self.norm_h, self.norm_w)))
        pad = weight.shape[-1] // 2
        # All directions in one call: [x_h | pad zeros | x_w]; the gap of `pad` zeros is exactly the
        # zero padding each sequence would get alone, so the sequences never see each other.
        parts = seqs[:1]
        for seq in seqs[1:]:
            parts += [seq.new_zeros(b, c, pad), seq]
        seq = torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]  # (B, C, Σ n + (d - 1)·pad)
        if native:
            s = scsa_fast.depthwise_conv1d(seq, weight, bias)
        else:
            s = F.conv1d(seq, weight, bias, padding=pad, groups=c)  # same length
        gates, start = [], 0
        for name, one in zip(self._axis_norms, seqs, strict=True):
            n = one.shape[2]
            gates.append(self.spatial.gate(getattr(self, name)(s[:, :, start : start + n])))  # (B, C, n)
            start = start + n + pad
        return gates

    def _pcsa(self, x: torch.Tensor) -> torch.Tensor:
        """Steps (5)-(10) on ``x_s`` ``(B, C, *S)``."""
        if self.window_size == -1:
            y = x.mean(dim=spatial_axes(x), keepdim=True)  # (B, C, 1, ...)
        else:
            y = _window_pool(x, self.window_size, self.down_sample_mode)  # (B, C, *S'): h', w' in 2-D
        return x * self._pcsa_gate(y)

    def _pcsa_gate(self, y: torch.Tensor, native: bool = False) -> torch.Tensor:
        """Steps (6)-(9): the channel gate ``a_c`` ``(B, C, 1, ...)`` from the pooled ``x_s``; ``native``:
        q, k, v (depthwise 1×1 convs: per-channel scales) as multiplications, which took a third to a
        sixth of the convs' time (forward + backward) on the CPU's small pooled maps, and the attention
        without active dropout over few positions as one C kernel that never stores the logits
        (:mod:`.pcsa_fast`), or all of it as one C pass (:func:`scsa_gates.pcsa_gate`) where
        :meth:`_fuses_pcsa`."""
        if native and self._fuses_pcsa():
            return scsa_gates.pcsa_gate(y, self.norm, (self.q, self.k, self.v), self.head_num, self.scaler)
        b, c = y.shape[:2]
        y = self.norm(y)
        q, k, v = (_scale(conv, y) if native else conv(y) for conv in (self.q, self.k, self.v))
        shape = (b, self.head_num, self.head_dim, -1)
        q = q.reshape(shape)  # (B, heads, C/heads, N): channels are the tokens
        k = k.reshape(shape)
        v = v.mean(dim=spatial_axes(y)).reshape(b, self.head_num, self.head_dim, 1)  # mean_N(v)
        dropout = self.attn_drop.p > 0 and self.training
        if native and not dropout and pcsa_fast.pays(q.shape[-1], self.head_dim) and pcsa_fast.available():
            rows = (b * self.head_num, self.head_dim, -1)  # (B·heads, C/heads, N)
            q, k, v = q.reshape(rows), k.reshape(rows), v.reshape(rows[:2])
            o = pcsa_fast.channel_attention(q, k, v, self.scaler)
        else:
            attn = (q @ k.transpose(-2, -1)) * self.scaler  # (B, heads, C/heads, C/heads)
            o = self.attn_drop(attn.softmax(dim=-1)) @ v  # (B, heads, C/heads, 1)
        return self.channel.gate(o.reshape(b, c, *[1] * (y.dim() - 2)))  # (B, C, 1, ...)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, head_num={self.head_num}, window_size={self.window_size}, "
            f"down_sample_mode={self.down_sample_mode!r}, gate_layer={self.gate_layer!r}"
        ) + (f", spatial_dims={self.spatial_dims}" if self.spatial_dims != 2 else "")


def _scale(conv: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """A depthwise 1×1 conv ``(C, 1, 1, ...)`` applied as what it is: ``y · w_c (+ b_c)`` per channel."""
    shape = (1, -1, *[1] * (y.dim() - 2))
    out = y * conv.weight.reshape(shape)
    return out if conv.bias is None else out + conv.bias.reshape(shape)


def _window_pool(x: torch.Tensor, window_size: int, mode: str) -> torch.Tensor:
    """``AvgPool``/``MaxPool`` (``spatial_dims``-D) with kernel = stride = the largest window that fits,
    ``min(window_size, n)`` in each spatial axis (``(min(w, H), min(w, W))`` in 2-D), floor mode:
    equals the reference wherever the reference runs.

    Under ``torch.export`` (and so ONNX) the sizes are symbolic and a pooling kernel must be a
    number, which would bake in the window of the size the model was traced at; there the same
    pooling is written as indexing + reshape + reduce, so the window follows the input size. (torch
    2.13 still records whether each pooled side is 1, which limits a saved ``torch.export`` program
    with dynamic sizes to that regime; the ONNX graph has no such check: docs/export.md.)
    """
    sizes = x.shape[2:]
    if not any(isinstance(n, torch.SymInt) for n in sizes):
        window = tuple(min(window_size, n) for n in sizes)
        if mode == "avg_pool" and len(sizes) == 3 and x.device.type == "cpu" and x.dtype in _HALF:
            # torch has no CPU avg_pool3d in bfloat16/float16: pool in float32, round once.
            return F.avg_pool3d(x.float(), window, window).to(x.dtype)
        return _POOLS[mode][len(sizes)](x, window, window)
    windows = [torch.sym_min(window_size, n) for n in sizes]
    counts = [n // k for n, k in zip(sizes, windows, strict=True)]
    blocks = x
    for i, (o, k) in enumerate(zip(counts, windows, strict=True)):
        # The rows (columns, slices) that whole windows cover.
        blocks = blocks.index_select(2 + i, torch.arange(o * k, device=x.device))
    split = [v for ok in zip(counts, windows, strict=True) for v in ok]
    blocks = blocks.reshape(*x.shape[:2], *split)  # (B, C, h', kh, w', kw) in 2-D
    inner = tuple(range(3, 3 + 2 * len(sizes), 2))  # the axes within a window
    return blocks.mean(dim=inner) if mode == "avg_pool" else blocks.amax(dim=inner)
