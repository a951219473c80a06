"""Whose folder is ``compare --out``: ours (a comparison we started there) or someone else's, which we never touch.

A comparison writes ``spec.json`` first, before its store and results, so a folder is one of ours exactly when
it holds a spec.json of our shape. An empty or missing folder is free. Anything else (another tool's
comparison.json and runs.db, a home folder typed by mistake) is refused before a single file is written.
"""

from __future__ import annotations

import json
from pathlib import Path

SPEC_FILE = "spec.json"
SPEC_KEYS = frozenset({"base", "strategies", "seeds", "sweep"})
SHOWN = 5


def is_our_comparison(folder: Path) -> bool:
    try:
        spec = json.loads((folder / SPEC_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(spec, dict) and SPEC_KEYS <= spec.keys() and isinstance(spec["base"], dict)


def check_out_folder(folder: str | Path) -> None:
    """ValueError unless ``folder`` is missing, empty, or a comparison of ours."""
    folder = Path(folder)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise ValueError(f"--out {folder} is a file; give a folder for the comparison")
    entries = sorted(p.name for p in folder.iterdir())
    leftover = entries == ["results"] and not any((folder / "results").iterdir())  # an older release's first step
    if not entries or leftover or is_our_comparison(folder):
        return
    shown = ", ".join(entries[:SHOWN]) + (f" and {len(entries) - SHOWN} more" if len(entries) > SHOWN else "")
    raise ValueError(f"--out {folder} is not empty and is not a comparison of ours (no {SPEC_FILE} written by "
                     f"`compare`; it holds {shown}): nothing was written there; use a new or empty folder")
