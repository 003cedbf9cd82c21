"""The README and the pages under docs/, checked: their Python blocks run as written (in this process, each in a
fresh namespace, in a scratch folder: the training examples write checkpoints), every relative link points at a
file that exists (and, for a link into a Markdown file, at a heading it has), and the README stays a front door
(under 260 lines)."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [(page, i, block) for page in PAGES
          for i, block in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), re.S))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _name(page):
    return page.relative_to(ROOT).as_posix()


def test_the_readme_has_a_python_lesson():
    assert any(page == README for page, _, _ in BLOCKS)


@pytest.mark.parametrize("page, index, block", BLOCKS, ids=[f"{_name(p)}:{i + 1}" for p, i, _ in BLOCKS])
def test_python_block_runs_as_written(page, index, block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(block, f"{_name(page)} python block {index + 1}", "exec"), {"__name__": "readme"})


def test_the_readme_is_a_front_door():
    lines = README.read_text().splitlines()
    assert len(lines) < 260, f"README.md has {len(lines)} lines; move the manual into docs/"


def _slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page):
    seen, anchors = {}, set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        match = re.match(r"#{1,6} (.+)", line)
        if match:
            slug = _slug(match.group(1))
            anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_relative_link_resolves(page):
    broken = []
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto: -- not checked offline
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file.relative_to(ROOT) if file.is_relative_to(ROOT) else file}")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{target}: {file.name} has no heading '#{anchor}'")
    assert not broken, f"{_name(page)}: " + "; ".join(broken)
