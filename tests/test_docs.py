"""The documentation's numbers are the code's numbers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import plugattn

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _attention_rows() -> dict[str, list[str]]:
    rows = {}
    main_table = (DOCS / "attention.md").read_text().split("\n## ")[0]  # the table before the sections
    for line in main_table.splitlines():
        m = re.match(r"\| `(\w+)` \|", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in line.strip("|").split("|")]
    return rows


def test_every_registered_module_is_documented():
    assert sorted(_attention_rows()) == plugattn.list_attention()


@pytest.mark.parametrize("name", plugattn.list_attention())
def test_documented_class_and_parameter_counts(name):
    row = _attention_rows()[name]
    assert row[1] == f"`{plugattn.attention_entry(name).cls.__name__}`"
    for column, channels in ((3, 64), (4, 256)):
        try:
            count = sum(p.numel() for p in plugattn.create_attention(name, channels).parameters())
        except ValueError:
            assert row[column].startswith("—"), (name, channels)
            continue
        assert row[column] == str(count), (name, channels)
    position = {"end": "end", "before_last_conv": "before last conv"}[plugattn.attention_entry(name).position]
    assert row[5] == position


def test_the_export_table_has_every_registered_module():
    text = (DOCS / "export.md").read_text()
    rows = re.findall(r"^\| (\w+) \| [✓✗]", text, flags=re.M)
    assert sorted(rows) == plugattn.list_attention()
