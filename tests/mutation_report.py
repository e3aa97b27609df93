"""Per-module verdicts of the last `make mutation` (mutmut's mutants/**/*.py.meta files):
killed, survived, timeout, no tests; then every surviving mutant's name (`mutmut show NAME`
prints its diff). Run from the repository root."""

import json
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

COLUMNS = ["killed", "survived", "timeout", "no tests", "suspicious", "not checked"]


def verdicts(root: Path = Path("mutants")) -> dict[str, dict[str, str]]:
    """module -> mutant name -> verdict."""
    found = {}
    for meta in sorted(root.rglob("*.py.meta")):
        module = str(meta.relative_to(root / "src")).removesuffix(".py.meta").replace("/", ".")
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        found[module] = {name: status_by_exit_code[code] for name, code in codes.items()}
    return found


def main() -> None:
    found = verdicts()
    if not found:
        sys.exit("no mutants/**/*.py.meta: run `make mutation` first")
    print("| module | " + " | ".join(COLUMNS) + " | other | total | killed of tested |")
    print("|---" * (len(COLUMNS) + 4) + "|")
    for module, by_name in found.items():
        counts = Counter(by_name.values())
        tested = counts["killed"] + counts["survived"] + counts["timeout"]
        share = f"{100 * (counts['killed'] + counts['timeout']) / tested:.1f}%" if tested else "–"
        other = len(by_name) - sum(counts[c] for c in COLUMNS)  # e.g. skipped, segfault
        print(
            f"| {module} | " + " | ".join(str(counts[c]) for c in COLUMNS) + f" | {other} | {len(by_name)} | {share} |"
        )
    for module, by_name in found.items():
        survivors = sorted(name for name, verdict in by_name.items() if verdict == "survived")
        if survivors:
            print(f"\n{module}: {len(survivors)} survived\n  " + "\n  ".join(survivors))


if __name__ == "__main__":
    main()
