"""common.heap: the malloc settings take on glibc and are refused, not faked, elsewhere."""
import platform

import pytest

from pointmoe_core.common import heap


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_keep_freed_memory_takes_on_glibc():
    assert heap.keep_freed_memory()


def test_without_mallopt_nothing_changes(monkeypatch):
    class NoMallopt:  # a C library without mallopt (musl, macOS)
        def __init__(self, name):
            pass

    monkeypatch.setattr(heap.ctypes, "CDLL", NoMallopt)
    assert heap.keep_freed_memory() is False
