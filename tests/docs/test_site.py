"""The docs site builds strictly and offline, and its generated pages agree with the code.

``mkdocs build --strict`` fails on any warning: a broken link or anchor, a page missing from the
nav, a docstring reference mkdocstrings cannot resolve. The model pages come from the registry at
build time (docs/hooks.py); here they are checked against ``radzoo info NAME`` itself.
"""

from __future__ import annotations

import html
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from radzoo import zoo
from radzoo.cli import main as radzoo_main
from radzoo.model_pages import registry_page

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "docs"))
import hooks  # noqa: E402  (docs/hooks.py: the mkdocs hook that generates the model and reference pages)

pytest.importorskip("mkdocs")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert "WARNING" not in done.stderr, done.stderr[-5000:]
    return out


def _info_json(page: str) -> dict:
    """The ``radzoo info`` JSON block of a built model page (the last code block, highlighted)."""
    section = page.split('id="radzoo-info"', 1)[1]
    code = re.search(r'<div class="highlight"><pre>.*?<code>(.*?)</code>', section, flags=re.S).group(1)
    return json.loads(html.unescape(re.sub(r"<[^>]+>", "", code)))


def test_site_builds_offline_with_every_page(site: Path) -> None:
    for page in ("index.html", "architecture/index.html", "models/index.html", "reference/resolve/index.html",
                 "guides/serve/index.html"):
        assert (site / page).is_file(), page
    text = "".join(p.read_text() for p in site.rglob("*.html"))
    assert "fonts.googleapis" not in text and "fonts.gstatic" not in text  # nothing fetched by readers


@pytest.mark.parametrize("name", zoo.list_models())
def test_model_page_agrees_with_radzoo_info(site: Path, name: str, capsys: pytest.CaptureFixture) -> None:
    assert radzoo_main(["info", name]) == 0
    info = json.loads(capsys.readouterr().out)
    page = (site / "models" / name / "index.html").read_text()
    assert _info_json(page) == info
    spec = zoo.get_spec(name)
    assert html.escape(spec.description, quote=False) in page
    for output in spec.outputs:
        assert f"<code>{output}</code>" in page
    assert radzoo_main(["info", name, "--markdown"]) == 0  # the same page, from the same function
    printed = capsys.readouterr().out.strip()
    if name not in hooks.throughput():  # a saved bench record adds a table the command cannot know
        assert printed == registry_page(name).strip()


def test_every_output_of_every_model_says_what_it_is() -> None:
    from radzoo.model_pages import OUTPUT_MEANINGS

    for name in zoo.list_models():
        spec = zoo.get_spec(name)
        missing = [o for o in spec.outputs if not OUTPUT_MEANINGS.get(spec.method, {}).get(o)]
        assert not missing, f"{name}: add what outputs {missing} mean to radzoo/model_pages.py OUTPUT_MEANINGS"


def test_throughput_record_becomes_a_table() -> None:
    section = {"date": "2026-01-01", "hardware": {"name": "test CPU", "cores": 2}, "threads": 2,
               "versions": {"onnxruntime": "x", "torch": "y"}, "radzoo_version": "0.1.0",
               "rows": [{"precision": "fp32", "runtime": "onnx", "device": "cpu", "path": "model", "batch": 8,
                         "items_per_s": 12.5, "unit": "img/s"}]}
    page = registry_page("mococxr_resnet18", section)
    assert "| fp32 | onnx | cpu | model | 8 | 12.5 img/s |" in page and "test CPU" in page


def test_every_documented_public_object_has_a_docstring() -> None:
    pages = re.findall(r"reference/(\w+)\.md", (ROOT / "mkdocs.yml").read_text())
    assert pages, "no API reference pages in mkdocs.yml's nav"
    missing = []
    for page in pages:
        module = f"radzoo.{page}"
        for name, path in hooks.public_objects(module):
            obj = getattr(__import__(module, fromlist=[name]), name)
            if not (inspect.getdoc(obj) or "").strip():
                missing.append(f"{module}.{name} ({path})")
    assert not missing, "public objects without a docstring:\n" + "\n".join(missing)
