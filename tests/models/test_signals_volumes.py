"""Models of signals and volumes: EEGNet (with its attention hook and max-norm constraints), the 3-D
ResNet-10 and the 1-D ResNet-18, built from the same dimension-generic blocks as the 2-D ResNets."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import plugattn
from plugattn.models import EEGNet, MaxNormConv2d, ResidualBlock
from plugattn.models.constraints import max_norm_rows
from tests.models.helpers import count, randomize_bn, train_step

BLINK = (4, 510)  # UEA Blink: 4 electrodes, 510 samples, 2 classes
SCP1 = (6, 896)  # BCI II Ia (SelfRegulationSCP1): 6 electrodes, 896 samples, 2 classes
POSITIONS = ("temporal", "spatial", "separable")
MODULES = ["none", "se", "ham", "scsa", "eca", "cbam"]


class Gate(nn.Module):
    """A channel gate of any dimension, of the tests' own: what the hook hands a module it does not know
    (``channels`` and, when not 2, ``spatial_dims``), checked against the map it gets."""

    def __init__(self, channels: int, *, spatial_dims: int = 2) -> None:
        super().__init__()
        self.channels, self.spatial_dims = channels, spatial_dims
        self.fc = nn.Linear(channels, channels)  # channels² + channels parameters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dim() == self.spatial_dims + 2 and x.shape[1] == self.channels, (tuple(x.shape), self)
        w = torch.sigmoid(self.fc(x.flatten(2).mean(2)))  # (B, C)
        return x * w.view(*w.shape, *([1] * self.spatial_dims))


def eegnet(size: tuple[int, int] = BLINK, **kwargs) -> EEGNet:
    torch.manual_seed(0)
    return plugattn.create_model("eegnet", in_chans=size[0], n_times=size[1], **kwargs)


def eegnet_params(n_chans: int, n_times: int, num_classes: int, F1: int = 8, D: int = 2, F2: int = 16) -> int:
    """EEGNet's parameters from its layer sizes, by hand."""
    t3 = (
        (n_times + 1) // 4 + 1
    ) // 8  # T1 = T + 1 (kernel 64 padded 32 both sides), pool 4, +1 (16 / 8), pool 8
    return (
        F1 * 64  # conv_temporal: F1 kernels of 1 × 64, no bias
        + 2 * F1  # bnorm_temporal
        + F1 * D * n_chans  # conv_spatial: F1·D filters over the electrodes, one input map each
        + 2 * F1 * D  # bnorm_1
        + F1 * D * 16  # conv_separable_depth: one 16-tap filter per map
        + F1 * D * F2  # conv_separable_point
        + 2 * F2  # bnorm_2
        + (F2 * t3 + 1) * num_classes  # classifier over F2 × T3
    )


# --- EEGNet: shapes and counts ------------------------------------------------------------------------


@pytest.mark.parametrize("size,t3", [(BLINK, 16), (SCP1, 28)])
def test_eegnet_shapes(size, t3):
    model = eegnet(size)
    assert model.final_length == t3 and model.classifier.in_features == 16 * t3
    assert model(torch.randn(3, *size)).shape == (3, 2)
    feats = eegnet(size, features_only=True)(torch.randn(1, *size))
    assert [tuple(f.shape) for f in feats] == [(1, 16, (size[1] + 1) // 4), (1, 16, t3)]


@pytest.mark.parametrize(
    "size,num_classes,expected",
    [
        # 512 + 16 + 16·4 + 32 + 256 + 256 + 32 = 1,168; classifier (16·16 + 1)·2 = 514
        (BLINK, 2, 1_682),
        # 512 + 16 + 16·6 + 32 + 256 + 256 + 32 = 1,200; classifier (16·28 + 1)·2 = 898
        (SCP1, 2, 2_098),
        # braindecode's documented count: EEGNet(n_chans=22, n_outputs=4, n_times=512) has 2,484
        ((22, 512), 4, 2_484),
    ],
)
def test_eegnet_parameter_counts(size, num_classes, expected):
    model = plugattn.create_model(
        "eegnet", in_chans=size[0], n_times=size[1], num_classes=num_classes, device="meta"
    )
    assert count(model) == expected == eegnet_params(*size, num_classes)


@pytest.mark.parametrize("position", POSITIONS)
def test_no_attention_is_plain_eegnet_and_the_hook_adds_only_the_module(position):
    plain = eegnet()
    assert not plain.has_attention and type(plain.attn) is nn.Identity
    assert count(eegnet(attention=None, position=position, stages=(0,))) == count(plain) == 1_682
    channels = {"temporal": 8, "spatial": 16, "separable": 16}[position]
    gated = eegnet(attention=Gate, position=position)
    assert gated.attn.channels == channels and gated.attn_position == position
    assert count(gated) == 1_682 + channels * channels + channels
    assert count(eegnet(attention=Gate, stages=())) == 1_682


@pytest.mark.parametrize(
    "attention,position,extra",
    [
        # HAM: alpha, beta, the k=3 channel conv, one 2-input spatial conv, two BN(1): 2 + 3 + 2·7^d + 4
        ("ham", "temporal", 2 + 3 + 2 * 49 + 4),  # 2-D, as in every ResNet-20 block (+107)
        ("ham", "separable", 2 + 3 + 2 * 7 + 4),  # 1-D: a 7-tap spatial conv (+23), the eegnet presets' pair
        # SE, reduction 16: C → 1 → C 1×1 convs with biases
        ("se", "temporal", 8 * 1 + 1 + 1 * 8 + 8),
        ("se", "separable", 16 * 1 + 1 + 1 * 16 + 16),
    ],
)
def test_eegnet_counts_with_attention(attention, position, extra):
    for size, plain in ((BLINK, 1_682), (SCP1, 2_098)):
        model = eegnet(size, attention=attention, position=position)
        assert count(model) == plain + extra


def test_default_position_is_the_separable_block_for_every_module():
    assert eegnet(attention=Gate).attn_position == "separable"
    assert eegnet(attention=Gate).attn.spatial_dims == 1


@pytest.mark.parametrize("position,dims", [("temporal", 2), ("spatial", 1), ("separable", 1)])
def test_gate_sees_the_documented_map(position, dims):
    model = eegnet(attention=Gate, position=position).eval()
    seen = []
    model.attn.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape)))
    model(torch.randn(2, *BLINK))
    assert model.attn.spatial_dims == dims
    assert seen == [
        {"temporal": (2, 8, 4, 511), "spatial": (2, 16, 511), "separable": (2, 16, 128)}[position]
    ]


def test_plain_weights_load_into_the_attention_model():
    """What the runs layer does: the plain model's tensors all have a place; only ``attn.*`` is new."""
    result = eegnet(attention=Gate).load_state_dict(eegnet().state_dict(), strict=False)
    assert not result.unexpected_keys and set(result.missing_keys) == {"attn.fc.weight", "attn.fc.bias"}


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("attention", MODULES)
def test_eegnet_with_every_module_at_every_position(attention, position):
    for size in (BLINK, SCP1):
        model = eegnet(size, attention=attention, position=position)
        assert model.has_attention == (attention != "none")
        train_step(model, torch.randn(4, *size), 2)


# --- EEGNet: an independent formulation ----------------------------------------------------------------


def braindecode_layout(m: EEGNet) -> nn.Sequential:
    """The same network as braindecode writes it, 2-D all the way with a conv classifier, carrying
    ``m``'s weights; the depthwise spatial filters renormed with ``torch.renorm``."""
    f1d, t3 = m.F1 * m.D, m.final_length

    def bn2d(src: nn.Module, c: int) -> nn.BatchNorm2d:
        bn = nn.BatchNorm2d(c, momentum=0.01, eps=1e-3)
        bn.load_state_dict(src.state_dict())
        return bn

    temporal = nn.Conv2d(1, m.F1, (1, 64), padding=(0, 32), bias=False)
    spatial = nn.Conv2d(m.F1, f1d, (m.n_chans, 1), groups=m.F1, bias=False)
    depth = nn.Conv2d(f1d, f1d, (1, 16), padding=(0, 8), groups=f1d, bias=False)
    point = nn.Conv2d(f1d, m.F2, (1, 1), bias=False)
    head = nn.Conv2d(m.F2, m.num_classes, (1, t3))
    with torch.no_grad():
        temporal.weight.copy_(m.conv_temporal.weight)
        spatial.weight.copy_(torch.renorm(m.conv_spatial.weight, p=2, dim=0, maxnorm=1.0))
        depth.weight.copy_(m.conv_separable_depth.weight.unsqueeze(2))
        point.weight.copy_(m.conv_separable_point.weight.unsqueeze(2))
        head.weight.copy_(m.classifier.weight.view(m.num_classes, m.F2, 1, t3))
        head.bias.copy_(m.classifier.bias)
    return nn.Sequential(
        nn.Unflatten(1, (1, m.n_chans)),  # (B, C, T) -> (B, 1, C, T)
        temporal, bn2d(m.bnorm_temporal, m.F1),
        spatial, bn2d(m.bnorm_1, f1d), nn.ELU(), nn.AvgPool2d((1, 4)),
        depth, point, bn2d(m.bnorm_2, m.F2), nn.ELU(), nn.AvgPool2d((1, 8)),
        head, nn.Flatten(),
    )  # fmt: skip


@pytest.mark.parametrize("size", [BLINK, SCP1])
def test_eegnet_computes_what_braindecodes_layout_computes(size):
    model = randomize_bn(eegnet(size)).eval()
    with torch.no_grad():
        model.conv_spatial.weight.mul_(3)  # some filters outside the unit ball: the constraint acts
    x = torch.randn(3, *size)
    ref = braindecode_layout(model).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), rtol=1e-4, atol=1e-5)


def test_eegnet_init_is_glorot_and_leaves_the_attention_alone():
    model = eegnet(attention="none")
    w = model.conv_temporal.weight  # (8, 1, 1, 64): fan_in 64, fan_out 8 · 64
    assert w.abs().max().item() <= math.sqrt(6 / (64 + 512))
    assert w.std().item() == pytest.approx(math.sqrt(2 / (64 + 512)), rel=0.1)
    assert torch.all(model.classifier.bias == 0) and torch.all(model.bnorm_2.weight == 1)
    gated = eegnet(attention=Gate)
    assert gated.attn.fc.bias.abs().sum() > 0  # nn.Linear's own init, not zeroed


# --- EEGNet: training and the max-norm constraints -----------------------------------------------------


def spatial_norms(model: EEGNet) -> torch.Tensor:
    return model.conv_spatial.weight.detach().flatten(1).norm(dim=1)


def test_a_few_steps_reduce_the_loss_on_a_tiny_batch():
    model = eegnet()
    g = torch.Generator().manual_seed(1)
    y = torch.arange(16) % 2
    t = torch.arange(BLINK[1]) / 128
    x = torch.randn(16, *BLINK, generator=g) + (2 * y - 1).view(-1, 1, 1) * torch.sin(2 * math.pi * 6 * t)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) < 0.5 * sum(losses[:3]), losses


@pytest.mark.parametrize("attention", [None, Gate])
def test_max_norm_holds_after_steps(attention):
    """Large SGD steps push the spatial filters (and the classifier rows, at 0.25) outside their balls;
    each training forward projects them back, and an evaluation right after a step computes with the
    projection without writing it."""
    model = eegnet(attention=attention, classifier_max_norm=0.25)
    opt = torch.optim.SGD(model.parameters(), lr=5.0)
    x, y = torch.randn(8, *BLINK), torch.arange(8) % 2
    grew = False
    for _ in range(5):
        model.train()
        loss = nn.functional.cross_entropy(model(x), y)
        assert spatial_norms(model).max() <= 1 + 1e-5
        assert model.classifier.weight.detach().norm(dim=1).max() <= 0.25 + 1e-6
        opt.zero_grad()
        loss.backward()
        opt.step()
        grew |= bool(spatial_norms(model).max() > 1.01)  # the step left the ball
        stored = model.conv_spatial.weight.detach().clone()
        model.eval()
        with torch.no_grad():
            out = model(x)
        assert torch.equal(model.conv_spatial.weight, stored)  # evaluation writes nothing
        assert torch.isfinite(out).all()
    assert grew


def test_the_projection_is_keras_max_norm():
    """Filters outside the ball are scaled onto it, those inside are left exactly; the gradient is the
    plain gradient at the projected weight (no gradient through the projection)."""
    conv = MaxNormConv2d(2, 4, (3, 1), groups=2, bias=False, max_norm=1.0)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([3.0, 0.5, 2.0, 0.1]).view(4, 1, 1, 1) * torch.ones(4, 1, 3, 1))
    before = conv.weight.detach().clone()
    x = torch.randn(5, 2, 3, 7)
    conv(x).square().sum().backward()
    norms = conv.weight.detach().flatten(1).norm(dim=1)
    torch.testing.assert_close(norms[[0, 2]], torch.ones(2))
    assert torch.equal(conv.weight.detach()[[1, 3]], before[[1, 3]])
    w = max_norm_rows(before, 1.0).requires_grad_()
    nn.functional.conv2d(x, w, groups=2).square().sum().backward()
    torch.testing.assert_close(conv.weight.grad, w.grad)


def test_eegnet_exports_as_a_pure_function():
    model = randomize_bn(eegnet(attention=Gate)).eval()
    x = torch.randn(2, *BLINK)
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x))


# --- EEGNet: errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape,match",
    [
        (
            (2, 4, 500),
            r"sized for n_times=510 samples, got input \(2, 4, 500\) with 500; build it with n_times=500",
        ),
        ((2, 5, 510), r"built for n_chans=4 electrodes \(in_chans\), got input \(2, 5, 510\) with 5"),
        ((2, 1, 4, 510), r"takes a batch of trials \(B, n_chans=4, n_times=510\); got a 4-D input"),
    ],
)
def test_wrong_input_is_named(shape, match):
    with pytest.raises(ValueError, match=match):
        eegnet()(torch.randn(shape))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"n_times": None}, r"EEGNet needs n_times, .*got n_times=None"),
        ({"n_times": 26}, r"n_times=26 is too short for EEGNet's convs and pools"),
        ({"n_times": 0}, r"n_times must be >= 1, got 0"),
        ({"position": "end"}, r"position must be one of 'temporal', 'spatial', 'separable'; got 'end'"),
        ({"stages": (1,)}, r"stages entries must lie in \[0, 0\]"),
        ({"pool_mode": "median"}, r"pool_mode must be one of 'mean', 'max'; got 'median'"),
        ({"drop_rate": 1.0}, r"drop_rate must lie in \[0, 1\)"),
        ({"spatial_max_norm": 0.0}, r"spatial_max_norm must lie in \(0, inf\)"),
        ({"classifier_max_norm": -1}, r"classifier_max_norm must lie in \(0, inf\)"),
        ({"F1": 0}, r"F1 must be >= 1"),
        ({"in_chans": 0}, r"in_chans must be >= 1"),
    ],
)
def test_bad_eegnet_options(kwargs, match):
    options = {"in_chans": 4, "n_times": 510, **kwargs}
    with pytest.raises(ValueError, match=match):
        plugattn.create_model("eegnet", device="meta", **options)


def test_attention_that_does_not_fit_names_the_position():
    def refuse(channels: int, *, spatial_dims: int = 2) -> nn.Module:
        raise ValueError(f"needs 32 channels, got {channels}")

    with pytest.raises(ValueError, match=r"EEGNet's 'temporal' position \(8 channels, 2-D map\): needs 32"):
        eegnet(attention=refuse, position="temporal")
    with pytest.raises(ValueError, match=r"attn_kwargs may not set spatial_dims"):
        eegnet(attention=Gate, attn_kwargs={"spatial_dims": 2})


# --- 3-D ResNet-10 and 1-D ResNet-18 --------------------------------------------------------------------


def basic_resnet_params(
    d: int, in_chans: int, stem_k: int, stem_width: int, layers, widths, classes: int
) -> int:
    """A BasicBlock ResNet's parameters by hand: convs of ``k^d`` taps, BN (2 per channel), 1×1 conv + BN
    shortcuts where a block changes stride or width, the classifier."""
    total = in_chans * stem_width * stem_k**d + 2 * stem_width  # stem conv + BN
    c = stem_width
    for i, (n, w) in enumerate(zip(layers, widths, strict=True)):
        for j in range(n):
            total += c * w * 3**d + w * w * 3**d + 2 * 2 * w  # conv1, conv2, bn1, bn2
            if c != w or (i > 0 and j == 0):
                total += c * w + 2 * w  # shortcut "B"
            c = w
    return total + c * classes + classes


NARROW = {"widths": (8, 16, 32, 64), "stem_width": 8}


def test_the_count_formula_gives_torchvisions_resnet18():
    assert basic_resnet_params(2, 3, 7, 64, (2, 2, 2, 2), (64, 128, 256, 512), 1000) == 11_689_512


def test_resnet10_3d_parameter_count():
    # stem 3·64·7³ + 128 = 65,984; stages 221,440 / 672,512 / 2,688,512 / 10,750,976; fc 512·400 + 400
    # = 205,200 (Hara et al.'s ResNet-10: 14.4M without the classifier)
    expected = 65_984 + 221_440 + 672_512 + 2_688_512 + 10_750_976 + 205_200
    assert count(plugattn.create_model("resnet10_3d", device="meta")) == expected == 14_604_624
    assert expected == basic_resnet_params(3, 3, 7, 64, (1,) * 4, (64, 128, 256, 512), 400)
    narrow = plugattn.create_model("resnet10_3d", in_chans=1, num_classes=2, device="meta", **NARROW)
    assert count(narrow) == basic_resnet_params(3, 1, 7, 8, (1,) * 4, NARROW["widths"], 2) == 227_466


def test_resnet10_3d_layout():
    model = plugattn.create_model("resnet10_3d", in_chans=1, num_classes=2, **NARROW)
    assert model.conv1.kernel_size == (7, 7, 7) and model.conv1.stride == (1, 2, 2)
    assert isinstance(model.maxpool, nn.MaxPool3d) and isinstance(model.global_pool, nn.AdaptiveAvgPool3d)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Conv1d)]
    assert not convs and all(
        isinstance(b.bn1, nn.BatchNorm3d) for b in model.modules() if isinstance(b, ResidualBlock)
    )
    backbone = plugattn.create_model("resnet10_3d", in_chans=1, features_only=True, **NARROW).eval()
    feats = backbone(torch.randn(1, 1, 8, 16, 16))
    assert [tuple(f.shape) for f in feats] == [
        (1, 8, 4, 4, 4),
        (1, 16, 2, 2, 2),
        (1, 32, 1, 1, 1),
        (1, 64, 1, 1, 1),
    ]


@pytest.mark.parametrize("attention", ["none", Gate, "se", "ham"])
def test_resnet10_3d_trains_a_step(attention):
    torch.manual_seed(0)
    model = plugattn.create_model("resnet10_3d", in_chans=1, num_classes=2, attention=attention, **NARROW)
    blocks = [b for b in model.modules() if isinstance(b, ResidualBlock)]
    assert len(blocks) == 4 and all(b.has_attention == (attention != "none") for b in blocks)
    assert all(getattr(b.attn, "spatial_dims", 3) == 3 for b in blocks)
    train_step(model, torch.randn(2, 1, 8, 16, 16), 2)


def test_retrofit_into_a_3d_resnet_builds_3d_attention():
    model = plugattn.create_model("resnet10_3d", in_chans=1, num_classes=2, **NARROW)
    plugattn.insert_attention(model, Gate, stages=(1, 3))
    assert [type(b.attn).__name__ for b in (model.layer1[0], model.layer2[0], model.layer4[0])] == [
        "Identity",
        "Gate",
        "Gate",
    ]
    assert model.layer2[0].attn.spatial_dims == 3
    train_step(model, torch.randn(2, 1, 8, 16, 16), 2)


def test_video_stem_is_3d_only():
    with pytest.raises(
        ValueError, match=r"stem 'video' is a 3-D stem \(spatial_dims=3\), got spatial_dims=2"
    ):
        plugattn.create_model("resnet18", stem="video", device="meta")
    with pytest.raises(ValueError, match=r"spatial_dims must be 1, 2 or 3, got 4"):
        plugattn.create_model("resnet18", spatial_dims=4, device="meta")


def test_resnet18_1d():
    assert count(plugattn.create_model("resnet18_1d", in_chans=4, device="meta")) == basic_resnet_params(
        1, 4, 7, 64, (2, 2, 2, 2), (64, 128, 256, 512), 2
    ) == 3_846_274  # fmt: skip
    torch.manual_seed(0)
    model = plugattn.create_model("resnet18_1d", in_chans=4, attention=Gate, stages=(2, 3), **NARROW)
    assert model.layer3[0].attn.spatial_dims == 1 and not model.layer1[0].has_attention
    assert model.eval()(torch.randn(2, *BLINK)).shape == (2, 2)
    train_step(model, torch.randn(2, *BLINK), 2)


@pytest.mark.parametrize("attention", ["se", "ham"])
def test_resnet18_1d_with_registered_modules(attention):
    torch.manual_seed(0)
    model = plugattn.create_model("resnet18_1d", in_chans=6, attention=attention, **NARROW)
    train_step(model, torch.randn(2, *SCP1), 2)


def test_option_a_shortcut_in_every_dimension():
    for d, shape in ((1, (2, 8, 9)), (3, (2, 8, 5, 6, 7))):
        block = plugattn.models.BasicBlock(8, 16, 2, shortcut="A", spatial_dims=d)
        assert count(block) == 8 * 16 * 3**d + 16 * 16 * 3**d + 4 * 16  # no shortcut parameters
        out = block(torch.randn(shape))
        assert out.shape == (2, 16, *(math.ceil(s / 2) for s in shape[2:]))
