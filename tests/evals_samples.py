"""Small files in the official formats of CNN/DailyMail, WMT-14 and Natural Questions, written by the
tests (the real data is not in the shared data dir)."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import pathlib
import tarfile

ARTICLES = [
    ("http://www.cnn.com/2014/01/01/world/story-one/index.html", "cnn",
     "(CNN) -- The city council approved a new park on Monday. It will open next spring.\n\n"
     "Mayor Jane Smith said the park would have a lake. Residents welcomed the plan.",
     ["Council approves a new park", "The park will open next spring"]),
    ("http://www.dailymail.co.uk/news/article-1/Storm-hits.html", "dailymail",
     "By . Daily Mail Reporter . A storm hit the coast overnight. Thousands lost power.\n\n"
     "Engineers worked through the night. Power was restored by noon!",
     ["A storm hit the coast", "Thousands lost power", "Power restored by noon"]),
    ("http://www.cnn.com/2014/02/02/sport/match/index.html", "cnn",
     "The home team won the final 2-1. Fans celebrated in the streets. \"It was a great night,\" said one.",
     ["Home team wins the final"]),
]
EMPTY_URL = "http://www.cnn.com/2014/03/03/empty/index.html"  # a story without article text: skipped


def story_text(article: str, highlights: list[str]) -> str:
    return article + "\n\n" + "".join(f"@highlight\n\n{h}\n\n" for h in highlights)


def sha1(url: str) -> str:
    return hashlib.sha1(url.encode()).hexdigest()


def tgz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def cnn_dm_archives() -> dict[str, bytes]:
    """{file name: bytes} of all_test.txt, cnn_stories.tgz and dailymail_stories.tgz."""
    members = {"cnn": {}, "dailymail": {}}
    for url, site, article, highlights in ARTICLES:
        members[site][f"{site}/stories/{sha1(url)}.story"] = story_text(article, highlights).encode()
    members["cnn"][f"cnn/stories/{sha1(EMPTY_URL)}.story"] = b"\n\n@highlight\n\nNothing here\n"
    members["cnn"]["cnn/stories/" + "0" * 40 + ".story"] = story_text("Not in the test set.", ["x"]).encode()
    urls = [ARTICLES[0][0], EMPTY_URL, ARTICLES[1][0], ARTICLES[2][0]]
    return {"all_test.txt": ("\n".join(urls) + "\n").encode(), "cnn_stories.tgz": tgz(members["cnn"]),
            "dailymail_stories.tgz": tgz(members["dailymail"])}


def write_cnn_dm(root: pathlib.Path) -> pathlib.Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in cnn_dm_archives().items():
        (root / name).write_bytes(data)
    return root / "all_test.txt"


PAIRS = [
    ("The cat sleeps on the sofa.", "Le chat dort sur le canapé."),
    ("I would like a cup of coffee, please.", "Je voudrais une tasse de café, s'il vous plaît."),
    ("The weather is nice   today.", "Il fait beau aujourd'hui."),
    ("We will meet at the station at noon.", "Nous nous retrouverons à la gare à midi."),
    ("Mr. Dupont bought a new car.", "M. Dupont a acheté une nouvelle voiture."),
]


def sgm(lang: str, segs: list[str], kind: str) -> str:
    head = ('<srcset setid="newstest2014" srclang="any">\n' if kind == "src"
            else f'<refset setid="newstest2014" srclang="any" trglang="{lang}">\n')
    body = '<doc sysid="ref" docid="1012-bbc" genre="news" origlang="en">\n<p>\n'
    body += "".join(f'<seg id="{i + 1}">{s}</seg>\n' for i, s in enumerate(segs[:3]))
    body += '</p>\n</doc>\n<doc sysid="ref" docid="1013-lemonde" genre="news" origlang="fr">\n'
    body += "".join(f'<seg id="{i + 1}"> {s} </seg>\n' for i, s in enumerate(segs[3:]))
    return head + body + "</doc>\n" + ("</srcset>\n" if kind == "src" else "</refset>\n")


def wmt_files() -> dict[str, str]:
    en, fr = [p[0] for p in PAIRS], [p[1] for p in PAIRS]
    return {"newstest2014-fren-src.en.sgm": sgm("en", en, "src"), "newstest2014-fren-ref.fr.sgm": sgm("fr", fr, "ref"),
            "newstest2014-fren-src.fr.sgm": sgm("fr", fr, "src"), "newstest2014-fren-ref.en.sgm": sgm("en", en, "ref")}


def write_wmt(root: pathlib.Path) -> pathlib.Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in wmt_files().items():
        (root / name).write_text(text, encoding="utf-8")
    return root


NQ_OPEN = [
    {"question": "who wrote the novel moby dick", "answer": ["Herman Melville"]},
    {"question": "what is the capital of france", "answer": ["Paris"]},
    {"question": "when did the first man land on the moon", "answer": ["1969", "July 20, 1969"]},
    {"question": "how many legs does a spider have", "answer": ["eight", "8"]},
]


def nq_official_records() -> list[dict]:
    """Two official NQ dev records (full format with HTML tokens; simplified document_text) and
    one whose only short answer is longer than 5 tokens (dropped, as NQ-Open does)."""
    toks = [("<P>", True), ("Moby", False), ("Dick", False), ("was", False), ("written", False), ("by", False),
            ("<b>", True), ("Herman", False), ("Melville", False), ("</b>", True), ("</P>", True)]
    full = {"question_text": "who wrote moby dick", "example_id": 1,
            "document_tokens": [{"token": t, "html_token": h, "start_byte": 0, "end_byte": 0} for t, h in toks],
            "annotations": [{"short_answers": [{"start_token": 6, "end_token": 10}], "yes_no_answer": "NONE"},
                            {"short_answers": [{"start_token": 7, "end_token": 9}], "yes_no_answer": "NONE"},
                            {"short_answers": [], "yes_no_answer": "NONE"}]}
    simplified = {"question_text": "what is the capital of france", "example_id": 2,
                  "document_text": "<P> The capital of France is Paris . </P>",
                  "annotations": [{"short_answers": [{"start_token": 6, "end_token": 7}], "yes_no_answer": "NONE"}]}
    too_long = {"question_text": "describe the plot", "example_id": 3,
                "document_text": "<P> a b c d e f g </P>",
                "annotations": [{"short_answers": [{"start_token": 1, "end_token": 8}], "yes_no_answer": "NONE"}]}
    return [full, simplified, too_long]


def write_nq(root: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """(NQ-Open jsonl, official nq-dev-00.jsonl.gz) under root."""
    root.mkdir(parents=True, exist_ok=True)
    nq_open = root / "NQ-open.dev.jsonl"
    nq_open.write_text("".join(json.dumps(r) + "\n" for r in NQ_OPEN))
    official = root / "nq-dev-00.jsonl.gz"
    with gzip.open(official, "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in nq_official_records()))
    return nq_open, official
