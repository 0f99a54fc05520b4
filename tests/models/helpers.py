"""Shared pieces of the model tests."""

from __future__ import annotations

import torch
from torch import nn

from plugattn.models import ResidualBlock
from plugattn.models.swin import SwinStage


def attention_hooks(model: nn.Module) -> list[nn.Module]:
    """The modules that each hold one attention hook ``attn``: residual blocks and Swin stages."""
    return [m for m in model.modules() if isinstance(m, (ResidualBlock, SwinStage))]


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN statistics and affines, so eval-mode outputs depend on every BN."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                if m.weight is not None:
                    m.weight.copy_(1 + torch.randn(m.weight.shape, generator=g) * 0.1)
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model


def train_step(model: nn.Module, x: torch.Tensor, num_classes: int) -> float:
    """One SGD step on random labels: the loss is finite, every parameter gets a gradient and moves."""
    model.train()
    y = torch.arange(x.shape[0]) % num_classes
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    before = [p.detach().clone() for p in model.parameters()]
    loss = nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient reached {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    opt.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    return loss.item()
