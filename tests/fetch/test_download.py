"""The tests of `hybridbatch/fetch/download.py`."""

import logging
import shutil
import tarfile

import pytest
from image_corpora_helpers import image_bytes, mini_xm3600, xm3600_params
from lareqa_helpers import SHARED, corpus_params, write_fixture

from hybridbatch import corpora
from hybridbatch.corpora import prepare
from hybridbatch.fetch import download
from hybridbatch.fetch.download import ChecksumError, DownloadError, sha256_file


def test_xm3600_without_a_pinned_hash_warns_and_records_the_observed_one(tmp_path, caplog):
    mini_xm3600(tmp_path / "mirror", {key: image_bytes("red", "JPEG") for key in ("000a", "000b", "000c")})
    with caplog.at_level(logging.WARNING):
        raw = corpora.download(xm3600_params(tmp_path / "mirror", pinned=False), tmp_path / "raw")
    assert "images.tgz: no sha256 pinned under corpora.xm.sha256" in caplog.text
    assert sha256_file(tmp_path / "mirror/images.tgz") in (raw / "SHA256SUMS").read_text()


def test_no_mirror_and_no_network_says_which_key_to_set(tmp_path):
    params = corpus_params(SHARED if SHARED.is_dir() else tmp_path, [])
    params.update(mirror=None, languages=["en"], sha256={"en": "0" * 64})
    with pytest.raises(DownloadError, match="set corpora.fixture.mirror"):
        corpora.download(params, tmp_path / "raw")
    assert not (tmp_path / "raw" / "en.json").exists()


COMMIT = "354d67d"


@pytest.fixture
def github(tmp_path, monkeypatch):
    """A GitHub-style archive of lareqa at COMMIT, served from a file:// URL."""
    files = tmp_path / "files"
    files.mkdir()
    write_fixture(files, "en", ["Aa aa.", "Bb bb bb."], {"q1": 7})
    write_fixture(files, "de", ["Dd dd.", "Ee ee."], {"q1": 7})
    archive = tmp_path / "served" / f"{COMMIT}.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as handle:
        for lang in ("en", "de"):
            handle.add(files / f"{lang}.json", arcname=f"lareqa-{COMMIT}full/mlqa-r/{lang}.json")
        handle.add(files / "en.json", arcname=f"lareqa-{COMMIT}full/xquad-r/en.json")
    monkeypatch.setattr(download, "GITHUB_ARCHIVE", f"file://{tmp_path}/served/{{commit}}.tar.gz")
    return files


def mlqa_params(**extra):
    git = {"repository": "google-research-datasets/lareqa", "commit": COMMIT, "path": "mlqa-r"}
    return {"name": "mlqa", "source": "lareqa", "git": git, "languages": ["en", "de"],
            "test_fraction": 1.0, "split_seed": 0, **extra}  # fmt: skip


def test_git_source_extracts_the_files_of_the_commit(github, tmp_path):
    raw = corpora.download(mlqa_params(), tmp_path / "raw")
    assert sorted(p.name for p in raw.iterdir()) == ["SHA256SUMS", "de.json", "en.json"]  # archive gone
    assert (raw / "en.json").read_bytes() == (github / "en.json").read_bytes()
    counts = prepare.prepare(mlqa_params(), raw, tmp_path / "out")
    assert counts["test"]["queries"] == 2 and counts["train"]["queries"] == 0


def test_git_source_checks_pins_and_keeps_the_bad_file(github, tmp_path):
    """The rejected file is kept outside the output directory, which Snakemake removes
    when the job fails."""
    params = mlqa_params(sha256={"en": sha256_file(github / "en.json"), "de": "0" * 64})
    kept = tmp_path / ".rejected" / "raw" / "de.json"
    with pytest.raises(ChecksumError, match=rf"de.json: sha256 mismatch, expected 0{{64}}, got \w+ \(kept as {kept}\)"):
        corpora.download(params, tmp_path / "raw")
    assert not (tmp_path / "raw" / "SHA256SUMS").exists()
    shutil.rmtree(tmp_path / "raw")  # what Snakemake does to a failed job's output
    assert kept.read_bytes() == (github / "de.json").read_bytes()
    from hybridbatch.artifacts.manifest import artifact_files

    assert kept not in artifact_files([tmp_path], tmp_path)  # no artifact's content: the audit passes it by


def test_git_source_prefers_the_mirror(github, tmp_path, monkeypatch):
    monkeypatch.setattr(download, "GITHUB_ARCHIVE", "file:///nonexistent/{commit}.tar.gz")
    raw = corpora.download(mlqa_params(mirror=str(github)), tmp_path / "raw")
    assert (raw / "de.json").read_bytes() == (github / "de.json").read_bytes()
    with pytest.raises(DownloadError, match="set corpora.mlqa.mirror"):
        corpora.download(mlqa_params(), tmp_path / "raw2")


def test_a_failed_download_resumes_from_the_bytes_kept_outside_the_output(tmp_path):
    """Snakemake deletes a failed job's output directory: the partial file lives in
    `.partial/` beside it and the next attempt asks only for the rest (HTTP Range)."""
    import http.server
    import threading

    from hybridbatch.fetch.download import fetch_url, partial_path

    payload = bytes(range(256)) * 64
    ranges = []

    class Ranged(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers["Range"] else 0
            ranges.append(self.headers["Range"])
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(payload) - start))
            self.end_headers()
            self.wfile.write(payload[start:])

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Ranged)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out_dir = tmp_path / "corpora/x/raw"
    part = partial_path(out_dir, "data.bin")
    assert out_dir not in part.parents
    part.parent.mkdir(parents=True)
    part.write_bytes(payload[:5000])  # what a killed attempt left behind
    out_dir.mkdir(parents=True)
    try:
        fetch_url(f"http://127.0.0.1:{server.server_port}/data.bin", out_dir / "data.bin", part)
    finally:
        server.shutdown()
    assert ranges == ["bytes=5000-"]
    assert (out_dir / "data.bin").read_bytes() == payload
    assert not part.exists() and not (tmp_path / "corpora/x/.partial").exists()
