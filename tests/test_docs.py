"""The documents: the README's journey runs as written, and the generated docs pages follow the code."""
from __future__ import annotations

import csv
import re
import shlex
import shutil
import sys
from pathlib import Path

from conftest import CIFAR_SLICE, run_cli

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import docs_hooks  # noqa: E402  (the MkDocs hook, importable as a module)

# What the README's commands leave to the user's budget, made short for a test; nothing else changes.
SHORT = {"pretrain": ["--steps", "2", "--batch-size", "16", "--backbone", "small-convnet", "--quiet"],
         "train": ["--steps", "3", "--lr-grid", "0.01", "--quiet"], "predict": ["--quiet"], "export": []}


def readme_block(heading: str) -> list[str]:
    """The commands of the first ```bash block under a README heading (continuation lines joined)."""
    text = (ROOT / "README.md").read_text()
    section = text.split(f"## {heading}\n", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def test_the_readme_journey_runs_as_written_on_a_folder_of_images(tmp_path, monkeypatch):
    """pretrain -> train -> predict -> export, the README's lines as a user pastes them, on folders laid out
    as the README says (a flat unlabeled folder, class subfolders, a folder of new images)."""
    for folder, split in (("unlabeled", "train"), ("new", "test")):
        (tmp_path / folder).mkdir()
        for image in sorted((CIFAR_SLICE / split).glob("*/*.jpg")):
            shutil.copy(image, tmp_path / folder / f"{image.parent.name}-{image.name}")
    shutil.copytree(CIFAR_SLICE / "train", tmp_path / "labeled")
    monkeypatch.chdir(tmp_path)
    commands = readme_block("On your data")
    assert [shlex.split(c)[1] for c in commands] == ["pretrain", "train", "predict", "export"]
    for command in commands:
        words = shlex.split(command)
        assert words[0] == "selfsup"
        if "--epochs" in words:  # the budget is the user's: --steps below instead
            at = words.index("--epochs")
            del words[at:at + 2]
        done = run_cli(*words[1:], *SHORT[words[1]])
        assert done.returncode == 0, (command, done.stderr[-2000:])
    assert (tmp_path / "runs" / "simclr" / "encoder.safetensors").exists()
    with open(tmp_path / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(list((tmp_path / "new").iterdir())) and {"item", "predicted"} <= set(rows[0])
    assert (tmp_path / "runs" / "model" / "model.onnx").exists()


def test_readme_links_reach_a_file_or_a_generated_page():
    generated = set(docs_hooks.generated_pages())
    for link in re.findall(r"\]\(([^)#]+)\)", (ROOT / "README.md").read_text()):
        if link.startswith("http"):
            continue
        assert (ROOT / link).exists() or link.removeprefix("docs/") in generated, link


def test_every_method_is_on_its_family_page_with_every_argument():
    from selfsup.methods import METHODS
    from selfsup.methods.base import method_arguments

    pages = docs_hooks.generated_pages()
    for name in METHODS.names():
        cls = METHODS.get(name)
        if not cls.__module__.startswith("selfsup."):  # registered by another test
            continue
        assert cls.family in docs_hooks.FAMILIES, f"{name}: family {cls.family!r} has no docs page"
        page = pages[f"methods/{docs_hooks.FAMILIES[cls.family][0]}.md"]
        assert f"## `{name}` {{#{name}}}" in page
        section = page.split(f"## `{name}` {{#{name}}}", 1)[1].split("\n## ", 1)[0]
        for argument in method_arguments(cls).values():
            assert f"| `{argument.name}` |" in section, f"{name}: {argument.name}"


def test_a_new_method_argument_appears_on_the_page_without_editing_markdown(monkeypatch):
    """The page is rendered from the constructor: a subclass taking one more argument shows it, typed and
    defaulted, and the registry's own entry is untouched."""
    from selfsup.methods import METHODS
    from selfsup.methods.simclr import SimCLR

    class SimCLRWithKnob(SimCLR):
        """SimCLR with one more knob, for this test."""

        name = "simclr_knob"

        def __init__(self, backbone, views, temperature: float = 0.5, projection_dim: int = 128,
                     hidden_dim: int | None = None, knob_strength: float = 0.25) -> None:
            super().__init__(backbone, views, temperature, projection_dim, hidden_dim)

    before = docs_hooks.method_page("contrastive")
    monkeypatch.setitem(METHODS._entries, "simclr_knob", SimCLRWithKnob)
    after = docs_hooks.method_page("contrastive")
    assert "knob_strength" not in before
    assert "| `knob_strength` | float | `0.25` |" in after and "[`simclr_knob`](#simclr_knob)" in after


def test_every_flag_of_every_command_is_on_the_cli_page():
    import argparse

    from selfsup.cli import build_parser

    page = docs_hooks.cli_page()
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        section = page.split(f"## `selfsup {name}`", 1)[1].split("\n## ", 1)[0]
        parsers = [sub] + [p for a in sub._actions if isinstance(a, argparse._SubParsersAction) for p in a.choices.values()]
        for parser in parsers:
            for action in parser._actions:
                for flag in action.option_strings:
                    if flag not in ("-h", "--help"):
                        assert f"`{flag}`" in section, f"{name}: {flag}"


def test_the_site_builds_strictly(tmp_path):
    """`mkdocs build --strict`: a broken link or anchor, a missing page or a page left out of the navigation
    fails it; the generated pages are in the site."""
    import os
    import subprocess

    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "simclr" in (tmp_path / "site" / "methods" / "contrastive" / "index.html").read_text()
    assert "--max-pixels" in (tmp_path / "site" / "cli" / "index.html").read_text()
