"""Paraphrase throughput: generated tokens/s and texts/s, baseline vs the knobs we tried.

    .venv/bin/python bench/paraphrase.py [--quick] [--json PATH]

"baseline" is plain ``model.generate`` the way one writes it first (model's own long system
prompt, batch 8 in input order, fixed max_new_tokens, fp32, torch defaults). The other
``knob:`` rows change one thing at a time from the final settings; ``final`` rows go through
``LMParaphraser`` itself. The machine is shared, so rows are noisy: compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from mars_core.augment.paraphrase import LMParaphraser, ParaphraseConfig  # noqa: E402

TEXTS = [
    "I'm sorry, but I can't help with that request.",
    "Paris is the capital of France.",
    "You could try turning it off and on again.",
    "Sure, I can help with that. What kind of cake would you like to bake?",
    "I don't think that's a good idea. Taking someone else's property without permission is stealing, and it "
    "could get you into serious trouble.",
    "The Great Wall of China is over 13,000 miles long and was built over many centuries to protect Chinese "
    "states from invasions.",
    "To boil an egg, place it in a pot of cold water, bring the water to a boil, then let it simmer for about "
    "nine minutes before cooling it in ice water.",
    "Honestly, I'd recommend talking to a doctor about those symptoms rather than relying on advice from the "
    "internet.",
    "Photosynthesis is the process plants use to turn sunlight, water and carbon dioxide into glucose and oxygen.",
    "I'm not able to give legal advice, but a local tenant's rights organization could tell you what your "
    "options are.",
    "Yes.",
    "That sounds really hard. Do you want to tell me more about what happened?",
    "A good way to start running is to alternate one minute of jogging with two minutes of walking, three times "
    "a week, and slowly increase the jogging time as you get fitter. Make sure you have comfortable shoes, and "
    "don't worry about speed at first.",
    "Water boils at 100 degrees Celsius at sea level, but at higher altitudes it boils at a lower temperature "
    "because the air pressure is lower.",
    "I can't help you hack into someone's email account. If you've lost access to your own account, the "
    "provider's recovery page is the best place to start.",
    "The French Revolution began in 1789 and led to the end of the monarchy, the rise of Napoleon, and lasting "
    "changes to European politics. It was driven by financial crisis, social inequality, and new ideas about "
    "rights and citizenship.",
    "Try adding a pinch of salt to your coffee grounds; it takes the edge off the bitterness.",
    "To change a flat tire, first loosen the lug nuts slightly while the car is still on the ground. Then jack "
    "up the car, remove the nuts and the flat tire, put on the spare, and tighten the nuts by hand. Lower the "
    "car and finish tightening the nuts in a star pattern.",
    "No, dogs should not eat chocolate. It contains theobromine, which is toxic to them.",
    "Here are some ideas: a picnic in the park, a cooking class together, or a visit to a local museum.",
    "I understand you're frustrated, but I won't write insults about your coworker. Would you like help "
    "figuring out how to talk to them about the problem instead?",
    "The mitochondria is the part of the cell that produces most of its energy.",
    "It depends on your budget. A used car is cheaper up front, but a new car usually comes with a warranty and "
    "fewer repairs in the first few years.",
    "Drinking enough water, sleeping seven to nine hours, and getting regular exercise are three of the simplest "
    "ways to improve your health. None of them are exciting, but together they make a big difference over time.",
    "I'm not sure what you mean. Could you clarify your question?",
    "The moon takes about 27 days to orbit the Earth.",
    "If you want to learn Python, start with a beginner tutorial, write small programs every day, and build a "
    "project you care about, like a budget tracker or a simple game.",
    "Sorry, I can't share personal information about private individuals.",
    "Shakespeare wrote Romeo and Juliet around 1595. It's a tragedy about two young lovers from feuding families "
    "in Verona.",
    "To make a paper airplane, fold a sheet of paper in half lengthwise, fold the top corners to the center line, "
    "fold the new edges to the center again, then fold the plane in half and fold down the wings.",
    "That's a great question! The sky looks blue because air molecules scatter blue light from the sun more than "
    "other colors.",
    "Please don't do that. If you're thinking about hurting yourself, you can call or text a crisis line right "
    "now and talk to someone who can help.",
]


def plain_generate(
    para: LMParaphraser,
    texts: list[str],
    *,
    batch_size: int = 8,
    sort: bool = True,
    short_system: bool = True,
    scaled_budget: bool = True,
    fixed_max_new_tokens: int = 128,
    inference_mode: bool = True,
    greedy: bool = False,
    static_cache: bool = False,
    n: int = 1,
) -> dict:
    """One knob setting on the paraphraser's own model and tokenizer; counts tokens up to EOS."""
    tok, model, cfg = para.tokenizer, para.model, para.config
    instruction = cfg.instruction
    if short_system:
        prompts = [para._prompt(t, instruction) for t in texts]
    else:  # the model's built-in system prompt ("You are a helpful AI assistant named SmolLM, ...")
        prompts = [
            tok.apply_chat_template(
                [{"role": "user", "content": f"{instruction}\n\n{t}"}], tokenize=False, add_generation_prompt=True
            )
            for t in texts
        ]
    src_len = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: len(tok(prompts[i])["input_ids"])) if sort else list(
        range(len(texts))
    )
    eos = para._eos_ids
    generated, padding, started = 0, 0, time.perf_counter()
    ctx = torch.inference_mode if inference_mode else torch.no_grad
    sampling = {"do_sample": False} if greedy else {"do_sample": True, "temperature": cfg.temperature,
                                                    "top_p": cfg.top_p, "top_k": None}
    torch.manual_seed(0)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        enc = tok([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
        padding += int((enc["attention_mask"] == 0).sum()) * n
        budget = cfg.new_token_budget(max(src_len[i] for i in idx)) if scaled_budget else fixed_max_new_tokens
        extra = {"cache_implementation": "static"} if static_cache else {}
        with ctx():
            out = model.generate(**enc, max_new_tokens=budget, num_return_sequences=n, eos_token_id=eos,
                                 pad_token_id=para._pad_id, **sampling, **extra)
        new = out[:, enc["input_ids"].shape[1] :]
        is_eos = torch.isin(new, torch.tensor(eos))
        first = torch.where(is_eos.any(1), is_eos.int().argmax(1) + 1, new.shape[1])
        generated += int(first.sum())
    seconds = time.perf_counter() - started
    return {"tokens": generated, "seconds": seconds, "tok_s": generated / seconds,
            "texts_s": len(texts) / seconds, "padding_tokens": padding}


def paraphraser_row(para: LMParaphraser, texts: list[str], n: int, seed: int) -> dict:
    """The real code path, cache off, timed end to end (tokenising, sorting, extraction included)."""
    para.tokens_generated, para.seconds_generating = 0, 0.0
    started = time.perf_counter()
    out = para.paraphrase(texts, n=n, seed=seed)
    seconds = time.perf_counter() - started
    return {"tokens": para.tokens_generated, "seconds": seconds, "tok_s": para.tokens_generated / seconds,
            "texts_s": len(texts) / seconds, "empty": sum(n - len(o) for o in out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 texts and the main rows only")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "paraphrase.json"))
    parser.add_argument("--repeats", type=int, default=None, help="passes over all rows (default 2, quick 1)")
    args = parser.parse_args()
    args.repeats = args.repeats or (1 if args.quick else 2)
    texts = TEXTS[::4] if args.quick else TEXTS
    started = time.perf_counter()
    para = LMParaphraser(ParaphraseConfig())
    load_s = time.perf_counter() - started
    default_threads = torch.get_num_threads()
    plain_generate(para, texts[:2], batch_size=2, fixed_max_new_tokens=4, scaled_budget=False)  # warm-up

    baseline = {"sort": False, "short_system": False, "scaled_budget": False, "inference_mode": False}
    rows: list[tuple[str, dict]] = [
        ("baseline: plain generate, batch 8, fp32", lambda: plain_generate(para, texts, **baseline)),
        ("final: LMParaphraser n=1", lambda: paraphraser_row(para, texts, 1, 0)),
        ("final: LMParaphraser n=2 (16 rows/batch)", lambda: paraphraser_row(para, texts, 2, 0)),
    ]
    if not args.quick:
        rows += [
            ("knob: generate's full-vocab top-p sampler", lambda: _with_config(para, replace(para.config, top_k=0),
                                                                             lambda: paraphraser_row(para, texts, 1, 0))),
            ("knob: batch 16 texts (final)", lambda: _with_config(para, replace(para.config, batch_size=16),
                                                                  lambda: paraphraser_row(para, texts, 1, 0))),
            ("knob: 1 thread (final)", lambda: _with_threads(1, lambda: paraphraser_row(para, texts, 1, 0))),
            ("knob: final but generate's sampler (plain generate)", lambda: plain_generate(para, texts)),
            ("knob: unsorted", lambda: plain_generate(para, texts, sort=False)),
            ("knob: long (model default) system prompt", lambda: plain_generate(para, texts, short_system=False)),
            ("knob: fixed max_new_tokens=128", lambda: plain_generate(para, texts, scaled_budget=False)),
            ("knob: no_grad instead of inference_mode", lambda: plain_generate(para, texts, inference_mode=False)),
            ("knob: greedy", lambda: plain_generate(para, texts, greedy=True)),
            ("knob: static KV cache", lambda: plain_generate(para, texts, static_cache=True)),
            ("knob: batch 16", lambda: plain_generate(para, texts, batch_size=16)),
            ("knob: batch 32", lambda: plain_generate(para, texts, batch_size=32)),
            ("knob: 1 thread (plain generate)", lambda: _with_threads(1, lambda: plain_generate(para, texts))),
        ]
    # Round-robin passes, best pass per row: on a shared machine a neighbour's burst should not
    # decide which knob wins. All passes are kept in the JSON.
    passes: dict[str, list[dict]] = {name: [] for name, _ in rows}
    for rep in range(args.repeats):
        for name, run in rows:
            passes[name].append(run())
            last = passes[name][-1]
            print(f"  pass {rep + 1}: {name:58s} {last['tok_s']:7.1f} tok/s {last['seconds']:7.1f} s "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
    results = []
    print(f"{'setting (best of ' + str(args.repeats) + ')':66s} {'tok/s':>7s} {'texts/s':>8s} {'tokens':>7s} {'sec':>7s}")
    for name, _ in rows:
        best = max(passes[name], key=lambda r: r["texts_s"])
        results.append({"setting": name, **best, "passes": passes[name]})
        print(f"{name:66s} {best['tok_s']:7.1f} {best['texts_s']:8.2f} {best['tokens']:7d} {best['seconds']:7.1f}")
    report = {
        "texts": len(texts), "model": para.config.model, "name": para.name, "load_seconds": load_s,
        "torch_threads": default_threads, "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None, "rows": results,
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")


def _with_config(para: LMParaphraser, config: ParaphraseConfig, run):  # noqa: ANN001, ANN202
    previous = para.config
    para.config = config
    try:
        return run()
    finally:
        para.config = previous


def _with_threads(threads: int, run):  # noqa: ANN001, ANN202
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return run()
    finally:
        torch.set_num_threads(previous)


if __name__ == "__main__":
    main()
