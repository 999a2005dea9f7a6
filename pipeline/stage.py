"""The one entry point of every stage: ``python -m pipeline.<stage>`` ends in :func:`run`.

Process-wide settings belong to the process that runs, not to whoever imports a module, so
they are made here and nowhere at import time: TensorFlow's C++ start-up notices are
silenced (``TF_CPP_MIN_LOG_LEVEL=3`` unless already set; set it to 0 to see them), and, for
the stages that ask, glibc's allocator is tuned to the stage's pattern (``allocator="keep"``:
the ``features`` stage keeps freed memory for reuse, :func:`keep_freed_memory`;
``allocator="unmap"``: the stages that stream batches from the feature cache hand every large
block back, :func:`unmap_large_blocks`). A bad param or another expected error ends the stage
with one line, ``<stage>: <message>``, and exit status 1; anything else keeps its traceback.

>>> if __name__ == "__main__":          # doctest: +SKIP
...     run(main, name="train", errors=(dataset.CacheError,))
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys
from typing import Callable, NoReturn

from pipeline.params import ParamsError


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ notices in this process and its children (before TF loads)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@functools.lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of handing it back to the OS.

    Feature extraction allocates and frees a few tens of MB of temporaries per block of
    clips; with glibc's defaults they are unmapped or trimmed after every block and
    page-faulted back in by the next, which costs about as much CPU as the features
    themselves (``benchmarks/features.py``). Process-wide, so only the ``features`` stage's
    entry point (and that benchmark) call it; ``ser`` and the web app leave the allocator alone: arrays up to 32 MB come from the heap, and freed heap is not trimmed.
    Returns False (and changes nothing) where mallopt is not available.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3            # from glibc's <malloc.h>
        return bool(libc.mallopt(m_trim_threshold, 1 << 30) and libc.mallopt(m_mmap_threshold, 32 << 20))
    except (OSError, AttributeError):
        return False


@functools.lru_cache(maxsize=1)
def unmap_large_blocks() -> bool:
    """Ask glibc to map every block of 512 kB or more on its own and unmap it when freed.

    Streaming training allocates and frees a few MB per batch (the features read, the
    standardised copy) from several threads. With glibc's defaults the threshold for such
    blocks rises after the first are freed, later ones come from per-thread heaps, and the
    heaps fragment: resident memory grew with the number of training steps (a 1x scale
    corpus, 12 epochs: 947 MiB anonymous memory at the peak against 603 MiB for 1 epoch;
    fixed threshold: 639 MiB; ``benchmarks/scale.py``). A fixed threshold keeps it flat.
    Process-wide: only the entry points of ``train``, ``evaluate`` and ``protocol`` (and the
    protocol's worker processes) call it. Returns False (and changes nothing) where mallopt
    is not available.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_mmap_threshold = -3                                  # from glibc's <malloc.h>
        return bool(libc.mallopt(m_mmap_threshold, 512 << 10))
    except (OSError, AttributeError):
        return False


ALLOCATORS = {"keep": keep_freed_memory, "unmap": unmap_large_blocks}


def run(main: Callable[[], int | None], *, name: str, errors: tuple[type[BaseException], ...] = (),
        allocator: str | None = None) -> NoReturn:
    """Run a stage's ``main`` as a process: settings first, then exit with its status.

    Parameters
    ----------
    main : the stage's ``main()``; its return value is the exit status (None: 0).
    name : the stage's name, the prefix of its one-line error.
    errors : expected error types besides :class:`ParamsError` (bad input the user can fix).
    allocator : ``"keep"`` (:func:`keep_freed_memory`, the ``features`` stage), ``"unmap"``
        (:func:`unmap_large_blocks`, the stages that stream from the feature cache) or None.
    """
    quiet_tensorflow()
    if allocator is not None:
        ALLOCATORS[allocator]()
    try:
        status = main()
    except (ParamsError, *errors) as err:
        sys.exit(f"{name}: {err}")
    sys.exit(status or 0)
