"""GPU plumbing that only a GPU machine runs for real, checked here with CUDA and the collectives faked:
NCCL reduces CUDA tensors only, so the engine's CPU totals must travel to the rank's GPU and back; device
names must name GPUs that exist."""

from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode

from plugattn.engine import distributed
from plugattn.engine.config import TrainConfig
from plugattn.engine.distributed import DistInfo, all_reduce_sum, init_distributed, resolve_device


class PretendCopies(TorchFunctionMode):
    """Records every ``Tensor.to(device)`` and returns the tensor itself (no CUDA here to copy to)."""

    def __init__(self) -> None:
        super().__init__()
        self.targets: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        if func is torch.Tensor.to:
            self.targets.append(str(args[1] if len(args) > 1 else kwargs["device"]))
            return args[0]
        return func(*args, **kwargs)


def test_all_reduce_runs_on_the_process_group_device(monkeypatch):
    seen = []

    def fake_all_reduce(t, op):  # noqa: ANN001, ANN202
        seen.append(mode.targets[:])  # the copies made before the collective
        t.mul_(2)  # two ranks holding the same totals

    monkeypatch.setattr(distributed.dist, "all_reduce", fake_all_reduce)
    totals = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    with PretendCopies() as mode:
        out = all_reduce_sum(totals, DistInfo(rank=1, world_size=2, local_rank=1, device="cuda:1"))
    assert seen == [["cuda:1"]]  # sent to the GPU before NCCL sees it
    assert mode.targets == ["cuda:1", "cpu"]  # and brought back where it came from
    assert out.tolist() == [2.0, 4.0, 6.0]


def test_one_process_reduces_nothing(monkeypatch):
    monkeypatch.setattr(distributed.dist, "all_reduce", lambda *a, **k: pytest.fail("no collective"))
    t = torch.ones(2)
    assert all_reduce_sum(t, DistInfo()) is t


@pytest.mark.parametrize(
    "device,backend,expected",
    [("cuda", "nccl", "cuda:1"), ("cpu", "gloo", "cpu")],
)
def test_init_distributed_binds_the_rank_to_its_device(monkeypatch, device, backend, expected):
    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(
        distributed.dist, "init_process_group", lambda backend: calls.append(("init", backend))
    )
    monkeypatch.setattr(distributed.torch.cuda, "set_device", lambda i: calls.append(("set_device", i)))
    info = init_distributed(device)
    assert info == DistInfo(rank=1, world_size=2, local_rank=1, device=expected)
    if backend == "nccl":  # NCCL binds a rank to the current GPU when the group is made
        assert calls == [("set_device", 1), ("init", "nccl")]
    else:
        assert calls == [("init", "gloo")]


def test_a_plain_run_needs_no_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda **k: pytest.fail("no group"))
    assert init_distributed("cuda") == DistInfo()


# --- device names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,count,expected",
    [
        ("auto", 2, "cuda"),
        ("cuda", 2, "cuda"),
        ("cuda:1", 2, "cuda:1"),
        ("cpu", 2, "cpu"),
        ("auto", 0, "cpu"),
    ],
)
def test_device_names_resolve_against_the_gpus_there_are(monkeypatch, name, count, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    assert resolve_device(name) == torch.device(expected)


def test_a_gpu_that_is_not_there_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ValueError, match=r"device 'cuda:2' was asked for, but torch sees 2 CUDA device\(s\)"):
        resolve_device("cuda:2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"device 'cuda' was asked for, but torch sees no CUDA device"):
        resolve_device("cuda")


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "cuda:0:1", "mps "])
def test_config_device_must_be_a_device_name(bad):
    with pytest.raises(ValueError, match=r"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        TrainConfig(device=bad).validate()
