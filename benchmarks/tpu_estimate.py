"""FLOP model per train step of the GPT-2 family and a roofline estimate of MFU on TPU v4 / v5p.

    python -m benchmarks.tpu_estimate [--tokens_per_chip 16384] [--seq 1024]

An estimate, not a measurement (no TPU here). Per token, the step costs
  matmul time  = FLOPs executed / (peak bf16 * GEMM efficiency)
  memory time  = HBM bytes of the non-matmul work / HBM bandwidth
and MFU = model FLOPs (GPT2Config.flops_per_token) / peak / (matmul + memory time). Assumptions
are the constants below; every one is a stated guess, the table shows what follows from them.
"""
from __future__ import annotations

import argparse

from gpt2_jax.config import GPT2Config

CHIPS = {  # name: (peak dense bf16 TFLOP/s per chip, HBM TB/s per chip, HBM GiB)
    "v4": (275.0, 1.23, 32),
    "v5p": (459.0, 2.76, 95),
}
# GEMM efficiency on the MXU by model width: small widths run shorter matmul pipelines and pay
# relatively more for fill/drain and the per-layer fusion boundaries.
GEMM_EFF = {768: 0.70, 1024: 0.78, 1280: 0.82, 1600: 0.85}
ACT_BYTES_PER_D = 2 * 40   # bf16 bytes moved per token per layer per unit of D by non-matmul ops
#                           (2 LayerNorms, GeLU, residual adds, dropout-free, fwd + bwd; ~40 D-vectors)
CE_PASSES = 6              # fp32 passes over the [tokens, vocab] logits: write, lse, softmax, grad...
OPT_BYTES_PER_PARAM = 4 * 7  # AdamW fp32: read p, g, m, v; write p, m, v (once per step)


def estimate(cfg: GPT2Config, chip: str, seq: int, tokens_per_chip: int) -> dict:
    peak, hbm, _ = CHIPS[chip]
    model_flops = cfg.flops_per_token(seq, training=True)
    # splash pads head_dim 64 -> 128, doubling the MXU work of QK^T and PV; causal block skipping
    # halves it back, so the executed attention FLOPs match the counted (unmasked) ones.
    attn = 12 * cfg.n_layer * seq * cfg.n_embd
    executed = model_flops - attn + attn * (2 * 0.5 if cfg.head_dim < 128 else 0.5)
    eff = GEMM_EFF.get(cfg.n_embd, 0.85)
    t_mm = executed / (peak * 1e12 * eff)
    bytes_tok = (cfg.n_layer * ACT_BYTES_PER_D * cfg.n_embd + CE_PASSES * 4 * cfg.vocab_size
                 + OPT_BYTES_PER_PARAM * cfg.num_params / tokens_per_chip)
    t_mem = bytes_tok / (hbm * 1e12)
    mfu = model_flops / (peak * 1e12) / (t_mm + t_mem)
    return dict(model_flops=model_flops, executed=executed, t_mm=t_mm, t_mem=t_mem, mfu=mfu,
                tok_s=1 / (t_mm + t_mem))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--tokens_per_chip", type=int, default=16 * 1024)
    args = ap.parse_args(argv)
    print(f"FLOP model (GPT2Config.flops_per_token, T={args.seq}; step = tokens x this):\n")
    print("| model | params | fwd+bwd GFLOP/token | of which attention | train step GFLOP (8x1024 tokens) |")
    print("|---|---:|---:|---:|---:|")
    for name in GPT2Config.names():
        c = GPT2Config.from_name(name)
        f = c.flops_per_token(args.seq)
        attn = 12 * c.n_layer * args.seq * c.n_embd
        print(f"| {name} | {c.num_params / 1e6:.0f}M | {f / 1e9:.3f} | {attn / f:.0%} | {f * 8 * 1024 / 1e9:,.0f} |")
    print(f"\nRoofline MFU estimate, bf16 compute, {args.tokens_per_chip} tokens per chip per step:\n")
    print("| model | chip | GEMM eff. | matmul µs/token | memory µs/token | tokens/s/chip | est. MFU |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name in GPT2Config.names():
        c = GPT2Config.from_name(name)
        for chip in CHIPS:
            e = estimate(c, chip, args.seq, args.tokens_per_chip)
            print(f"| {name} | {chip} | {GEMM_EFF.get(c.n_embd, 0.85):.0%} | {e['t_mm'] * 1e6:.2f} | "
                  f"{e['t_mem'] * 1e6:.2f} | {e['tok_s']:,.0f} | {e['mfu']:.0%} |")


if __name__ == "__main__":
    main()
