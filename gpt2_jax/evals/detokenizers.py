"""De-tokenizers that undo benchmark pre-processing (GPT-2 paper §3.1) so a WebText model sees
natural text, and their inverses.

The paper's de-tokenizers are invertible, so the log-probability of the de-tokenized text is still
a log-probability of the dataset. Ours are invertible by construction: a line is de-tokenized only
when the inverse reproduces it exactly (`retokenize(detokenize(x)) == x` for every line `x`);
otherwise the line is kept as it is, and the inverse recognises such lines. Perplexity is always
normalised by the original token count, so the choice of rules changes only what the model sees.
"""
from __future__ import annotations

import re
from typing import Callable

# ----------------------------------------------------------------------------- WikiText
_WT_NUM = re.compile(r" @([-,.])@ ")
_WT_NUM_INV = {",": re.compile(r"(?<=\d),(?=\d)"), ".": re.compile(r"(?<=\d)\.(?=\d)"),
               "-": re.compile(r"(?<=[^\s-])-(?=[^\s-])")}
_PUNCT = re.compile(r"(?<=[^\s.,;:!?(\[]) ([.,;:!?]+)(?= |$)")
_PUNCT_INV = re.compile(r"(?<=[^\s.,;:!?(\[])([.,;:!?]+)(?= |$)")
_CONTR = re.compile(r" '(s|t|re|ve|m|ll|d)(?= |$)")
_CONTR_INV = re.compile(r"(?<=\S)'(s|t|re|ve|m|ll|d)(?= |$)")
_OPEN = re.compile(r"([(\[]) ")
_OPEN_INV = re.compile(r"([(\[])(?=\S)")
_CLOSE = re.compile(r" ([)\]])")
_CLOSE_INV = re.compile(r"(?<=\S)([)\]])")
_HEADER = re.compile(r"^((?:= )+)(.*?)((?: =)+)$")
_HEADER_INV = re.compile(r"^(=+) (.*) (=+)$")
# Tokens that end in "." in the tokenized text itself (initials, common abbreviations): their dot
# is never split off again by the inverse.
_ABBREV = re.compile(r"^[(\[\"]*(?:(?:[A-Za-z]\.)+|(?:No|Nos|Col|St|vs|Gen|Dr|Mr|Mrs|Ms|Sr|Jr|Bros|Inc|Co|"
                     r"Corp|Ltd|Capt|Maj|Lt|Sgt|Rev|Prof|Gov|Sen|Rep|Ft|Mt|al|pp|etc|cf|ca)\.)$")


def _quotes(line: str) -> str:
    """Pair standalone `"` tokens: the first of each pair hugs the next word, the second the previous."""
    parts = line.split(" ")
    idx = [i for i, p in enumerate(parts) if p == '"']
    if len(idx) % 2 or not idx:
        return line
    out, opening = [], True
    for i, p in enumerate(parts):
        if p == '"':
            if opening and i + 1 < len(parts):
                parts[i + 1] = '"' + parts[i + 1]
            elif not opening and out:
                out[-1] = out[-1] + '"'
            else:
                return line
            opening = not opening
            continue
        out.append(p)
    return " ".join(out)


def _quotes_inv(line: str) -> str:
    n = line.count('"')
    if n % 2 or not n:
        return line
    out, opening = [], True
    for ch in line:
        if ch == '"':
            out.append('" ' if opening else ' "')
            opening = not opening
        else:
            out.append(ch)
    return "".join(out)


def _wikitext_line(line: str) -> str:
    if not (line.startswith(" ") and line.endswith(" ")):
        return line
    s = line[1:-1]
    m = _HEADER.match(s)
    if m:
        s = "=" * m.group(1).count("=") + " " + m.group(2) + " " + "=" * m.group(3).count("=")
    s = _WT_NUM.sub(r"\1", s)
    s = _quotes(s)
    s = _CONTR.sub(r"'\1", s)
    s = _PUNCT.sub(r"\1", s)
    s = _OPEN.sub(r"\1", s)
    return _CLOSE.sub(r"\1", s)


def _wikitext_line_inv(s: str) -> str:
    if not s:
        return " "
    s = _CLOSE_INV.sub(r" \1", s)
    s = _OPEN_INV.sub(r"\1 ", s)
    s = " ".join(w if _ABBREV.search(w) else _PUNCT_INV.sub(r" \1", w) for w in s.split(" "))
    s = _CONTR_INV.sub(r" '\1", s)
    s = _quotes_inv(s)
    for ch, pat in _WT_NUM_INV.items():
        s = pat.sub(f" @{ch}@ ", s)
    m = _HEADER_INV.match(s)
    if m and len(m.group(1)) == len(m.group(3)):
        s = " ".join(m.group(1)) + " " + m.group(2) + " " + " ".join(m.group(3))
    return " " + s + " "


# ----------------------------------------------------------------------------- PTB
_PTB_CONTR = re.compile(r" (n't|'s|'re|'ve|'ll|'m|'d)(?= |$)")
_PTB_CONTR_INV = re.compile(r"(?<=\S)(n't|'s|'re|'ve|'ll|'m|'d)(?= |$)")


def _ptb_line(line: str) -> str:
    if not (line.startswith(" ") and line.endswith(" ")):
        return line
    return _PTB_CONTR.sub(r"\1", line[1:-1])


def _ptb_line_inv(s: str) -> str:
    if not s:
        return " "
    return " " + _PTB_CONTR_INV.sub(r" \1", s) + " "


# ----------------------------------------------------------------------------- invertible wrapper
def _invertible(fwd: Callable[[str], str], inv: Callable[[str], str]):
    """Line-wise (detok, retok) pair with detok(x) = fwd(x) only where inv(fwd(x)) == x."""

    def detok_line(x: str) -> str:
        y = fwd(x)
        return y if inv(y) == x else x

    def retok_line(y: str) -> str:
        x = inv(y)
        # y came from fwd(x) iff fwd maps that x back to y and the round trip holds; otherwise y
        # is a line that was kept verbatim.
        return x if fwd(x) == y and inv(fwd(x)) == x else y

    def lines(text: str) -> tuple[list[str], str]:  # a final newline ends the last line
        return (text[:-1].split("\n"), "\n") if text.endswith("\n") else (text.split("\n"), "")

    def detok(text: str) -> str:
        body, end = lines(text)
        return "\n".join(map(detok_line, body)) + end

    def retok(text: str) -> str:
        body, end = lines(text)
        return "\n".join(map(retok_line, body)) + end

    return detok, retok


wikitext_detokenize, wikitext_retokenize = _invertible(_wikitext_line, _wikitext_line_inv)
ptb_detokenize, ptb_retokenize = _invertible(_ptb_line, _ptb_line_inv)


def identity(text: str) -> str:
    return text


# ----------------------------------------------------------------------------- CBT (PTB-style tokens)
_CBT_MAP = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}",
            "``": '"', "''": '"'}
_ATTACH_LEFT = {",", ".", "!", "?", ";", ":", ")", "]", "}", "n't", "'s", "'S", "'ll", "'m", "'ve",
                "'d", "'re", "'t", "...", "'em"}
_ATTACH_RIGHT = {"(", "[", "{"}


def cbt_detokenize(tokens: list[str]) -> tuple[str, list[int]]:
    """Join CBT's PTB-style tokens into natural text (`` '' ` ' quotes, -LRB-, split clitics and
    punctuation); returns the text and the character offset where each token starts. `` opens and
    '' closes a double quote; a bare `'` closes an open single quote, else opens one (CBT writes
    single-quote openers as ` or ')."""
    out: list[str] = []
    starts: list[int] = []
    length = 0
    glue_next = in_quote = dq_open = False
    for tok in tokens:
        t = _CBT_MAP.get(tok, tok)
        attach_left, attach_right = t in _ATTACH_LEFT, t in _ATTACH_RIGHT
        if tok == "`":
            t, attach_right, in_quote = "'", True, True
        elif tok == "'":
            if in_quote:
                attach_left, in_quote = True, False
            else:
                attach_right, in_quote = True, True
        elif tok == "``":
            attach_right = True
        elif tok == "''":
            attach_left = True
        elif t == '"':
            attach_left, attach_right = dq_open, not dq_open
            dq_open = not dq_open
        if out and not glue_next and not attach_left:
            out.append(" ")
            length += 1
        starts.append(length)
        out.append(t)
        length += len(t)
        glue_next = attach_right
    return "".join(out), starts


# ----------------------------------------------------------------------------- lm-eval-harness
def harness_wikitext_detokenize(string: str) -> str:
    """lm-evaluation-harness `wikitext_detokenizer` (tasks/wikitext/preprocess_wikitext.py), verbatim
    in behaviour; used in harness mode only (it is not invertible)."""
    string = string.replace("s '", "s'")
    string = re.sub(r"/' [0-9]/", r"/'[0-9]/", string)
    string = string.replace(" @-@ ", "-")
    string = string.replace(" @,@ ", ",")
    string = string.replace(" @.@ ", ".")
    string = string.replace(" : ", ": ")
    string = string.replace(" ; ", "; ")
    string = string.replace(" . ", ". ")
    string = string.replace(" ! ", "! ")
    string = string.replace(" ? ", "? ")
    string = string.replace(" , ", ", ")
    string = re.sub(r"\(\s*([^\)]*?)\s*\)", r"(\1)", string)
    string = re.sub(r"\[\s*([^\]]*?)\s*\]", r"[\1]", string)
    string = re.sub(r"{\s*([^}]*?)\s*}", r"{\1}", string)
    string = re.sub(r"\"\s*([^\"]*?)\s*\"", r'"\1"', string)
    string = re.sub(r"'\s*([^']*?)\s*'", r"'\1'", string)
    string = string.replace("= = = =", "====")
    string = string.replace("= = =", "===")
    string = string.replace("= =", "==")
    string = string.replace(" " + chr(176) + " ", chr(176))
    string = string.replace(" \n", "\n")
    string = string.replace("\n ", "\n")
    string = string.replace(" N ", " 1 ")
    string = string.replace(" 's", "'s")
    return string
