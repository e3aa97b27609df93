"""The tests of `hybridbatch/fetch/archives.py`."""

import io
import tarfile
import zipfile

import pytest

from hybridbatch.fetch.archives import UnsafeArchiveError, safe_extract


def make_tar(path, members):
    """members: (name, kind, payload): kind 'file' (payload bytes), 'symlink' or 'hardlink' (payload target)."""
    with tarfile.open(path, "w:gz") as handle:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                handle.addfile(info, io.BytesIO(payload))
            else:
                info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                info.linkname = payload
                handle.addfile(info)
    return path


def test_extracts_regular_files_below_a_path_after_stripping(tmp_path):
    archive = make_tar(tmp_path / "a.tar.gz", [
        ("repo-abc/mlqa-r/en.json", "file", b"en"),
        ("repo-abc/mlqa-r/sub/de.json", "file", b"de"),
        ("repo-abc/xquad-r/en.json", "file", b"other"),
    ])  # fmt: skip
    extracted = safe_extract(archive, tmp_path / "out", strip_components=1, under="mlqa-r")
    assert sorted(extracted) == ["mlqa-r/en.json", "mlqa-r/sub/de.json"]
    assert (tmp_path / "out/mlqa-r/sub/de.json").read_bytes() == b"de"
    assert not (tmp_path / "out/xquad-r").exists()


@pytest.mark.parametrize(
    "member, message",
    [
        (("../evil.txt", "file", b"x"), "contains '..'"),
        (("ok/../../evil.txt", "file", b"x"), "contains '..'"),
        (("/etc/evil.txt", "file", b"x"), "absolute path"),
        (("link", "symlink", "/etc/passwd"), "is a link"),
        (("link", "symlink", "../../outside"), "is a link"),
        (("hard", "hardlink", "/etc/passwd"), "is a link"),
    ],
)
def test_unsafe_tar_members_are_refused_and_nothing_is_written(tmp_path, member, message):
    archive = make_tar(tmp_path / "bad.tar.gz", [("good.txt", "file", b"fine"), member])
    with pytest.raises(UnsafeArchiveError, match=message) as error:
        safe_extract(archive, tmp_path / "out")
    assert "bad.tar.gz" in str(error.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.txt").exists()


def test_unsafe_zip_members_are_refused(tmp_path):
    path = tmp_path / "bad.zip"
    with zipfile.ZipFile(path, "w") as handle:
        handle.writestr("captions.jsonl", "{}")
        handle.writestr("../../evil.txt", "x")
    with pytest.raises(UnsafeArchiveError, match="contains '..'"):
        safe_extract(path, tmp_path / "out")
    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as handle:
        info = zipfile.ZipInfo("escape")
        info.external_attr = 0o120777 << 16  # a symbolic link
        handle.writestr(info, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="link or special file"):
        safe_extract(link, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_zip_extraction_keeps_only_the_member_asked_for(tmp_path):
    path = tmp_path / "captions.zip"
    with zipfile.ZipFile(path, "w") as handle:
        handle.writestr("captions.jsonl", "line\n")
        handle.writestr("README", "x")
    assert safe_extract(path, tmp_path / "out", under="captions.jsonl") == ["captions.jsonl"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["captions.jsonl"]


def test_extraction_keeps_the_members_below_any_of_several_paths(tmp_path):
    archive = make_tar(
        tmp_path / "cldr.tgz",
        [(f"package/annotations/{lang}/annotations.json", "file", lang.encode()) for lang in ("de", "en", "fr")],
    )
    wanted = ("annotations/de/annotations.json", "annotations/fr")
    assert safe_extract(archive, tmp_path / "out", strip_components=1, under=wanted) == list(wanted[:1]) + [
        "annotations/fr/annotations.json"
    ]
    assert sorted(p.name for p in (tmp_path / "out/annotations").iterdir()) == ["de", "fr"]


def test_duplicate_member_names_are_refused_and_nothing_is_written(tmp_path):
    archive = make_tar(
        tmp_path / "dup.tar.gz", [("images/a.jpg", "file", b"first"), ("images/a.jpg", "file", b"second")]
    )
    with pytest.raises(UnsafeArchiveError, match=r"member 'images/a.jpg' appears twice"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
