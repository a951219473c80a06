"""Export a run's augmented (and reviewed) data as JSONL or CSV that TRL's RewardTrainer reads as is.

Columns: prompt, chosen, rejected (what TRL needs), then provenance: id, source, parent_id,
epoch_added, gold_margin, and for synthetic pairs the review status, reviewer and time of each
paraphrase that built them. Edited paraphrases export the reviewer's text. Label corrections are applied
(a swapped pair is written reversed, a dropped one is left out except under ``all``) and recorded per row:
label_decision (keep / swap / drop / unsure, a synthetic pair showing its parent's), label_reviewer and
label_decided_at.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from mars_core.redaction import redact
from mars_core.store.sqlite import Store

EXPORT_FORMATS = ("jsonl", "csv")
SELECTIONS = ("training", "all", "reviewed")


def export_rows(store: Store, run_id: int, selection: str = "training", review_policy: str | None = None) -> list[dict[str, Any]]:
    """The rows to export.

    training: what the next step would train on under the run's review policy (originals plus allowed
    synthetic pairs); all: every stored train pair, with review state; reviewed: only synthetic pairs
    whose paraphrases were all decided by a person (accepted or edited).
    """
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}, got {selection!r}")
    policy = review_policy or store.get_run(run_id).config.get("refine", {}).get("review_policy", "auto")
    paraphrases = {p.id: p for p in store.get_paraphrases(run_id)}
    if selection == "training":
        pairs = store.training_pairs(run_id, policy)
    else:
        pairs = store.get_pairs(run_id, split="train")
        edited = {pid: p for pid, p in paraphrases.items() if p.status == "edited" and p.edited_text}
        pairs = [
            p.with_changes(
                chosen=edited[p.chosen_paraphrase_id].edited_text if p.chosen_paraphrase_id in edited else p.chosen,
                rejected=edited[p.rejected_paraphrase_id].edited_text if p.rejected_paraphrase_id in edited else p.rejected,
            )
            for p in pairs
        ]
        corrected = {p.id: p for p in store.apply_label_decisions(run_id, pairs)}
        pairs = [corrected.get(p.id, p) for p in pairs]  # dropped pairs stay in "all", marked
        if selection == "reviewed":
            pairs = [p for p in pairs if p.id in corrected]
    decisions = store.label_decisions(run_id)
    rows = []
    for pair in pairs:
        label = decisions.get(pair.parent_id if pair.is_synthetic else pair.id)
        used = [paraphrases[i] for i in (pair.chosen_paraphrase_id, pair.rejected_paraphrase_id) if i in paraphrases]
        if selection == "reviewed" and (not used or any(u.status not in ("accepted", "edited") for u in used)):
            continue
        rows.append({
            "prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected, "id": pair.id,
            "source": pair.source, "parent_id": pair.parent_id, "epoch_added": pair.epoch_added,
            "gold_margin": pair.gold_margin,
            "chosen_paraphrase_id": pair.chosen_paraphrase_id, "rejected_paraphrase_id": pair.rejected_paraphrase_id,
            "review_status": ",".join(u.status for u in used) or None,
            "reviewer": ",".join(sorted({u.reviewer for u in used if u.reviewer})) or None,
            "reviewed_at": _iso(max((u.reviewed_at for u in used if u.reviewed_at), default=None)),
            "paraphrase_model": used[0].model if used else None,
            "label_decision": label.decision if label else None,
            "label_reviewer": label.reviewer if label else None,
            "label_decided_at": _iso(label.decided_at) if label else None,
        })
    return rows


def export_run(store: Store, run_id: int, path: str | Path, selection: str = "training", fmt: str | None = None) -> int:
    """Write the rows to ``path`` (format from the suffix unless given); returns how many were written."""
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".").lower()
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"export format must be one of {', '.join(EXPORT_FORMATS)} (from the file suffix), got {fmt!r}")
    if path.is_dir():
        raise ValueError(f"cannot export to {path}: it is a folder; give a file name such as {path / 'export.jsonl'}")
    rows = export_rows(store, run_id, selection)
    data = rows_to_bytes(rows, fmt)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in [path.parent, *path.parent.parents] if p.exists() and not p.is_dir()), path.parent)
        raise ValueError(f"cannot export to {path}: {blocker} is a file, not a folder") from None
    except OSError as exc:
        raise ValueError(f"cannot export to {path}: {exc.strerror or exc}") from None
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # never leave a half-written export behind
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ValueError(f"cannot export to {path}: {exc.strerror or exc}") from None
    return len(rows)


def rows_to_bytes(rows: list[dict[str, Any]], fmt: str) -> bytes:
    """Rows as JSONL or CSV bytes (UTF-8): for files and for the app's download buttons alike."""
    rows = [{k: redact(v) if isinstance(v, str) else v for k, v in row.items()} for row in rows]  # no key leaves
    if fmt == "jsonl":
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
    if fmt == "csv":
        frame = pd.DataFrame(rows, columns=list(rows[0]) if rows else ["prompt", "chosen", "rejected"])
        return frame.to_csv(index=False).encode("utf-8")
    raise ValueError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).isoformat(timespec="seconds")
