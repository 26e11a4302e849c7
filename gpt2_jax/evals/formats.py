"""Readers for the official files of the GPT-2 paper's other zero-shot tasks (§3.4-3.8): WSC273
(jsonl or the WSCollection.xml schemas), CNN/DailyMail (.story files in DeepMind's archives, chosen
by See et al.'s url list), WMT-14 (newstest2014 .sgm) and Natural Questions (NQ-Open jsonl or the
official NQ jsonl[.gz]). Sources and URLs are in readers.SOURCES; malformed input is a DataError
naming the file and line."""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import pathlib
import re
import tarfile
import xml.etree.ElementTree as ET

from gpt2_jax.errors import DataError, InputError
from gpt2_jax.evals.readers import PathLike, SOURCES, resolve
from gpt2_jax.textfiles import decode_utf8

_REDOWNLOAD = "re-download the file (gpt2_jax.evals.download)"


def _lines(p: pathlib.Path) -> list[str]:
    return decode_utf8(p.read_bytes(), p, _REDOWNLOAD).splitlines()


# ----------------------------------------------------------------------------- WSC273
@dataclasses.dataclass(frozen=True)
class WSCSchema:
    """One Winograd schema with each candidate substituted for the pronoun: `options[k]` is the
    sentence up to and including candidate k, `continuation` the rest; `gold` the right candidate."""
    options: tuple[str, str]
    continuation: str
    gold: int
    line: int


_POSSESSIVE = ("my", "his", "her", "our", "their")
_UPPER = ("A", "An", "The", "She", "He", "It", "They", "My", "His", "Her", "Their")


def _ws(text: str | None) -> str:
    return " ".join((text or "").split())


def _xml_schemas(p: pathlib.Path) -> list[WSCSchema]:
    """Schemas of WSCollection.xml with lm-eval's wsc273 substitution rules: a possessive pronoun
    takes the candidate plus 's, and a leading article/pronoun of the candidate is lower-cased
    unless the pronoun starts a sentence."""
    try:
        root = ET.parse(p).getroot()
    except ET.ParseError as e:
        raise DataError(f"{p}:{e.position[0]}: not valid XML ({e}); expected WSCollection.xml: "
                        f"{_REDOWNLOAD}.") from None
    out = []
    for i, s in enumerate(root.iter("schema")):
        txt1, pron, txt2 = (_ws(s.findtext(f"text/{k}")) for k in ("txt1", "pron", "txt2"))
        answers = [_ws(a.text) for a in s.findall("answers/answer")]
        correct = _ws(s.findtext("correctAnswer")).strip(".").strip()[:1]
        if not (txt1 and pron and txt2) or len(answers) != 2 or correct not in ("A", "B"):
            raise DataError(f"{p}: schema #{i + 1} lacks txt1/pron/txt2, two answers or a correctAnswer A/B.")
        options = []
        for a in answers:
            if pron.lower() in _POSSESSIVE:
                a += "'s"
            first = a.split()[0]
            if first in _UPPER and not txt1.endswith("."):
                a = a.replace(first, first.lower(), 1)
            options.append(f"{txt1} {a}")
        out.append(WSCSchema(tuple(options), txt2, "AB".index(correct), i + 1))
    return out


def read_wsc273(path: PathLike | None = None, data_dir: PathLike | None = None) -> list[WSCSchema]:
    """The 273 schemas: from the jsonl (`{"context_options": [2], "continuation", "gold"}` a line;
    the default file) or, for a `.xml` path, the first 273 schemas of WSCollection.xml."""
    p = resolve("wsc273", "test", path, data_dir)
    if p.suffix.lower() == ".xml":
        schemas = _xml_schemas(p)[:273]
    else:
        schemas = []
        for lineno, line in enumerate(_lines(p), 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                opts, cont, gold = r["context_options"], r["continuation"], r["gold"]
                ok = len(opts) == 2 and all(isinstance(o, str) and o for o in opts) and gold in (0, 1) and cont
            except (json.JSONDecodeError, KeyError, TypeError):
                ok = False
            if not ok:
                raise DataError(f"{p}:{lineno}: expected {{\"context_options\": [two strings], \"continuation\": str, "
                                "\"gold\": 0 or 1}.")
            schemas.append(WSCSchema((opts[0], opts[1]), cont, gold, lineno))
    if not schemas:
        raise DataError(f"{p}: no schemas found.")
    return schemas


# ----------------------------------------------------------------------------- CNN/DailyMail
@dataclasses.dataclass(frozen=True)
class Story:
    """A CNN/DailyMail story: its id (sha1 of its url), article and highlight sentences."""
    id: str
    article: str
    highlights: tuple[str, ...]


def parse_story(text: str) -> tuple[str, tuple[str, ...]]:
    """(article, highlights) of a .story file: the text before its first `@highlight`, stripped,
    and the non-empty line after each `@highlight`."""
    article, _, rest = text.partition("@highlight")
    highlights, take = [], True
    for line in rest.splitlines():
        line = line.strip()
        if line == "@highlight":
            take = True
        elif line and take:
            highlights.append(line)
            take = False
    return article.strip(), tuple(highlights)


def read_cnn_dm(path: PathLike | None = None, data_dir: PathLike | None = None,
                limit: int | None = None) -> list[Story]:
    """The test stories named by See et al.'s url list (`all_test.txt`; a story's file name is the
    sha1 of its url), read from `cnn_stories.tgz` / `dailymail_stories.tgz` beside the list or from
    their extracted `cnn/stories`, `dailymail/stories` dirs, in url-list order. Stories without
    article text (114 in the release) are skipped, as everyone does; `limit`: the first N urls."""
    p = resolve("cnn_dm", "test", path, data_dir)
    urls = [u.strip() for u in _lines(p) if u.strip()]
    if not urls:
        raise DataError(f"{p}: no urls; expected one story url a line (abisee/cnn-dailymail url_lists).")
    ids = [hashlib.sha1(u.encode("utf-8")).hexdigest() for u in urls[:limit]]
    wanted, texts = set(ids), {}
    for split, sub in (("cnn_stories", "cnn/stories"), ("dailymail_stories", "dailymail/stories")):
        folder, archive = p.parent / sub, p.parent / pathlib.Path(SOURCES[("cnn_dm", split)].relpath).name
        if folder.is_dir():
            for h in wanted - set(texts):
                f = folder / f"{h}.story"
                if f.is_file():
                    texts[h] = decode_utf8(f.read_bytes(), f, _REDOWNLOAD)
        elif archive.is_file():
            try:
                with tarfile.open(archive) as tar:
                    for m in tar:
                        h = pathlib.PurePosixPath(m.name).stem
                        if m.isfile() and m.name.endswith(".story") and h in wanted:
                            texts[h] = decode_utf8(tar.extractfile(m).read(), archive / m.name, _REDOWNLOAD)
                            if len(texts) == len(wanted):
                                break
            except (tarfile.TarError, OSError, EOFError) as e:
                raise DataError(f"{archive}: not a readable tar archive ({e}); {_REDOWNLOAD}.") from None
    missing = [u for u, h in zip(urls, ids) if h not in texts]
    if missing:
        raise DataError(f"{len(missing)} of {len(ids)} stories of {p.name} are in neither cnn_stories.tgz / "
                        f"dailymail_stories.tgz nor cnn/stories / dailymail/stories under {p.parent} (first: "
                        f"{missing[0]}); download them with gpt2_jax.evals.download(['cnn_dm']).")
    stories = []
    for h in ids:
        article, highlights = parse_story(texts[h])
        if article and highlights:
            stories.append(Story(h, article, highlights))
    return stories


# ----------------------------------------------------------------------------- WMT-14
def read_sgm(p: pathlib.Path) -> list[str]:
    """The segments of a WMT "fake SGML" file, one a line, as sacrebleu reads them (the text
    inside <seg ...>...</seg>, whitespace collapsed, entities left as they are)."""
    segs = [" ".join(re.sub(r"<seg.*?>(.*)</seg>.*?", r"\1", line).split())
            for line in _lines(p) if line.startswith("<seg ")]
    if not segs:
        raise DataError(f"{p}: no <seg> lines; expected a WMT .sgm file ({_REDOWNLOAD}).")
    return segs


def read_wmt14(direction: str, path: PathLike | None = None, data_dir: PathLike | None = None
               ) -> list[tuple[str, str]]:
    """(source, reference) sentence pairs of newstest2014 for `direction` "en_fr" or "fr_en":
    `path` (or the data dir's file) is the source .sgm, the reference the -ref.<lang>.sgm beside it."""
    if direction not in ("en_fr", "fr_en"):
        raise InputError(f"WMT-14 direction {direction!r}: expected 'en_fr' or 'fr_en'.")
    src_lang, tgt_lang = direction.split("_")
    src = resolve(f"wmt14_{direction}", "test", path, data_dir)
    ref = src.with_name(src.name.replace(f"-src.{src_lang}.", f"-ref.{tgt_lang}."))
    if ref == src or not ref.is_file():
        want = ref.name if ref != src else f"newstest2014-fren-ref.{tgt_lang}.sgm"
        raise DataError(f"no reference file beside {src}: expected {want}; the source must be named like "
                        f"newstest2014-fren-src.{src_lang}.sgm with its -ref.{tgt_lang}.sgm beside it "
                        "(gpt2_jax.evals.download(['wmt14_en_fr', 'wmt14_fr_en'])).")
    sources, refs = read_sgm(src), read_sgm(ref)
    if len(sources) != len(refs):
        raise DataError(f"{src.name} has {len(sources)} segments but {ref.name} {len(refs)}; {_REDOWNLOAD}.")
    return list(zip(sources, refs))


# ----------------------------------------------------------------------------- Natural Questions
@dataclasses.dataclass(frozen=True)
class NQQuestion:
    question: str
    answers: tuple[str, ...]


def _nq_official(r: dict, max_answer_tokens: int) -> tuple[str, ...]:
    """Short answers (text of their token spans) of an official NQ record, full or simplified."""
    if "document_tokens" in r:
        toks = [t["token"] for t in r["document_tokens"]]
        html = [bool(t.get("html_token")) for t in r["document_tokens"]]
    else:
        toks = r["document_text"].split(" ")
        html = [t.startswith("<") and t.endswith(">") for t in toks]
    out = []
    for ann in r["annotations"]:
        for sa in ann["short_answers"]:
            words = [t for t, h in zip(toks[sa["start_token"]:sa["end_token"]], html[sa["start_token"]:sa["end_token"]])
                     if not h]
            if words and len(words) <= max_answer_tokens:
                out.append(" ".join(words))
    return tuple(dict.fromkeys(out))


def read_nq(path: PathLike | None = None, data_dir: PathLike | None = None,
            max_answer_tokens: int = 5) -> list[NQQuestion]:
    """Questions with their short answers: NQ-Open jsonl (`{"question", "answer": [...]}`, the
    default file) or the official NQ format (`question_text`, `annotations`, `document_tokens` or
    simplified `document_text`; .jsonl or .jsonl.gz, or a directory of nq-dev-*.jsonl.gz), where,
    as NQ-Open does, only short answers of at most `max_answer_tokens` tokens count and questions
    without one are dropped."""
    if path is not None and pathlib.Path(path).expanduser().is_dir():
        files = sorted(pathlib.Path(path).expanduser().glob("nq-dev-*.jsonl*"))
        if not files:
            raise DataError(f"{path}: no nq-dev-*.jsonl.gz files in this directory.")
    else:
        files = [resolve("nq", "dev", path, data_dir)]
    out = []
    for p in files:
        with (gzip.open(p, "rb") if p.suffix == ".gz" else open(p, "rb")) as f:
            try:
                for lineno, raw in enumerate(f, 1):
                    if not raw.strip():
                        continue
                    try:
                        r = json.loads(decode_utf8(raw, p, _REDOWNLOAD, line=lineno))
                        if "question_text" in r:
                            q, answers = r["question_text"], _nq_official(r, max_answer_tokens)
                        else:
                            q, answers = r["question"], tuple(r["answer"])
                        ok = isinstance(q, str) and all(isinstance(a, str) for a in answers)
                    except (json.JSONDecodeError, KeyError, TypeError, IndexError, AttributeError):
                        ok = False
                    if not ok:
                        raise DataError(f"{p}:{lineno}: expected an NQ-Open record {{\"question\", \"answer\": [...]}} "
                                        "or an official NQ record (question_text, annotations, document_tokens).")
                    if answers:
                        out.append(NQQuestion(q, answers))
            except (OSError, EOFError) as e:
                raise DataError(f"{p}: unreadable ({e}); {_REDOWNLOAD}.") from None
    if not out:
        raise DataError(f"{files[0]}: no questions with a short answer found.")
    return out
