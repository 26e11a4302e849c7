"""The gpt2_jax side of every side-by-side case, timed like `torch_ref`: compile (AOT, timed
separately), one warm-up call, then the median of `repeats` calls that block on their results."""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import SMALL, emit, time_repeats, time_repeats_cpu
from gpt2_jax import decode, model
from gpt2_jax.config import GPT2Config


def config(size: str, **overrides) -> GPT2Config:
    base = GPT2Config(**SMALL) if size == "small" else GPT2Config.from_name(size)
    return base.replace(**overrides)


def _tokens(b, t, seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(0, 50257, (b, t)), jnp.int32)


def _compile(fn, *args):
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    return compiled, time.perf_counter() - t0


def forward(size="124m", batch=1, seq=1024, repeats=3, **overrides):
    cfg = config(size, **overrides)
    params = model.init_params(cfg, jax.random.key(0))
    x = _tokens(batch, seq)
    fwd, compile_s = _compile(jax.jit(lambda p, x: model.forward(p, x, cfg)), params, x)
    times, cpu = time_repeats_cpu(lambda: fwd(params, x).block_until_ready(), repeats)
    emit(f"fwd_{size}", "jax", units=batch * seq, times=times, compile_s=compile_s, cpu_s=cpu,
         flops_per_token=cfg.flops_per_token(seq, training=False), config=_short(cfg))


def make_step(cfg: GPT2Config):
    """The project's train step (gpt2_jax.train.step) with AdamW + clip, jitted with donation."""
    from gpt2_jax.train import optimizer as opt_lib, step as step_lib
    ocfg = opt_lib.OptimizerConfig(peak_lr=1e-4, warmup_steps=0)
    opt = opt_lib.make_optimizer(ocfg, total_steps=1000)
    sched = opt_lib.learning_rate_schedule(ocfg, 1000)
    train_step = step_lib.make_train_step(cfg, opt, sched)
    state = jax.jit(lambda k: step_lib.init_state(cfg, opt, k))(jax.random.key(0))
    return jax.jit(train_step, donate_argnums=(0,)), state


def train(size="small", batch=8, seq=256, repeats=3, case="", **overrides):
    cfg = config(size, **overrides)
    step, state = make_step(cfg)
    x = _tokens(batch, seq + 1)
    batch_d = {"inputs": x[:, :-1], "targets": x[:, 1:]}
    step_c, compile_s = _compile(step, state, batch_d)
    holder = [state]

    def run():
        holder[0], metrics = step_c(holder[0], batch_d)
        metrics["loss"].block_until_ready()

    times, cpu = time_repeats_cpu(run, repeats)
    emit(case or f"train_{size}", "jax", units=batch * seq, times=times, compile_s=compile_s, cpu_s=cpu,
         flops_per_token=cfg.flops_per_token(seq, training=True), config=_short(cfg))


def _short(cfg: GPT2Config) -> str:
    return (f"attn={cfg.attention} scan={cfg.scan_layers} remat={cfg.remat} dtype={cfg.dtype}"
            + (f" loss_chunk={cfg.loss_chunk}" if cfg.loss_chunk else ""))


def gemm_peak(sizes=(1024, 2048), repeats=10):
    """Best fp32 GEMM rate through XLA over n×n×n for n in `sizes` (the MFU denominator): the
    fastest of the repeats, since a peak is what the hardware can reach, not its typical rate."""
    best, compile_total = 0.0, 0.0
    for n in sizes:
        a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
        b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
        mm, compile_s = _compile(jax.jit(lambda a, b: a @ b), a, b)
        compile_total += compile_s
        times = time_repeats(lambda: mm(a, b).block_until_ready(), repeats, warmup=2)
        if 2 * n ** 3 / min(times) > best:
            best, best_times, best_n = 2 * n ** 3 / min(times), times, n
    emit("gemm_peak", "jax", units=2 * best_n ** 3 / 1e9, times=[min(best_times)], unit="GFLOP/s",
         compile_s=compile_total, n=best_n)


def bandwidth(mb=1024, repeats=10):
    """STREAM-like read bandwidth: sum a `mb`-MB fp32 array (far larger than the L3 cache)."""
    x = jnp.ones((mb * 2 ** 20 // 4,), jnp.float32)
    red, compile_s = _compile(jax.jit(lambda x: x.sum()), x)
    times = time_repeats(lambda: red(x).block_until_ready(), repeats, warmup=2)
    emit("read_bw", "jax", units=mb * 2 ** 20 / 1e9, times=times, unit="GB/s", compile_s=compile_s)


def _weights_bytes(params) -> int:
    """Bytes a decode step must read: every parameter except the position table (one row used)."""
    return sum(x.size * x.dtype.itemsize for path, x in jax.tree_util.tree_leaves_with_path(params)
               if "wpe" not in jax.tree_util.keystr(path))


def generate(batch=1, prompt=32, new=128, repeats=3, weights="float32"):
    """Greedy KV-cache decoding with gpt2_jax.generate.generate (one jitted while_loop) from the
    params a user holds (generate makes its decode copy itself, decode.prepare, inside the timing).
    weights=bfloat16 decodes with generate(weights_dtype="bfloat16") (weights rounded to bf16,
    computed in fp32) and reports the logit error against the fp32 model."""
    from gpt2_jax.generate import generate as gen
    cfg = config("124m")
    params = model.init_params(cfg, jax.random.key(0))
    prompts = np.random.default_rng(1).integers(0, 50257, (batch, prompt)).astype(np.int32)
    extra, wd = {}, (None if weights == "float32" else weights)
    if wd:
        extra = _logit_error(params, cfg, decode.prepare(params, dtype=wd), prompts, new)
    run = lambda: gen(params, cfg, prompts, max_new_tokens=new, weights_dtype=wd)
    t0 = time.perf_counter()
    run()
    first = time.perf_counter() - t0
    times = time_repeats(run, repeats, warmup=0)
    read = jax.eval_shape(lambda p: decode.prepare(p, dtype=wd), params)
    emit(f"gen_b{batch}" + ("_bf16" if weights == "bfloat16" else ""), "jax", units=batch * new,
         times=times, compile_s=first, weight_mb=_weights_bytes(read) / 1e6, **extra)


def _logit_error(params32, cfg, params16, prompts, new):
    """Teacher-force the fp32 greedy continuation through both weight copies: max/mean |logit diff|
    (the logits' own std for scale) and how often the low-precision argmax matches fp32's."""
    from gpt2_jax.generate import generate as gen
    seq = jnp.asarray(gen(params32, cfg, prompts[:1], max_new_tokens=new)[:, :-1])
    fwd = jax.jit(lambda p, x: model.forward(p, x, cfg))
    f32, f16 = fwd(params32, seq)[:, -new:], fwd(params16, seq)[:, -new:]
    diff = jnp.abs(f32 - f16)
    return dict(logit_max_abs_err=float(diff.max()), logit_mean_abs_err=float(diff.mean()),
                logit_std=float(f32.std()),
                argmax_agree=float((f32.argmax(-1) == f16.argmax(-1)).mean()))


def attention(batch=1, seq=1024, heads=12, head_dim=64, repeats=5, impl="auto"):
    """The causal attention kernel alone (GPT-2 124M shapes): forward, and forward + backward."""
    from gpt2_jax.attention import causal_attention
    ks = jax.random.split(jax.random.key(0), 4)
    q, k, v, w = (jax.random.normal(kk, (batch, seq, heads, head_dim)) for kk in ks)
    f = lambda q, k, v: causal_attention(q, k, v, impl=impl)
    fwd, c1 = _compile(jax.jit(f), q, k, v)
    fb, c2 = _compile(jax.jit(jax.grad(lambda q, k, v: (f(q, k, v) * w).sum(), argnums=(0, 1, 2))), q, k, v)
    for name, fn, c in (("attn_fwd", fwd, c1), ("attn_fwdbwd", fb, c2)):
        times = time_repeats(lambda: jax.block_until_ready(fn(q, k, v)), repeats)
        emit(name, "jax", units=1, times=times, unit="calls/s", compile_s=c, impl=impl)


def tokenizer(repeats=5):
    """gpt2_jax.tokenizer.Tokenizer encoding WikiText-2-raw test (whole file, one call)."""
    from gpt2_jax.paths import data_dir
    from gpt2_jax.tokenizer import Tokenizer

    tok = Tokenizer.from_dir(data_dir() / "gpt2_vocab")
    text = (data_dir() / "wikitext/wikitext-2-raw/wiki.test.raw").read_text(encoding="utf-8")
    times = time_repeats(lambda: tok.encode(text), repeats)
    emit("tokenizer", "jax", units=len(text.encode("utf-8")) / 1e6, times=times, unit="MB/s")


def data(source="tinyshakespeare", seq=1024, batch=1, steps=200):
    """The training input pipeline (gpt2_jax.data): tokens/s from raw text (tokenize + pack, no
    cache), from the token cache (pre-tokenized), and of the batches it then serves."""
    import tempfile
    from gpt2_jax.data import DataConfig, make_train_data

    cfg = DataConfig(source=source)
    with tempfile.TemporaryDirectory() as workdir:
        t0 = time.perf_counter()
        td = make_train_data(cfg, seq_len=seq, global_batch_size=batch, seed=0, workdir=workdir)
        raw_s = time.perf_counter() - t0
        n_tokens = int(td.packed.num_tokens)
        t0 = time.perf_counter()
        td = make_train_data(cfg, seq_len=seq, global_batch_size=batch, seed=0, workdir=workdir)
        cached_s = time.perf_counter() - t0
    emit("data_raw", "jax", units=n_tokens, times=[raw_s], source=source)
    emit("data_cached", "jax", units=n_tokens, times=[cached_s], source=source)
    times = time_repeats(lambda: td.batch_at(7), 20)
    emit("data_batch_at", "jax", units=td.tokens_per_step, times=times)
    it = td.train_batches(0, steps)
    next(it)
    t0 = time.perf_counter()
    n = sum(1 for _ in it)
    emit("data_tf_batches", "jax", units=n * td.tokens_per_step, times=[time.perf_counter() - t0])


CASES = {"forward": forward, "attention": attention, "tokenizer": tokenizer, "data": data, "train": train, "gemm_peak": gemm_peak, "bandwidth": bandwidth,
         "generate": generate}
