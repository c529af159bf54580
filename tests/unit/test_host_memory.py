"""recsys_cli/host_memory.py: after retain_freed_memory(), a large allocation comes from the
heap, not from a fresh mmap (checked in a child process, so the setting is measured from a clean
start)."""

from __future__ import annotations

import platform
import subprocess
import sys

CHILD = r"""
import ctypes, sys
from recsys_cli.host_memory import retain_freed_memory

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                 "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]

def mapped_growth() -> int:
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(64 << 20)  # 64 MB: above glibc's largest mmap threshold
    grown = libc.mallinfo2().hblkhd - before
    libc.free(block)
    return grown

first = mapped_growth()
applied = retain_freed_memory()
print(first, applied, mapped_growth(), retain_freed_memory())
"""


def test_large_allocations_stop_being_mapped():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":  # mallopt is glibc's: elsewhere a no-op
        from recsys_cli.host_memory import retain_freed_memory

        assert retain_freed_memory() is False
        return
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True).stdout.split()
    before, applied, after, again = int(out[0]), out[1], int(out[2]), out[3]
    assert before >= 64 << 20  # glibc's default: a fresh mapping per large block
    assert applied == "True" and again == "True"
    assert after == 0  # now served from the heap
