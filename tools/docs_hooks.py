"""MkDocs hook: the method pages and the command-line page, generated from the code at build time.

The method registry (names, papers, families, docstrings, recipes, constructor arguments with their
types and defaults, minimum budgets) and the argparse parsers (flags, help, choices) with the settings'
defaults from ``selfsup.config`` are the single source: adding a method argument or a flag changes the
site on the next ``mkdocs build`` without editing Markdown. ``mkdocs.yml`` names this file under ``hooks``.
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
from pathlib import Path
from typing import Any

FAMILIES = {  # family -> (page, title, what the family shares)
    "contrastive": ("contrastive", "Contrastive methods",
                    "Two views of an image are pulled together and pushed from the views of other images (in-batch "
                    "negatives, a queue or a memory bank)."),
    "non-contrastive": ("non-contrastive", "Non-contrastive methods",
                        "Two views are made to agree without negatives; collapse is prevented by a predictor and a "
                        "stop-gradient or momentum target, or by decorrelating the embedding's dimensions."),
    "clustering and distillation": ("clustering", "Clustering and distillation",
                                    "Views are assigned to clusters or prototypes (k-means, Sinkhorn) or distilled "
                                    "from a momentum teacher, and each view predicts the other's assignment."),
    "pretext tasks": ("pretext", "Classic pretext tasks and reconstruction",
                      "A label made from the image itself (a rotation, a tile order, a patch's position, colour, a "
                      "masked region) is predicted; the encoder learns what the prediction needs."),
    "GANs": ("gans", "Generative adversarial networks",
             "A generator and a discriminator trained against each other; the discriminator (or BiGAN's encoder) "
             "is the encoder transferred. See also [GANs in detail](../gans.md)."),
    "text": ("text", "Text methods", "Language-model pretext tasks on a corpus; see [Text](../modalities.md#text)."),
    "video": ("video", "Video methods", "Tasks over frames and clips; see [Video](../modalities.md#video)."),
    "3D volumes": ("volumes", "3D volume methods", "Tasks over volumes; see [3D volumes](../modalities.md#3d-volumes)."),
}
COMMAND_CONFIGS = {"pretrain": "PretrainConfig", "eval": "EvalConfig", "finetune": "FinetuneConfig",
                   "train": "TrainConfig", "predict": "PredictConfig", "export": "ExportConfig",
                   "study": "StudyConfig", "semisup": "SemisupConfig"}


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _code(value: Any) -> str:
    return f"`{value}`" if value not in (None, "") else ""


def _minimum(cls: type) -> str:
    if cls.minimum_images:
        return f"{cls.minimum_images:,} images ({cls.minimum_images // 256:,} steps of 256)"
    return "not measured"


def _documented() -> list[str]:
    """The registered methods with a family to be listed under (``tests/test_docs.py`` checks that every
    method selfsup ships has one; a test's throw-away method has none)."""
    from selfsup.methods import METHODS

    return [n for n in METHODS.names() if METHODS.get(n).family in FAMILIES]


def method_page(family: str) -> str:
    """One family's page: a table of its methods, then each method's docstring, recipe and arguments."""
    from selfsup.methods import METHODS
    from selfsup.methods.base import method_arguments

    page, title, intro = FAMILIES[family]
    names = [n for n in _documented() if METHODS.get(n).family == family]
    lines = [f"# {title}", "", intro, "", "Generated from the method registry (`selfsup methods --json` lists the same).",
             "", "| method | paper | views | backbone | minimum budget on CIFAR-10 |", "|---|---|---|---|---|"]
    for name in names:
        cls = METHODS.get(name)
        lines.append(f"| [`{name}`](#{name}) | {_cell(cls.paper)} | `{cls.recipe.views}` | `{cls.recipe.backbone}` | "
                     f"{_minimum(cls)} |")
    for name in names:
        cls = METHODS.get(name)
        recipe = cls.recipe
        lines += ["", f"## `{name}` {{#{name}}}", "", inspect.cleandoc(cls.__doc__ or cls.paper), "",
                  f"**Recipe**: optimizer `{recipe.optimizer}`, base learning rate {recipe.base_lr:g} × batch/256, "
                  f"weight decay {recipe.weight_decay:g}, warm-up {recipe.warmup_fraction:g} of the steps, "
                  f"views `{recipe.views}`, backbone `{recipe.backbone}`."]
        if cls.budget_note:
            lines += ["", f"**Budget**: {cls.budget_note}"]
        arguments = list(method_arguments(cls).values())
        if arguments:
            lines += ["", "| `--method-arg` | type | default |", "|---|---|---|"]
            for a in arguments:
                d = a.describe()
                lines.append(f"| `{d['name']}` | {_cell(d['type'])} | {_code(d['default'])} |")
    return "\n".join(lines) + "\n"


def methods_index() -> str:
    """Every method in one table, linked to its family's page."""
    from selfsup.methods import METHODS

    lines = ["| method | family | paper | views | minimum budget on CIFAR-10 |", "|---|---|---|---|---|"]
    for name in _documented():
        cls = METHODS.get(name)
        page = FAMILIES[cls.family][0]
        lines.append(f"| [`{name}`]({page}.md#{name}) | {cls.family} | {_cell(cls.paper)} | `{cls.recipe.views}` | "
                     f"{_minimum(cls)} |")
    return "\n".join(lines) + "\n"


def _default(config: type | None, dest: str) -> str:
    if config is None:
        return ""
    field = next((f for f in dataclasses.fields(config) if f.name == dest), None)
    if field is None:
        return ""
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return ""
    return _code(value) if value not in ((), [], {}) else ""


def cli_page() -> str:
    """Every command's flags, from the parsers the `selfsup` command itself builds."""
    import selfsup.config as configs
    from selfsup.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help for a in commands._choices_actions}
    lines = ["# Command line", "",
             "Generated from `selfsup`'s own argument parsers and the settings' defaults in `selfsup.config`; "
             "`selfsup COMMAND --help` prints the same. What the commands write and return, and their exit codes, "
             "are in [the contract](contract.md)."]
    for name, sub in commands.choices.items():
        config = getattr(configs, COMMAND_CONFIGS[name], None) if name in COMMAND_CONFIGS else None
        lines += ["", f"## `selfsup {name}`", "", _cell(sub.description or helps.get(name, "")), ""]
        nested = next((a for a in sub._actions if isinstance(a, argparse._SubParsersAction)), None)
        if nested is not None:  # eval knn|linear
            lines.append("Sub-commands: " + ", ".join(f"`{n}`" for n in nested.choices) + ".")
            lines.append("")
            actions = [a for p in nested.choices.values() for a in p._actions]
        else:
            actions = sub._actions
        lines += ["| flag | value | default | what it sets |", "|---|---|---|---|"]
        seen = set()
        for action in actions:
            if isinstance(action, argparse._HelpAction) or not action.option_strings or action.dest in seen:
                if not action.option_strings and not isinstance(action, (argparse._HelpAction,
                                                                         argparse._SubParsersAction)):
                    if action.dest not in seen:
                        seen.add(action.dest)
                        lines.append(f"| `{action.metavar or action.dest.upper()}` (positional) | | | "
                                     f"{_cell(action.help)} |")
                continue
            seen.add(action.dest)
            flags = ", ".join(f"`{f}`" for f in action.option_strings)
            if action.choices:
                value = "|".join(str(c) for c in action.choices)
            elif action.nargs == 0 or isinstance(action, argparse.BooleanOptionalAction):
                value = ""
            else:
                value = action.metavar or action.dest.upper()
            lines.append(f"| {flags} | {_cell(value)} | {_default(config, action.dest)} | {_cell(action.help)} |")
    return "\n".join(lines) + "\n"


def generated_pages() -> dict[str, str]:
    """Path under docs/ -> Markdown, for every generated page."""
    pages = {f"methods/{page}.md": method_page(family) for family, (page, _, _) in FAMILIES.items()}
    pages["cli.md"] = cli_page()
    return pages


def on_files(files: Any, config: Any) -> Any:
    """Add the generated pages to the build (MkDocs event)."""
    from mkdocs.structure.files import File

    for path, content in generated_pages().items():
        files.append(File.generated(config, path, content=content))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Fill the methods index's placeholder with the table of every method (MkDocs event)."""
    if page.file.src_uri == "benchmarks.md":  # BENCHMARKS.md itself, its figures linked from the repository's root
        root = Path(config.config_file_path).parent
        markdown = (root / "BENCHMARKS.md").read_text().replace("](docs/", "](")
    return markdown.replace("<!-- methods-table -->", methods_index())
