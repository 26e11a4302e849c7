"""Every field a training run reads, with its default and meaning (flax lm1b style). Named
experiments start from this and change what they need; the registry locks the result."""
from __future__ import annotations

import ml_collections

from gpt2_jax.sharding import DEFAULT_RULES


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.name = ""                      # experiment name (the registry fills it in)
    config.init_from = ""                 # starting weights: "" = random; gpt2..gpt2-xl, an HF dir, an OpenAI dir or a workdir
    # (init_from: released names are downloaded once; shapes must match model.*, a larger model.vocab_size
    # pads wte; a checkpoint in this run's own workdir (resume) wins over it; Adam always starts fresh)

    # ---------------------------------------------------------------- model
    config.model = ml_collections.ConfigDict()
    config.model.name = "gpt2"            # family size (gpt2, gpt2-medium, gpt2-large, gpt2-xl, 124m..1558m) or "custom"
    config.model.n_layer = 0              # transformer blocks; 0 = from model.name
    config.model.n_embd = 0               # residual width; 0 = from model.name
    config.model.n_head = 0               # attention heads; 0 = from model.name
    config.model.n_positions = 0          # context table size; 0 = max(seq_len, 1024) (custom: seq_len)
    config.model.vocab_size = 0           # 0 = the tokenizer's size (50257 for GPT-2 BPE); larger pads (e.g. 50304)
    config.model.dropout = 0.0            # embedding/attention/residual dropout (GPT-2 pretraining used 0.1)
    config.model.attention = "auto"       # kernel: auto | blocked | xla | cudnn | splash | reference
    config.model.scan_layers = True       # lax.scan over blocks (fast compile) vs unrolled
    config.dtype = "float32"              # matmul compute dtype: bfloat16 on TPU/GPU; params + Adam stay float32
    config.remat = "none"                 # per-block activation checkpointing: none | full | dots | dots_with_no_batch_dims
    config.loss_chunk = 0                 # > 0: fused LM head + loss over chunks of this many positions (no [B, T, V] logits)

    # ---------------------------------------------------------------- data
    config.data = ml_collections.ConfigDict()
    config.data.source = "tinyshakespeare"  # "tinyshakespeare", a .txt/.jsonl path or glob, tfds:NAME[:SPLIT], tokens:GLOB
    config.data.tokenizer = "gpt2"        # Tokenizer.load spec: "gpt2" (BPE from the data dir), a sentencepiece .model, or "char" (the corpus's sorted characters, built into WORKDIR/tokenizer/)
    config.data.tokenizer_vocab_size = 0  # > 0: train a sentencepiece BPE of this size on the corpus into WORKDIR/tokenizer/
    config.data.split_documents = "file"  # plain text: one document per file | blank_lines | lines
    config.data.text_field = "text"       # jsonl key / tfds feature holding the text
    config.data.val_fraction = 0.05       # tail share of windows held out for eval_loss (0 = no eval)
    config.data.windows = "packed"        # packed: non-overlapping windows, shuffled per epoch | random: nanoGPT's get_batch (random offsets from (seed, step); val_fraction splits the token stream, 0.1 = its 90/10)
    config.data.cache_dir = ""            # token cache; "" = WORKDIR/token_cache (gs:// workdir: ~/.cache/gpt2_jax/token_cache)
    config.data.data_dir = ""             # data root; "" = $GPT2_JAX_DATA_DIR
    config.data.tfds_data_dir = ""        # where tfds datasets are prepared; "" = tfds' default
    config.data.tfds_download = False     # let tfds download + prepare (needs network)
    config.data.dump_batches = 0          # K > 0: the first K steps' global batches, int32 [batch, seq_len+1], to
    #                                       WORKDIR/batches/step_{i:06d}.npy (i = the step that consumed it)

    # ---------------------------------------------------------------- batch and schedule
    config.seq_len = 1024                 # tokens per training sequence (paper: 1024)
    config.batch_size = 512               # global sequences per optimizer step (paper: 512)
    config.grad_accum_steps = 1           # microbatches per step (lax.scan inside the step; same update)
    config.total_steps = 100_000          # optimizer steps of the whole run
    config.seed = 0                       # init, data order and dropout all derive from it

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.peak_lr = 6e-4       # AdamW lr after warmup (the paper tuned it per size)
    config.optimizer.warmup_steps = 2000  # linear warmup from 0
    config.optimizer.decay_steps = 0      # cosine length incl. warmup; 0 = total_steps
    config.optimizer.min_lr_ratio = 0.1   # lr at the end of the cosine, as a fraction of peak_lr
    config.optimizer.b1 = 0.9             # Adam beta1
    config.optimizer.b2 = 0.95            # Adam beta2
    config.optimizer.eps = 1e-8           # Adam epsilon
    config.optimizer.weight_decay = 0.1   # decoupled weight decay on Dense kernels only
    config.optimizer.decay_embeddings = False  # also decay wte/wpe
    config.optimizer.grad_clip = 1.0      # global-norm clip; 0 disables

    # ---------------------------------------------------------------- parallelism
    config.mesh = ml_collections.ConfigDict()
    config.mesh.data = -1                 # pure data-parallel ways; -1 = the remaining devices
    config.mesh.fsdp = 1                  # ways params/optimizer state (embed dim) and batch are sharded
    config.mesh.tensor = 1                # Megatron tensor-parallel ways (heads, mlp, vocab)
    config.logical_axis_rules = [tuple(r) for r in DEFAULT_RULES]  # logical axis -> mesh axes (sharding.py)
    config.tpu = ""                       # TPU slice the mesh preset was chosen for (e.g. v4-32); informational
    config.hbm_gb = 0.0                   # per-device memory for --mode=aot's fit check; 0 = from config.tpu

    # ---------------------------------------------------------------- checkpoints, logs, evals
    config.checkpoint_every = 1000        # steps between (async) checkpoints; the last step is always saved
    config.keep_checkpoints = 3           # newest checkpoints kept
    config.async_checkpointing = True     # save in a background thread while training continues
    config.log_every = 50                 # steps between metrics.jsonl/TensorBoard/console records
    config.console = True                 # print one line per log step (process 0)
    config.eval_every = 1000              # steps between validation losses (and at the end); 0 = never
    config.eval_batches = 20              # validation batches per eval; 0 = all
    config.eval_batch_size = 0            # sequences per eval batch; 0 = batch_size
    config.peak_tflops = 0.0              # per-device peak for MFU; 0 = chip table, or measured on CPU
    config.eval_after_training = []       # zero-shot tasks run on the final checkpoint (gpt2_jax.evals.runner), e.g. ["lambada"]

    # ---------------------------------------------------------------- the main job (--mode=job: experiments/job.py)
    config.job = ml_collections.ConfigDict()
    config.job.eval_mode = "paper"        # eval_after_training definitions: paper (GPT-2 Table 3) | harness
    config.job.eval_limit = 0             # only the first N examples per eval task; 0 = all
    config.job.prompts = ["\n"]           # sampled after training into WORKDIR/samples.json and the report
    return config
