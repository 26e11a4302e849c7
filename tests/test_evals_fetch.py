"""download(): archives are unpacked to the official names (network replaced by in-memory files)."""
import io
import json
import zipfile

import evals_samples as S

from gpt2_jax.evals import fetch, readers


def _zip(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_download_places_files_under_official_names(tmp_path, monkeypatch):
    served = {
        readers.SOURCES[("wikitext2", "test")].url: _zip({"wikitext-2-raw/wiki.test.raw": b" = A = \n"}),
        readers.CBT_URL: S.tgz({f"CBTest/data/cbtest_{k}_{s}.txt": f"{k}{s}".encode()
                               for k in ("CN", "NE") for s in ("test_2500ex", "valid_2000ex")}),
        readers.SOURCES[("ptb", "test")].url: b" a b \n",
    }
    calls = []
    monkeypatch.setattr(fetch, "_fetch", lambda url: calls.append(url) or served[url])
    written = fetch.download(["wikitext2", "cbt_cn", "cbt_ne", "ptb"], tmp_path)
    assert (tmp_path / "wikitext/wikitext-2-raw/wiki.test.raw").read_bytes() == b" = A = \n"
    assert (tmp_path / "cbt/cbtest_NE_valid_2000ex.txt").read_text() == "NEvalid_2000ex"
    assert (tmp_path / "ptb/ptb.test.txt").read_text() == " a b \n"
    assert len(written) == 6 and calls.count(readers.CBT_URL) == 1  # one archive, four files
    assert readers.resolve("ptb", data_dir=tmp_path) == tmp_path / "ptb/ptb.test.txt"
    calls.clear()
    fetch.download(["ptb"], tmp_path)  # present files are not fetched again
    assert calls == []


def test_download_of_the_section_3_tasks(tmp_path, monkeypatch, data_dir):
    """WSC273, CNN/DailyMail (url list + two story archives), WMT-14 (four .sgm files from one
    archive) and NQ land under their official names, where the readers find them."""
    from gpt2_jax.evals import formats
    cnn = S.cnn_dm_archives()
    served = {
        readers.WSC_JSONL_URL: (data_dir / "wsc273/wsc273.jsonl").read_bytes(),
        readers.SOURCES[("wsc273", "schemas")].url: (data_dir / "wsc273/WSCollection.xml").read_bytes(),
        readers.SOURCES[("cnn_dm", "test")].url: cnn["all_test.txt"],
        readers.SOURCES[("cnn_dm", "cnn_stories")].url: cnn["cnn_stories.tgz"],
        readers.SOURCES[("cnn_dm", "dailymail_stories")].url: cnn["dailymail_stories.tgz"],
        readers.WMT14_URL: S.tgz({f"test-full/{k}": v.encode() for k, v in S.wmt_files().items()}),
        readers.SOURCES[("nq", "dev")].url: "".join(json.dumps(r) + "\n" for r in S.NQ_OPEN).encode(),
    }
    calls = []
    monkeypatch.setattr(fetch, "_fetch", lambda url: calls.append(url) or served[url])
    written = fetch.download(["wsc273", "cnn_dm", "wmt14_en_fr", "wmt14_fr_en", "nq"], tmp_path)
    assert len(written) == 2 + 3 + 4 + 1 and calls.count(readers.WMT14_URL) == 1
    assert (tmp_path / "wmt14/test-full/newstest2014-fren-ref.en.sgm").is_file()
    assert len(formats.read_wsc273(data_dir=tmp_path)) == 273
    assert len(formats.read_wsc273(tmp_path / "wsc273/WSCollection.xml")) == 273
    assert [s.id for s in formats.read_cnn_dm(data_dir=tmp_path)] == [S.sha1(a[0]) for a in S.ARTICLES]
    assert formats.read_wmt14("fr_en", data_dir=tmp_path)[0] == (S.PAIRS[0][1], S.PAIRS[0][0])
    assert len(formats.read_nq(data_dir=tmp_path)) == len(S.NQ_OPEN)


def test_download_reads_file_urls(tmp_path, monkeypatch):
    """The real fetch path (urllib) on a file:// archive."""
    archive = tmp_path / "test-full.tgz"
    archive.write_bytes(S.tgz({"test-full/newstest2014-fren-src.en.sgm": b'<seg id="1">Hello</seg>\n',
                              "test-full/newstest2014-fren-ref.fr.sgm": b'<seg id="1">Bonjour</seg>\n'}))
    for split in ("test", "ref"):
        src = readers.SOURCES[("wmt14_en_fr", split)]
        monkeypatch.setitem(readers.SOURCES, ("wmt14_en_fr", split), readers.Source(src.relpath, archive.as_uri(),
                                                                                     src.member))
    fetch.download(["wmt14_en_fr"], tmp_path / "data")
    from gpt2_jax.evals import formats
    assert formats.read_wmt14("en_fr", data_dir=tmp_path / "data") == [("Hello", "Bonjour")]
