"""How a run's process gets memory back for its tensors: glibc's allocator told to keep it.

A CPU training step allocates its activations afresh (for torch's GRU at batch 64, T = 50,
H = 128 about 20 MB a step, in blocks of a few MB) and frees them at the step's end. By default
glibc serves blocks that large with mmap and gives them back with munmap, or trims its heap top
once 2x the block size is free, so every step faults all of its pages in again: measured on the
2-core CPU of docs/bench.md, 8.0 s of system time in the default run's 55 CPU-s, 0.9 s with the
memory kept. `keep_freed_memory` sets, for the rest of the process, blocks under 32 MiB to come
from the heap (M_MMAP_THRESHOLD) and up to 1 GiB of free heap to stay with the process
(M_TRIM_THRESHOLD): the next step reuses the same pages. A process then holds its peak memory
until it ends, which a training run does anyway. PyTorch's CPU performance guide makes the same
point by recommending jemalloc or tcmalloc; this needs no preloaded library.

`collector_off_while_importing` does the same for Python's cyclic garbage collector: importing
torch, Lightning and MLflow makes about a million objects, and every full collection on the way
scans all made so far (on the default run: 9 full collections, 1.3 s, all during the imports, and
one more of 0.35 s at exit). With the collector off while they load and those objects then frozen
(gc.freeze: kept out of every later collection, as they live until the process ends anyway), the
collector only ever looks at what the run itself makes.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc

M_TRIM_THRESHOLD = -1    # glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20   # glibc's largest (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit systems)
TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for reuse (the module docstring); False where the
    C library has no mallopt (not glibc) or refuses the values."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


_frozen = False


@contextlib.contextmanager
def collector_off_while_importing():
    """Python's cyclic collector off in the block (the heavy imports), then every object made so
    far frozen out of its reach and the collector on again (the module docstring). Once per
    process: a later block (the next job of an in-process sweep) leaves the collector as it is."""
    global _frozen
    if _frozen:
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
        _frozen = True
