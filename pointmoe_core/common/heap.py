"""Keep freed heap memory for the next cloud: how a long-running inference process tells glibc's malloc.

One forward of the segmentation network allocates and frees hundreds of tensors of kilobytes to tens
of megabytes, the same ones for every cloud. By default glibc's malloc serves blocks above its
(moving) mmap threshold with fresh mappings and hands the top of its heap back to the kernel once
enough of it is free, so each cloud pays the page faults of its memory again. With the mmap
threshold at the ceiling glibc documents (32 MiB on 64-bit; glibc 2.36 takes 1 GiB too, no faster)
and trimming off, that memory stays mapped between clouds: the edge model's whole perception
callback on one core is ~8 % faster at 30k points and ~10 % at 120k; tiny's, ten times the work,
does not change (benchmarks/RESULTS.md). Both together: trimming off alone made the edge model 2.5x
slower, the threshold alone a little slower. The price is a process that keeps its peak heap, as
torch's CUDA caching allocator keeps GPU memory. Where the C library is not glibc nothing changes.
"""
from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's documented ceiling on 64-bit: 4 * 1024 * 1024 * sizeof(long)
NEVER_TRIM = 2**31 - 1


def keep_freed_memory() -> bool:
    """Tune this process's malloc as above; whether it took (False where there is no glibc ``mallopt``)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError):
        return False
    # the threshold first: trimming off without it is the slow combination
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
