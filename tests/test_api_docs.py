"""docs/api.md is generated from the docstrings (python -m scripts.api_docs) and cannot drift:
regenerating it changes nothing, and every public function and type documents itself."""

from __future__ import annotations

import inspect

import gradflow
from scripts.api_docs import TARGET, exported, members, render


def test_api_md_is_what_the_docstrings_generate() -> None:
    assert TARGET.read_text(encoding="utf-8") == render(), (
        "docs/api.md is out of date: run python -m scripts.api_docs")


def test_every_exported_name_has_its_section() -> None:
    text = render()
    for name in gradflow.__all__:
        if not name.startswith("_"):
            assert f"### `gradflow.{name}`" in text, name


def test_every_public_function_documents_arguments_returns_and_an_example() -> None:
    for name, item in exported():
        if callable(item) and not isinstance(item, type):
            doc = inspect.getdoc(item) or ""
            for section in ("Args:", "Returns:", "Example:"):
                assert f"\n{section}\n" in doc, (name, section)


def test_every_public_type_documents_itself_itsmembers_and_an_example() -> None:
    for name, item in exported():
        if isinstance(item, type):
            doc = inspect.getdoc(item) or ""
            assert "\nExample:\n" in doc, name
            for member, value in members(item):
                assert inspect.getdoc(value), f"{name}.{member} has no docstring"


def test_the_readme_shows_the_package_layout_as_it_is() -> None:
    """The Development section names every folder of the package and nothing that is gone."""
    from pathlib import Path

    root = Path(gradflow.__file__).parent
    readme = (root.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Development", 1)[1].split("```", 2)[1]
    listed = [line.split()[0] for line in section.splitlines()
              if line.startswith("  ") and line.split() and line.split()[0].endswith(("/", ".py"))]
    folders = sorted(f"{p.name}/" for p in root.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert sorted(name for name in listed if name.endswith("/")) == folders
    for name in listed:
        assert (root / name).exists(), name
