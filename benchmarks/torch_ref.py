"""The PyTorch reference: HF `transformers` GPT2LMHeadModel (fp32, SDPA attention, random weights),
timed exactly like the JAX side. Run through `python -m benchmarks.worker torch CASE`."""
from __future__ import annotations

import time

import numpy as np
import torch
import transformers

from benchmarks.common import SMALL, emit, time_repeats


def _model(size: str, dropout: float = 0.0):
    kw = SMALL if size == "small" else dict(n_layer=12, n_embd=768, n_head=12, n_positions=1024)
    cfg = transformers.GPT2Config(vocab_size=50257, resid_pdrop=dropout, embd_pdrop=dropout,
                                  attn_pdrop=dropout, attn_implementation="sdpa", **kw)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg).float()
    assert model.config._attn_implementation == "sdpa", model.config._attn_implementation
    return model, cfg


def _tokens(b, t, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 50257, (b, t)))


def forward(size="124m", batch=1, seq=1024, repeats=3):
    model, _ = _model(size)
    model.eval()
    x = _tokens(batch, seq)
    with torch.inference_mode():
        t0 = time.perf_counter()
        model(x)
        first = time.perf_counter() - t0
        times = time_repeats(lambda: model(x).logits, repeats, warmup=1)
    emit(f"fwd_{size}", "torch", units=batch * seq, times=times, compile_s=first)


def train(size="small", batch=8, seq=256, repeats=3, dropout=0.0):
    """One AdamW step (wd 0.1, betas 0.9/0.95, global-norm clip 1.0) like gpt2_jax.train.step."""
    model, _ = _model(size, dropout)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "wte" not in n and "wpe" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "wte" not in n and "wpe" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}], lr=1e-4, betas=(0.9, 0.95))
    x = _tokens(batch, seq + 1)
    inputs, targets = x[:, :-1].contiguous(), x[:, 1:].contiguous()

    def step():
        logits = model(inputs).logits
        loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    times = time_repeats(step, repeats, warmup=1)
    emit(f"train_{size}", "torch", units=batch * seq, times=times, compile_s=first)


def generate(batch=1, prompt=32, new=128, repeats=3):
    """HF greedy `generate` with its KV cache; tokens/s counts new tokens of all rows."""
    model, _ = _model("124m")
    model.eval()
    x = _tokens(batch, prompt, seed=1)
    kw = dict(max_new_tokens=new, min_new_tokens=new, do_sample=False, use_cache=True,
              pad_token_id=50256, attention_mask=torch.ones_like(x))
    with torch.inference_mode():
        t0 = time.perf_counter()
        model.generate(x, **kw)
        first = time.perf_counter() - t0
        times = time_repeats(lambda: model.generate(x, **kw), repeats, warmup=0)
    emit(f"gen_b{batch}", "torch", units=batch * new, times=times, compile_s=first)


def attention(batch=1, seq=1024, heads=12, head_dim=64, repeats=5):
    """torch's fused causal SDPA kernel alone: forward, and forward + backward."""
    q, k, v = (torch.randn(batch, heads, seq, head_dim, requires_grad=True) for _ in range(3))
    w = torch.randn(batch, heads, seq, head_dim)
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def fwd():
        with torch.no_grad():
            sdpa(q, k, v, is_causal=True)

    def fb():
        (sdpa(q, k, v, is_causal=True) * w).sum().backward()

    for name, fn in (("attn_fwd", fwd), ("attn_fwdbwd", fb)):
        emit(name, "torch", units=1, times=time_repeats(fn, repeats), unit="calls/s")


def tokenizer(repeats=5):
    """Raw tiktoken (the reference) encoding WikiText-2-raw test, built from the same local BPE files."""
    import os
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext.openai_public import r50k_pat_str
    from gpt2_jax.paths import data_dir

    os.environ["TIKTOKEN_CACHE_DIR"] = ""
    vocab = data_dir() / "gpt2_vocab"
    text = (data_dir() / "wikitext/wikitext-2-raw/wiki.test.raw").read_text(encoding="utf-8")
    enc = tiktoken.Encoding("gpt2", pat_str=r50k_pat_str, special_tokens={"<|endoftext|>": 50256},
                            mergeable_ranks=data_gym_to_mergeable_bpe_ranks(
                                str(vocab / "vocab.bpe"), str(vocab / "encoder.json")))
    times = time_repeats(lambda: enc.encode_ordinary(text), repeats)
    emit("tokenizer", "torch", units=len(text.encode("utf-8")) / 1e6, times=times, unit="MB/s")


CASES = {"forward": forward, "attention": attention, "train": train, "generate": generate, "tokenizer": tokenizer}
