"""A thread hands torch's OpenMP workers back (model/openmp_workers.py), on the torch these tests run with."""

from __future__ import annotations

import os
import threading
import time

import pytest
import torch

from mars_core.model.openmp_workers import _libgomps, release_openmp_workers


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads through Linux's /proc")
def test_a_thread_that_computed_with_torch_frees_its_openmp_workers():
    if not _libgomps() or torch.get_num_threads() < 2:
        pytest.skip("torch runs on another OpenMP here, or on one thread")
    seen: dict[str, int | bool] = {}

    def work() -> None:
        a = torch.ones(256, 256)
        for _ in range(3):
            a = (a @ a).div_(256)  # parallel kernels: this thread gets its own pool of workers
        seen["computing"] = _threads()
        seen["released"] = release_openmp_workers()
        deadline = time.monotonic() + 10  # freed workers wake, then exit: give them a moment on a busy machine
        while _threads() > seen["computing"] - (torch.get_num_threads() - 1) and time.monotonic() < deadline:
            time.sleep(0.01)
        seen["after"] = _threads()
        seen["again"] = bool(torch.equal(a @ a / 256, a))  # it computes again, with a new pool

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen["released"] is True
    assert seen["after"] <= seen["computing"] - (torch.get_num_threads() - 1), seen
    assert seen["again"]
