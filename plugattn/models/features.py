"""What a ``features_only`` backbone returns, described the way timm describes it.

Detection and segmentation code written for timm backbones reads ``backbone.feature_info.channels()``
and ``.reduction()`` to size its FPN; :class:`FeatureInfo` answers those calls and stays the plain list
of ``{"num_chs", "reduction", "module"}`` dicts that timm's own ``FeatureInfo`` is built from.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FeatureInfo"]


class FeatureInfo(list):
    """One dict per returned feature map: ``num_chs``, ``reduction`` (stride w.r.t. the input), ``module``.

    A list (index it, iterate it, hand it to ``timm.models.FeatureInfo``) with timm's accessors.
    """

    def get(self, key: str) -> list[Any]:
        """``key`` of every feature map, in output order."""
        return [info[key] for info in self]

    def channels(self) -> list[int]:
        return self.get("num_chs")

    def reduction(self) -> list[int]:
        return self.get("reduction")

    def module_name(self) -> list[str]:
        return self.get("module")
