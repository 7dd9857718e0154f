"""The docs promise only what exists: every `make` target they name is defined."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted(ROOT.glob("0*/README.md"))]
# A command, not prose: at the start of a line (code blocks) or right after a backtick.
MAKE_CALL = re.compile(r"(?:^|`)\s*make ([a-z][a-z0-9_-]*)", flags=re.MULTILINE)


def _targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-zA-Z][a-zA-Z0-9_-]*):", text, flags=re.MULTILINE))


def test_every_make_target_the_docs_name_exists():
    targets = _targets()
    named = {
        (doc.relative_to(ROOT).as_posix(), target)
        for doc in DOCS
        for target in MAKE_CALL.findall(doc.read_text())
    }
    assert named, "the docs name no make target at all"
    missing = sorted((doc, target) for doc, target in named if target not in targets)
    assert not missing, f"documented but not in the Makefile: {missing}"
