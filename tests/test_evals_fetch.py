"""download(): archives are unpacked to the official names (network replaced by in-memory files)."""
import io
import tarfile
import zipfile

from gpt2_jax.evals import fetch, readers


def _zip(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _tgz(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_download_places_files_under_official_names(tmp_path, monkeypatch):
    served = {
        readers.SOURCES[("wikitext2", "test")].url: _zip({"wikitext-2-raw/wiki.test.raw": b" = A = \n"}),
        readers.CBT_URL: _tgz({f"CBTest/data/cbtest_{k}_{s}.txt": f"{k}{s}".encode()
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
