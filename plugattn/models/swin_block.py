"""The Swin Transformer block: (shifted) window self-attention with a relative position bias, and an MLP.

Z. Liu, Y. Lin, Y. Cao, H. Hu, Y. Wei, Z. Zhang, S. Lin, B. Guo, "Swin Transformer: Hierarchical Vision
Transformer using Shifted Windows", ICCV 2021, https://arxiv.org/abs/2103.14030; the authors' code:
https://github.com/microsoft/Swin-Transformer. The network is :mod:`plugattn.models.swin`.

Tokens are ``(B, H, W, C)`` (channels last, as timm keeps them). Two consecutive blocks compute (paper
eq. 3)

    ẑ^l     = W-MSA(LN(z^(l-1))) + z^(l-1),      z^l     = MLP(LN(ẑ^l)) + ẑ^l
    ẑ^(l+1) = SW-MSA(LN(z^l)) + z^l,             z^(l+1) = MLP(LN(ẑ^(l+1))) + ẑ^(l+1)        (1)

``MLP`` is ``Linear(C, rC) → GELU → Linear(rC, C)`` (``r = mlp_ratio = 4``). W-MSA splits the map into
non-overlapping ``M × M`` windows and runs multi-head self-attention inside each, per head of width
``d = C / heads`` (paper eq. 4):

    Attention(Q, K, V) = SoftMax(Q Kᵀ / √d + B) V,   B[i, j] = B̂[y_i − y_j + M − 1, x_i − x_j + M − 1]  (2)

``B̂`` (``relative_position_bias_table``, ``(2M − 1)² × heads``) is learnt; ``(y_i, x_i)`` is token ``i``'s
place in its window, ``i`` the query and ``j`` the key. SW-MSA uses the partition displaced by
``s = ⌊M / 2⌋`` along both axes, whose border windows are smaller. It is computed, as in the paper, by a
cyclic shift: roll the map by ``−s``, run W-MSA with an additive mask, roll back by ``+s``:

    mask[w, i, j] = 0 if tokens i, j of window w lie in the same window of the displaced partition,
                    −100 otherwise (the tokens that the roll brought together from opposite borders)  (3)

so every token attends exactly the tokens of its displaced window (``tests/models/test_swin.py`` checks
this against the displaced partition itself). Where a map side is at most ``M``, the window is clipped
to that side and the shift along it is 0 (per axis, as the authors' code and timm).

Stochastic depth (Huang et al. 2016, https://arxiv.org/abs/1603.09382): while training, each residual
branch of eq. (1) is dropped for a whole sample with probability ``p`` and kept ones are scaled by
``1 / (1 − p)``; the identity in eval mode.

Differences from the paper and timm:

* ``−100`` in eq. (3) is the authors' (and timm's) value; the paper only says "masking" (``e^(−100)``
  is 0 in float32 next to the other weights).
* Windows must tile each map exactly; a map that is not a multiple of its window raises ``ValueError``
  when the network is built (the paper's sizes always tile; timm zero-pads such maps after the shift).
* No attention or projection dropout (timm's ``attn_drop``/``proj_drop``, 0 in its Swin configs).
* The softmax is explicit (timm's default path; its fused one is marked experimental), a submodule
  ``softmax`` so that a forward hook can collect the attention maps.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from plugattn._checks import check_float, check_int

__all__ = [
    "MASK_VALUE",
    "DropPath",
    "PatchMerging",
    "SwinBlock",
    "WindowAttention",
    "clipped_window",
    "relative_position_index",
    "shift_mask",
    "window_partition",
    "window_reverse",
]

MASK_VALUE = -100.0  # eq. (3): the authors' additive mask between tokens of different displaced windows

Pair = tuple[int, int]


def window_partition(x: torch.Tensor, window: Pair) -> torch.Tensor:
    """``(B, H, W, C)`` → ``(B · nW, Mh · Mw, C)``, windows in row-major order within each image."""
    b, h, w, c = x.shape
    mh, mw = window
    x = x.reshape(b, h // mh, mh, w // mw, mw, c).permute(0, 1, 3, 2, 4, 5)  # (B, H/Mh, W/Mw, Mh, Mw, C)
    return x.reshape(-1, mh * mw, c)


def window_reverse(windows: torch.Tensor, window: Pair, height: int, width: int) -> torch.Tensor:
    """The inverse of :func:`window_partition`: ``(B · nW, Mh · Mw, C)`` → ``(B, H, W, C)``."""
    mh, mw = window
    c = windows.shape[-1]
    x = windows.reshape(-1, height // mh, width // mw, mh, mw, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, height, width, c)  # (B, H, W, C)


def relative_position_index(window: Pair, device: torch.device | str | None = None) -> torch.Tensor:
    """``(N, N)`` with ``N = Mh · Mw``: the row of ``B̂`` for query ``i`` and key ``j`` (eq. 2), i.e.
    ``(y_i − y_j + Mh − 1) · (2Mw − 1) + (x_i − x_j + Mw − 1)``, tokens numbered row-major."""
    mh, mw = window
    t = torch.arange(mh * mw, device=device)
    y, x = t // mw, t % mw
    dy = y[:, None] - y[None, :] + mh - 1  # (N, N), in [0, 2Mh − 2]
    dx = x[:, None] - x[None, :] + mw - 1
    return dy * (2 * mw - 1) + dx


def _displaced_labels(
    length: int, window: int, shift: int, device: torch.device | str | None
) -> torch.Tensor:
    """Along one rolled axis: 0 for tokens that were inside, 1 for the part of the last window that was
    inside, 2 for the ``shift`` tokens the roll wrapped around from the other border."""
    i = torch.arange(length, device=device)
    if shift == 0:
        return torch.zeros_like(i)
    return (i >= length - window).long() + (i >= length - shift).long()


def shift_mask(
    size: Pair,
    window: Pair,
    shift: Pair,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor | None:
    """Eq. (3) for a rolled ``size`` map: ``(nW, N, N)`` of 0 and :data:`MASK_VALUE`; ``None`` without
    a shift."""
    if not any(shift):
        return None
    rows = _displaced_labels(size[0], window[0], shift[0], device)  # (H,)
    cols = _displaced_labels(size[1], window[1], shift[1], device)  # (W,)
    labels = (3 * rows[:, None] + cols[None, :])[None, :, :, None]  # (1, H, W, 1): one label per region
    labels = window_partition(labels, window)[..., 0]  # (nW, N)
    different = labels[:, :, None] != labels[:, None, :]  # (nW, N, N)
    return torch.zeros(different.shape, device=device, dtype=dtype).masked_fill(different, MASK_VALUE)


class DropPath(nn.Module):
    """Stochastic depth: zero the whole input of a sample with probability ``p`` while training, scale
    the others by ``1 / (1 − p)``; the identity in eval mode or with ``p = 0``."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = check_float("drop_path", p, low=0, high=1, high_open=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - self.p)  # (B, 1, ..., 1)
        return x * keep / (1 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p:.3f}"


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window with the relative position bias of eq. (2).

    Args:
        dim: token channels ``C``, divisible by ``num_heads``.
        num_heads: heads; each attends with ``d = C / num_heads`` channels.
        window: ``(Mh, Mw)``.
        device, dtype: factory keywords.

    Keys are timm's: ``qkv`` (with bias), ``proj``, ``relative_position_bias_table``; the index into the
    table is a non-persistent buffer ``relative_position_index`` (not in the state dict, as in timm).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window: Pair,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.num_heads = check_int("num_heads", num_heads, minimum=1)
        if check_int("dim", dim, minimum=1) % num_heads:
            raise ValueError(f"dim must be divisible by num_heads={num_heads}, got dim={dim}")
        f = {"device": device, "dtype": dtype}
        self.window = window
        self.scale = (dim // num_heads) ** -0.5  # 1 / √d
        table = torch.empty((2 * window[0] - 1) * (2 * window[1] - 1), num_heads, **f)
        self.relative_position_bias_table = nn.Parameter(table)  # B̂, one column per head
        self.register_buffer(
            "relative_position_index", relative_position_index(window, device), persistent=False
        )
        self.qkv = nn.Linear(dim, 3 * dim, **f)
        self.proj = nn.Linear(dim, dim, **f)
        self.softmax = nn.Softmax(dim=-1)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def relative_position_bias(self) -> torch.Tensor:
        """``B`` of eq. (2), ``(heads, N, N)``."""
        return self.relative_position_bias_table[self.relative_position_index].permute(2, 0, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``(B · nW, N, C)``; ``mask``: ``(nW, N, N)`` or ``None``."""
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B · nW, heads, N, d)
        attn = (q * self.scale) @ k.transpose(-2, -1) + self.relative_position_bias()  # (B · nW, heads, N, N)
        if mask is not None:  # eq. (3): windows are image-major, so the mask repeats every nW windows
            nw = mask.shape[0]
            attn = (attn.reshape(-1, nw, self.num_heads, n, n) + mask[:, None]).reshape(
                bw, self.num_heads, n, n
            )
        x = self.softmax(attn) @ v  # (B · nW, heads, N, d)
        return self.proj(x.transpose(1, 2).reshape(bw, n, c))

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, window={self.window}"


def clipped_window(size: Pair, window: int) -> tuple[Pair, Pair]:
    """The window and shift of a block at a ``size`` map: ``window`` and ``window // 2`` along each axis,
    or the side and no shift along an axis of at most ``window`` tokens."""
    win = (min(size[0], window), min(size[1], window))
    shift = (0 if size[0] <= window else window // 2, 0 if size[1] <= window else window // 2)
    return win, shift


class SwinBlock(nn.Module):
    """One Swin Transformer block, eq. (1): (S)W-MSA and MLP, each pre-norm with a residual.

    Args:
        dim: token channels.
        num_heads: attention heads.
        size: ``(H, W)`` of the map the block sees (fixed: the shift mask is built for it).
        window: the window side ``M``; clipped per axis where the map is smaller.
        shifted: SW-MSA (odd blocks of a stage) instead of W-MSA.
        mlp_ratio: hidden width of the MLP over ``dim`` (4).
        drop_path: stochastic-depth probability of both branches.
        device, dtype: factory keywords.

    Keys are timm's ``SwinTransformerBlock``'s: ``norm1``, ``attn.*``, ``norm2``, ``mlp.fc1``,
    ``mlp.fc2``; the mask is a non-persistent buffer ``attn_mask`` (``None`` without a shift).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        size: Pair,
        window: int,
        *,
        shifted: bool = False,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        f = {"device": device, "dtype": dtype}
        self.size = size
        self.window, shift = clipped_window(size, window)
        self.shift = shift if shifted else (0, 0)
        hidden = int(dim * check_float("mlp_ratio", mlp_ratio, low=0, low_open=True))
        self.norm1 = nn.LayerNorm(dim, **f)
        self.attn = WindowAttention(dim, num_heads, self.window, **f)
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, **f)
        self.mlp = nn.Sequential(
            OrderedDict(fc1=nn.Linear(dim, hidden, **f), act=nn.GELU(), fc2=nn.Linear(hidden, dim, **f))
        )
        self.drop_path2 = DropPath(drop_path)
        mask = shift_mask(size, self.window, self.shift, **f)
        self.register_buffer("attn_mask", mask, persistent=False)

    def window_attention(self, x: torch.Tensor) -> torch.Tensor:
        """W-MSA or SW-MSA of ``(B, H, W, C)`` tokens (already normalised), same shape back."""
        _, h, w, _ = x.shape
        sh, sw = self.shift
        if sh or sw:
            x = torch.roll(x, shifts=(-sh, -sw), dims=(1, 2))  # the displaced windows become regular ones
        windows = self.attn(window_partition(x, self.window), self.attn_mask)  # (B · nW, N, C)
        x = window_reverse(windows, self.window, h, w)
        return torch.roll(x, shifts=(sh, sw), dims=(1, 2)) if sh or sw else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.window_attention(self.norm1(x)))
        return x + self.drop_path2(self.mlp(self.norm2(x)))

    def extra_repr(self) -> str:
        return f"size={self.size}, window={self.window}, shift={self.shift}"


class PatchMerging(nn.Module):
    """Concatenate each 2×2 group of tokens (``4C``), LayerNorm, ``Linear(4C, out_dim)`` without bias:
    ``(B, H, W, C)`` → ``(B, H/2, W/2, out_dim)``. Keys ``norm``, ``reduction`` (timm's)."""

    def __init__(
        self,
        dim: int,
        out_dim: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        f = {"device": device, "dtype": dtype}
        self.norm = nn.LayerNorm(4 * dim, **f)
        self.reduction = nn.Linear(4 * dim, out_dim, bias=False, **f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The authors' order: (even row, even col), (odd, even), (even, odd), (odd, odd).
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))  # (B, H/2, W/2, out_dim)
