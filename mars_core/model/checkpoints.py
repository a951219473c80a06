"""Fine-tuned reward checkpoints on disk, referenced (never pickled) from the store.

A checkpoint is a plain ``save_pretrained`` folder (safetensors weights, config, tokenizer), the same
layout TRL's RewardTrainer writes, so ours load in plain transformers and theirs load here. The store
keeps only a small state dict of numpy strings/ints pointing at the folder: the SQLite file stays
small and no pickle is ever read back.
"""

from __future__ import annotations

import secrets
import shutil
import time
from pathlib import Path

import numpy as np

STATE_KIND = "finetune-checkpoint"


def checkpoint_state(folder: Path, fits: int, base: str) -> dict[str, np.ndarray]:
    """The store's model_state for a fine-tuned model: a path, the fit count and the base (all plain numpy)."""
    return {
        "kind": np.array(STATE_KIND),
        "checkpoint": np.array(str(Path(folder).resolve())),
        "fits": np.array(int(fits), dtype=np.int64),
        "base": np.array(base),
    }


def read_checkpoint_state(state: dict[str, np.ndarray]) -> tuple[Path, int]:
    """(folder, fit count) from a stored state; a clear error for linear weights or a missing folder."""
    if "checkpoint" not in state:
        keys = ", ".join(sorted(state)) or "nothing"
        raise ValueError(
            f"stored model state holds {keys}, not a fine-tuned checkpoint: was this run trained with the linear model?"
        )
    folder = Path(str(np.asarray(state["checkpoint"])))
    if not (folder / "config.json").exists():
        raise FileNotFoundError(
            f"the store references checkpoint folder {folder}, but it is missing or incomplete "
            "(moved or deleted?); restore it or re-run the epoch"
        )
    return folder, int(np.asarray(state.get("fits", 0)))


def replace_folder(tmp: Path, final: Path) -> None:
    """Move a freshly written checkpoint into place; an older one at the same path (an uncommitted redo) goes."""
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


def new_run_folder(store_path: str | Path) -> Path:
    """A fresh folder for a new run's checkpoints, beside the database: ``<db stem>-runs/run-<time>-<hex>/``.

    Named before the run has an id (epoch 0 is stored together with the run, so its weights must be on
    disk first); every epoch's stored state holds its own folder's absolute path, and a reopened run
    keeps writing next to the checkpoint it loaded. A process killed during creation leaves only this
    unreferenced folder behind.
    """
    store_path = Path(store_path)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return store_path.parent / f"{store_path.stem}-runs" / f"run-{stamp}-{secrets.token_hex(3)}"
