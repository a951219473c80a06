"""ONNX Runtime GenAI on the packaged paraphraser: issue 16's second candidate engine, measured, not shipped.

    .venv/bin/pip install onnxruntime-genai==0.18.0 onnx onnx_ir onnxscript   # not in requirements.txt
    .venv/bin/python bench/paraphrase_onnx.py [--precisions int8,int4] [--batches 1,16] [--real 48]

The packaged SmolLM2's float32 copy (derived_models.py) goes through GenAI's model builder once per
precision (weight-only int4/int8 MatMulNBits, int8 compute on the CPU) into ``<venv>/mars-cache/ortgenai``.
Then the texts of bench/paraphrase.py (the demo-like set and the same real HH-RLHF responses), one
candidate each, with our few-shot prompts (token ids from LMParaphraser), token budgets and sampling
settings, in length-sorted batches. Compare with bench/paraphrase.py's "ours" row of the same run.

What GenAI does not have, and this bench does not add: a prompt prefix shared by the rows (each row
prefills the whole ~390-token prompt), rows joining or leaving a running batch (a batch decodes until its
last row ends), and a random stream per row (one seed per batch).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.paraphrase import REAL, TEXTS, real_texts  # noqa: E402
from mars_core.augment.derived_models import build_once, ensure_plain  # noqa: E402
from mars_core.augment.lm_paraphraser import LMParaphraser  # noqa: E402
from mars_core.augment.paraphraser import ParaphraseConfig  # noqa: E402
from mars_core.model.encoders import DEFAULT_PARAPHRASER  # noqa: E402


def built_model(precision: str, pad_id: int) -> Path:
    """GenAI's build of the packaged model at ``precision``, made once (about 8 s)."""
    import onnxruntime_genai as og

    plain = ensure_plain(DEFAULT_PARAPHRASER)
    target = Path(sys.prefix) / "mars-cache" / "ortgenai" / f"{plain.name}-{precision}-{og.__version__}"

    def build(staged: Path) -> None:
        source = staged.parent / "hf"
        source.mkdir()
        for item in plain.iterdir():
            (source / item.name).symlink_to(item)
        # the builder reads config.architectures and config.quantization_config, which the dequantised copy
        # carries as null
        config = json.loads((plain / "config.json").read_text())
        config.pop("quantization_config", None)
        config["architectures"] = config.get("architectures") or ["LlamaForCausalLM"]
        (source / "config.json").unlink()
        (source / "config.json").write_text(json.dumps(config))
        print(f"building the {precision} ONNX model once into {target}")
        done = subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(source), "-o",
                               str(staged), "-p", precision, "-e", "cpu", "-c", str(staged.parent / "cache")],
                              capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"GenAI's model builder failed:\n{done.stderr[-3000:]}")
        # GenAI masks the input positions that hold the pad id; SmolLM2's pad is <|im_end|>, which our prompts
        # contain, so padding gets an id they never do
        genai = staged / "genai_config.json"
        settings = json.loads(genai.read_text())
        settings["model"]["pad_token_id"] = pad_id
        genai.write_text(json.dumps(settings, indent=1))

    return build_once(target, lambda path: (path / "genai_config.json").exists(), build)


def decode(model, items: list[dict], batch: int, settings: dict, eos: set[int], pad_id: int) -> dict:  # noqa: ANN001
    """One candidate per prompt in length-sorted static batches: generated tokens, seconds, prefill seconds."""
    import numpy as np
    import onnxruntime_genai as og

    order = sorted(range(len(items)), key=lambda i: len(items[i]["prompt"]))
    tokens = steps = 0
    prefill_s, started = 0.0, time.perf_counter()
    for start in range(0, len(order), batch):
        rows = [items[i] for i in order[start:start + batch]]
        width = max(len(r["prompt"]) for r in rows)
        params = og.GeneratorParams(model)
        params.set_search_options(do_sample=True, temperature=settings["temperature"], top_p=settings["top_p"],
                                  top_k=settings["top_k"], max_length=width + max(r["budget"] for r in rows),
                                  batch_size=len(rows), random_seed=start)
        generator = og.Generator(model, params)
        ids = np.array([[pad_id] * (width - len(r["prompt"])) + r["prompt"] for r in rows], dtype=np.int32)
        began = time.perf_counter()
        generator.append_tokens(ids)
        prefill_s += time.perf_counter() - began
        made, done = [0] * len(rows), [False] * len(rows)
        while not all(done) and not generator.is_done():
            generator.generate_next_token()
            steps += 1
            for j, token in enumerate(generator.get_next_tokens()):
                if not done[j]:
                    made[j] += 1
                    done[j] = int(token) in eos or made[j] >= rows[j]["budget"]
        tokens += sum(made)
    seconds = time.perf_counter() - started
    return {"tokens": tokens, "seconds": seconds, "tok_s": tokens / seconds, "prefill_s": prefill_s,
            "decode_ms_per_step": (seconds - prefill_s) / max(steps, 1) * 1e3, "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precisions", default="int8,int4")
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--real", type=int, default=48, help="real HH-RLHF responses (bench/paraphrase.py's)")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "paraphrase_onnx.json"))
    args = parser.parse_args()
    import onnxruntime_genai as og

    ours = LMParaphraser(ParaphraseConfig(engine="transformers"))  # prompts, budgets and settings: the same as ours
    sets = {"demo-like": TEXTS, "real HH": real_texts(args.real) if REAL.exists() else []}
    items = {name: [{"prompt": ours.prompt_ids(t, ours.instruction),
                     "budget": ours.config.new_token_budget(len(ours.tokenizer(t, add_special_tokens=False)["input_ids"]))}
                    for t in texts] for name, texts in sets.items() if texts}
    pad_id = ours.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    if any(pad_id in item["prompt"] for rows in items.values() for item in rows):
        raise SystemExit(f"pad id {pad_id} occurs in a prompt: pick another")
    settings = {"temperature": ours.config.temperature, "top_p": ours.config.top_p, "top_k": ours.config.top_k or 0}
    eos = set(ours._eos_ids)
    del ours
    rows = []
    print(f"{'precision':9s} {'batch':>5s}  {'texts':10s} {'tokens':>6s} {'seconds':>8s} {'tok/s':>7s} "
          f"{'prefill s':>9s} {'ms/step':>8s}")
    for precision in args.precisions.split(","):
        built = time.perf_counter()
        path = built_model(precision, pad_id)
        build_s = time.perf_counter() - built
        loading = time.perf_counter()
        model = og.Model(str(path))
        load_s = time.perf_counter() - loading
        for batch in map(int, args.batches.split(",")):
            for name, rows_of_set in items.items():
                got = decode(model, rows_of_set, batch, settings, eos, pad_id)
                rows.append({"precision": precision, "batch": batch, "texts": name, "build_s": build_s,
                             "load_s": load_s, **got})
                print(f"{precision:9s} {batch:5d}  {name:10s} {got['tokens']:6d} {got['seconds']:8.1f} "
                      f"{got['tok_s']:7.1f} {got['prefill_s']:9.1f} {got['decode_ms_per_step']:8.1f}")
        del model
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": " ".join(sys.argv), "onnxruntime_genai": og.__version__,
                               "cpu_count": os.cpu_count(), "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
