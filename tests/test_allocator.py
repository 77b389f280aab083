"""glibc's allocator keeps freed memory for a run's next step, and Python's collector leaves the
libraries' objects alone (`grubench.harness.allocator`)."""

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


# In a fresh process: import what a run imports inside the block; the collector runs no full
# collection there, is on again after it, and never looks at the imported objects again.
IMPORTS = """
import gc
from grubench.harness.allocator import collector_off_while_importing
full = []
gc.callbacks.append(lambda phase, info: full.append(1) if phase == "start" and info["generation"] == 2 else None)
with collector_off_while_importing():
    import torch, mlflow
print(len(full), gc.isenabled(), gc.get_freeze_count() > 100_000)
with collector_off_while_importing():   # a second job of the same process: nothing changes
    assert gc.isenabled()
"""


def test_the_collector_skips_the_imports_and_is_on_after_them():
    found = subprocess.run([sys.executable, "-c", IMPORTS], capture_output=True, text=True, check=True).stdout.split()
    assert found == ["0", "True", "True"]
