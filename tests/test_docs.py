"""The documentation runs as written.

1. Every ```python block of README.md, CONTRIBUTING.md, CHANGELOG.md and the site's pages (docs/)
   is executed. The blocks of one file run in order in one namespace, so a page may set up
   data in one block and use it in the next. Blocks fenced as bash, shell, text or anything but
   python are not executed. A python block that needs a long run may opt out with the marker
   `<!-- docs-test: skip REASON -->` on the line right above its fence; the reason is required.
2. The site's nav (mkdocs.yml) lists every public module of jaxnn: every module whose dotted
   name has no part starting with "_" is rendered (`::: jaxnn.x`) by a reference page in the nav.

Neither test needs mkdocs: mkdocs.yml is read as text, so they run in the `[test]` environment.
"""

from __future__ import annotations

import pkgutil
import re
from pathlib import Path

import jax
import pytest

import jaxnn

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^\n`]*)$")
SKIP = re.compile(r"<!--\s*docs-test:\s*skip\b\s*(?P<reason>.*?)\s*-->")
PYTHON = {"python", "py", "python3"}


def markdown_files() -> list[Path]:
    """README.md, CONTRIBUTING.md, CHANGELOG.md and every page under docs/ (sorted)."""
    top = [ROOT / name for name in ("README.md", "CONTRIBUTING.md", "CHANGELOG.md")]
    return [p for p in top if p.exists()] + sorted(DOCS.rglob("*.md"))


def code_blocks(text: str) -> list[tuple[int, str, str, str | None]]:
    """(line number of the fence, language, code, skip reason or None) of each fenced block."""
    lines, blocks, i = text.splitlines(), [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = m["indent"], m["fence"]
        lang = (m["info"].strip().split() or [""])[0].lstrip(".").lower()
        reason = None
        if i > 0 and (s := SKIP.search(lines[i - 1])):
            reason = s["reason"]
        body, j = [], i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            line = lines[j]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            j += 1
        if j == len(lines):
            raise ValueError(f"unclosed code fence at line {i + 1}")
        blocks.append((i + 1, lang, "\n".join(body) + "\n", reason))
        i = j + 1
    return blocks


def test_code_blocks_are_found_with_their_language_and_skip_marker():
    text = ("intro\n```python\na = 1\n```\n<!-- docs-test: skip trains for 12 epochs -->\n"
            "```python\nraise SystemExit\n```\n```bash\nrm -rf /\n```\n"
            "- item\n\n    ```python\n    b = 2\n    ```\n")
    blocks = code_blocks(text)
    assert [(b[1], b[2], b[3]) for b in blocks] == [
        ("python", "a = 1\n", None), ("python", "raise SystemExit\n", "trains for 12 epochs"),
        ("bash", "rm -rf /\n", None), ("python", "b = 2\n", None)]
    with pytest.raises(ValueError, match="unclosed"):
        code_blocks("```python\nx = 1\n")


FILES = markdown_files()
WITH_PYTHON = [p for p in FILES
               if any(lang in PYTHON for _, lang, _, _ in code_blocks(p.read_text(encoding="utf-8")))]


def test_skipped_blocks_say_why():
    bad = [f"{p.relative_to(ROOT)}:{line}" for p in FILES
           for line, lang, _, reason in code_blocks(p.read_text(encoding="utf-8"))
           if lang in PYTHON and reason is not None and not reason]
    assert not bad, f"a skipped block must give its reason (docs-test: skip REASON): {bad}"


@pytest.mark.parametrize("path", WITH_PYTHON, ids=[str(p.relative_to(ROOT)) for p in WITH_PYTHON])
def test_python_blocks_run(path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    blocks = code_blocks(path.read_text(encoding="utf-8"))
    runnable = [(line, code) for line, lang, code, reason in blocks if lang in PYTHON and reason is None]
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)  # a block that writes files writes them here, not in the repo
    namespace: dict = {"__name__": f"docs_{path.stem}"}
    # JAX's default promotion rules, as in a reader's session (conftest makes the suite strict)
    with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
        for line, code in runnable:
            where = f"{path.relative_to(ROOT)}:{line}"
            exec(compile(code, where, "exec"), namespace)  # the docs are the code under test


def test_the_docs_have_python_blocks_to_run():
    """The runner above would pass vacuously if no block were found: the site must have some."""
    count = sum(lang in PYTHON and reason is None
                for p in FILES for _, lang, _, reason in code_blocks(p.read_text(encoding="utf-8")))
    assert count >= 10, f"only {count} python blocks found in {len(FILES)} files"


# ----------------------------------------------------------------------------- the nav
def public_modules() -> list[str]:
    """jaxnn and every module under it whose dotted name has no part starting with '_'."""
    names = ["jaxnn"] + [m.name for m in pkgutil.walk_packages(jaxnn.__path__, "jaxnn.")]
    return sorted(n for n in names if not any(part.startswith("_") for part in n.split(".")))


def nav_pages(config: str) -> list[str]:
    """The .md files the `nav:` section of mkdocs.yml lists (comment lines ignored)."""
    match = re.search(r"^nav:\s*$", config, flags=re.M)
    assert match, "mkdocs.yml has no top-level nav:"
    pages = []
    for line in config[match.end():].splitlines():
        if line and not line.startswith((" ", "-", "#")):
            break  # the next top-level key
        if line.lstrip().startswith("#"):
            continue
        pages += re.findall(r"([\w./-]+\.md)\s*$", line)
    return pages


def documented_modules(pages: list[str]) -> set[str]:
    """Modules rendered by a `::: module` directive on the given pages."""
    found = set()
    for page in pages:
        text = (DOCS / page).read_text(encoding="utf-8")
        found |= set(re.findall(r"^:::\s*([\w.]+)\s*$", text, flags=re.M))
    return found


def test_every_public_module_has_a_reference_page_in_the_nav():
    pages = nav_pages((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    missing_files = [p for p in pages if not (DOCS / p).is_file()]
    assert not missing_files, f"mkdocs.yml lists pages that do not exist: {missing_files}"
    documented = documented_modules(pages)
    missing = [m for m in public_modules() if m not in documented]
    assert not missing, (f"public modules without a reference page in mkdocs.yml's nav: {missing}; "
                         f"add `::: module` to a page under docs/reference/ and the page to the nav")
    stale = sorted(m for m in documented if m.startswith("jaxnn") and m not in public_modules())
    assert not stale, f"reference pages render modules that do not exist: {stale}"


def test_the_nav_check_sees_a_missing_module(tmp_path: Path):
    """The check above fails when a module has no page (it is not vacuous)."""
    config = "nav:\n  - Home: index.md\n  - API:\n      - core: reference/core.md\n"
    pages = nav_pages(config)
    assert pages == ["index.md", "reference/core.md"]
    assert documented_modules(["reference/core.md"]) == {"jaxnn.core"}
    assert "jaxnn.layers" in set(public_modules()) - documented_modules(pages)


def test_public_modules_skip_private_ones():
    mods = public_modules()
    assert "jaxnn.core" in mods and "jaxnn.layers.dense" in mods
    assert not [m for m in mods if "._" in m]
