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


def test_each_claim_of_the_readme_answer_cites_a_tested_row():
    """Every bullet of the README's answer names a row of significance.csv (setting, metric
    and pair) or the column that decides it, so no claim stands without a tested row."""
    text = (REPO / "README.md").read_text()
    answer = text[text.index("**The answer of the default run.**") : text.index("**On another CPU**")]
    claims = [" ".join(claim.split()) for claim in re.split(r"\n- ", answer)[1:]]
    assert len(claims) >= 4
    row = re.compile(r"`[\w-]+/(first|all) [\w@]+, [\w-]+ vs [\w-]+`|`(significant|holds_over_seeds)` (True|False)")
    uncited = [claim[:60] for claim in claims if not row.search(claim)]
    assert not uncited, f"claims without a tested row: {uncited}"
