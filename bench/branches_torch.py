#!/usr/bin/env python3
"""The seed's trace method in PyTorch + HF transformers, for bench/branches.ts.

What the seed's users run today: no KV cache, the whole sequence of input embeddings re-evaluated
by the HF model at every latent step and every answer token of every variant (the main run, the
early decodes and the zero / skip / noise ablation of each latent step), on the same model
exported by `lro-native export-hf`. The latent fed back is head(h): h the final-norm state of the
last row, head CODI's projection (prj.*: Linear, GELU, Linear, LayerNorm) or Coconut's
e = latent_scale x h. Answers are greedy (lowest id on ties) with the head's excluded ids banned.

Reads one JSON request (argv[1]): hf, prompt (ids), variants [{name, latents, ablation?: {kind,
step}}], noiseDirections {step: unit vector} (the engine's seeded draws: a noise ablation feeds
e + ||e|| x direction), maxAnswer, exclude, eog, eot, threads, lnEps.
Prints one JSON line: ms (the variants' wall time), answers {name: [ids]}.
"""
import json
import sys
import time

import torch
from safetensors.torch import load_file
from transformers import LlamaForCausalLM


def main() -> None:
    req = json.load(open(sys.argv[1]))
    torch.set_num_threads(req["threads"])
    folder = req["hf"]
    model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.eval()
    readme = json.load(open(f"{folder}/README.json"))
    mode = readme["latent_mode"]
    scale = float(readme.get("latent_scale", 1.0))
    emb = model.get_input_embeddings().weight.detach()
    d = emb.shape[1]

    if mode == "codi":
        sd = load_file(f"{folder}/model.safetensors")
        w1, b1 = sd["prj.1.weight"], sd["prj.1.bias"]
        w2, b2 = sd["prj.3.weight"], sd["prj.3.bias"]
        lw, lb = sd["prj.ln.weight"], sd["prj.ln.bias"]

        def head(h: torch.Tensor) -> torch.Tensor:
            y = torch.nn.functional.linear(torch.nn.functional.gelu(torch.nn.functional.linear(h, w1, b1)), w2, b2)
            return torch.nn.functional.layer_norm(y, (d,), lw, lb, req["lnEps"])

    else:

        def head(h: torch.Tensor) -> torch.Tensor:
            return h * scale

    noise = {int(k): torch.tensor(v) for k, v in req["noiseDirections"].items()}
    exclude = torch.tensor(req["exclude"], dtype=torch.long)
    eog = set(req["eog"])

    def full(rows: list) -> tuple:
        out = model(inputs_embeds=torch.stack(rows)[None], output_hidden_states=True, use_cache=False)
        return out.hidden_states[-1][0, -1], out.logits[0, -1]

    answers = {}
    t0 = time.perf_counter()
    with torch.no_grad():
        for v in req["variants"]:
            rows = [emb[i] for i in req["prompt"]]
            h, logits = full(rows)
            fed = []
            a = v.get("ablation")
            for t in range(v["latents"]):
                e = head(h)
                if a and a["step"] == t:
                    e = e + e.norm() * noise[t] if a["kind"] == "noise" else torch.zeros(d)
                elif a and a["kind"] == "skip" and a["step"] >= 1 and a["step"] + 1 == t:
                    e = fed[a["step"] - 1]
                fed.append(e)
                rows.append(e)
                h, logits = full(rows)
            rows.append(emb[req["eot"]])
            answer = []
            for _ in range(req["maxAnswer"]):
                h, logits = full(rows)
                logits = logits.clone()
                logits[exclude] = -float("inf")
                tok = int(torch.argmax(logits))
                if tok in eog:
                    break
                answer.append(tok)
                rows.append(emb[tok])
            answers[v["name"]] = answer
    ms = (time.perf_counter() - t0) * 1000
    print(json.dumps({"ms": ms, "answers": answers}))


if __name__ == "__main__":
    main()
