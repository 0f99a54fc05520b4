"""EEGNet with one attention hook.

Lawhern, Solon, Waytowich, Gordon, Hung & Lance 2018, "EEGNet: a compact convolutional neural network
for EEG-based brain–computer interfaces", J. Neural Eng. 15 056013, https://arxiv.org/abs/1611.08024
(the journal's version is arXiv v4, hence braindecode's old name ``EEGNetv4``). Layer sizes and defaults
follow braindecode's ``EEGNet`` (``braindecode/models/eegnet.py``), which reproduces the paper's Keras
code in PyTorch; input ``(B, n_chans, n_times)`` as braindecode takes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from plugattn._checks import check_choice, check_float, check_int
from plugattn.attention.registry import AttentionSpec
from plugattn.models.blocks import build_attention
from plugattn.models.constraints import MaxNormConv2d, MaxNormLinear
from plugattn.models.features import FeatureInfo
from plugattn.models.placement import check_stages, is_empty
from plugattn.models.registry import register_model

__all__ = ["EEGNET_POSITIONS", "EEGNet", "eegnet_lengths"]

# Where EEGNet's one attention module can sit (the class docstring says what each sees).
EEGNET_POSITIONS = ("temporal", "spatial", "separable")
_SPATIAL_DIMS = {"temporal": 2, "spatial": 1, "separable": 1}  # the map's axes after its channels
POOL_MODES = ("mean", "max")


def eegnet_lengths(
    n_times: int, kernel_length: int, depthwise_kernel_length: int, pool1: int, pool2: int
) -> tuple[int, int, int, int]:
    """The time lengths ``(T1, T1 // pool1, T2, T2 // pool2)`` after the temporal conv, the first pool,
    the separable conv and the second pool: convs padded by ``k // 2`` on both sides (``T + 1`` for an
    even kernel, as braindecode), pools with stride = kernel, flooring."""
    t1 = n_times + 2 * (kernel_length // 2) - kernel_length + 1
    p1 = t1 // pool1
    t2 = p1 + 2 * (depthwise_kernel_length // 2) - depthwise_kernel_length + 1
    return t1, p1, t2, t2 // pool2


def _check_sizes(
    *,
    n_times: int,
    kernel_length: int,
    depthwise_kernel_length: int,
    pool1: int,
    pool2: int,
    pool_mode: str,
    drop_rate: float,
    spatial_max_norm: float,
    classifier_max_norm: float | None,
    batch_norm_momentum: float,
    batch_norm_eps: float,
) -> tuple[int, int, int, int]:
    """EEGNet's kernels, pools, rates and norms checked; the time lengths (:func:`eegnet_lengths`), each
    at least one sample."""
    sizes = {"kernel_length": kernel_length, "depthwise_kernel_length": depthwise_kernel_length,
             "pool1": pool1, "pool2": pool2}  # fmt: skip
    for name, value in sizes.items():
        check_int(name, value, minimum=1)
    check_choice("pool_mode", pool_mode, POOL_MODES)
    check_float("drop_rate", drop_rate, low=0, high=1, high_open=True)
    check_float("batch_norm_momentum", batch_norm_momentum, low=0, high=1)
    check_float("batch_norm_eps", batch_norm_eps, low=0, low_open=True)
    check_float("spatial_max_norm", spatial_max_norm, low=0, low_open=True)
    if classifier_max_norm is not None:
        check_float("classifier_max_norm", classifier_max_norm, low=0, low_open=True)
    lengths = eegnet_lengths(n_times, kernel_length, depthwise_kernel_length, pool1, pool2)
    if min(lengths) < 1:
        raise ValueError(
            f"n_times={n_times} is too short for EEGNet's convs and pools (kernel_length={kernel_length}, "
            f"pool1={pool1}, depthwise_kernel_length={depthwise_kernel_length}, pool2={pool2}): the time "
            f"lengths would be {lengths}; give a longer signal or smaller kernels and pools"
        )
    return lengths


class EEGNet(nn.Module):
    """EEGNet (Lawhern et al. 2018) as braindecode builds it, with one attention module ``attn``.

    ==========================  ======================================================  ====================
    layer                       what it is                                              output
    ==========================  ======================================================  ====================
    input                       an EEG trial: electrodes × samples                      ``(B, C, T)``
    ``conv_temporal``           Conv2d 1 → F1, kernel (1, 64), pad (0, 32), no bias     ``(B, F1, C, T1)``
    ``bnorm_temporal``          BatchNorm (no activation: the filter bank is linear)
    *attn* ``"temporal"``       2-D module: F1 bands, each a map electrodes × time
    ``conv_spatial``            depthwise Conv2d F1 → F1·D, kernel (C, 1), groups F1,   ``(B, F1·D, T1)``
                                no bias, max-norm 1 per filter; electrode axis squeezed
    ``bnorm_1``, ``elu_1``      BatchNorm, ELU
    *attn* ``"spatial"``        1-D module: F1·D virtual channels × time
    ``pool_1``, ``drop_1``      AvgPool 4, dropout 0.25                                 ``(B, F1·D, P1)``
    ``conv_separable_depth``    depthwise Conv1d, kernel 16, pad 8, no bias             ``(B, F1·D, T2)``
    ``conv_separable_point``    pointwise Conv1d F1·D → F2, no bias                     ``(B, F2, T2)``
    ``bnorm_2``, ``elu_2``      BatchNorm, ELU
    *attn* ``"separable"``      1-D module: F2 feature channels × time (the default)
    ``pool_2``, ``drop_2``      AvgPool 8, dropout 0.25                                 ``(B, F2, T3)``
    ``classifier``              Linear F2·T3 → num_classes on the flattened map         ``(B, num_classes)``
    ==========================  ======================================================  ====================

    with ``T1 = T + 1`` (an even kernel padded by half on both sides), ``P1 = T1 // 4``, ``T2 = P1 + 1``,
    ``T3 = T2 // 8`` (:func:`eegnet_lengths`; Blink's 510 samples: 511, 127, 128, 16; SCP1's 896: 897,
    224, 225, 28). Defaults F1 = 8, D = 2, F2 = F1·D = 16; parameters
    ``64·F1 + 2·F1 + F1·D·C + 2·F1·D + 16·F1·D + F1·D·F2 + 2·F2 + (F2·T3 + 1)·num_classes`` (1,682 for
    Blink's 4 × 510 trials and 2,098 for SCP1's 6 × 896, 2 classes; braindecode documents 2,484 for
    ``n_chans=22, n_outputs=4, n_times=512``, which this gives too). BatchNorm momentum 0.01 (Keras's
    0.99), eps 1e-3; pooling is averaging (``pool_mode="max"`` for max).

    Where the attention goes (``position``):

    * ``"separable"`` (default): on the ``F2 × T2`` feature sequence after the separable conv, BN and
      ELU, before the last pool — feature channels × time, where channel attention re-weights the
      learnt spatio-spectral features. This is where EEG work that adds channel attention to an
      EEGNet-style stem puts it: Wimpff et al. 2024 (J. Neural Eng. 21 036020; braindecode's
      ``AttentionBaseNet``) after its depthwise-pointwise temporal block, before pooling; MBEEGSE
      (Altuwaijri et al. 2022, Diagnostics 12 995) follows each branch's EEGNet feature extractor with
      an SE block. It is also the place of a ResNet's ``"end"``: after a block's last conv and norm.
    * ``"temporal"``: on the ``F1 × C × T1`` map after the temporal conv and BN — per frequency band
      (temporal filter), a map over electrodes × time; a spatial attention (HAM's, CBAM's) weighs
      electrodes and instants before the spatial filters mix the electrodes, a channel attention weighs
      the F1 bands. A 2-D module: the only place where the electrode axis still exists.
    * ``"spatial"``: on the ``F1·D × T1`` sequence after the depthwise spatial conv, BN and ELU, before
      the first pool: the virtual channels the spatial filters make (CSP-like sources), at full time
      resolution.

    The 1-D positions are built with ``spatial_dims=1`` (the map is ``(B, C, T)``; the singleton
    electrode axis is squeezed by the spatial conv), ``"temporal"`` with ``spatial_dims=2``.

    Args:
        n_times: samples per trial; the classifier is sized for it (required: the training code passes
            the dataset's signal length). An input of another length raises ``ValueError``.
        num_classes: outputs (braindecode's ``n_outputs``), default 2.
        in_chans: electrodes (braindecode's ``n_chans``).
        attention: attention module (registered name, class, factory, or ``None``: plain EEGNet, the
            same parameters as without the hook).
        position: ``"temporal"``, ``"spatial"`` or ``"separable"``; ``None`` = ``"separable"`` for every
            module (the ResNet positions ``"end"``... do not exist here).
        stages: ``None`` or ``(0,)``: the hook; ``()``: no attention (EEGNet has one place, stage 0).
        attn_kwargs: keyword options of the attention module.
        F1, D, F2: temporal filters, spatial filters per temporal filter, pointwise filters (``None``:
            ``F1 · D``).
        kernel_length: temporal kernel (64: half a second at 128 Hz, the paper's choice).
        depthwise_kernel_length: kernel of the separable conv's depthwise part (16).
        pool1, pool2: pool sizes (= strides), 4 and 8.
        pool_mode: ``"mean"`` (default) or ``"max"``.
        drop_rate: dropout after each pool (0.25; the paper uses 0.5 within-subject, 0.25 cross-subject).
        spatial_max_norm: max-norm of each depthwise spatial filter (1, as the paper and braindecode).
        classifier_max_norm: max-norm of each classifier row; ``None`` (default, braindecode's
            default classifier) for none, 0.25 for the paper's Keras code (``norm_rate``).
        batch_norm_momentum, batch_norm_eps: 0.01 and 1e-3.
        features_only: no classifier; ``forward`` returns the two block outputs ``(B, F1·D, T1 // pool1)``
            and ``(B, F2, T3)`` described by ``feature_info``.
        device, dtype: factory keywords.

    The max-norm constraints are projections, as Keras's (:mod:`plugattn.models.constraints`): each
    training forward first scales every filter outside the ball back onto it, in place; an evaluation
    forward computes with the projected weight without writing it.

    Initialisation as the paper's Keras code: Glorot-uniform conv and linear weights, zero biases,
    BatchNorm weight 1, bias 0; the attention module keeps its own.

    Differences from braindecode and the paper:

    * After the spatial conv the electrode axis (size 1) is squeezed and the rest runs on 1-D layers
      (``Conv1d``, ``BatchNorm1d``, ``AvgPool1d``): the same function and parameter count, weights
      without the singleton axis (``conv_separable_depth.weight`` is ``(F1·D, 1, 16)``, braindecode's
      ``(F1·D, 1, 1, 16)``).
    * The classifier is a ``Linear`` over the flattened ``(F2, T3)`` map, not braindecode's conv with
      kernel ``(1, T3)``: the same function, parameter count and weight layout up to a reshape (the
      direction braindecode's deprecation warning points to). Logits, no softmax.
    * braindecode pads its even kernels by ``k // 2`` on both sides (``T + 1`` samples); the paper's
      Keras ``padding="same"`` keeps ``T``. We follow braindecode (its parameter counts).
    * braindecode's current version leaves the temporal, separable and classifier weights at PyTorch's
      default initialisation; we use Glorot-uniform everywhere, as Keras (and braindecode before).
    * The max-norm is Keras's projection, not braindecode's parametrisation (see above).
    * ``attn`` and its three positions are ours; ``features_only`` too.
    """

    def __init__(
        self,
        *,
        n_times: int | None = None,
        num_classes: int = 2,
        in_chans: int = 22,
        attention: AttentionSpec = None,
        position: str | None = None,
        stages: Sequence[int] | None = None,
        attn_kwargs: dict[str, Any] | None = None,
        F1: int = 8,
        D: int = 2,
        F2: int | None = None,
        kernel_length: int = 64,
        depthwise_kernel_length: int = 16,
        pool1: int = 4,
        pool2: int = 8,
        pool_mode: str = "mean",
        drop_rate: float = 0.25,
        spatial_max_norm: float = 1.0,
        classifier_max_norm: float | None = None,
        batch_norm_momentum: float = 0.01,
        batch_norm_eps: float = 1e-3,
        features_only: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if n_times is None:
            raise ValueError(
                "EEGNet needs n_times, the samples per trial its classifier is sized for (e.g. "
                "n_times=510 for Blink, 896 for SCP1); got n_times=None"
            )
        self.n_times = check_int("n_times", n_times, minimum=1)
        self.spatial_dims = 1  # the input's axes after its channels: a trial is (B, n_chans, n_times)
        self.n_chans = check_int("in_chans", in_chans, minimum=1)
        self.num_classes = check_int("num_classes", num_classes, minimum=1)
        self.F1, self.D = check_int("F1", F1, minimum=1), check_int("D", D, minimum=1)
        self.F2 = F1 * D if F2 is None else check_int("F2", F2, minimum=1)
        lengths = _check_sizes(
            n_times=n_times, kernel_length=kernel_length, depthwise_kernel_length=depthwise_kernel_length,
            pool1=pool1, pool2=pool2, pool_mode=pool_mode, drop_rate=drop_rate,
            spatial_max_norm=spatial_max_norm, classifier_max_norm=classifier_max_norm,
            batch_norm_momentum=batch_norm_momentum, batch_norm_eps=batch_norm_eps,
        )  # fmt: skip
        self.final_length = lengths[-1]  # T3, the classifier's time steps
        self.features_only = features_only
        f = {"device": device, "dtype": dtype}
        bn = {"momentum": batch_norm_momentum, "eps": batch_norm_eps, **f}
        pool = nn.AvgPool1d if pool_mode == "mean" else nn.MaxPool1d
        spatial = F1 * D

        # Block 1: temporal filter bank, then D spatial filters per temporal filter.
        self.conv_temporal = nn.Conv2d(1, F1, (1, kernel_length), padding=(0, kernel_length // 2),
                                       bias=False, **f)  # fmt: skip
        self.bnorm_temporal = nn.BatchNorm2d(F1, **bn)
        self.conv_spatial = MaxNormConv2d(F1, spatial, (self.n_chans, 1), groups=F1, bias=False,
                                          max_norm=spatial_max_norm, **f)  # fmt: skip
        self.bnorm_1 = nn.BatchNorm1d(spatial, **bn)
        self.elu_1 = nn.ELU()
        self.pool_1 = pool(pool1)
        self.drop_1 = nn.Dropout(drop_rate)
        # Block 2: separable conv = depthwise temporal conv + pointwise mixing.
        k2 = depthwise_kernel_length
        self.conv_separable_depth = nn.Conv1d(spatial, spatial, k2, padding=k2 // 2, groups=spatial,
                                              bias=False, **f)  # fmt: skip
        self.conv_separable_point = nn.Conv1d(spatial, self.F2, 1, bias=False, **f)
        self.bnorm_2 = nn.BatchNorm1d(self.F2, **bn)
        self.elu_2 = nn.ELU()
        self.pool_2 = pool(pool2)
        self.drop_2 = nn.Dropout(drop_rate)

        self._set_attention(attention, position, stages, attn_kwargs, **f)
        self.num_features = self.F2
        self.feature_info = FeatureInfo(
            [{"num_chs": spatial, "reduction": pool1, "module": "drop_1"},
             {"num_chs": self.F2, "reduction": pool1 * pool2, "module": "drop_2"}]
        )  # fmt: skip
        if not features_only:
            in_features = self.F2 * self.final_length
            self.classifier = (
                nn.Linear(in_features, num_classes, **f)
                if classifier_max_norm is None
                else MaxNormLinear(in_features, num_classes, max_norm=classifier_max_norm, **f)
            )
        self._init_weights()

    def _set_attention(
        self,
        attention: AttentionSpec,
        position: str | None,
        stages: Sequence[int] | None,
        attn_kwargs: dict[str, Any] | None,
        **factory: Any,
    ) -> None:
        """Build the hook ``attn`` at ``position`` (``nn.Identity`` when there is none)."""
        position = "separable" if position is None else check_choice("position", position, EEGNET_POSITIONS)
        if 0 not in check_stages(stages, 1):
            attention = None
        channels = {"temporal": self.F1, "spatial": self.F1 * self.D, "separable": self.F2}[position]
        dims = _SPATIAL_DIMS[position]
        try:
            self.attn = build_attention(attention, channels, attn_kwargs, spatial_dims=dims, **factory)
        except ValueError as err:
            raise ValueError(
                f"attention at EEGNet's {position!r} position ({channels} channels, {dims}-D map): {err}"
            ) from err
        self.attn_position = position
        self._attn_after = EEGNET_POSITIONS.index(position)  # after which of the three conv groups

    @property
    def has_attention(self) -> bool:
        return not is_empty(self.attn)

    def attend(self, x: torch.Tensor, *, after: int) -> torch.Tensor:
        """``attn(x)`` if the attention sits after conv group ``after``, else ``x`` (a fixed choice)."""
        return self.attn(x) if after == self._attn_after else x

    def _init_weights(self) -> None:
        """Glorot-uniform conv/linear weights, zero biases, BN (1, 0), as Keras; not the attention's."""
        skip = {id(m) for m in self.attn.modules()}
        for m in self.modules():
            if id(m) in skip:
                continue
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def check_input(self, x: torch.Tensor) -> None:
        """``x`` is ``(B, n_chans, n_times)``; otherwise a ``ValueError`` naming what differs."""
        expected = f"(B, n_chans={self.n_chans}, n_times={self.n_times})"
        if x.dim() != 3:
            raise ValueError(
                f"EEGNet takes a batch of trials {expected}; got a {x.dim()}-D input {tuple(x.shape)}"
            )
        if x.shape[1] != self.n_chans:
            raise ValueError(
                f"EEGNet was built for n_chans={self.n_chans} electrodes (in_chans), got input "
                f"{tuple(x.shape)} with {x.shape[1]}; expected {expected}"
            )
        if x.shape[2] != self.n_times:
            raise ValueError(
                f"EEGNet's classifier is sized for n_times={self.n_times} samples, got input "
                f"{tuple(x.shape)} with {x.shape[2]}; build it with n_times={x.shape[2]} or crop/pad "
                f"the trials to {self.n_times}"
            )

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The outputs of the two blocks, ``(B, F1·D, T1 // pool1)`` and ``(B, F2, T3)``."""
        self.check_input(x)
        x = self.bnorm_temporal(self.conv_temporal(x.unsqueeze(1)))  # (B, 1, C, T) -> (B, F1, C, T1)
        x = self.attend(x, after=0)
        x = self.conv_spatial(x).squeeze(2)  # (B, F1·D, 1, T1) -> (B, F1·D, T1)
        x = self.attend(self.elu_1(self.bnorm_1(x)), after=1)
        block1 = self.drop_1(self.pool_1(x))  # (B, F1·D, T1 // pool1)
        x = self.conv_separable_point(self.conv_separable_depth(block1))  # (B, F2, T2)
        x = self.attend(self.elu_2(self.bnorm_2(x)), after=2)
        return [block1, self.drop_2(self.pool_2(x))]  # ..., (B, F2, T3)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        features = self.forward_features(x)
        if self.features_only:
            return features
        return self.classifier(features[-1].flatten(1))  # (B, F2 · T3) -> (B, num_classes)

    def extra_repr(self) -> str:
        return f"n_chans={self.n_chans}, n_times={self.n_times}, attn_position={self.attn_position!r}"


register_model(
    "eegnet",
    EEGNet,
    {},
    num_classes=2,
    paper="Lawhern et al., J. Neural Eng. 2018, https://arxiv.org/abs/1611.08024",
    family="eegnet",
)
