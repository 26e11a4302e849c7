"""GPT-2 in miniature (issue #12 item 5): a family of four sizes trained for the same number of
tokens on the real corpus here (CBT's 98 Project Gutenberg training books + the Brown corpus; Tiny
Shakespeare is kept out), then scored zero-shot like the paper's Table 3 / Figure 1.

Tokenizer: a sentencepiece BPE trained on the corpus, not GPT-2's BPE. GPT-2's 50257-row table would
be 12.9M parameters at width 256 (2.7x the largest model's 4.7M non-embedding parameters, 130x the
smallest's) and its softmax would cost 3-30x the transformer's FLOPs per token, so the family would
mostly measure the embedding. The evals run with the same tokenizer (the paper's detokenizers first;
perplexities are per original word, so they do not depend on the tokenizer's segmentation).

Each variant's sizes span at least 30x in non-embedding parameters; all sizes of a variant share
the tokenizer, corpus, token count, batch geometry and held-out windows, and differ only in the
model and the peak learning rate (smaller models take a larger one)."""
from __future__ import annotations

import dataclasses

import ml_collections

from experiments.configs import base
from gpt2_jax import paths

# The corpus under $GPT2_JAX_DATA_DIR: brown/brown.txt and cbt_train_books/*.txt. The [bc] keeps
# train_corpora/tinyshakespeare/ out (experiments.family checks no file of it was picked up).
FULL_CORPUS = "train_corpora/[bc]*/*.txt"
CI_CORPUS = "train_corpora/cbt_train_books/1*.txt"   # 19 of the 98 books (3.3 MB): seconds to tokenize


@dataclasses.dataclass(frozen=True)
class Size:
    name: str
    n_layer: int
    n_embd: int
    n_head: int       # head_dim 32 throughout
    peak_lr: float

    @property
    def non_embedding_params(self) -> int:
        """Parameters outside wte/wpe (Kaplan et al.'s N, ~12·L·d²): GPT2Config's count of a
        model with a one-row token and position table, minus those two rows."""
        from gpt2_jax.config import GPT2Config
        cfg = GPT2Config(vocab_size=1, n_positions=1, n_embd=self.n_embd, n_layer=self.n_layer, n_head=self.n_head)
        return cfg.num_params - 2 * self.n_embd


@dataclasses.dataclass(frozen=True)
class Variant:
    """One way to run the whole family: what `python -m experiments.family [--variant NAME]` does."""
    name: str
    sizes: tuple[Size, ...]
    corpus: str                  # glob under the data dir (see FULL_CORPUS)
    tokenizer_vocab_size: int    # sentencepiece BPE pieces, trained once for the whole family
    seq_len: int                 # training window = the models' context (n_positions)
    batch_size: int              # sequences per step
    total_steps: int             # the same for every size: the same number of training tokens
    warmup_steps: int
    eval_batches: int            # held-out batches (of eval_batch_size sequences) for the held-out loss
    eval_batch_size: int
    eval_limit: int              # zero-shot tasks: the first N passages / lines / schemas (run_eval's `limit`)
    description: str

    @property
    def tokens(self) -> int:
        return self.total_steps * self.batch_size * self.seq_len


# The paper's tasks with data here (issue #12: LAMBADA in both modes, WikiText-2/103, PTB, Winograd).
PAPER_TASKS = ("lambada", "wikitext2", "wikitext103", "ptb", "wsc273")   # run_eval mode="paper"
HARNESS_TASKS = ("lambada",)                                           # mode="harness": lambada_openai
OVERLAP_TASKS = ("lambada", "wikitext2", "wikitext103", "ptb", "wsc273")

# 320 steps of 32x256 tokens is few steps: the sizes are spaced so that capacity, not the learning
# rate, orders them. Measured at 2.6M tokens (held-out loss): 2x64 at 3e-3 5.291 and 3x96 at 2.5e-3
# 5.344 / 3e-3 5.282 / 5e-3 5.321 were too close to order reliably; 1x64 at 3e-3 5.455.
_FULL_SIZES = (Size("xs", 1, 64, 2, 3e-3), Size("s", 3, 96, 3, 3e-3), Size("m", 4, 160, 5, 2e-3),
               Size("l", 6, 256, 8, 1.5e-3))   # 50k, 336k, 1.24M, 4.74M non-embedding params (95x)
_CI_SIZES = (Size("xs", 1, 32, 1, 4e-3), Size("s", 2, 48, 2, 3.5e-3), Size("m", 3, 64, 2, 3e-3),
             Size("l", 4, 96, 3, 2.5e-3))      # 12.8k, 56.6k, 150k, 448k non-embedding params (35x)

VARIANTS = {
    "full": Variant(
        "full", _FULL_SIZES, FULL_CORPUS, tokenizer_vocab_size=4096, seq_len=256, batch_size=32,
        total_steps=320, warmup_steps=30, eval_batches=32, eval_batch_size=32,
        eval_limit=1000,   # 1000 of 5153 LAMBADA passages, ~1/4 of each LM test set, all 273 schemas
        description="the budget run: 2.6M tokens per size on the whole corpus (27.4 min measured on 2 idle cores; budget 60)"),
    "medium": Variant(
        "medium", _FULL_SIZES, FULL_CORPUS, tokenizer_vocab_size=4096, seq_len=256, batch_size=32,
        total_steps=48, warmup_steps=8, eval_batches=8, eval_batch_size=32,
        eval_limit=200,
        description="the full sizes on 15% of the full run's tokens (393k per size) and smaller eval subsets"),
    "ci": Variant(
        "ci", _CI_SIZES, CI_CORPUS, tokenizer_vocab_size=1024, seq_len=128, batch_size=8,
        total_steps=150, warmup_steps=15, eval_batches=8, eval_batch_size=16,
        eval_limit=40,
        description="tests/test_family.py: 4 tiny sizes, 154k tokens each on 19 of the books, eval subsets"),
}


def get_variant(name: str) -> Variant:
    from gpt2_jax.errors import ConfigError
    if name not in VARIANTS:
        raise ConfigError(f"unknown family variant {name!r}; choose one of {', '.join(VARIANTS)}.")
    return VARIANTS[name]


def get_config(size: str, variant: str = "full", tokenizer: str = "",
               cache_dir: str = "") -> ml_collections.ConfigDict:
    """The training config of one family size. `tokenizer`: the family's trained BPE (.model path);
    "" trains one of the variant's size into the run's workdir (a lone `experiments.main` run)."""
    v = get_variant(variant)
    by_name = {s.name: s for s in v.sizes}
    if size not in by_name:
        from gpt2_jax.errors import ConfigError
        raise ConfigError(f"family variant {variant!r} has no size {size!r}; sizes: {', '.join(by_name)}.")
    s = by_name[size]
    config = base.get_config()
    config.model.name = "custom"
    config.model.n_layer, config.model.n_embd, config.model.n_head = s.n_layer, s.n_embd, s.n_head
    config.data.source = str(paths.data_dir() / v.corpus)
    config.data.split_documents = "file"   # one document per book (Brown: one per corpus file)
    config.data.val_fraction = 0.05        # the held-out tail of the corpus's windows (the last books)
    if tokenizer:
        config.data.tokenizer, config.data.tokenizer_vocab_size = tokenizer, 0
    else:
        config.data.tokenizer_vocab_size = v.tokenizer_vocab_size
    config.data.cache_dir = cache_dir
    config.dtype = "float32"
    config.seq_len, config.batch_size, config.total_steps = v.seq_len, v.batch_size, v.total_steps
    config.optimizer.peak_lr = s.peak_lr
    config.optimizer.warmup_steps = v.warmup_steps
    config.optimizer.weight_decay = 0.1
    config.checkpoint_every = v.total_steps   # the final checkpoint only: the evals read it
    config.keep_checkpoints = 1
    config.log_every = max(1, v.total_steps // 8)
    config.eval_every = v.total_steps         # the held-out loss once, at the end
    config.eval_batches, config.eval_batch_size = v.eval_batches, v.eval_batch_size
    config.eval_after_training = list(PAPER_TASKS)
    config.job.eval_limit = v.eval_limit
    config.job.prompts = ["Once upon a time"]
    return config
