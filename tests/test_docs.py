"""The documentation is true to the code: every file of this project it cites exists."""

import re

import pytest
from conftest import REPO

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TOP_FOLDERS = ("workflow/", "benchmarks/", "config/", "tests/", "envs/", "profiles/", ".ci/")
PACKAGE = REPO / "workflow" / "hybridbatch"


def cited_files(text: str) -> set[str]:
    """Backticked paths of the project's files: under a top folder, or a module of the package."""
    cited = set(re.findall(r"`([\w./-]+)`", text))
    return {path for path in cited if path.startswith(TOP_FOLDERS) or path.endswith(".py")}


def exists(path: str) -> bool:
    if "/" not in path:  # a module named alone
        return any(PACKAGE.rglob(path))
    return any((root / path).exists() for root in (REPO, REPO / "workflow", PACKAGE))


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_file_the_docs_cite_exists(document):
    missing = sorted(path for path in cited_files(document.read_text()) if not exists(path))
    assert not missing, f"{document.relative_to(REPO)} cites files that do not exist: {missing}"


def test_the_check_finds_a_missing_file():
    assert cited_files("see `train/trainer.py` and `config.yaml`") == {"train/trainer.py"}
    assert not exists("train/trainer.py") and exists("train/loop.py") and exists("names.py")


def test_the_readme_is_a_guide_of_at_most_200_lines():
    assert len((REPO / "README.md").read_text().splitlines()) <= 200
