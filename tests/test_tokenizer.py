"""gpt2_jax/tokenizer.py: GPT-2 ids equal OpenAI's released BPE (ported below) and HF `tokenizers` on
all of WikiText-2 test and LAMBADA; round-trips; sentencepiece training/loading; every error path."""
import json
import pathlib
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
import regex

from gpt2_jax.errors import InputError, TokenizerError
from gpt2_jax.paths import data_dir
from gpt2_jax.tokenizer import EOT, Tokenizer

TRICKY = ["", "hello world", " leading and trailing  ", "a  \n\n b \t\tc\r\n", "\n\n", "   ", "x\u00a0y",
          "héllo naïve café Ünïcödé", "日本語のテキスト", "emoji 🤖👍🏽 and ZWJ 👩‍👩‍👧", "Ω≈ç√∫ ﬁ ẞ",
          "can't won't I'm we'll they've he'd 'S", "1234567890 3.14159 -0.5e10", "<|endoftext|>",
          "doc one<|endoftext|>doc two", "<|endoftext|><|endoftext|>", "<|endoftext", "tab\tsep\x00nul\x1fctl"]


# ---- reference: a port of OpenAI's gpt-2/src/encoder.py (the algorithm GPT-2 was trained with) ----

def _bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def _get_pairs(word):
    return {(a, b) for a, b in zip(word, word[1:])}


class OpenAIEncoder:
    """OpenAI's encoder.py, unchanged in behaviour (incl. its per-word cache)."""

    def __init__(self, vocab_dir):
        self.encoder = json.loads((vocab_dir / "encoder.json").read_text(encoding="utf-8"))
        self.decoder = {v: k for k, v in self.encoder.items()}
        merges = (vocab_dir / "vocab.bpe").read_text(encoding="utf-8").split("\n")[1:-1]
        self.bpe_ranks = {tuple(m.split()): i for i, m in enumerate(merges)}
        self.byte_encoder = _bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        self.cache = {}
        self.pat = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token)
        pairs = _get_pairs(word)
        if not pairs:
            return token
        while True:
            bigram = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word, i = [], 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    new_word.extend(word[i:])
                    break
                new_word.extend(word[i:j])
                i = j
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = _get_pairs(word)
        word = " ".join(word)
        self.cache[token] = word
        return word

    def encode(self, text):
        ids = []
        for token in regex.findall(self.pat, text):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(token).split(" "))
        return ids

    def decode(self, ids):
        text = "".join(self.decoder[i] for i in ids)
        return bytearray(self.byte_decoder[c] for c in text).decode("utf-8", errors="replace")


# ---- fixtures ----

@pytest.fixture(scope="module")
def vocab_dir():
    return data_dir() / "gpt2_vocab"


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.load()


@pytest.fixture(scope="module")
def ref(vocab_dir):
    return OpenAIEncoder(vocab_dir)


def _hf_tokenizer(vocab_dir, special=()):
    """HF `tokenizers` GPT-2 pipeline from the local files (what transformers 5's GPT2Tokenizer builds)."""
    import tokenizers
    from tokenizers import decoders, models, pre_tokenizers

    t = tokenizers.Tokenizer(models.BPE.from_file(str(vocab_dir / "encoder.json"), str(vocab_dir / "vocab.bpe")))
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    t.decoder = decoders.ByteLevel()
    t.add_special_tokens(list(special))
    return t


@pytest.fixture(scope="module")
def hf(vocab_dir):
    return _hf_tokenizer(vocab_dir)


@pytest.fixture(scope="module")
def corpora():
    """name -> list of texts: WikiText-2-raw test (per line) and LAMBADA test (per passage), complete."""
    wiki = (data_dir() / "wikitext/wikitext-2-raw/wiki.test.raw").read_text(encoding="utf-8")
    lambada = (data_dir() / "lambada/lambada_test.jsonl").read_text(encoding="utf-8").splitlines()
    return {"wikitext2_test": wiki.splitlines(keepends=True), "lambada_test": [json.loads(l)["text"] for l in lambada]}


def _first_mismatch(texts, got, want):
    return next(((i, texts[i][:80], g[:20], w[:20]) for i, (g, w) in enumerate(zip(got, want)) if g != w), None)


# ---- GPT-2 BPE ----

@pytest.mark.parametrize("name", ["wikitext2_test", "lambada_test"])
def test_ids_equal_openai_reference_on_whole_corpus(tok, ref, corpora, name):
    texts = corpora[name]
    got = tok.encode_batch(texts)
    want = [ref.encode(t) for t in texts]
    assert len(texts) > 4000 and sum(map(len, want)) > 250_000
    assert got == want, _first_mismatch(texts, got, want)
    assert [tok.decode(ids) for ids in got] == texts


@pytest.mark.parametrize("name", ["wikitext2_test", "lambada_test"])
def test_ids_equal_hf_tokenizers_on_whole_corpus(tok, hf, corpora, name):
    texts = corpora[name]
    want = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    got = [tok.encode(t) for t in texts]
    assert got == want, _first_mismatch(texts, got, want)


def test_known_ids_and_sizes(tok):
    assert tok.encode("hello world") == [31373, 995]
    assert tok.encode("Hello world") == [15496, 995]
    assert (tok.eot_id, tok.vocab_size, tok.name) == (50256, 50257, "gpt2")
    assert tok.decode([50256]) == EOT


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_strings_match_reference_and_round_trip(tok, ref, text):
    ids = tok.encode(text)
    assert ids == ref.encode(text)
    assert tok.decode(ids) == text
    assert tok.decode(tok.encode(text, allow_special=True)) == text


def test_endoftext_is_ordinary_text_by_default(tok, ref):
    text = "doc one<|endoftext|>doc two"
    assert tok.eot_id not in tok.encode(text)
    assert tok.encode(text) == ref.encode(text)  # what OpenAI's encoder.py (GPT-2 training) does


def test_endoftext_maps_to_eot_with_allow_special(tok, vocab_dir):
    text = "doc one<|endoftext|>doc two<|endoftext|>"
    ids = tok.encode(text, allow_special=True)
    assert ids == tok.encode("doc one") + [50256] + tok.encode("doc two") + [50256]
    hf_special = _hf_tokenizer(vocab_dir, special=[EOT])  # transformers' GPT2Tokenizer does this on plain text
    assert ids == hf_special.encode(text, add_special_tokens=False).ids
    assert tok.encode_batch([text, "x"], allow_special=True) == [ids, tok.encode("x")]


def test_decode_accepts_numpy_and_jax_arrays(tok):
    ids = tok.encode("arrays of ids")
    for arr in (np.array(ids, np.int32), np.array(ids, np.int64), jnp.array(ids, jnp.int32)):
        assert tok.decode(arr) == "arrays of ids"
    assert tok.decode(np.zeros((0,), np.int32)) == ""


def test_decode_of_partial_utf8_uses_replacement_char(tok, ref):
    ids = tok.encode("🤖")
    assert len(ids) > 1 and tok.decode(ids[:1]) == ref.decode(ids[:1]) and "\ufffd" in tok.decode(ids[:1])


def test_encode_batch_threads_equal_single(tok, corpora):
    texts = corpora["lambada_test"][:200]
    single = [tok.encode(t) for t in texts]
    assert tok.encode_batch(texts, num_threads=1) == tok.encode_batch(texts, num_threads=2) == single


# ---- sentencepiece ----

@pytest.fixture(scope="module")
def sp_model(tmp_path_factory):
    src = data_dir() / "train_corpora/tinyshakespeare/input.txt"
    tmp = tmp_path_factory.mktemp("sp")
    (tmp / "train.txt").write_text(src.read_text(encoding="utf-8")[:20_000], encoding="utf-8")
    return Tokenizer.train_sentencepiece(tmp / "train.txt", tmp / "models" / "tiny", vocab_size=400)


def test_sentencepiece_train_writes_model_and_loads(sp_model):
    path = pathlib.Path(sp_model.name.removeprefix("sentencepiece:"))
    assert path.is_file() and path.suffix == ".model"
    assert sp_model.vocab_size == 400 and 0 <= sp_model.eot_id < 400
    again = Tokenizer.load(path)
    text = "To be, or not to be: that is the question."
    assert again.encode(text) == sp_model.encode(text) and len(again.encode(text)) < len(text.encode())
    assert Tokenizer.load(sp_model.name).encode(text) == again.encode(text)


@pytest.mark.parametrize("text", TRICKY + ["unseen script: Ελληνικά, ქართული, हिन्दी, 🦜"])
def test_sentencepiece_round_trips_any_text(sp_model, text):
    assert sp_model.decode(sp_model.encode(text)) == text
    assert sp_model.decode(np.array(sp_model.encode(text, allow_special=True))) == text


def test_sentencepiece_endoftext(sp_model):
    ids = sp_model.encode("a<|endoftext|>b", allow_special=True)
    assert ids == sp_model.encode("a") + [sp_model.eot_id] + sp_model.encode("b")
    assert sp_model.eot_id not in sp_model.encode("a<|endoftext|>b")
    assert sp_model.encode_batch(["ab", "a<|endoftext|>"], allow_special=True) == [
        sp_model.encode("ab"), sp_model.encode("a") + [sp_model.eot_id]]
    assert sp_model.encode_batch(["ab", "cd"]) == [sp_model.encode("ab"), sp_model.encode("cd")]


# ---- errors ----

def _copy_vocab(vocab_dir, dst):
    dst.mkdir(exist_ok=True)
    for f in ("encoder.json", "vocab.bpe"):
        shutil.copy(vocab_dir / f, dst / f)
    return dst


def test_missing_vocab_dir_or_file(vocab_dir, tmp_path):
    with pytest.raises(TokenizerError, match="directory not found: .*nope"):
        Tokenizer.from_dir(tmp_path / "nope")
    for name in ("encoder.json", "vocab.bpe"):
        d = _copy_vocab(vocab_dir, tmp_path / name.split(".")[0])
        (d / name).unlink()
        with pytest.raises(TokenizerError, match=f"not found: .*{name}"):
            Tokenizer.from_dir(d)


def _corrupt_encoder(vocab_dir, tmp_path, edit):
    d = _copy_vocab(vocab_dir, tmp_path / "v")
    enc = json.loads((d / "encoder.json").read_text(encoding="utf-8"))
    (d / "encoder.json").write_text(edit(enc), encoding="utf-8")
    return d


@pytest.mark.parametrize("edit, cause", [
    (lambda e: json.dumps(e)[:-10], "not valid JSON"),
    (lambda e: json.dumps({**e, "<|extra|>": len(e)}), "50258 entries .* expected"),
    (lambda e: json.dumps({k: v for k, v in e.items() if k != EOT}), "50256 entries .* expected"),
    (lambda e: json.dumps({**e, "the": 60000}), "not contiguous"),
    (lambda e: json.dumps(list(e)), "expected a JSON object"),
], ids=["bad_json", "extra_entry", "missing_eot", "noncontiguous", "not_object"])
def test_corrupt_encoder_json(vocab_dir, tmp_path, edit, cause):
    d = _corrupt_encoder(vocab_dir, tmp_path, edit)
    with pytest.raises(TokenizerError, match=f"encoder.json.*{cause}"):
        Tokenizer.from_dir(d)


def _corrupt_merges(vocab_dir, tmp_path, lineno, new_line):
    d = _copy_vocab(vocab_dir, tmp_path / "v")
    lines = (d / "vocab.bpe").read_text(encoding="utf-8").split("\n")
    lines[lineno - 1] = new_line(lines)
    (d / "vocab.bpe").write_text("\n".join(lines), encoding="utf-8")
    return d


@pytest.mark.parametrize("lineno, new_line, cause", [
    (1, lambda ls: "version 0.2", r"vocab.bpe:1: expected the header"),
    (100, lambda ls: "Ġthe", r"vocab.bpe:100: expected a merge"),
    (101, lambda ls: "a b c", r"vocab.bpe:101: expected a merge"),
    (102, lambda ls: "a\tb", r"vocab.bpe:102: expected a merge"),
    (200, lambda ls: ls[300], r"vocab.bpe:200: merge .* should be id 454"),
], ids=["header", "one_symbol", "three_symbols", "bad_symbol", "order"])
def test_corrupt_vocab_bpe(vocab_dir, tmp_path, lineno, new_line, cause):
    d = _corrupt_merges(vocab_dir, tmp_path, lineno, new_line)
    with pytest.raises(TokenizerError, match=cause):
        Tokenizer.from_dir(d)


@pytest.mark.parametrize("bad", [[50257], [31373, -1], np.array([1, 2, 60000])])
def test_decode_id_outside_vocab(tok, bad):
    with pytest.raises(TokenizerError, match=r"outside the vocabulary \[0, 50257\) of gpt2"):
        tok.decode(bad)


def test_decode_rejects_2d_and_float(tok, sp_model):
    with pytest.raises(InputError, match=r"shape \(1, 2\)"):
        tok.decode(np.ones((1, 2), np.int32))
    with pytest.raises(InputError, match="float"):
        tok.decode([1.5])
    with pytest.raises(TokenizerError, match=r"outside the vocabulary \[0, 400\)"):
        sp_model.decode([400])


def test_sentencepiece_model_missing_or_not_a_model(tmp_path):
    with pytest.raises(TokenizerError, match="sentencepiece model not found: .*missing.model"):
        Tokenizer.load(tmp_path / "missing.model")
    garbage = tmp_path / "garbage.model"
    garbage.write_bytes(b"this is not a protobuf \xff\xfe" * 10)
    with pytest.raises(TokenizerError, match="garbage.model is not a sentencepiece model"):
        Tokenizer.from_sentencepiece(garbage)


def test_sentencepiece_empty_or_missing_training_input(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n\n", encoding="utf-8")
    with pytest.raises(TokenizerError, match="training input is empty: .*empty.txt"):
        Tokenizer.train_sentencepiece(empty, tmp_path / "m", vocab_size=300)
    with pytest.raises(TokenizerError, match="training file not found: .*absent.txt"):
        Tokenizer.train_sentencepiece([tmp_path / "absent.txt"], tmp_path / "m", vocab_size=300)
    assert not (tmp_path / "m.model").exists()


def test_sentencepiece_training_failure_is_a_tokenizer_error(tmp_path):
    small = tmp_path / "small.txt"
    small.write_text("tiny corpus\n", encoding="utf-8")
    with pytest.raises(TokenizerError, match="small.txt.*failed.*vocab"):
        Tokenizer.train_sentencepiece(small, tmp_path / "m", vocab_size=100_000)


def test_load_unknown_spec(tmp_path):
    with pytest.raises(TokenizerError, match="unknown tokenizer 'gpt3'"):
        Tokenizer.load("gpt3")


# ---- char vocabularies (nanoGPT's shakespeare_char) ----

@pytest.fixture(scope="module")
def shakespeare() -> str:
    return (data_dir() / "train_corpora" / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")


def test_char_vocab_is_nanogpts_sorted_characters(shakespeare, tmp_path):
    """prepare.py: chars = sorted(list(set(data))); stoi = {ch: i}; the whole corpus encodes to stoi
    and decodes back; <|endoftext|> is the one id after the characters."""
    tok = Tokenizer.build_char([shakespeare[:500_000], shakespeare[500_000:]], tmp_path / "v.json", source="ts")
    chars = sorted(set(shakespeare))
    stoi = {ch: i for i, ch in enumerate(chars)}
    assert (len(chars), tok.vocab_size, tok.eot_id) == (65, 66, 65)
    ids = tok.encode(shakespeare)
    assert ids == [stoi[c] for c in shakespeare]
    assert tok.decode(ids) == shakespeare
    assert tok.decode(np.asarray([stoi["a"], tok.eot_id, stoi["b"]])) == f"a{EOT}b"
    saved = json.loads((tmp_path / "v.json").read_text())
    assert saved == {"kind": "char", "chars": "".join(chars), "source": "ts"}


def test_char_vocab_loads_by_path_name_and_round_trips_any_corpus_text(tmp_path):
    text = "héllo naïve 日本 🤖\n\ttab"
    tok = Tokenizer.build_char([text], tmp_path / "v.json")
    for spec in (tmp_path / "v.json", str(tmp_path / "v.json"), tok.name):
        again = Tokenizer.load(spec)
        assert (again.name, again.vocab_size) == (tok.name, len(set(text)) + 1)
        assert again.decode(again.encode(text)) == text
    assert tok.encode(f"ab{EOT}ab", allow_special=True) == [*tok.encode("ab"), tok.eot_id, *tok.encode("ab")]
    assert tok.encode_batch(["ab", "ba"]) == [tok.encode("ab"), tok.encode("ba")]


@pytest.mark.parametrize("text, allow, char, pos", [
    ("abcz", False, "'z'", 3), ("zabc", False, "'z'", 0), (f"ab{EOT}abz", True, "'z'", 2 + len(EOT) + 2),
    (EOT, False, "'<'", 0), ("a\u00e9", False, "'é' \\(U\\+00E9\\)", 1), ("🤖", False, "'🤖' \\(U\\+1F916\\)", 0)])
def test_char_unseen_character_is_one_clear_error(tmp_path, text, allow, char, pos):
    tok = Tokenizer.build_char(["abc cab\n"], tmp_path / "v.json", source="corpus.txt")
    with pytest.raises(TokenizerError, match=rf"character {char} .*at position {pos} is not in the char vocabulary "
                                             r"\(5 characters of corpus\.txt\).*build the vocabulary from a corpus"):
        tok.encode(text, allow_special=allow)


def test_char_vocab_errors(tmp_path):
    with pytest.raises(TokenizerError, match="vocabulary is built from a training corpus.*char_vocab.json"):
        Tokenizer.load("char")
    with pytest.raises(TokenizerError, match="char vocabulary not found.*absent.json"):
        Tokenizer.load(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text('{"kind": "sentencepiece"}')
    with pytest.raises(TokenizerError, match="bad.json is not a char vocabulary"):
        Tokenizer.load(tmp_path / "bad.json")
    (tmp_path / "unsorted.json").write_text('{"kind": "char", "chars": "ba"}')
    with pytest.raises(TokenizerError, match="sorted and distinct"):
        Tokenizer.load(tmp_path / "unsorted.json")
    with pytest.raises(TokenizerError, match="no characters"):
        Tokenizer.build_char(["", ""], tmp_path / "empty.json")
