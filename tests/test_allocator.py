"""glibc's allocator keeps freed memory for a run's next step (`grubench.harness.allocator`)."""

from __future__ import annotations

import ctypes
import platform
import subprocess
import sys

import pytest

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# In a fresh process (the setting lasts for the process): free a 16 MB tensor and print how much
# free memory malloc holds afterwards (mallinfo2's fordblks, glibc 2.33+).
PROBE = """
import ctypes, sys, torch
from grubench.harness.allocator import keep_freed_memory
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
if sys.argv[1] == "keep":
    assert keep_freed_memory()
x = torch.ones(4 << 20)
del x
print(libc.mallinfo2().fordblks)
"""


@pytest.mark.skipif(not GLIBC or not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="glibc 2.33+ only")
def test_freed_step_memory_stays_with_the_process_for_reuse():
    def free_bytes(mode: str) -> int:
        return int(subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                                  check=True).stdout)
    assert free_bytes("default") < 16 << 20    # glibc's default: the block went back to the system
    assert free_bytes("keep") >= 16 << 20      # kept: the next step's tensors reuse it
