"""CPU-sized experiments: `tiny_shakespeare` (the embedded default: a small GPT on Tiny
Shakespeare with its own 1024-piece BPE, a few minutes on 2 cores) and `tiny_test` (seconds; the
test suite's model)."""
from __future__ import annotations

import ml_collections

from experiments.configs import base


def _cpu_common(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    config.model.name = "custom"
    config.data.source = "tinyshakespeare"
    # A 50257-way softmax would be ~90% of a tiny model's FLOPs; a corpus-trained BPE keeps the
    # run about the transformer. Trained once per workdir (0.1 s), saved beside the checkpoints.
    config.data.tokenizer_vocab_size = 1024
    config.data.val_fraction = 0.05
    config.dtype = "float32"              # CPU: no bf16 matmul speed-up
    config.mesh.data = -1                 # all local devices data-parallel
    config.keep_checkpoints = 2
    return config


def tiny_shakespeare() -> ml_collections.ConfigDict:
    config = _cpu_common(base.get_config())
    config.model.n_layer = 4              # ~0.9M params (0.26M of them the 1024×128 embedding table)
    config.model.n_embd = 128
    config.model.n_head = 4
    config.seq_len = 128                  # ~470k tokens in the corpus -> ~3.5k windows
    config.batch_size = 16                # 2048 tokens per step
    config.total_steps = 300              # ~610k tokens, ~1.4 epochs of the training windows
    config.optimizer.peak_lr = 3e-3       # small models take a large lr
    config.optimizer.warmup_steps = 50
    config.optimizer.weight_decay = 0.1
    config.checkpoint_every = 100
    config.log_every = 20
    config.eval_every = 100
    config.eval_batches = 8
    # The main job (python -m experiments.main) then runs the zero-shot suite on subsets and samples.
    config.eval_after_training = ["lambada", "wikitext2", "ptb"]
    # Not "wsc273" (its data is in the shared dir): measured on this model it adds ~13 s of CPU time
    # to these three tasks' ~7 s, mostly compiling the scorer's row shapes (issue #13).
    config.job.eval_limit = 200           # first 200 LAMBADA passages / WikiText / PTB lines
    config.job.prompts = ["ROMEO:", "JULIET:"]
    return config


def tiny_test() -> ml_collections.ConfigDict:
    config = _cpu_common(base.get_config())
    config.model.n_layer = 2
    config.model.n_embd = 64
    config.model.n_head = 4
    config.data.tokenizer_vocab_size = 512
    config.seq_len = 64
    config.batch_size = 8
    config.total_steps = 20
    config.optimizer.peak_lr = 3e-3
    config.optimizer.warmup_steps = 5
    config.checkpoint_every = 10
    config.log_every = 1
    config.eval_every = 10
    config.eval_batches = 2
    config.async_checkpointing = True
    return config
