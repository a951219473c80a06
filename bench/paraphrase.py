"""Paraphrase throughput on demo-like and real HH-RLHF texts: generated tokens/s, texts/s, where the time goes.

    .venv/bin/python bench/paraphrase.py [--quick] [--json PATH]

Rows (each on the same texts, n = 1, cache off, best of --repeats passes):
  generate()            transformers' generate with the same few-shot prompts, batch 16, length-sorted,
                        left-padded, its own sampler: what the paraphraser did before issue 11, on today's prompt
  ours                  LMParaphraser: finished rows leave the batch, shared prompt prefix computed and stored
                        once (cascade attention), per-row seeded top-k/top-p sampler, default dtype
  ours, float32         the same in float32, where the default resolves to another precision
  ours, int8            the same with int8 layers (--paraphrase-dtype int8), where the default is not int8
  ours, int8, batch 32 / ours, int8, 1 thread: one knob changed at a time
  ours, no shared prefix / ours, batch 16|32|64 / ours, 1 thread: one knob changed at a time
  ours via HTTP         the same model behind serve_openai on 127.0.0.1, asked by the OpenAI client
                        (concurrency = batch size): what the OpenAI-compatible path costs over in-process
  ct2                   CT2Paraphraser (int8, static prompt prefix, batch 16), same texts, n = 1
  ct2, batch 32 / ct2, batch 48 / ct2, 1 thread: one knob changed at a time
  server                with --server URL#MODEL: any OpenAI-compatible server already running (llama.cpp's
                        llama-server, vLLM, ...), asked by the same client and settings as "ours via HTTP"
--engines picks which engines run (default both, each in its own process); --only picks rows by name. The machine is shared, so rows are noisy: compare
within one run. The real texts come from ../shared/data (or $MARS_HH_DATA).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from mars_core.augment.cascade_attention import PrefixKV  # noqa: E402
from mars_core.augment.int8_linear import int8_matmul_works  # noqa: E402
from mars_core.augment.lm_paraphraser import LMParaphraser  # noqa: E402
from mars_core.augment.paraphraser import ParaphraseConfig  # noqa: E402
from mars_core.data.schemas import split_hh_dialogue  # noqa: E402

REAL = Path(os.environ.get("MARS_HH_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" /
                          "hh_harmless_dev.jsonl"))

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


def real_texts(n: int, seed: int = 0) -> list[str]:
    """n final assistant responses from the HH-RLHF harmless file (chosen or rejected by a seeded coin)."""
    rows = [json.loads(line) for line in REAL.read_text().splitlines() if line.strip()]
    rng = random.Random(seed)
    out = []
    for i in rng.sample(range(len(rows)), len(rows)):
        try:
            text = split_hh_dialogue(rows[i][rng.choice(("chosen", "rejected"))])[1]
        except ValueError:
            continue
        if text.strip():
            out.append(text)
        if len(out) == n:
            break
    return out


def hf_generate(para: LMParaphraser, texts: list[str], batch_size: int = 16) -> dict:
    """transformers' generate on our prompts: length-sorted left-padded batches, its own top-p sampler."""
    tok = para.tokenizer
    tok.padding_side = "left"
    prompts = [para.prompt_ids(t, para.instruction) for t in texts]
    budgets = [para.config.new_token_budget(len(tok(t, add_special_tokens=False)["input_ids"])) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: len(prompts[i]))
    generated, started = 0, time.perf_counter()
    torch.manual_seed(0)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(prompts[i]) for i in idx)
        ids = torch.tensor([[para._pad_id] * (width - len(prompts[i])) + prompts[i] for i in idx])
        mask = torch.tensor([[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in idx])
        with torch.inference_mode():
            out = para.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max(budgets[i] for i in idx),
                                      do_sample=True, temperature=para.config.temperature, top_p=para.config.top_p,
                                      top_k=None, eos_token_id=para._eos_ids, pad_token_id=para._pad_id)
        new = out[:, width:]
        is_eos = torch.isin(new, torch.tensor(para._eos_ids))
        generated += int(torch.where(is_eos.any(1), is_eos.int().argmax(1) + 1, new.shape[1]).sum())
    seconds = time.perf_counter() - started
    return {"tokens": generated, "seconds": seconds, "tok_s": generated / seconds, "texts_s": len(texts) / seconds}


def rates(got, texts: list[str]) -> dict:
    """A row's figures from a ParaphraseResult of one candidate per text."""
    return {"tokens": got.tokens, "seconds": got.seconds, "tok_s": got.tokens / got.seconds,
            "texts_s": len(texts) / got.seconds, "failures": len(got.failures)}


def ours(para: LMParaphraser, texts: list[str], **changes) -> dict:
    """The real code path (cache off), with config changes; ``shared_prefix=False`` turns prefix reuse off."""
    previous, prefix = para.config, para._shared_prefix
    para.config = dataclasses.replace(previous, **{k: v for k, v in changes.items() if k != "shared_prefix"})
    if changes.get("shared_prefix") is False:
        para._shared_prefix = lambda prompts, anchor=None: PrefixKV(())
    try:
        got = para.paraphrase(texts, 1, seed=0)
    finally:
        para.config, para._shared_prefix = previous, prefix
    return rates(got, texts)


def ct2(para, texts: list[str], **changes) -> dict:
    """The CTranslate2 engine's real code path (cache off), with config changes."""
    previous = para.config
    para.config = dataclasses.replace(previous, **changes)
    try:
        got = para.paraphrase(texts, 1, seed=0)
    finally:
        para.config = previous
    return rates(got, texts)


def over_http(para: LMParaphraser, texts: list[str]) -> dict:
    """The same model served by serve_openai on a loopback port and asked through OpenAIParaphraser."""
    from mars_core.augment.openai_paraphraser import OpenAIParaphraser
    from mars_core.augment.serve_openai import lm_backend, serving

    with serving(lm_backend(para)) as url:
        client = OpenAIParaphraser(dataclasses.replace(para.config, model=f"openai:{url}#local",
                                                       concurrency=para.config.batch_size))
        got = client.paraphrase(texts, 1, seed=0)
    return rates(got, texts)


def external(spec: str, texts: list[str]) -> dict:
    """A server the user started (``URL#MODEL``), asked as ``over_http`` asks ours."""
    from mars_core.augment.openai_paraphraser import OpenAIParaphraser

    config = ParaphraseConfig()
    client = OpenAIParaphraser(dataclasses.replace(config, model=f"openai:{spec}", concurrency=config.batch_size))
    got = client.paraphrase(texts, 1, seed=0)
    return rates(got, texts)


def with_threads(threads: int, run):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return run()
    finally:
        torch.set_num_threads(previous)


def each_engine_alone(args: argparse.Namespace, engines: list[str]) -> None:
    """One process per engine, then one report. In one process, CTranslate2's OpenMP threads and torch's
    compete for the 2 cores: loading ct2 beside torch made torch's rows 2x slower (118 against 54 tokens/s
    on the demo-like texts)."""
    final = Path(args.json)
    same = ["--real", str(args.real), *(["--repeats", str(args.repeats)] if args.repeats else []),
            *(["--quick"] if args.quick else []), *(["--only", args.only] if args.only else [])]
    reports = []
    for engine in engines:
        part = final.with_name(f"{final.stem}.{engine}.json")
        subprocess.run([sys.executable, __file__, *same, "--engines", engine, "--json", str(part)], check=True)
        reports.append(json.loads(part.read_text()))
        part.unlink()
    merged = {**reports[0], "command": " ".join(sys.argv), "names": [n for r in reports for n in r["names"]],
              "load_seconds": {k: v for r in reports for k, v in r["load_seconds"].items()},
              "rows": [row for r in reports for row in r["rows"]]}
    final.parent.mkdir(parents=True, exist_ok=True)
    final.write_text(json.dumps(merged, indent=2))
    print(f"wrote {final} (one process per engine)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16 texts per set, main rows only")
    parser.add_argument("--real", type=int, default=48, help="real HH-RLHF responses")
    parser.add_argument("--repeats", type=int, default=None, help="passes over all rows (default 2, quick 1)")
    parser.add_argument("--engines", default="transformers,ct2", help="comma-separated: transformers, ct2")
    parser.add_argument("--only", default=None,
                        help="semicolon-separated row names to run (e.g. 'ours;ours, batch 32'); default all")
    parser.add_argument("--server", default=None,
                        help="URL#MODEL of a running OpenAI-compatible server: adds the row 'server' (one engine only)")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "paraphrase.json"))
    args = parser.parse_args()
    only = set(args.only.split(";")) if args.only else None
    repeats = args.repeats or (1 if args.quick else 2)
    engines = args.engines.split(",")
    if len(engines) > 1:
        return each_engine_alone(args, engines)
    load_s: dict[str, float] = {}
    para = fast = para32 = para8 = None
    if "transformers" in engines:
        started = time.perf_counter()
        para = LMParaphraser(ParaphraseConfig(engine="transformers"))
        load_s["transformers"] = time.perf_counter() - started
        ours(para, TEXTS[:2], min_new_tokens=1, max_new_tokens=4)  # warm-up
        if para.precision != "float32":  # the default runs in another precision here: float32 beside it
            para32 = LMParaphraser(ParaphraseConfig(engine="transformers", dtype="float32"))
            ours(para32, TEXTS[:2], min_new_tokens=1, max_new_tokens=4)
        if para.precision != "int8" and int8_matmul_works():
            para8 = LMParaphraser(ParaphraseConfig(engine="transformers", dtype="int8"))
            ours(para8, TEXTS[:2], min_new_tokens=1, max_new_tokens=4)
    if "ct2" in engines:
        from mars_core.augment.ct2_paraphraser import CT2Paraphraser

        started = time.perf_counter()
        fast = CT2Paraphraser(ParaphraseConfig(engine="ct2"), progress=print)
        load_s["ct2"] = time.perf_counter() - started
        ct2(fast, TEXTS[:2], min_new_tokens=1, max_new_tokens=4)  # warm-up (caches the static prompt)
    sets = {"demo-like": TEXTS[::2] if args.quick else TEXTS,
            "real HH": real_texts(16 if args.quick else args.real) if REAL.exists() else []}
    rows = []
    for set_name, texts in sets.items():
        if not texts:
            print(f"skipping {set_name}: {REAL} not found")
            continue
        cases = []
        if para is not None:
            cases += [("generate()", lambda t=texts: hf_generate(para, t)), ("ours", lambda t=texts: ours(para, t)),
                      ("ours via HTTP", lambda t=texts: over_http(para, t))]
            if para32 is not None:
                cases += [("ours, float32", lambda t=texts: ours(para32, t))]
            if para8 is not None:
                cases += [("ours, int8", lambda t=texts: ours(para8, t))]
                if not args.quick:
                    cases += [("ours, int8, batch 32", lambda t=texts: ours(para8, t, batch_size=32)),
                              ("ours, int8, 1 thread", lambda t=texts: with_threads(1, lambda: ours(para8, t)))]
            if not args.quick:
                cases += [("ours, no shared prefix", lambda t=texts: ours(para, t, shared_prefix=False)),
                          ("ours, batch 16", lambda t=texts: ours(para, t, batch_size=16)),
                          ("ours, batch 32", lambda t=texts: ours(para, t, batch_size=32)),
                          ("ours, batch 64", lambda t=texts: ours(para, t, batch_size=64)),
                          ("ours, 1 thread", lambda t=texts: with_threads(1, lambda: ours(para, t)))]
        if fast is not None:
            cases += [("ct2", lambda t=texts: ct2(fast, t))]
            if not args.quick:
                cases += [("ct2, batch 32", lambda t=texts: ct2(fast, t, batch_size=32)),
                          ("ct2, batch 48", lambda t=texts: ct2(fast, t, batch_size=48))]
        if args.server:
            cases += [("server", lambda t=texts: external(args.server, t))]
        for name, run in cases:
            if only is not None and name not in only:
                continue
            passes = [run() for _ in range(repeats)]
            best = max(passes, key=lambda r: r["tok_s"])
            words = sum(len(t.split()) for t in texts) / len(texts)
            rows.append({"texts": set_name, "n_texts": len(texts), "mean_words": words, "setting": name, **best,
                         "passes": passes, "load_average": os.getloadavg()[0]})
            print(f"{set_name:10s} {name:26s} {best['tok_s']:7.1f} tok/s {best['texts_s']:6.2f} texts/s "
                  f"{best['tokens']:6d} tokens {best['seconds']:6.1f} s  load {os.getloadavg()[0]:.1f}", flush=True)
    report = {"model": ParaphraseConfig().model, "names": [p.name for p in (para, para32, para8, fast) if p is not None],
              "load_seconds": load_s, "command": " ".join(sys.argv),
              "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "rows": rows}
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
