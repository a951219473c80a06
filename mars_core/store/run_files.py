"""Files a run writes beside its store (fine-tuned checkpoints in ``<db stem>-runs/run-*``), and their removal."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np


def remove_run_folders(store_path: Path, states: Iterable[dict[str, np.ndarray] | None]) -> list[Path]:
    """Remove the run folders (``<db stem>-runs/run-*``) that these epoch states' checkpoints live in.

    Only folders inside the store's own ``<db stem>-runs/`` are touched: a checkpoint someone keeps elsewhere
    is theirs. A folder already gone is skipped.
    """
    runs_root = (store_path.parent / f"{store_path.stem}-runs").resolve()
    folders: list[Path] = []
    for state in states:
        if not state or "checkpoint" not in state:
            continue
        epoch_folder = Path(str(np.asarray(state["checkpoint"]))).resolve()
        run_folder = epoch_folder.parent
        if run_folder.parent == runs_root and run_folder.name.startswith("run-") and run_folder not in folders:
            folders.append(run_folder)
    removed = []
    for folder in folders:
        if folder.is_dir():
            shutil.rmtree(folder)
            removed.append(folder)
    return removed
