"""plugattn.bench and ``plugattn bench``: counts checked against hand-worked numbers; reports complete."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from torch import nn

import plugattn
from plugattn.benchmark import PeakMemory, bench, count_flops
from plugattn.cli import main


class _Gate(nn.Module):
    """x · σ(mean_HW(x)) after a 1×1 conv: every kind of work once."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 1, bias=False)

    def forward(self, x):
        y = self.conv(x)
        return y * torch.sigmoid(y.mean(dim=(2, 3), keepdim=True))


def test_flops_count_elementwise_work_by_hand():
    x = torch.randn(2, 3, 4, 4)
    flops = count_flops(_Gate(), x)
    # conv 1×1, 3→5 channels on 2×4×4 positions: 2·3·5·32 MAC-FLOPs
    assert flops["matmul"] == 2 * 3 * 5 * 32
    # mean: one per input element (2·5·16 = 160); sigmoid: one per output (2·5 = 10); multiply: 160
    assert flops["elementwise"] == 160 + 10 + 160
    assert flops["total"] == flops["matmul"] + flops["elementwise"]


def test_flops_count_normalisation_as_four_per_element():
    x = torch.randn(2, 3, 4, 4)
    assert count_flops(nn.BatchNorm2d(3), x) == {"matmul": 0, "elementwise": 4 * 96, "total": 4 * 96}
    assert count_flops(nn.GroupNorm(1, 3), x)["elementwise"] == 4 * 96
    assert count_flops(nn.AvgPool2d(2), x)["elementwise"] == 96  # pooling: one per input element


def test_flops_leave_the_mode_as_it_was():
    m = nn.BatchNorm2d(3).train()
    count_flops(m, torch.randn(2, 3, 4, 4))
    assert m.training
    assert m.num_batches_tracked.item() == 0  # counted in eval mode: running stats untouched


def test_peak_memory_follows_tensors_alive_at_once():
    x = torch.randn(1000)  # 4,000 bytes, allocated before: not counted
    with PeakMemory() as mem:
        y = x * 2  # 4,000 alive
        z = y + 1  # 8,000 alive
        del y  # 4,000
        w = z * 3  # 8,000 again
        v = w[:10]  # a view: nothing new
        w.mul_(2)  # in place: nothing new
    assert mem.peak == 8000
    assert mem.current == 8000
    del z, w, v
    assert mem.current == 0


def test_peak_memory_counts_what_autograd_keeps():
    x = torch.randn(1000, requires_grad=True)
    with PeakMemory() as mem:
        y = (x * 2).sigmoid()  # x*2 (4,000) and y (4,000); sigmoid keeps y for backward
        del y
    assert mem.peak == 8000
    assert mem.current == 0


def test_module_report_has_every_column_and_the_floor():
    report = bench("ham,scsa,se", shape=(4, 16, 8, 8), warmup=0, repeats=3)
    assert report.kind == "module"
    assert [r["attention"] for r in report.rows] == ["ham", "scsa", "se"]
    cond = report.conditions
    assert cond["device"] == "cpu" and cond["dtype"] == "float32" and cond["layout"] == "contiguous"
    assert cond["batch"] == 4 and cond["threads"] >= 1 and "cpu_capability" in cond
    for r in report.rows:
        assert r["params"] == sum(
            p.numel() for p in plugattn.create_attention(r["attention"], 16).parameters()
        )
        assert r["mflops"] == pytest.approx(r["mflops_matmul"] + r["mflops_elementwise"])
        assert r["mflops_elementwise"] > 0
        assert r["forward_ms"] > 0 and r["train_ms"] > 0 and r["peak_mb"] > 0
        assert r["floor_ms"] > 0 and r["floor_ratio"] == pytest.approx(r["forward_ms"] / r["floor_ms"])
    # HAM's 7×7 spatial conv on 2 descriptors of 2 channels: 2 (groups) · 4 · 8·8 · 2·49 MACs, plus its
    # channel conv (k = 3 at C = 16): 4 · 16 · 3 MACs
    ham = report.rows[0]
    assert ham["mflops_matmul"] * 1e6 == 2 * (2 * 4 * 64 * 2 * 49 + 4 * 16 * 3)
    table = report.table()
    assert "Conditions: device cpu" in table and "fwd / floor" in table and "| ham |" in table


def test_model_report_measures_the_plain_backbone_beside():
    report = bench("ham", model="resnet20", input_size=(1, 28, 28), batch=4, warmup=0, repeats=2)
    assert [r["attention"] for r in report.rows] == ["none", "ham"]
    none, ham = report.rows
    assert none["forward_vs_none"] == 1.0 and none["train_vs_none"] == 1.0
    assert none["model"] == "resnet20" and ham["input"] == "4x1x28x28"
    assert ham["params"] > none["params"] and ham["mflops"] > none["mflops"]
    assert ham["train_images_per_s"] == pytest.approx(4e3 / ham["train_ms"])
    assert "fwd+bwd vs none" in report.table()


def test_channels_last_and_threads_are_reported_and_restored():
    before = torch.get_num_threads()
    report = bench("eca", shape=(2, 8, 4, 4), channels_last=True, threads=1, warmup=0, repeats=1)
    assert report.conditions["layout"] == "channels_last" and report.conditions["threads"] == 1
    assert torch.get_num_threads() == before


def test_csv_and_json_carry_rows_and_conditions(tmp_path):
    report = bench("se,eca", shape=(2, 8, 4, 4), warmup=0, repeats=1)
    with open(report.to_csv(tmp_path / "b.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["attention"] for r in rows] == ["se", "eca"]
    assert all(r["dtype"] == "float32" and r["layout"] == "contiguous" and r["batch"] == "2" for r in rows)
    data = json.loads(report.to_json(tmp_path / "b.json").read_text())
    assert data["kind"] == "module" and data["conditions"] == report.conditions
    assert data["rows"] == report.rows


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shape": (2, 8, 4)}, "shape must be 4 positive integers"),
        ({"shape": "2,8,0,4"}, "shape must be 4 positive integers"),
        ({"shape": None}, "either shape"),
        ({"shape": (2, 8, 4, 4), "model": "resnet20"}, "either shape"),
        ({"shape": (2, 8, 4, 4), "dtype": "fp64"}, "dtype must be one of"),
        ({"shape": (2, 8, 4, 4), "device": "tpu"}, "device must be"),
        ({"shape": (2, 8, 4, 4), "repeats": 0}, "repeats must be >= 1"),
        ({"shape": (2, 8, 4, 4), "attention": "se,se"}, "names a module twice"),
        ({"shape": (2, 8, 4, 4), "attention": ""}, "at least one module"),
        ({"shape": (2, 8, 4, 4), "attention": "nope"}, "nope"),
    ],
)
def test_bad_arguments_name_what_is_wrong(kwargs, message):
    kwargs = {"attention": "se", **kwargs}
    with pytest.raises(ValueError, match=message):
        bench(**kwargs)


def test_the_package_exports_bench():
    assert plugattn.bench is bench and plugattn.BenchReport.__name__ == "BenchReport"


def test_cli_prints_and_writes(tmp_path, capsys):
    code = main(["bench", "--attention", "se,ham", "--shape", "2,16,8,8", "--warmup", "0", "--repeats", "1",
                 "--csv", str(tmp_path / "b.csv"), "--json", str(tmp_path / "b.json")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "| se |" in out and "| ham |" in out and "fwd / floor" in out
    assert (tmp_path / "b.csv").is_file() and json.loads((tmp_path / "b.json").read_text())["rows"]


def test_cli_model_mode(capsys):
    code = main(["bench", "--model", "resnet20", "--attention", "eca", "--input-size", "1,16,16",
                 "--batch", "2", "--warmup", "0", "--repeats", "1"])  # fmt: skip
    assert code == 0
    assert "| resnet20 | none |" in capsys.readouterr().out


def test_cli_bad_shape_is_one_line_and_status_2(capsys):
    assert main(["bench", "--shape", "1,2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["plugattn bench: error: shape must be 4 positive integers, got '1,2'"]
