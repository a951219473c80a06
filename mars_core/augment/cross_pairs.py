"""Cross-pair construction: paraphrases of y+ and y− crossed into new labelled pairs.

A paraphrase is assumed to keep its response's quality, so every combination of
{y+, paraphrases of y+} × {y−, paraphrases of y−} is a pair with the original label.
"""

from __future__ import annotations

from collections.abc import Sequence

from mars_core.data.pairs import PreferencePair

Paraphrase = tuple[int | None, str]  # (paraphrase store id, or None if not stored yet; text)


def count_cross_pairs(n_plus: int, n_minus: int) -> int:
    """(n+ + 1)(n− + 1) − 1: the most new pairs n+ and n− paraphrases can give (all texts distinct)."""
    if n_plus < 0 or n_minus < 0:
        raise ValueError(f"paraphrase counts must be ≥ 0, got n+={n_plus}, n−={n_minus}")
    return (n_plus + 1) * (n_minus + 1) - 1


def cross_pairs(
    parent: PreferencePair,
    chosen_paraphrases: Sequence[Paraphrase],
    rejected_paraphrases: Sequence[Paraphrase],
    epoch: int,
) -> list[PreferencePair]:
    """All new pairs from crossing the parent's responses with their paraphrases.

    Index 0 is the parent's own text, i ≥ 1 the i-th paraphrase in the list. Combination (i, j)
    becomes pair id f"{parent.id}~e{epoch}~c{i}r{j}": for an original parent that is
    f"{root}~e{t}~c{i}r{j}"; a synthetic parent's id already holds its own root, epoch and
    indices, so children of different synthetic pairs, and of one parent at different epochs,
    never collide. parent_id always names the original pair (the root), so provenance and
    reviewer rejections trace back in one step.

    Skipped: the original combination (0, 0); combinations whose chosen and rejected texts are
    equal (no preference to learn); and any text pair already produced or equal to the parent's
    (a paraphraser that echoes its input would otherwise duplicate data). Equality ignores
    surrounding whitespace.
    """
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
        raise ValueError(f"epoch must be a refinement epoch ≥ 1 (0 is the original data), got {epoch!r}")
    root_id = parent.parent_id if parent.is_synthetic else parent.id
    chosen: list[Paraphrase] = [(parent.chosen_paraphrase_id, parent.chosen), *chosen_paraphrases]
    rejected: list[Paraphrase] = [(parent.rejected_paraphrase_id, parent.rejected), *rejected_paraphrases]
    # Index 0 is the parent's text: for a synthetic parent that text may itself be a paraphrase,
    # so its store id is carried over; for an original parent these ids are None.
    seen = {(parent.chosen.strip(), parent.rejected.strip())}
    out: list[PreferencePair] = []
    for i, (c_id, c_text) in enumerate(chosen):
        for j, (r_id, r_text) in enumerate(rejected):
            key = (c_text.strip(), r_text.strip())
            if key[0] == key[1] or key in seen:
                continue
            seen.add(key)
            out.append(
                PreferencePair(
                    id=f"{parent.id}~e{epoch}~c{i}r{j}",
                    prompt=parent.prompt,
                    chosen=c_text,
                    rejected=r_text,
                    source="synthetic",
                    parent_id=root_id,
                    epoch_added=epoch,
                    gold_margin=parent.gold_margin,
                    chosen_paraphrase_id=c_id,
                    rejected_paraphrase_id=r_id,
                )
            )
    return out
