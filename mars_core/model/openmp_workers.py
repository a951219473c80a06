"""Hand torch's CPU threads from one Python thread to another without halving the second one's speed.

Why (measured on 2 cores, docs/results.md round 10): torch's CPU kernels run on OpenMP, and GNU OpenMP
(libgomp, what torch's Linux wheels ship) keeps a pool of worker threads for every thread that ran a
parallel operation, for as long as that thread lives. Once the pools hold more threads than there are
cores, libgomp stops letting idle workers spin between operations and puts them to sleep instead, and a
decoding step is hundreds of short operations: the packaged paraphraser's step took 59-62 ms in a thread
started after the main thread had multiplied two matrices, against 29-31 ms without (97 against 47 ms at
16 rows). A model loaded in one thread and decoded in another (the loopback server's decoding thread, a job
started from a thread that scored with torch) paid that on every step. ``omp_pause_resource_all`` frees
the calling thread's pool, so the thread that takes over gets the cores at full speed.
"""

from __future__ import annotations

import ctypes
import logging
import sys

logger = logging.getLogger(__name__)

OMP_PAUSE_SOFT = 1  # omp_pause_resource_t: free the threads, keep what can be rebuilt


_opened: dict[str, ctypes.CDLL] = {}


def _libgomps() -> list[ctypes.CDLL]:
    """Every libgomp this process has loaded: torch's, and the copies other wheels bring (scikit-learn ships
    its own), each with its own pools. Read each time: a library imported later may bring another."""
    if not sys.platform.startswith("linux"):
        return []
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libgomp" in line and "/" in line}
        for path in paths - _opened.keys():
            _opened[path] = ctypes.CDLL(path)
    except OSError:
        return []
    return [_opened[path] for path in sorted(paths)]


def release_openmp_workers() -> bool:
    """Free the OpenMP worker threads of the calling thread (it gets new ones if it computes again);
    True when a libgomp was there to ask and agreed. Call it in a thread that is done with torch for a
    while, before another thread starts computing."""
    released = False
    for gomp in _libgomps():
        try:
            released = gomp.omp_pause_resource_all(OMP_PAUSE_SOFT) == 0 or released
        except AttributeError:  # a libgomp older than OpenMP 5.0 (GCC 9)
            logger.debug("a libgomp that cannot free its threads")
    return released
