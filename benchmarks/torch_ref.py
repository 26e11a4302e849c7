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


class EvalScorer:
    """The straightforward PyTorch eval: HF GPT2LMHeadModel on the same weights (interop's HF state
    dict), each request scored whole at batch 1 (a CBT candidate with its full context, every
    rolling window in full; the LM head only at the scored positions, `logits_to_keep`), greedy
    decoding by HF `generate` one prompt at a time. Duck-types gpt2_jax's Scorer (score, greedy,
    cfg, stats), so the library's task code runs the same protocol on both."""

    def __init__(self, params, cfg):
        from gpt2_jax.evals.scoring import Stats
        from gpt2_jax.interop import hf_config_from_cfg, params_to_hf_state_dict
        try:
            from transformers.initialization import no_init_weights
        except ImportError:  # older transformers
            from transformers.modeling_utils import no_init_weights
        self.cfg, self.stats = cfg, Stats()
        with no_init_weights():  # every weight is overwritten below
            hf_cfg = transformers.GPT2Config(**hf_config_from_cfg(cfg), attn_implementation="sdpa")
            self.model = transformers.GPT2LMHeadModel(hf_cfg).eval()
        sd = {k: torch.from_numpy(np.array(v, np.float32)) for k, v in params_to_hf_state_dict(params, cfg).items()}
        missing, unexpected = self.model.load_state_dict(sd, strict=False)
        assert set(missing) <= {"lm_head.weight"} and not unexpected, (missing, unexpected)
        self.model.tie_weights()

    def score(self, requests, allowed_V=None, desc: str = ""):
        from gpt2_jax.evals.scoring import Scored
        allowed = None if allowed_V is None else torch.from_numpy(np.asarray(allowed_V, bool))
        out, t0 = [], time.perf_counter()
        with torch.inference_mode():
            for seq, n in requests:
                logits = self.model(torch.tensor([list(seq[:-1])]), logits_to_keep=n).logits[0].float()
                lp = torch.log_softmax(logits, dim=-1)
                tgt = torch.tensor(list(seq[-n:]))
                logp = lp[torch.arange(n), tgt]
                greedy = logp >= lp.max(dim=-1).values
                greedy_allowed = greedy
                if allowed is not None:
                    masked = lp.masked_fill(~allowed, -float("inf")).max(dim=-1).values
                    greedy_allowed = allowed[tgt] & (logp >= masked)
                out.append(Scored(logp.double().numpy(), greedy.numpy(), greedy_allowed.numpy()))
                self.stats.forward_tokens += len(seq) - 1
                self.stats.padded_tokens += len(seq) - 1
                self.stats.scored_tokens += n
        self.stats.requests += len(requests)
        self.stats.seconds += time.perf_counter() - t0
        return out

    def greedy(self, prompts, max_new_tokens: int, eos_id: int | None = None):
        keep = self.cfg.n_positions - max_new_tokens
        outs, t0 = [], time.perf_counter()
        with torch.inference_mode():
            for p in prompts:
                x = torch.tensor([list(p)[-keep:]])
                kw = dict(eos_token_id=eos_id, pad_token_id=eos_id) if eos_id is not None else dict(
                    min_new_tokens=max_new_tokens, pad_token_id=0)
                y = self.model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=max_new_tokens,
                                        do_sample=False, use_cache=True, **kw)[0, x.shape[1]:].tolist()
                self.stats.forward_tokens += x.shape[1] + len(y)
                outs.append(y + [eos_id] * (max_new_tokens - len(y)) if eos_id is not None else y)
        self.stats.seconds += time.perf_counter() - t0
        return outs
