"""Files uploaded in the app are kept next to the store, so a run created from one can be reopened later."""

from __future__ import annotations

import re
from pathlib import Path

UPLOADS = "uploads"


def save_upload(store_path: str | Path, filename: str, data: bytes) -> Path:
    """Write uploaded bytes to <store folder>/uploads/<safe name> and return that path.

    A different file uploaded under a name already taken gets "-2", "-3", … instead of replacing
    the first: a stored run reads its data from that path when it is reopened.
    """
    folder = Path(store_path).resolve().parent / UPLOADS
    folder.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", Path(filename).name).lstrip(".") or "upload.jsonl"
    stem, dot, ext = safe.partition(".")
    target, n = folder / safe, 1
    while target.exists() and target.read_bytes() != data:
        n += 1
        target = folder / f"{stem}-{n}{dot}{ext}"
    if not target.exists():
        target.write_bytes(data)
    return target
