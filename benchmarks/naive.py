"""Straightforward transcriptions of HAM and SCSA, the yardstick for plugattn's versions.

Each is the direct reading of its spec (for SCSA: the structure of the authors' code), with the same
state-dict keys as the plugattn module so one state dict drives both. Not part of the package.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from plugattn.attention.ham import ham_important_channels


class NaiveHAM(nn.Module):
    """HAM as spec/ham.md reads: F' = x·a_c, masks, F1/F2, amax, one conv call per group."""

    def __init__(self, channels: int, kernel: int = 3) -> None:
        super().__init__()
        self.c_im = ham_important_channels(channels, 0.6)
        self.channel = nn.Module()
        self.channel.alpha = nn.Parameter(torch.full((1,), 0.5))
        self.channel.beta = nn.Parameter(torch.full((1,), 0.5))
        self.channel.conv = nn.Conv1d(1, 1, kernel, padding=kernel // 2, bias=False)
        self.spatial = nn.Module()
        self.spatial.conv = nn.Conv2d(2, 1, 7, padding=3, bias=False)
        self.spatial.norm_important = nn.BatchNorm2d(1)
        self.spatial.norm_subimportant = nn.BatchNorm2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        f_avg, f_max = x.mean((2, 3)), x.amax((2, 3))
        f_add = 0.5 * (f_avg + f_max) + self.channel.alpha * f_avg + self.channel.beta * f_max
        a_c = torch.sigmoid(self.channel.conv(f_add.unsqueeze(1)).squeeze(1))
        fp = x * a_c[:, :, None, None]
        m1 = torch.zeros_like(a_c).scatter_(1, a_c.detach().topk(self.c_im, 1).indices, 1.0)[:, :, None, None]
        f1, f2 = fp * m1, fp * (1 - m1)
        d1 = torch.cat((f1.sum(1, keepdim=True) / self.c_im, f1.amax(1, keepdim=True)), 1)
        d2 = torch.cat((f2.sum(1, keepdim=True) / (c - self.c_im), f2.amax(1, keepdim=True)), 1)
        a1 = torch.sigmoid(F.relu(self.spatial.norm_important(self.spatial.conv(d1))))
        a2 = torch.sigmoid(F.relu(self.spatial.norm_subimportant(self.spatial.conv(d2))))
        return f1 * a1 + f2 * a2


class NaiveSCSA(nn.Module):
    """SCSA in the structure of the authors' code: four convs per direction, pooling module,
    ``(attn @ v).mean`` over positions. (Windows clipped to the map, so small maps run.)"""

    def __init__(self, channels: int, window_size: int = 7) -> None:
        super().__init__()
        g = channels // 4
        self.g, self.window = g, window_size
        for name, k in zip(
            ("local_dwc", "global_dwc_s", "global_dwc_m", "global_dwc_l"), (3, 5, 7, 9), strict=True
        ):
            setattr(self, name, nn.Conv1d(g, g, k, padding=k // 2, groups=g))
        self.norm_h, self.norm_w, self.norm = (
            nn.GroupNorm(4, channels),
            nn.GroupNorm(4, channels),
            nn.GroupNorm(1, channels),
        )
        self.q, self.k, self.v = (
            nn.Conv2d(channels, channels, 1, groups=channels, bias=False) for _ in range(3)
        )
        self.scale = channels**-0.5

    def _branch(self, seq: torch.Tensor) -> torch.Tensor:
        parts = torch.split(seq, self.g, dim=1)
        convs = (self.local_dwc, self.global_dwc_s, self.global_dwc_m, self.global_dwc_l)
        return torch.cat([conv(p) for conv, p in zip(convs, parts, strict=True)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        a_h = torch.sigmoid(self.norm_h(self._branch(x.mean(3)))).view(b, c, h, 1)
        a_w = torch.sigmoid(self.norm_w(self._branch(x.mean(2)))).view(b, c, 1, w)
        x = x * a_h * a_w
        pool = nn.AvgPool2d(
            (min(self.window, h), min(self.window, w)), stride=(min(self.window, h), min(self.window, w))
        )
        y = self.norm(pool(x))
        q, k, v = (m(y).reshape(b, 1, c, -1) for m in (self.q, self.k, self.v))
        attn = (q @ k.transpose(-2, -1) * self.scale).softmax(-1)
        a_c = torch.sigmoid((attn @ v).reshape(b, c, *y.shape[2:]).mean((2, 3), keepdim=True))
        return a_c * x
