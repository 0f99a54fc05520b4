"""Keeping freed memory in the process (plugattn/engine/memory.py): what it changes, checked in child
processes, since the setting is the whole process's and cannot be undone."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from plugattn.engine import memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# A 64 MiB tensor allocated, touched and freed; glibc settles its heap in the first two rounds, then the
# minor page faults of each of four more rounds, the fewest printed. One round is not enough: the kernel
# may reclaim idle pages of its own accord (DAMON on these VMs), and a round that follows a reclaim faults
# its pages in again whatever glibc does; that reclaim never touches every round.
CHILD = """
import resource, sys, torch
from plugattn.engine.memory import keep_freed_memory
if sys.argv[1] == "keep":
    print(keep_freed_memory(), file=sys.stderr)
for _ in range(2):
    t = torch.ones(16 << 20); del t
counts = []
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = torch.ones(16 << 20); del t
    counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(min(counts))
"""


def faults(mode: str) -> int:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-c", CHILD, mode]
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not GLIBC, reason="the setting is glibc's")
def test_freed_memory_is_kept_and_not_faulted_in_again():
    pages = (64 << 20) // os.sysconf("SC_PAGE_SIZE")  # 16384 pages of 4 KiB per round
    assert faults("system") > pages // 2  # glibc maps a 64 MiB block anew each time and unmaps it on free
    assert faults("keep") < pages // 16  # kept: a settled round reuses the pages


def test_the_state_says_what_was_done():
    assert memory.allocator_state() == "system allocator"  # this test process was never told
    if not GLIBC:
        pytest.skip("the setting is glibc's")
    code = "from plugattn.engine import memory; print(memory.keep_freed_memory(), memory.allocator_state())"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == "freed memory kept (glibc mallopt) freed memory kept (glibc mallopt)".split()


def test_the_command_keeps_freed_memory_unless_asked_not_to(tmp_path):
    """``python -m plugattn`` (the process's own entry) makes the setting; the environment variable and
    ``cli.main`` called from Python (as here) leave the allocator alone."""
    code = (
        "import plugattn.cli as cli, plugattn.engine.memory as m\n"
        "cli.main = lambda argv=None: print(m.allocator_state()) or 0\n"
        "raise SystemExit(cli.run())\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    kept = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    env["PLUGATTN_SYSTEM_ALLOCATOR"] = "1"
    left = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert left.stdout.strip() == "system allocator"
    if GLIBC:
        assert kept.stdout.strip() == "freed memory kept (glibc mallopt)"
