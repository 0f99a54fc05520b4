"""Bad input never earns a traceback or a wrong answer.

One table of probes of the command line (each: exit status 2, one line on stderr that starts with
``plugattn <command>: error:`` and names what to fix, no traceback, and nothing written in the run
directory the command was given), one of the Python API (a ``ValueError`` naming the argument), and
on-disk data in its real formats (truncated, wrong magic, wrong labels, empty, foreign pickle).
"""

from __future__ import annotations

import gzip
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import plugattn
from plugattn import cli, runs
from plugattn.data import DatasetError, create_dataset
from plugattn.engine.config import resolve_config
from plugattn.engine.distributed import resolve_device
from plugattn.runs import compare
from plugattn.runs.build import datasets
from tests.data.formats import idx_bytes, write_cifar10, write_fashion_mnist, write_gz, write_imagefolder

# Tiny synthetic data so that a probe the checks missed would still end in seconds.
RUN = ["--batch-size", "8", "--epochs", "1", "--threads", "1", "--no-progress"]
FAST = [
    "--data",
    "synthetic",
    "--set",
    "data_options={num_samples: 32, image_size: 16, num_classes: 4}",
    *RUN,
]
OUT = ["--out", "{new}"]  # a run directory that must not exist after a refused command
SYNTHETIC_1CH = {"num_samples": 32, "image_size": 16, "num_classes": 10, "in_chans": 1}


class Evil:
    """Pickles to a call of ``os.getcwd``: a file that would run code if loaded with pickle."""

    def __reduce__(self):  # noqa: ANN204 - pickle's protocol
        return (os.getcwd, ())


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A trained checkpoint and broken or foreign files, made once."""
    root = tmp_path_factory.mktemp("bad")
    run = root / "run"
    cfg = resolve_config(
        overrides={
            "data": "synthetic",
            "data_options": SYNTHETIC_1CH,
            "epochs": 1,
            "batch_size": 8,
            "eval_batch_size": 32,
            "threads": 1,
            "attention": "se",
        }  # fmt: skip
    )
    runs.train(cfg, run, progress=False, log=lambda *_: None)
    good = (run / "last.pt").read_bytes()
    out = {"run": run, "plain_file": root / "plain.txt", "empty": root / "empty.pt"}
    out["plain_file"].write_text("not a directory\n")
    out["empty"].write_bytes(b"")
    (root / "random.pt").write_bytes(np.random.default_rng(0).bytes(512))
    (root / "yaml.pt").write_text("model: resnet20\nlr: 0.1\n")
    (root / "pickle.pt").write_bytes(pickle.dumps({"model": 1, "config": 2}))
    (root / "truncated.pt").write_bytes(good[: len(good) // 2])
    torch.save({"weights": torch.zeros(2)}, root / "foreign.pt")
    torch.save({"model": Evil(), "config": {}}, root / "evil.pt")
    for name in ("random", "yaml", "pickle", "truncated", "foreign", "evil"):
        out[name] = root / f"{name}.pt"
    out["list_yaml"] = root / "list.yaml"
    out["list_yaml"].write_text("- lr\n- 0.1\n")

    # Image folders: training classes {cat, dog, zebra}; a val split with a class training lacks.
    folders = root / "folders"
    write_imagefolder(folders, "train", per_class=2)
    write_imagefolder(folders, "val", per_class=1)
    (folders / "val" / "bird").mkdir()
    (folders / "val" / "cat" / "img_0.png").rename(folders / "val" / "bird" / "img_0.png")
    out["folders"] = folders
    out["folders-ok"] = root / "folders-ok"
    write_imagefolder(out["folders-ok"], "train", per_class=2)
    write_imagefolder(out["folders-ok"], "val", per_class=1)

    # Fashion-MNIST files in the real format, each broken in one way.
    for kind in ("truncated", "magic", "labels", "empty"):
        d = root / f"fmnist-{kind}"
        write_fashion_mnist(d)
        images = d / "train-images-idx3-ubyte.gz"
        if kind == "truncated":
            write_gz(images, gzip.decompress(images.read_bytes())[:-100])
        elif kind == "magic":
            write_gz(images, idx_bytes(np.zeros((20, 28, 28), np.uint8), 2049))
        elif kind == "labels":
            write_gz(d / "train-labels-idx1-ubyte.gz", idx_bytes(np.full(20, 12, np.uint8), 2049))
        else:
            images.write_bytes(b"")
        out[f"fmnist-{kind}"] = d
    cifar = root / "cifar-evil"
    write_cifar10(cifar)
    (cifar / "cifar-10-batches-py" / "data_batch_2").write_bytes(pickle.dumps(Evil()))
    out["cifar-evil"] = cifar
    fm = root / "fmnist-good"
    write_fashion_mnist(fm)
    out["fmnist-good"] = fm
    return out


def snapshot(path: Path) -> dict[str, bytes] | None:
    if not path.exists():
        return None
    return {str(p): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# (argv with {placeholders} for the files above, a regex the one line must match)
CLI_PROBES = [
    # where results go
    (["train", *FAST, "--out", "{plain_file}"], r"--out .* exists and is not a directory"),
    (["train", *FAST, "--out", "/dev/null"], r"--out '/dev/null' exists and is not a directory"),
    (["train", *FAST, "--out", "{plain_file}/run"], r"cannot be made: .*plain.txt' is not a directory"),
    (["eval", "--checkpoint", "{run}", "--out", "{plain_file}"], r"--out .* exists and is not a directory"),
    (["compare", "--attention", "se", *FAST, "--out", "/dev/null"], r"exists and is not a directory"),
    # devices and threads
    (["eval", "--checkpoint", "{run}", "--device", "tpu"], r"device must be 'auto', 'cpu'.*got 'tpu'"),
    (["eval", "--checkpoint", "{run}", "--device", "meta"], r"device must be .*got 'meta'"),
    (["train", *FAST, "--device", "tpu", *OUT], r"device must be .*got 'tpu'"),
    (["train", *FAST, "--threads", "100000", *OUT], r"threads must lie in \[1, \d+\]"),
    (["bench", "--threads", "100000", "--shape", "2,8,4,4"], r"threads must lie in \[1, \d+\]"),
    # config fields, named, against what the optimiser and the module accept
    (
        ["train", *FAST, "--set", "attention_kwargs={bogus: 1}", *OUT],
        r"attention 'ham' \(HAM\) takes no argument 'bogus'; its arguments: separation_rate",
    ),
    (
        ["train", *FAST, "--set", "attention_kwargs=[1, 2]", *OUT],
        r"attention_kwargs must be a mapping",
    ),
    (["train", *FAST, "--set", "model_kwargs={bogus: 1}", *OUT], r"takes no option 'bogus'"),
    (["train", *FAST, "--set", "betas=[1]", *OUT], r"betas must be two numbers"),
    (
        ["train", *FAST, "--set", "betas=[0.8, 0.9]", *OUT],
        r"betas has no effect with optimizer='sgd' \(only with 'adamw'\)",
    ),
    (
        ["train", *FAST, "--set", "optimizer=adamw", "--set", "betas=[1.5, 0.9]", *OUT],
        r"betas\[0\] must lie in \[0, 1\)",
    ),
    (
        ["train", *FAST, "--set", "optimizer=adamw", "--set", "nesterov=true", *OUT],
        r"nesterov has no effect with optimizer='adamw'",
    ),
    (["train", *FAST, "--set", "nesterov=maybe", *OUT], r"nesterov must be true or false"),
    (
        ["train", *FAST, "--set", "milestones=[100, 50]", *OUT],
        r"milestones must be in increasing",
    ),
    (
        ["train", *FAST, "--set", "warmup_epochs=3", *OUT],
        r"warmup_epochs=3 is longer than the run",
    ),
    (["train", *FAST, "--lr", "-0.1", *OUT], r"lr must lie in \(0, inf\), got -0.1"),
    (["train", *FAST, "--lr", "inf", *OUT], r"lr must be a finite number in \(0, inf\)"),
    (["train", *FAST, "--set", "bogus_field=1", *OUT], r"unknown config field 'bogus_field'"),
    (
        ["train", *FAST, "--set", "epochs=[", *OUT],
        r"--set 'epochs=\[': the value is not valid YAML",
    ),
    (["train", *FAST, "--set", "epochs", *OUT], r"--set expects FIELD=VALUE"),
    (["train", *FAST, "--epochs", "abc", *OUT], r"argument --epochs: invalid int value: 'abc'"),
    (["train", *FAST, "--stop-after", "0", *OUT], r"--stop-after must be >= 1"),
    (["train", "--preset", "nope", *OUT], r"preset must be one of"),
    (["train", "--config", "{plain_file}.missing", *OUT], r"config file .* does not exist"),
    (["train", "--config", "{list_yaml}", *OUT], r"must hold a mapping of fields, got list"),
    (["train", *FAST, "--attention", "hma", *OUT], r"attention must be one of"),
    (
        ["train", *FAST, "--attention", "sa", "--set", "attention_kwargs={groups: 64}", *OUT],
        r"layer1\.0: attention on this block's 16-channel map: .*groups=64.*widths here are \[16, 32, 64\]",
    ),
    (
        ["train", *FAST, "--set", "augment={pad:4}", *OUT],
        r"YAML needs a space after the colon \(\{pad: 4\}\)",
    ),
    (
        ["train", *FAST, "--set", "schedule=cosine", "--set", "milestones=[10]", *OUT],
        r"milestones has no effect with schedule='cosine' \(only with 'step'\)",
    ),  # fmt: skip
    # compare
    (["compare", "--attention", "se,se", *FAST, *OUT], r"--attention lists se more than once"),
    (["compare", "--attention", "none,None", *FAST, *OUT], r"lists none more than once"),
    (["compare", "--attention", "se", "--seeds", "0", *FAST, *OUT], r"--seeds must be >= 1"),
    # checkpoints: never torch's advice to load with weights_only=False
    (["eval", "--checkpoint", "{empty}"], r"is empty \(0 bytes\), not a plugattn checkpoint"),
    (["eval", "--checkpoint", "/dev/null"], r"'/dev/null' is not a regular file"),
    (
        ["eval", "--checkpoint", "{random}"],
        r"not a file written by torch.save.*do not load a file you do not\ trust",
    ),
    (["eval", "--checkpoint", "{yaml}"], r"not a file written by torch.save"),
    (["eval", "--checkpoint", "{pickle}"], r"not a file written by torch.save"),
    (["eval", "--checkpoint", "{truncated}"], r"a truncated or damaged torch.save file"),
    (["eval", "--checkpoint", "{foreign}"], r"not a plugattn checkpoint \(a torch file without 'model'"),
    (["eval", "--checkpoint", "{evil}"], r"holds objects other than tensors.*GLOBAL posix.getcwd"),
    (["eval", "--checkpoint", "{plain_file}.missing"], r"does not exist"),
    (["eval", "--checkpoint", "{run}", "--split", "nope"], r"split must be one of 'train', 'val', 'test'"),
    # data: another dataset than the checkpoint's, and broken files in their real formats
    (
        ["eval", "--checkpoint", "{run}", "--data", "fashion-mnist", "--data-dir", "{fmnist-good}"],
        r"fashion-mnist/test names its classes \['T-shirt/top'.*but the model's classes are",
    ),
    (
        [
            "train",
            *RUN,
            "--data",
            "imagefolder",
            "--data-dir",
            "{folders}",
            "--set",
            "augment={size: 16}",
            "--out",
            "{new}",
        ],
        r"val: class folders \['bird'\] are not among the given classes",
    ),  # fmt: skip
    (
        [
            "train",
            *RUN,
            "--data",
            "imagefolder",
            "--data-dir",
            "{folders-ok}",
            "--set",
            "augment={pad: 4}",
            "--out",
            "{new}",
        ],
        r"augment keys \['pad'\] do not apply to image folders",
    ),  # fmt: skip
    (
        ["train", *RUN, "--data", "fashion-mnist", "--data-dir", "{fmnist-truncated}", *OUT],
        r"train-images-idx3-ubyte.gz: size mismatch: header says dims \[20, 28, 28\]",
    ),
    (
        ["train", *RUN, "--data", "fashion-mnist", "--data-dir", "{fmnist-magic}", *OUT],
        r"train-images-idx3-ubyte.gz: .*magic",
    ),
    (
        ["train", *RUN, "--data", "fashion-mnist", "--data-dir", "{fmnist-labels}", *OUT],
        r"train-labels-idx1-ubyte.gz: .*label",
    ),
    (
        ["train", *RUN, "--data", "fashion-mnist", "--data-dir", "{fmnist-empty}", *OUT],
        r"train-images-idx3-ubyte.gz: ",
    ),
    (
        ["train", *RUN, "--data", "cifar10", "--data-dir", "{cifar-evil}", *OUT],
        r"data_batch_2: ",
    ),
    (
        ["train", *RUN, "--data", "cifar10", "--data-dir", "/nonexistent/place", *OUT],
        r"/nonexistent/place",
    ),
    # bench and list
    (["bench", "--shape", "1,2,3"], r"shape"),
    (["bench", "--dtype", "float8", "--shape", "2,8,4,4"], r"dtype must be one of"),
    (
        ["bench", "--attention", "ham", "--shape", "2,8,4,4", "--csv", "{run}"],
        r"--csv/--json must name a file",
    ),
    (["list", "--channels", "0"], r"--channels must be >= 1, got 0"),
    (["bogus"], r"invalid choice: 'bogus'"),
]


def run_cli(argv: list[str]) -> int:
    """``plugattn ARGV`` in this process; argparse's own errors exit, and that is their status."""
    try:
        return cli.main(argv)
    except SystemExit as exit_:
        return exit_.code


def _fill(argv: list[str], files: dict[str, Path], new: Path) -> list[str]:
    names = {**{k: str(v) for k, v in files.items()}, "new": str(new)}
    return [a.format(**names) if "{" in a and "=" not in a else a for a in argv]


@pytest.mark.parametrize("argv,match", CLI_PROBES, ids=[" ".join(a[:1] + a[-4:])[:60] for a, _ in CLI_PROBES])
def test_cli_refuses_with_one_line(argv, match, files, tmp_path, capsys):
    new = tmp_path / "new-run"
    argv = _fill(argv, files, new)
    watched = [new, files["run"], files["plain_file"]]
    before = [snapshot(p) for p in watched]
    code = run_cli(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert re.match(r"plugattn( \w+)?: error: ", lines[0]), lines[0]
    assert re.search(match, lines[0]), lines[0]
    assert "weights_only=False" not in lines[0] or "do not load a file you do not trust" in lines[0]
    assert [snapshot(p) for p in watched] == before  # nothing written, nothing changed


def test_a_huge_thread_count_is_refused_not_a_crash(tmp_path):
    """torch.set_num_threads(100000) is a segmentation fault: the check must come first (own process)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "plugattn", "train", *FAST, "--threads", "100000", "--out", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "threads must lie in" in proc.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere: permissions cannot be probed")
def test_an_unwritable_out_is_refused_before_work(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert cli.main(["train", *FAST, "--out", str(locked / "run")]) == 2
    finally:
        locked.chmod(0o700)
    assert "no permission to write in" in capsys.readouterr().err


def test_an_unexpected_error_is_one_line_with_a_hint_and_debug_shows_it(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise KeyError("internal state")

    monkeypatch.setattr(cli, "cmd_list", broken)
    assert cli.main(["list"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "internal error: KeyError" in err and "--debug" in err
    with pytest.raises(KeyError):
        cli.main(["--debug", "list"])
    with pytest.raises(KeyError):
        cli.main(["list", "--debug"])


# ---------------------------------------------------------------------------------------------------------
# The Python API
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", plugattn.list_attention())
def test_every_module_checks_its_input_width_and_rank(name):
    module = plugattn.create_attention(name, 64)
    with pytest.raises(ValueError, match=r"was built for channels=64; got an input with 32 channels"):
        module(torch.randn(2, 32, 8, 8))
    with pytest.raises(ValueError, match=r"expects a \(B, C, H, W\) feature map; got a 3-D tensor"):
        module(torch.randn(64, 8, 8))
    assert module(torch.randn(2, 64, 8, 8)).shape == (2, 64, 8, 8)


@pytest.mark.parametrize("channels", [np.int64(64), np.int32(64), torch.tensor(64)])
def test_integer_like_channel_counts_are_accepted(channels):
    for name in ("ham", "scsa", "se"):
        module = plugattn.create_attention(name, channels)
        assert module.channels == 64 and type(module.channels) is int
        assert module(torch.randn(1, 64, 4, 4)).shape == (1, 64, 4, 4)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: plugattn.create_attention("ham", 64, bogus=1), r"'ham' \(HAM\) takes no argument 'bogus'"),
        (lambda: plugattn.create_attention("ham", 64.0), r"channels must be an integer, got 64.0"),
        (lambda: plugattn.create_attention("ham", torch.tensor(64.0)), r"channels must be an integer"),
        (lambda: plugattn.create_attention("se", np.bool_(True)), r"channels must be an integer"),
        (
            lambda: plugattn.create_model("resnet20", attention="sa", attn_kwargs={"groups": 64}),
            r"^layer1\.0: attention on this block's 16-channel map",
        ),  # fmt: skip
        (lambda: resolve_config(overrides={"threads": 100000}), r"threads must lie in \[1, \d+\]"),
        (lambda: resolve_config(overrides={"betas": 1}), r"betas must be two numbers"),
        (lambda: resolve_config(overrides={"augment": [4]}), r"augment must be a mapping"),
        (lambda: resolve_device("meta"), r"device must be .*got 'meta'"),
        (lambda: runs.check_output_dir("/dev/null"), r"--out '/dev/null' exists and is not a directory"),
        (lambda: plugattn.load_model("/dev/null"), r"is not a regular file"),
    ],
)
def test_api_refuses_with_the_argument_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_compare_refuses_duplicates_before_training(tmp_path):
    cfg = resolve_config(overrides={"data": "synthetic", "epochs": 1})
    with pytest.raises(ValueError, match=r"attention lists se more than once"):
        compare(cfg, ["se", "SE"], [0], tmp_path / "grid")
    with pytest.raises(ValueError, match=r"seeds lists 1 more than once"):
        compare(cfg, ["se"], [1, 1], tmp_path / "grid")
    assert not (tmp_path / "grid").exists()


# ---------------------------------------------------------------------------------------------------------
# Class lists: a label means the same class in every split
# ---------------------------------------------------------------------------------------------------------
def test_a_split_missing_a_class_keeps_the_training_labels_and_says_so(tmp_path):
    write_imagefolder(tmp_path, "train", per_class=2)
    write_imagefolder(tmp_path, "val", per_class=1)
    for name in ("cat", "zebra"):  # val holds dog only: its label must stay 1, not become 0
        for f in (tmp_path / "val" / name).iterdir():
            f.unlink()
        (tmp_path / "val" / name).rmdir()
    cfg = resolve_config(overrides={"data": "imagefolder", "data_dir": str(tmp_path)})
    notes = []
    train_set, val_set = datasets(cfg, log=notes.append)
    assert train_set.classes == ["cat", "dog", "zebra"] == val_set.classes
    assert val_set.labels.tolist() == [1]
    assert notes == [
        "note: imagefolder/val has no samples of class(es) ['cat', 'zebra']; they are not scored"
    ]


def test_the_plain_command_trains_on_an_image_folder(tmp_path, capsys):
    """No --preset: the default recipe's pad-and-crop belongs to Fashion-MNIST; the folder brings its own."""
    write_imagefolder(tmp_path / "data", "train", per_class=2)
    write_imagefolder(tmp_path / "data", "val", per_class=1)
    out = tmp_path / "run"
    argv = ["train", "--data", "imagefolder", "--data-dir", str(tmp_path / "data"), "--out", str(out),
            "--epochs", "1", "--batch-size", "3", "--threads", "1", "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0, capsys.readouterr().err
    saved = (out / "config.yaml").read_text()
    assert "size: 224" in saved and "pad:" not in saved


def test_eval_on_another_dataset_does_not_carry_the_training_data_options(files, capsys):
    """The synthetic run's num_samples must not reach Fashion-MNIST's reader (the error is the classes)."""
    code = cli.main(["eval", "--checkpoint", str(files["run"]), "--data", "fashion-mnist",
                     "--data-dir", str(files["fmnist-good"])])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "num_samples" not in err and "names its classes" in err


def test_a_foreign_class_list_is_refused_at_the_data_room(tmp_path):
    write_imagefolder(tmp_path, "train")
    write_imagefolder(tmp_path, "val")
    (tmp_path / "val" / "zebra").rename(tmp_path / "val" / "bird")
    with pytest.raises(DatasetError, match=r"class folders \['bird'\] are not among the given classes"):
        create_dataset("imagefolder", "val", root=tmp_path, classes=["cat", "dog", "zebra"])
