"""Every relative link in the project's Markdown points at a file that exists: the docs
moved into docs/, results/ and studies/, and a reader who clones the repository follows
them."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from harness import ROOT

LINK = re.compile(r"\]\(([^)\s]+)\)")


def markdown_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.md"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
    ).stdout.split()  # fmt: skip
    return [ROOT / name for name in listed if (ROOT / name).exists()]


def broken_links(path: Path) -> list[str]:
    broken = []
    for link in LINK.findall(path.read_text()):
        target = link.split("#", 1)[0]
        if not target or re.match(r"^[a-z]+:", target):  # an anchor, https:, mailto:
            continue
        if not (path.parent / target).exists():
            broken.append(link)
    return broken


def test_every_relative_link_resolves() -> None:
    files = markdown_files()
    assert ROOT / "README.md" in files
    broken = {str(path.relative_to(ROOT)): links for path in files if (links := broken_links(path))}
    assert broken == {}


def test_a_broken_link_is_seen(tmp_path: Path) -> None:
    # The positive control: the check above would see a link to nowhere.
    page = tmp_path / "page.md"
    page.write_text("[here](here.md) [gone](gone.md#part) [web](https://example.org)\n")
    (tmp_path / "here.md").write_text("")
    assert broken_links(page) == ["gone.md#part"]
