"""Every data test starts from a clean environment: no data root or mirror set by the developer's shell."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch):
    monkeypatch.delenv("PLUGATTN_DATA", raising=False)
    monkeypatch.delenv("PLUGATTN_MIRROR", raising=False)
