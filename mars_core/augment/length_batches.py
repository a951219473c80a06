"""Which rows decode together when an engine cannot pad: batches planned by a cost model of decoding steps.

CTranslate2's ``generate_batch`` has no attention mask for decoder-only prompts. It forwards a batch's
prompts at once only up to the shortest one; every further prompt token of a longer row goes through
the decoding loop one step at a time, as if it were generated ("constrained decoding"). That is exact
(greedy rows in float32 match decoding each row alone: tests/augment/test_ct2_paraphraser.py), but it
costs: a row whose prompt is 100 tokens longer than its batch's shortest spends 100 extra steps.

So the plan trades two costs, both counted in row-steps (one row through one decoding step):
  * every step of a batch costs ``step_rows`` row-steps whatever its size (reading the weights, the
    sampler, the per-step call overhead), so fewer, fuller batches are cheaper;
  * every prompt token beyond the batch's shortest prompt costs one row-step.
A batch of rows i..j (sorted by prompt length) lasts max_k(prompt_k - prompt_i + gen_k) steps. The
plan minimises the modelled total exactly (dynamic programming over the sorted rows, O(n x max_batch)).
"""

from __future__ import annotations

from collections.abc import Sequence


def plan_batches(prompt_lengths: Sequence[int], gen_lengths: Sequence[int], max_batch: int,
                 step_rows: float) -> list[list[int]]:
    """Row indices grouped into batches (each sorted by prompt length) minimising the modelled decoding cost.

    ``gen_lengths`` are the expected generated tokens of each row (an estimate: the cost model only
    ranks plans). Ties in prompt length keep the input order, so equal inputs give equal plans.
    """
    n = len(prompt_lengths)
    if len(gen_lengths) != n:
        raise ValueError(f"{len(gen_lengths)} generation lengths for {n} prompts")
    if max_batch < 1:
        raise ValueError(f"max_batch must be at least 1, got {max_batch}")
    if step_rows < 0:
        raise ValueError(f"step_rows must be >= 0, got {step_rows}")
    order = sorted(range(n), key=lambda i: prompt_lengths[i])
    length = [prompt_lengths[i] for i in order]
    gen = [gen_lengths[i] for i in order]
    best = [0.0] + [float("inf")] * n  # best[j]: cheapest plan of the first j sorted rows
    cut = [0] * (n + 1)
    for i in range(n):  # a batch starting at sorted row i (its shortest prompt)
        steps, waste = 0, 0
        for j in range(i, min(n, i + max_batch)):
            steps = max(steps, length[j] - length[i] + gen[j])
            waste += length[j] - length[i]
            cost = best[i] + step_rows * steps + waste
            if cost < best[j + 1]:
                best[j + 1], cut[j + 1] = cost, i
    batches, j = [], n
    while j > 0:
        batches.append(order[cut[j] : j])
        j = cut[j]
    return batches[::-1]


def modelled_cost(batches: Sequence[Sequence[int]], prompt_lengths: Sequence[int], gen_lengths: Sequence[int],
                  step_rows: float) -> float:
    """The cost ``plan_batches`` minimises, of any grouping (for tests and benchmarks)."""
    total = 0.0
    for batch in batches:
        shortest = min(prompt_lengths[i] for i in batch)
        total += step_rows * max(prompt_lengths[i] - shortest + gen_lengths[i] for i in batch)
        total += sum(prompt_lengths[i] - shortest for i in batch)
    return total


def padding_groups(lengths: Sequence[int], waste: float = 0.25, max_tokens: int = 2048) -> list[list[int]]:
    """Indices of ``lengths`` (sorted by length) cut into runs that may share one left-padded pass: a run grows
    while its padded size (longest x count) stays within ``1 + waste`` of its real tokens and within
    ``max_tokens`` (a longer row goes alone).

    Why: a padded position costs a forward pass as much as a real token. The rows a decoding batch
    admits together can differ tenfold in prompt length (real HH responses), and one padded pass over
    the longest then computed mostly padding. And a pass's attention scores grow with rows x length²:
    32 long rows in one pass took twice as long as the same rows in passes of a few."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    for i in order:
        group = groups[-1] if groups else []
        padded = lengths[i] * (len(group) + 1) if group else 0
        if group and padded <= max_tokens and padded <= (1 + waste) * (sum(lengths[j] for j in group) + lengths[i]):
            group.append(i)
        else:
            groups.append([i])
    return groups
