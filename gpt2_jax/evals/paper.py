"""Published numbers of Radford et al. 2019 ("Language Models are Unsupervised Multitask Learners"):
Table 3 (zero-shot results), the CoQA dev F1 of §3.5, and Table 6 (8-gram overlap)."""
from __future__ import annotations

# Model sizes as the paper labels them -> (n_layer, n_embd), Table 2.
SIZES = {"117M": (12, 768), "345M": (24, 1024), "762M": (36, 1280), "1542M": (48, 1600)}

# Table 3 column -> (title, our task name, metric key in our results, lower is better)
COLUMNS = {
    "lambada_ppl": ("LAMBADA (PPL)", "lambada", "ppl", True),
    "lambada_acc": ("LAMBADA (ACC)", "lambada", "acc", False),
    "cbt_cn": ("CBT-CN (ACC)", "cbt_cn", "acc", False),
    "cbt_ne": ("CBT-NE (ACC)", "cbt_ne", "acc", False),
    "wikitext2": ("WikiText2 (PPL)", "wikitext2", "ppl", True),
    "ptb": ("PTB (PPL)", "ptb", "ppl", True),
    "enwik8": ("enwik8 (BPB)", "enwik8", "bpb", True),
    "text8": ("text8 (BPC)", "text8", "bpb", True),
    "wikitext103": ("WikiText103 (PPL)", "wikitext103", "ppl", True),
    "1bw": ("1BW (PPL)", None, "ppl", True),
    "coqa": ("CoQA dev (F1)", "coqa", "f1", False),
}

TABLE3 = {
    "SOTA": {"lambada_ppl": 99.8, "lambada_acc": 59.23, "cbt_cn": 85.7, "cbt_ne": 82.3, "wikitext2": 39.14,
             "ptb": 46.54, "enwik8": 0.99, "text8": 1.08, "wikitext103": 18.3, "1bw": 21.8},
    "117M": {"lambada_ppl": 35.13, "lambada_acc": 45.99, "cbt_cn": 87.65, "cbt_ne": 83.4, "wikitext2": 29.41,
             "ptb": 65.85, "enwik8": 1.16, "text8": 1.17, "wikitext103": 37.50, "1bw": 75.20},
    "345M": {"lambada_ppl": 15.60, "lambada_acc": 55.48, "cbt_cn": 92.35, "cbt_ne": 87.1, "wikitext2": 22.76,
             "ptb": 47.33, "enwik8": 1.01, "text8": 1.06, "wikitext103": 26.37, "1bw": 55.72},
    "762M": {"lambada_ppl": 10.87, "lambada_acc": 60.12, "cbt_cn": 93.45, "cbt_ne": 88.0, "wikitext2": 19.93,
             "ptb": 40.31, "enwik8": 0.97, "text8": 1.02, "wikitext103": 22.05, "1bw": 44.575},
    "1542M": {"lambada_ppl": 8.63, "lambada_acc": 63.24, "cbt_cn": 93.30, "cbt_ne": 89.05, "wikitext2": 18.34,
              "ptb": 35.76, "enwik8": 0.93, "text8": 0.98, "wikitext103": 17.48, "1bw": 42.16, "coqa": 55.0},
}

# Table 6: % of each test set's 8-grams found in a training set (Bloom filters, normalised text).
TABLE6 = {
    "Dataset train": {"ptb": 2.67, "wikitext2": 0.66, "enwik8": 7.50, "text8": 2.34, "wikitext103": 9.09,
                      "1bw": 13.19},
    "WebText train": {"ptb": 0.88, "wikitext2": 1.63, "enwik8": 6.31, "text8": 3.94, "wikitext103": 2.42,
                      "1bw": 3.75},
}


def closest_size(n_layer: int, n_embd: int) -> tuple[str, bool]:
    """The paper size with this architecture, or the nearest one by n_layer·n_embd² (and False)."""
    for name, arch in SIZES.items():
        if arch == (n_layer, n_embd):
            return name, True
    score = lambda name: abs(SIZES[name][0] * SIZES[name][1] ** 2 - n_layer * n_embd ** 2)
    return min(SIZES, key=score), False
