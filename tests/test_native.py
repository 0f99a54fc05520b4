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
