"""Paraphrase quality: yield, meaning kept, diversity and speed, on demo and on real HH-RLHF responses.

    .venv/bin/python bench/paraphrase_quality.py --data demo --setting after [--units 100] [--json PATH]
    .venv/bin/python bench/paraphrase_quality.py --data real --setting after [--model packaged:smollm2]
    .venv/bin/python bench/paraphrase_quality.py --data real --setting after --engine ct2   # or transformers

A *budget unit* asks for one kept paraphrase of one response (the Step's unit, see
mars_core/augment/selection.py). Settings:
  before  one LM generation per unit, kept if it passes the filters (how the Step worked before issue 11;
          with --prompt plain also its prompt). The "before" numbers in the issue-11 note were measured on
          the code of commit dff831b (mars_core/augment/paraphrase.py, generate()-based decoding).
  after   the Step's own path: several candidates per unit, the best that passes is kept, retries for
          units left empty, capped at ``generations_per_unit`` LM generations per unit
Meaning kept. Demo: the suite's gold reward judges paraphrases through their nearest suite response
(MiniLM cosine, among ~all the suite's responses to the same prompt, the source included): |gold(para) −
gold(source)| and how often the gold ordering of the pair flips when the paraphrase replaces its side.
The judge shares MiniLM with the filters, so it is a proxy; the printed real-text sample is for a person.
Real: side-consistency and refusal-polarity checks on *every* generated candidate (kept ones pass both).
Diversity: word-level edit distance to the source over the source's length. Speed: generated tokens/s
and wall seconds per kept paraphrase (model load excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from mars_core.augment.ct2_paraphraser import load_local  # noqa: E402
from mars_core.augment.filters import FilterConfig, ParaphraseRequest, filter_candidates, refusal_polarity  # noqa: E402
from mars_core.augment.paraphraser import DTYPES, PLAIN_TEMPLATE, ParaphraseConfig, RowParaphraser  # noqa: E402
from mars_core.augment.selection import select_paraphrases  # noqa: E402
from mars_core.data.schemas import split_hh_dialogue  # noqa: E402
from mars_core.data.text_suite import gold_reward, text_suite  # noqa: E402
from mars_core.model.encoders import TextEncoder  # noqa: E402

REAL = Path(os.environ.get("MARS_HH_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" /
                          "hh_harmless_dev.jsonl"))
RESULTS = Path(__file__).parent / "results"
OLD_INSTRUCTION = "Paraphrase the text below. Keep its meaning, change the wording. Reply with the paraphrase only."


def demo_units(n: int, seed: int) -> list[tuple[ParaphraseRequest, float, float]]:
    """(request, gold of source, gold of other) for n demo responses, one side per pair by a seeded coin."""
    rng = random.Random(seed)
    units = []
    for pair in text_suite(n_pairs=n, seed=seed + 1000):
        side = rng.choice(("chosen", "rejected"))
        src, other = (pair.chosen, pair.rejected) if side == "chosen" else (pair.rejected, pair.chosen)
        req = ParaphraseRequest(pair.id, side, src, other, pair.prompt)
        units.append((req, gold_reward(pair.prompt, src), gold_reward(pair.prompt, other)))
    return units


def real_units(n: int, seed: int) -> list[ParaphraseRequest]:
    rows = [json.loads(line) for line in REAL.read_text().splitlines() if line.strip()]
    rng = random.Random(seed)
    units = []
    for i in rng.sample(range(len(rows)), len(rows)):
        try:
            prompt, chosen = split_hh_dialogue(rows[i]["chosen"])
            _, rejected = split_hh_dialogue(rows[i]["rejected"])
        except ValueError:
            continue
        if not chosen.strip() or not rejected.strip() or chosen.strip() == rejected.strip():
            continue
        side = rng.choice(("chosen", "rejected"))
        src, other = (chosen, rejected) if side == "chosen" else (rejected, chosen)
        units.append(ParaphraseRequest(f"hh:{i}", side, src, other, prompt))
        if len(units) == n:
            break
    return units


def word_edit_distance(a: str, b: str) -> float:
    """Levenshtein distance over words, divided by the source's word count."""
    x, y = a.split(), b.split()
    prev = list(range(len(y) + 1))
    for i, wx in enumerate(x, 1):
        cur = [i] + [0] * len(y)
        for j, wy in enumerate(y, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (wx != wy))
        prev = cur
    return prev[-1] / max(len(x), 1)


class GoldJudge:
    """Gold reward of any text for a demo prompt: the gold of its nearest suite response (MiniLM cosine)."""

    def __init__(self, encoder: TextEncoder, prompts: set[str], draws: int = 4000) -> None:
        refs: dict[str, dict[str, float]] = defaultdict(dict)
        for seed in range(3):
            for p in text_suite(n_pairs=draws, seed=9000 + seed):
                if p.prompt in prompts:
                    for text in (p.chosen, p.rejected):
                        refs[p.prompt][text] = gold_reward(p.prompt, text)
        self.encoder = encoder
        self.refs = {k: (list(v), np.array(list(v.values()))) for k, v in refs.items()}
        self.emb = {k: encoder.encode(texts) for k, (texts, _) in self.refs.items()}

    def __call__(self, prompt: str, text: str, source: str, source_gold: float) -> float:
        texts, golds = self.refs[prompt]
        if source not in texts:  # the source always competes, so a faithful copy judges as itself
            emb = np.vstack([self.emb[prompt], self.encoder.encode([source])])
            golds = np.append(golds, source_gold)
        else:
            emb = self.emb[prompt]
        return float(golds[int(np.argmax(emb @ self.encoder.encode([text])[0]))])


def run_before(paraphraser: RowParaphraser, requests: list[ParaphraseRequest], encoder, seed: int) -> dict:
    """One generation per unit, filtered: how the Step spent its budget before issue 11."""
    started = time.perf_counter()
    got = paraphraser.paraphrase([r.text for r in requests], 1, seed)
    candidates = filter_candidates(requests, got.texts, encoder, FilterConfig())
    kept = {}
    for c in candidates:
        if c.kept and (c.pair_id, c.side) not in kept:
            kept[(c.pair_id, c.side)] = c.text
    return {"candidates": candidates, "kept": kept, "generations": len(requests), "tokens": got.tokens,
            "gen_seconds": got.seconds, "wall_seconds": time.perf_counter() - started, "failures": len(got.failures)}


def run_after(paraphraser: RowParaphraser, requests: list[ParaphraseRequest], encoder, seed: int) -> dict:
    """The Step's own selection path (over-generation, best that passes, retries)."""
    cfg = paraphraser.config
    started = time.perf_counter()
    out = select_paraphrases(paraphraser, requests, [1] * len(requests), encoder, FilterConfig(),
                             cfg.candidates_per_unit, cfg.generations_per_unit, seed)
    kept = {(c.pair_id, c.side): c.text for c in out.candidates if c.kept}
    return {"candidates": out.candidates, "kept": kept, "generations": out.generations, "tokens": out.tokens,
            "gen_seconds": out.seconds, "wall_seconds": time.perf_counter() - started,
            "failures": len(out.failures)}


def summarise(run: dict, requests: list[ParaphraseRequest], demo: dict | None, judge: GoldJudge | None) -> dict:
    cands, kept = run["candidates"], run["kept"]
    generated = [c for c in cands if c.text]
    by_unit = {(r.pair_id, r.side): r for r in requests}
    reasons = Counter(reason for c in cands for reason in c.reasons)
    row = {
        "units": len(requests), "generations": run["generations"], "non_empty": len(generated),
        "kept": len(kept), "kept_per_generation": len(kept) / max(run["generations"], 1),
        "kept_per_unit": len(kept) / len(requests), "failures": run["failures"],
        "reasons": dict(reasons.most_common()),
        "side_flip_rate_generated": float(np.mean([c.other_similarity >= c.similarity for c in generated
                                                   if np.isfinite(c.other_similarity)])) if generated else None,
        "polarity_flip_rate_generated": float(np.mean([{c.polarity_source, c.polarity_candidate} == {"refusal", "compliance"}
                                                       for c in generated])) if generated else None,
        "edit_distance": float(np.mean([word_edit_distance(by_unit[k].text, t) for k, t in kept.items()])) if kept else None,
        "tokens": run["tokens"], "gen_seconds": run["gen_seconds"], "wall_seconds": run["wall_seconds"],
        "tokens_per_s": run["tokens"] / run["gen_seconds"] if run["gen_seconds"] else None,
        "seconds_per_kept": run["wall_seconds"] / len(kept) if kept else None,
    }
    if demo is not None and judge is not None:
        shifts, flips = [], []
        for key, text in kept.items():
            req = by_unit[key]
            g_src, g_other = demo[key]
            g_para = judge(req.prompt, text, req.text, g_src)
            shifts.append(abs(g_para - g_src))
            flips.append(np.sign(g_para - g_other) != np.sign(g_src - g_other))
        row["gold_abs_shift"] = float(np.mean(shifts)) if shifts else None
        row["gold_order_flips"] = int(np.sum(flips))
        row["gold_order_flip_rate"] = float(np.mean(flips)) if flips else None
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("demo", "real"), required=True)
    parser.add_argument("--setting", choices=("before", "after"), required=True,
                        help="before: one generation per unit; after: the Step's selection (see the docstring)")
    parser.add_argument("--prompt", choices=("fewshot", "plain"), default="fewshot",
                        help="fewshot: the default template; plain: the system line and instruction before issue 11")
    parser.add_argument("--units", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=None, help="paraphrase model (default: ParaphraseConfig's)")
    parser.add_argument("--engine", default="transformers", choices=("auto", "ct2", "transformers"),
                        help="in-process engine (transformers: the numbers before issue 16)")
    parser.add_argument("--dtype", default=None, choices=DTYPES,
                        help="the transformers engine's precision (default: ParaphraseConfig's, auto)")
    parser.add_argument("--candidates", type=int, default=None, help="candidates_per_unit (default: the config's)")
    parser.add_argument("--cap", type=int, default=None, help="generations_per_unit (default: the config's)")
    parser.add_argument("--batch-size", type=int, default=None, help="rows decoded together (default: the config's)")
    parser.add_argument("--tag", default="", help="suffix of the JSON file name")
    parser.add_argument("--sample", type=int, default=30, help="kept pairs printed for a person to read")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    cache_path = RESULTS / "paraphrase_quality_embeddings.npz"  # the judge's ~10k suite texts, encoded once
    vectors: dict[str, np.ndarray] = dict(np.load(cache_path)) if cache_path.exists() else {}
    known = len(vectors)
    encoder = TextEncoder().for_run((lambda keys: {k: vectors[k] for k in keys if k in vectors}, vectors.update))
    config = ParaphraseConfig(engine=args.engine, **({"dtype": args.dtype} if args.dtype else {}),
                              **({"model": args.model} if args.model else {}),
                              **({"candidates_per_unit": args.candidates} if args.candidates else {}),
                              **({"generations_per_unit": args.cap} if args.cap else {}),
                              **({"batch_size": args.batch_size} if args.batch_size else {}),
                              **({"prompt_template": PLAIN_TEMPLATE, "instruction": OLD_INSTRUCTION}
                                 if args.prompt == "plain" else {}))
    load_started = time.perf_counter()
    paraphraser = load_local(config)
    load_s = time.perf_counter() - load_started
    if args.data == "demo":
        units = demo_units(args.units, args.seed)
        requests = [u[0] for u in units]
        demo = {(u[0].pair_id, u[0].side): (u[1], u[2]) for u in units}
        judge = GoldJudge(encoder, {r.prompt for r in requests})
    else:
        requests, demo, judge = real_units(args.units, args.seed), None, None
    runner = run_before if args.setting == "before" else run_after
    run = runner(paraphraser, requests, encoder, args.seed)
    row = summarise(run, requests, demo, judge)
    row.update(data=args.data, setting=args.setting, prompt=args.prompt, model=config.model, engine=args.engine, dtype=config.dtype,
               candidates_per_unit=config.candidates_per_unit, generations_per_unit=config.generations_per_unit,
               batch_size=config.batch_size, paraphraser=paraphraser.name,
               load_seconds=load_s, mean_source_words=float(np.mean([len(r.text.split()) for r in requests])),
               cpu_count=os.cpu_count(), load_average=os.getloadavg()[0], command=" ".join(sys.argv))
    by_unit = {(r.pair_id, r.side): r for r in requests}
    sample = [{"side": k[1], "polarity": refusal_polarity(by_unit[k].text), "source": by_unit[k].text,
               "paraphrase": t} for k, t in list(run["kept"].items())[: args.sample]]
    row["sample"] = sample
    for s in sample if args.data == "real" else sample[:5]:
        print(f"--- [{s['side']}, {s['polarity']}]\n  SRC: {s['source'][:400]}\n  PAR: {s['paraphrase'][:400]}")
    print(f"\n{args.data} / {args.setting} / {row['paraphraser']}")
    for key in ("units", "generations", "kept", "kept_per_generation", "kept_per_unit", "failures",
                "gold_abs_shift", "gold_order_flips", "gold_order_flip_rate", "side_flip_rate_generated",
                "polarity_flip_rate_generated", "edit_distance", "tokens", "tokens_per_s", "wall_seconds",
                "seconds_per_kept", "mean_source_words", "reasons"):
        if key in row:
            value = row[key]
            print(f"  {key:30s} {value:.3f}" if isinstance(value, float) else f"  {key:30s} {value}")
    if len(vectors) > known:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache_path, **vectors)
    path = Path(args.json or RESULTS / f"paraphrase_quality_{args.data}_{args.setting}_{args.prompt}_{args.engine}{args.tag}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(row, indent=2, default=str))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
