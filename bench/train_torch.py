#!/usr/bin/env python3
"""The bench/train.ts step in PyTorch + PEFT on the CPU, for a throughput ratio.

Same batch shape (B examples x T tokens, loss on the last L tokens), LoRA rank r / alpha 2r on
q k v o gate up down, Activation Oracles injection at the output of block 1
(h + ||h|| * v / ||v||, detached), AdamW with clipping, float32, the model's default attention.
Prints one JSON line: tokensPerSec, msPerStep, peakRssMb, params.
"""
import argparse
import json
import resource
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM


def build_model(spec: str) -> LlamaForCausalLM:
    if spec == "1b-4l":
        # Llama-3.2-1B's layer shapes, 4 layers, tied output: the random GGUF bench/train.ts writes.
        cfg = LlamaConfig(
            vocab_size=128256,
            hidden_size=2048,
            intermediate_size=8192,
            num_hidden_layers=4,
            num_attention_heads=32,
            num_key_value_heads=8,
            max_position_embeddings=4096,
            rms_norm_eps=1e-5,
            tie_word_embeddings=True,
        )
        return LlamaForCausalLM(cfg)
    return LlamaForCausalLM.from_pretrained(spec, dtype=torch.float32)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="HF folder, or 1b-4l")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--loss-tokens", type=int, default=16)
    ap.add_argument("--inject-layer", type=int, default=1)
    ap.add_argument(
        "--loss-rows-only",
        action="store_true",
        help="output head on the loss rows only, as the engine does (HF's default loss runs it on every row)",
    )
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = build_model(a.model)
    model.config.use_cache = False
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(model, LoraConfig(r=a.rank, lora_alpha=2 * a.rank, target_modules=targets, lora_dropout=0.0))
    model.train()

    g = torch.Generator().manual_seed(11)
    vocab = min(model.config.vocab_size, 2000)
    ids = torch.randint(0, vocab, (a.batch, a.seq), generator=g)
    labels = ids.clone()
    labels[:, : a.seq - a.loss_tokens] = -100
    d = model.config.hidden_size
    vectors = torch.rand(a.batch, d, generator=g) - 0.5
    pos = 5

    def inject(_module, _inputs, output):
        h = output[0] if isinstance(output, tuple) else output
        hp = h[:, pos, :]
        term = (hp.norm(dim=-1, keepdim=True) * torch.nn.functional.normalize(vectors, dim=-1)).detach()
        h = h.clone()
        h[:, pos, :] = hp + term
        return (h, *output[1:]) if isinstance(output, tuple) else h

    model.base_model.model.model.layers[a.inject_layer].register_forward_hook(inject)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.01)

    inner = model.base_model.model  # the LlamaForCausalLM, its Linear layers LoRA-wrapped in place
    first = a.seq - a.loss_tokens

    def loss_fn() -> torch.Tensor:
        if not a.loss_rows_only:
            return model(input_ids=ids, labels=labels).loss
        h = inner.model(input_ids=ids).last_hidden_state[:, first - 1 : a.seq - 1, :]
        logits = inner.lm_head(h)
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, first:].reshape(-1))

    def step() -> None:
        loss = loss_fn()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # first step: allocator warm-up, as bench/train.ts
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    dt = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "tokensPerSec": a.batch * a.seq * a.steps / dt,
                "msPerStep": dt / a.steps * 1000,
                "peakRssMb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "params": sum(p.numel() for p in params),
            }
        )
    )


if __name__ == "__main__":
    main()
