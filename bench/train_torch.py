#!/usr/bin/env python3
"""The bench/train.ts steps in PyTorch (+ PEFT) on the CPU, for throughput ratios.

--objective oracle (default): the oracle LoRA step. Same batch shape (B examples x T tokens, loss on
the last L tokens), LoRA rank r / alpha 2r on q k v o gate up down, Activation Oracles injection at
the output of block 1 (h + ||h|| * v / ||v||, detached), AdamW with clipping, float32, the model's
default attention.

--objective lm | coconut | codi: a step through the latent chain, as CODI's and Coconut's own
training code runs it (a KV cache carried through the latent steps with gradients):
  lm       CE on the teacher sequence (question, CoT, answer);
  coconut  the prompt, N latent steps (the last hidden state fed back as the next input embedding),
           then the suffix; CE on the suffix's labelled tokens;
  codi     the same student with CODI's projection head (Linear, GELU, Linear, LayerNorm) on each
           latent, + the teacher's CE on the teacher sequence + SmoothL1 distillation of every
           hidden state at the distillation position (divided by the teacher state's std, mean over
           layers), the teacher's states detached.
--mode lora: LoRA on q k v o gate up down (and the head for codi); full: every parameter.
Prints one JSON line: tokensPerSec, msPerStep, peakRssMb, params; tokens counted as the engine
counts them (prompt + suffix + teacher positions; latent steps not counted).
"""
import argparse
import json
import resource
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM


def build_model(spec: str) -> LlamaForCausalLM:
    if spec.startswith("{"):
        # A shape from bench/train.ts (the GGUF's own), random weights: timing does not depend on them.
        sh = json.loads(spec)
        cfg = LlamaConfig(
            vocab_size=sh["nVocab"],
            hidden_size=sh["nEmbd"],
            intermediate_size=sh["nFf"],
            num_hidden_layers=sh["nLayer"],
            num_attention_heads=sh["nHead"],
            num_key_value_heads=sh["nHeadKv"],
            max_position_embeddings=4096,
            rms_norm_eps=1e-5,
            tie_word_embeddings=True,
        )
        return LlamaForCausalLM(cfg)
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
    ap.add_argument("--model", required=True, help="HF folder, 1b-4l, or a JSON shape")
    ap.add_argument("--objective", choices=["oracle", "lm", "coconut", "codi"], default="oracle")
    ap.add_argument("--mode", choices=["lora", "full"], default="lora")
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
    # the latent objectives' example shape (bench/train.ts's latentShape)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--latents", type=int, default=6)
    ap.add_argument("--suffix", type=int, default=8)
    ap.add_argument("--suffix-loss", type=int, default=4, help="labelled tokens at the end of the suffix")
    ap.add_argument("--teacher", type=int, default=64)
    ap.add_argument("--teacher-loss", type=int, default=28, help="labelled tokens at the end of the teacher sequence")
    ap.add_argument("--student-distill", type=int, default=3)
    ap.add_argument("--teacher-distill", type=int, default=59)
    ap.add_argument("--head-hidden", type=int, default=0, help="CODI head width (0: the model's)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.objective == "oracle":
        oracle_step(a)
    else:
        latent_step(a)


def report(a: argparse.Namespace, tokens_per_step: int, dt: float, params: list) -> None:
    print(
        json.dumps(
            {
                "tokensPerSec": tokens_per_step * a.steps / dt,
                "msPerStep": dt / a.steps * 1000,
                "peakRssMb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "params": sum(p.numel() for p in params),
            }
        )
    )


def timed_steps(a: argparse.Namespace, loss_fn, params: list, opt) -> float:
    """Seconds of a.steps AdamW steps (clipping at 1) after one untimed step."""

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
    return time.perf_counter() - t0


def lora(model: LlamaForCausalLM, rank: int):
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    return get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=targets, lora_dropout=0.0))


def oracle_step(a: argparse.Namespace) -> None:
    model = build_model(a.model)
    model.config.use_cache = False
    model = lora(model, a.rank)
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

    dt = timed_steps(a, loss_fn, params, opt)
    report(a, a.batch * a.seq, dt, params)


def latent_step(a: argparse.Namespace) -> None:
    model = build_model(a.model)
    d = model.config.hidden_size
    head = None
    if a.objective == "codi":
        hid = a.head_hidden or d
        head = torch.nn.Sequential(torch.nn.Linear(d, hid), torch.nn.GELU(), torch.nn.Linear(hid, d), torch.nn.LayerNorm(d))
    if a.mode == "lora":
        model = lora(model, a.rank)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad] + (list(head.parameters()) if head else [])
    opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.01)

    g = torch.Generator().manual_seed(11)
    vocab = model.config.vocab_size

    def seq(n: int, loss: int) -> tuple:
        ids = torch.randint(0, vocab, (a.batch, n), generator=g)
        labels = ids.clone()
        labels[:, : n - loss] = -100
        return ids, labels

    prompt, _ = seq(a.prompt, 0)
    suffix, suffix_labels = seq(a.suffix, a.suffix_loss)
    teacher, teacher_labels = seq(a.teacher, a.teacher_loss)
    ce = torch.nn.functional.cross_entropy

    def shifted_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # labels[t] is the target of row t - 1 (HF's alignment)
        return ce(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)

    def loss_fn() -> torch.Tensor:
        if a.objective == "lm":
            return model(input_ids=teacher, labels=teacher_labels).loss
        codi = a.objective == "codi"
        out = model(input_ids=prompt, use_cache=True, output_hidden_states=True)
        past = out.past_key_values
        h = out.hidden_states[-1][:, -1:, :]
        for _ in range(a.latents):
            e = head(h) if head is not None else h
            out = model(inputs_embeds=e, past_key_values=past, use_cache=True, output_hidden_states=True)
            past = out.past_key_values
            h = out.hidden_states[-1]
        out = model(input_ids=suffix, past_key_values=past, use_cache=True, output_hidden_states=codi)
        loss = shifted_ce(out.logits, suffix_labels)
        if codi:
            ref = model(input_ids=teacher, labels=teacher_labels, output_hidden_states=True)
            distill = 0.0
            for hs, ht in zip(out.hidden_states, ref.hidden_states):
                t = ht[:, a.teacher_distill, :].detach()
                distill = distill + torch.nn.functional.smooth_l1_loss(hs[:, a.student_distill, :], t) / t.std()
            loss = loss + distill / len(out.hidden_states) + ref.loss
        return loss

    dt = timed_steps(a, loss_fn, params, opt)
    tokens = {"lm": a.teacher, "coconut": a.prompt + a.suffix, "codi": a.prompt + a.suffix + a.teacher}[a.objective]
    report(a, a.batch * tokens, dt, params)


if __name__ == "__main__":
    main()
