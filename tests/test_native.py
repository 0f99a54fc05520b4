"""plugattn/_native.py: C files compiled on first use, cached per CPU kind, and a clear reason when not."""

from __future__ import annotations

import ctypes
import shutil

import pytest

from plugattn import _native

needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler on this machine")


@needs_cc
def test_a_c_file_is_built_once_cached_and_loaded(tmp_path, monkeypatch):
    monkeypatch.setenv("PLUGATTN_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "twice.c"
    source.write_text("int twice(int v) { return 2 * v; }\n")
    lib = _native.load(source)
    assert lib is not None and lib.twice(ctypes.c_int(21)) == 42
    assert _native.status("twice").startswith("native")
    built = list((tmp_path / "cache" / "kernels").glob("twice-*.so"))
    assert len(built) == 1
    assert _native.load(source) is lib  # once per process
    assert not list((tmp_path / "cache" / "kernels").glob("*.so.tmp*"))  # no half-written file left


@needs_cc
def test_a_file_that_does_not_compile_gives_none_and_the_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("PLUGATTN_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "broken.c"
    source.write_text("int broken( { return; }\n")
    assert _native.load(source) is None
    assert _native.status("broken").startswith("pure torch (building broken.c failed")


def test_no_compiler_and_switched_off(tmp_path, monkeypatch):
    monkeypatch.setenv("PLUGATTN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(_native, "_compiler", lambda: None)
    source = tmp_path / "nocc.c"
    source.write_text("int f(void) { return 1; }\n")
    assert _native.load(source) is None
    assert _native.status("nocc") == "no C compiler found ($CC, cc, gcc, clang)"
    monkeypatch.setenv("PLUGATTN_NATIVE", "0")
    off = tmp_path / "off.c"
    off.write_text("int f(void) { return 1; }\n")
    assert _native.load(off) is None
    assert _native.status("off") == "off (PLUGATTN_NATIVE=0)"
    assert _native.status("never_asked") == "not loaded yet"


@needs_cc
def test_the_cache_key_follows_the_cpu(tmp_path, monkeypatch):
    """A library built for one CPU kind is never loaded on another: the key includes its flags."""
    monkeypatch.setenv("PLUGATTN_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "kind.c"
    source.write_text("int kind(void) { return 7; }\n")
    compiler = _native._compiler()
    monkeypatch.setattr(_native, "_cpu_flags", lambda: "flags : avx2")
    first = _native._build(source, compiler)
    monkeypatch.setattr(_native, "_cpu_flags", lambda: "flags : avx2 avx512f avx512_bf16")
    second = _native._build(source, compiler)
    assert first != second and first.exists() and second.exists()


@needs_cc
def test_a_changed_header_of_the_folder_gives_a_new_library(tmp_path, monkeypatch):
    """The key covers ``#include "name.h"`` headers next to the source: editing one rebuilds."""
    monkeypatch.setenv("PLUGATTN_CACHE", str(tmp_path / "cache"))
    (tmp_path / "value.h").write_text("#define VALUE 3\n")
    source = tmp_path / "header.c"
    source.write_text('#include "value.h"\nint value(void) { return VALUE; }\n')
    compiler = _native._compiler()
    first = _native._build(source, compiler)
    assert _native._build(source, compiler) == first  # unchanged: the cached library
    (tmp_path / "value.h").write_text("#define VALUE 4\n")
    second = _native._build(source, compiler)
    assert second != first
    assert ctypes.CDLL(str(second)).value() == 4


@needs_cc
def test_a_header_included_by_a_header_is_in_the_key_too(tmp_path, monkeypatch):
    """``a.c`` includes ``outer.h``, which includes ``inner.h``: editing the inner one rebuilds."""
    monkeypatch.setenv("PLUGATTN_CACHE", str(tmp_path / "cache"))
    (tmp_path / "inner.h").write_text("#define VALUE 5\n")
    (tmp_path / "outer.h").write_text('#include "inner.h"\n#define TWICE (2 * VALUE)\n')
    source = tmp_path / "a.c"
    source.write_text('#include "outer.h"\nint twice(void) { return TWICE; }\n')
    compiler = _native._compiler()
    first = _native._build(source, compiler)
    assert ctypes.CDLL(str(first)).twice() == 10
    (tmp_path / "inner.h").write_text("#define VALUE 6\n")
    second = _native._build(source, compiler)
    assert second != first
    assert ctypes.CDLL(str(second)).twice() == 12


def test_the_package_ships_the_headers_its_kernels_include():
    import re
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    folder = Path(_native.__file__).parent / "attention"
    data = tomllib.loads((folder.parent.parent / "pyproject.toml").read_text())
    shipped = data["tool"]["setuptools"]["package-data"]["plugattn.attention"]
    for source in folder.glob("*.c"):
        for name in re.findall(r'#include "([^"]+)"', source.read_text()):
            assert (folder / name).exists() and any(Path(name).match(p) for p in shipped), name
