"""Every task guide in docs/guides/ runs as written: its bash and python blocks, in page order.

A new page in docs/guides/ is picked up by itself. Conventions: tests/docs/guide_pages.py. Guides
use random weights and tiny presets so the whole set stays within a few minutes on 2 cores; a
page that needs a service (Orthanc, a Hub) declares it and the test starts it here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from guide_pages import GUIDES, ROOT, base_env, blocks, needs, run_page, scratch

PAGES = sorted(GUIDES.glob("*.md"))


def test_every_guide_is_in_the_nav_and_has_blocks() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in PAGES:
        assert f"guides/{page.name}" in nav, f"{page.name} is not in mkdocs.yml's nav"
        assert [b for b in blocks(page) if "skip" not in b.marks], f"{page.name} has no command the test runs"


def _orthanc(tmp: Path, env: dict[str, str]) -> Callable[[], None]:
    sys.path.insert(0, str(ROOT / "tests" / "pacs"))
    import orthanc_server

    reason = orthanc_server.missing()
    if reason:
        pytest.skip(reason)
    server = orthanc_server.start_orthanc(tmp / "orthanc")
    env.update({"PACS": server.dicomweb, "TEST_PACS_AUTH_LINE": server.auth_line})
    return server.stop


def _hub(tmp: Path, env: dict[str, str], steps: dict[str, Callable[[], None]]) -> Callable[[], None]:
    pytest.importorskip("olah")
    from hub_server import start_hub_server

    hub = start_hub_server(tmp / "olah")
    env.update({"HF_ENDPOINT": hub.endpoint, "HF_TOKEN": "test-token-unused"})
    env.pop("HF_HUB_OFFLINE")
    env.pop("RADZOO_OFFLINE")
    work = tmp / "work"

    def publish() -> None:
        # olah (the test Hub) is read-only: commit the files `radzoo push` uploads, as a tagged revision
        from radzoo.zoo.artifact import read_config
        from radzoo.zoo.card import render_card

        artifact = work / "mococxr_resnet18"
        (artifact / "README.md").write_text(render_card(read_config(artifact)))
        hub.add_repo("radzoo/mococxr_resnet18", artifact, tags=["v1"])

    steps["publish"] = publish
    return hub.stop


@pytest.fixture(scope="module")
def radzoo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One RADZOO_HOME for all guides, as on a user's machine: ONNX graphs exported once are reused."""
    return tmp_path_factory.mktemp("radzoo-home")


@pytest.mark.slow  # all guides together: about 4-5 min of CPU on 2 cores (the graph-CT smoke training is one minute)
@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_guide_runs_as_written(page: Path, tmp_path: Path, shared_dir: Path, radzoo_home: Path) -> None:
    env = base_env(tmp_path)
    env["RADZOO_HOME"] = str(radzoo_home)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    work = scratch(tmp_path, shared_dir)
    steps: dict[str, Callable[[], None]] = {}
    stops: list[Callable[[], None]] = []
    try:
        if "orthanc" in needs(page):
            stops.append(_orthanc(tmp_path, env))
        if "hub" in needs(page):
            stops.append(_hub(tmp_path, env, steps))
        skipped = run_page(page, work, env, steps)
    finally:
        for stop in stops:
            stop()
    for line in skipped:
        print("not run:", line)
