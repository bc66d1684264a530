"""mkdocs hook: the model pages and the API reference pages, generated at build time.

Nothing generated is checked in. The API reference has one page per nav entry
``reference/NAME.md`` (module ``radzoo.NAME``): the module's docstring, then every public name
(``__all__``) that is a function or class, rendered by mkdocstrings from its docstring where it is
defined, so a new public name appears without editing a page.

Each page is ``radzoo.model_pages.registry_page(name)``: the same function ``radzoo info NAME
--markdown`` prints, from the same spec dictionary ``radzoo info NAME`` prints as JSON. A
``radzoo bench`` result (``bench.json``) saved under ``benchmarks/records/`` adds each measured
model's throughput table.
"""

from __future__ import annotations

import json
from pathlib import Path

from mkdocs.structure.files import File

RECORDS = Path(__file__).resolve().parents[1] / "benchmarks" / "records"


def throughput() -> dict[str, dict]:
    """Latest throughput section per model over the saved ``radzoo bench`` records."""
    from radzoo.bench.throughput import card_section

    found: dict[str, dict] = {}
    for record in sorted(RECORDS.glob("*.json")) if RECORDS.is_dir() else []:
        result = json.loads(record.read_text())
        for name in dict.fromkeys(r["model"] for r in result["rows"]):
            section = card_section(result, name)
            if section["rows"] and section["date"] >= found.get(name, {}).get("date", ""):
                found[name] = section
    return found


def public_objects(module_name: str) -> list[tuple[str, str]]:
    """(public name, dotted path where it is defined) for each function or class in ``__all__``."""
    import importlib
    import inspect

    module = importlib.import_module(module_name)
    found = []
    for name in getattr(module, "__all__", ()):
        obj = getattr(module, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            found.append((name, f"{obj.__module__}.{obj.__qualname__}"))
    return found


def reference_page(module_name: str) -> str:
    """One API reference page: the module docstring and each public function or class."""
    lines = [f"# {module_name}", "", f"::: {module_name}", "    options:", "      members: false",
             "      show_root_heading: false", ""]
    for name, path in public_objects(module_name):
        lines += [f"## `{module_name}.{name}`", "", f"::: {path}", "    options:", "      show_root_heading: false",
                  "      heading_level: 3", ""]
    return "\n".join(lines)


def _reference_entries(nav) -> list[str]:
    """The ``reference/NAME.md`` files named anywhere in the nav."""
    found = []
    for item in nav if isinstance(nav, list) else [nav]:
        values = item.values() if isinstance(item, dict) else [item]
        for value in values:
            if isinstance(value, str) and value.startswith("reference/"):
                found.append(value)
            elif isinstance(value, (list, dict)):
                found += _reference_entries(value)
    return found


def on_config(config):
    """Fill the "Models" nav section with one entry per registry model."""
    from radzoo import zoo

    for i, item in enumerate(config["nav"]):
        if isinstance(item, dict) and "Models" in item:
            config["nav"][i] = {"Models": ["models/index.md", *[{n: f"models/{n}.md"} for n in zoo.list_models()]]}
    return config


def on_files(files, config):
    """Add the generated model pages to the site."""
    from radzoo import zoo
    from radzoo.model_pages import models_index, registry_page

    for page in _reference_entries(config["nav"]):
        module_name = "radzoo." + page.removeprefix("reference/").removesuffix(".md")
        files.append(File.generated(config, page, content=reference_page(module_name)))
    records = throughput()
    files.append(File.generated(config, "models/index.md", content=models_index()))
    for name in zoo.list_models():
        files.append(File.generated(config, f"models/{name}.md", content=registry_page(name, records.get(name))))
    return files
