"""Out-of-memory, told apart and given back, on CPU and CUDA alike (the decode loop, loading and serve use it)."""

from __future__ import annotations

import torch


def out_of_memory(exc: BaseException) -> bool:
    """CUDA raises torch.OutOfMemoryError; a CPU allocation that fails is a plain RuntimeError (or MemoryError)."""
    text = str(exc)
    return (isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or "can't allocate memory" in text
            or "out of memory" in text.lower())


def release_free_memory() -> None:
    """Give memory the batch no longer holds back to the system: CUDA's cached blocks, and on Linux the free
    pages glibc's malloc keeps after large CPU tensors are freed (a server's resident memory otherwise stays
    near its peak: 5.1 GB of a 7.7 GB peak, 1.1 GB at the start, in benchmarks/serve_memory.py)."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to ask
        pass


def raise_if_out_of_memory(exc: BaseException) -> None:
    """Every out-of-memory as torch.OutOfMemoryError, on CPU too, so callers can fail one request alone."""
    if out_of_memory(exc) and not isinstance(exc, torch.OutOfMemoryError):
        raise torch.OutOfMemoryError(_first_line(exc)) from exc


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
