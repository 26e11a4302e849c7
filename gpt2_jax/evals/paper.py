"""Published numbers of Radford et al. 2019 ("Language Models are Unsupervised Multitask Learners"):
Table 3 (zero-shot results), the CoQA dev F1 of §3.5, the numbers of §3.4 (Winograd), §3.6 /
Table 4 (CNN/DailyMail), §3.7 (WMT-14) and §3.8 (Natural Questions), and Table 6 (8-gram overlap).
Where the paper gives a number only for its largest model (CoQA and §3.4-3.8: the smaller models
appear only in plots), only 1542M has it."""
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
    "wsc273": ("Winograd WSC273 (ACC)", "wsc273", "acc", False),
    "cnn_dm_r1": ("CNN/DM TL;DR: (R-1)", "cnn_dm", "rouge1", False),
    "cnn_dm_r2": ("CNN/DM TL;DR: (R-2)", "cnn_dm", "rouge2", False),
    "cnn_dm_rl": ("CNN/DM TL;DR: (R-L)", "cnn_dm", "rougeLsum", False),
    "cnn_dm_ravg": ("CNN/DM TL;DR: (R-AVG)", "cnn_dm", "r_avg", False),
    "cnn_dm_random3_r1": ("CNN/DM random-3 (R-1)", "cnn_dm", "random3_rouge1", False),
    "cnn_dm_random3_r2": ("CNN/DM random-3 (R-2)", "cnn_dm", "random3_rouge2", False),
    "cnn_dm_random3_rl": ("CNN/DM random-3 (R-L)", "cnn_dm", "random3_rougeLsum", False),
    "wmt14_en_fr": ("WMT-14 En→Fr (BLEU)", "wmt14_en_fr", "bleu", False),
    "wmt14_fr_en": ("WMT-14 Fr→En (BLEU)", "wmt14_fr_en", "bleu", False),
    "nq": ("Natural Questions (EM)", "nq", "em", False),
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

# §3.4-3.8, reported for the 1.5B model only: WSC273 accuracy (partial scoring, §3.4), CNN/DM ROUGE F1
# of "TL;DR:" (Table 4), BLEU of WMT-14 En->Fr and Fr->En (§3.7), NQ exact match (§3.8).
SECTION3 = {"1542M": {"wsc273": 70.70, "cnn_dm_r1": 29.34, "cnn_dm_r2": 8.27, "cnn_dm_rl": 26.58,
                      "cnn_dm_ravg": 21.40, "wmt14_en_fr": 5.0, "wmt14_fr_en": 11.5, "nq": 4.1}}

# Table 4's baseline of 3 random sentences of the article: no model, so the same for every size.
BASELINES = {"cnn_dm_random3_r1": 28.78, "cnn_dm_random3_r2": 8.63, "cnn_dm_random3_rl": 25.52}


def published(size: str) -> dict[str, float]:
    """Every published number for a paper size, by COLUMNS key."""
    return {**BASELINES, **TABLE3[size], **SECTION3.get(size, {})}


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
