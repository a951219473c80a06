"""A run on several processes (``torchrun`` on CPU, ``accelerate launch`` on GPUs): who writes, who waits.

Every process runs the same epoch loop on the same data, so the fine-tuned model can shard its training
and scoring across them (model/finetune.py: rows of each batch split, gradients all-reduced, scores
gathered); everything else is decided once:
- only the main process writes the user's store, prints and paraphrases; each other process works on a
  private copy of the store taken at the start (a resumed run reads its epoch from it), and receives the
  main process's paraphrases at a broadcast, so all processes train on the same pairs;
- a failure inside ``on_main`` reaches every process as the same error (no one waits at a barrier for a
  process that has died); a failure elsewhere ends that process, and the launcher (torchrun's elastic
  agent, which accelerate launch uses) then stops the others.
With one process (no WORLD_SIZE in the environment) every helper here is a plain call.
"""

from __future__ import annotations

import atexit
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from mars_core.store.sqlite import Store

T = TypeVar("T")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def _state():
    """accelerate's process state (a process-wide singleton, later shared by the fine-tuned model's Accelerator).

    It must be made with the device the model will ask for (model/finetune.py, ``resolve_precision``): made
    without ``cpu=True`` on a machine without a GPU, accelerate finds no backend for a launcher's environment
    and sets up ONE process on every rank (no process group, barriers that return at once, ``is_main_process``
    true everywhere), and the model's ``Accelerator(cpu=True)`` then inherits that state.
    """
    import torch
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available())
    if state.num_processes != world_size():
        raise RuntimeError(f"the launcher started {world_size()} processes, but accelerate set up "
                           f"{state.num_processes} ({state.distributed_type}): check the launcher's environment")
    if not _closing:
        _closing.append(atexit.register(_leave_group))
    return state


_closing: list = []


def _leave_group() -> None:
    """Leave the process group at exit: a gloo group left open can abort (SIGABRT) a process as it ends."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if world_size() > 1:
        _state().wait_for_everyone()


def broadcast(obj: T) -> T:
    """The main process's ``obj`` on every process."""
    if world_size() == 1:
        return obj
    import torch.distributed as dist

    _state()  # joins the process group (gloo on CPU, nccl on GPUs) if nothing has yet
    box = [obj if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class MainProcessError(RuntimeError):
    """What the main process raised inside ``on_main``, raised again on every other process."""


def on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on the main process only and hand its result (or its error) to all processes."""
    if world_size() == 1:
        return fn()
    result: tuple[bool, object] = (True, None)
    if is_main():
        try:
            result = (True, fn())
        except Exception as exc:  # sent to the others, then raised here unchanged
            result = (False, exc)
    ok, value = broadcast(result)
    if ok:
        return value  # type: ignore[return-value]
    if is_main():
        raise value  # type: ignore[misc]
    raise MainProcessError(f"the main process failed: {value}")


def store_path_for_this_process(db: str | Path) -> Path:
    """The user's store on the main process; elsewhere a private copy of it (sqlite backup, read-only use of
    the original), taken after the main process has opened it and before anyone writes."""
    db = Path(db)
    if world_size() == 1:
        return db
    if is_main():
        db.parent.mkdir(parents=True, exist_ok=True)
        Store(db)  # the store exists, schema and all, before anyone copies it
    barrier()
    if is_main():
        barrier()
        return db
    copy = Store(db, read_only=True).copy_to(Path(tempfile.mkdtemp(prefix=f"mars-rank{rank()}-")) / db.name)
    barrier()
    return copy
