#!/usr/bin/env python3
"""PyTorch eager reference for Objective Lab's speed figures (`cargo xtask bench`).

The same model and training step as the lab's `baby-gpt` preset with `causal_lm`
(engine/src/model.rs, engine/src/train.rs), written the way nanoGPT's model.py and
train.py write it: pre-norm blocks, learned positions, GELU MLP, no linear biases,
weight-tied head, causal attention through `scaled_dot_product_attention` (as nanoGPT
does when it can), AdamW (betas 0.9/0.99, weight decay 0.1), global grad-norm clip 1.0,
a fresh random batch from the corpus every step, copied to the device as nanoGPT does.

Eager mode only (no torch.compile): the figure the issue compares against.
Prints one JSON line: steps/s, ms per step, tokens/s, achieved TFLOP/s (nanoGPT's
6N + 12·L·H·Q·T FLOPs per token), and the torch version, device and threads.

    python3 bench/pytorch_baby_gpt.py --device cpu --threads 2 --steps 100
    python3 bench/pytorch_baby_gpt.py --device cuda --steps 500
"""
import argparse
import json
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# baby GPT: the lab's baby-gpt preset (nanoGPT's CPU configuration)
N_LAYER, N_HEAD, D_MODEL, BLOCK, BATCH = 4, 4, 128, 64, 12
LR, BETAS, WEIGHT_DECAY, CLIP = 1e-3, (0.9, 0.99), 0.1, 1.0


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1 = nn.LayerNorm(D_MODEL)
        self.qkv = nn.Linear(D_MODEL, 3 * D_MODEL, bias=False)
        self.proj = nn.Linear(D_MODEL, D_MODEL, bias=False)
        self.ln_2 = nn.LayerNorm(D_MODEL)
        self.fc = nn.Linear(D_MODEL, 4 * D_MODEL, bias=False)
        self.fc_proj = nn.Linear(4 * D_MODEL, D_MODEL, bias=False)

    def forward(self, x):  # x: [batch, seq, d_model]
        b, s, d = x.shape
        q, k, v = self.qkv(self.ln_1(x)).split(d, dim=2)
        # [batch, heads, seq, d_head]
        q, k, v = (t.view(b, s, N_HEAD, d // N_HEAD).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).contiguous().view(b, s, d))
        return x + self.fc_proj(F.gelu(self.fc(self.ln_2(x))))


class BabyGPT(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.wte = nn.Embedding(vocab, D_MODEL)
        self.wpe = nn.Embedding(BLOCK, D_MODEL)
        self.blocks = nn.ModuleList(Block() for _ in range(N_LAYER))
        self.ln_f = nn.LayerNorm(D_MODEL)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * N_LAYER) if name.endswith(("proj.weight",)) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx, targets):  # idx, targets: [batch, seq]
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.blocks:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.t()  # weight-tied head: [batch, seq, vocab]
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "assets", "tinyshakespeare.txt"))
    ap.add_argument("--peak-tflops", type=float, default=0.0, help="device peak, for model FLOP utilisation")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(1337)
    text = open(args.data, encoding="utf-8").read()
    chars = sorted(set(text))
    lookup = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([lookup[c] for c in text], dtype=torch.long)
    train = data[: int(0.9 * len(data))]
    device = torch.device(args.device)
    model = BabyGPT(len(chars)).to(device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
        lr=LR, betas=BETAS,
    )

    def batch():
        ix = torch.randint(len(train) - BLOCK - 1, (BATCH,))
        x = torch.stack([train[i : i + BLOCK] for i in ix])
        y = torch.stack([train[i + 1 : i + 1 + BLOCK] for i in ix])
        if device.type == "cuda":
            return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
        return x, y

    def step():
        x, y = batch()
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        return loss

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    sync()
    started = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    final = loss.item()  # one read at the end, as the lab's benchmark
    sync()
    elapsed = time.perf_counter() - started
    steps_per_s = args.steps / elapsed
    n_params = sum(p.numel() for p in model.parameters()) - model.wpe.weight.numel()
    flops_per_token = 6 * n_params + 12 * N_LAYER * N_HEAD * (D_MODEL // N_HEAD) * BLOCK
    tflops = flops_per_token * BATCH * BLOCK * steps_per_s / 1e12
    report = {
        "framework": "pytorch-eager",
        "torch": torch.__version__,
        "device": args.device if device.type == "cpu" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads(),
        "steps": args.steps,
        "steps_per_s": steps_per_s,
        "step_ms": 1000.0 / steps_per_s,
        "tokens_per_s": steps_per_s * BATCH * BLOCK,
        "tflops": tflops,
        "final_train_loss": final,
    }
    if args.peak_tflops:
        report["mfu"] = tflops / args.peak_tflops
    print(json.dumps(report))


if __name__ == "__main__":
    main()
