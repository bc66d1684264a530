"""zoo.load through a real HF-compatible endpoint (olah on 127.0.0.1) and from an offline HF cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import radzoo
from radzoo import zoo
from radzoo.errors import ArtifactError, ModelNotFoundError

NAME = "mococxr_resnet18"  # registered with hub_repo radzoo/mococxr_resnet18 @ v1


@pytest.fixture(scope="module")
def two_revisions(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("hubart")
    v1 = zoo.save(radzoo.build(NAME, seed=1), root / "v1")
    v2 = zoo.save(radzoo.build(NAME, seed=2), root / "v2")
    return v1, v2


@pytest.fixture
def empty_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "radzoo-home"
    monkeypatch.setenv("RADZOO_HOME", str(home))
    # the Hub stays reachable (HF_HUB_OFFLINE unset) but original releases are never downloaded
    monkeypatch.setenv("RADZOO_OFFLINE", "1")
    return home


def _x() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((1, 3, 320, 320)).astype(np.float32)


def _same(a: zoo.ZooModel, b: zoo.ZooModel) -> bool:
    return np.array_equal(a.embed_batch(_x()), b.embed_batch(_x()))


def test_load_from_hub_pins_the_spec_revision(hub_env, two_revisions, empty_home) -> None:
    v1, v2 = two_revisions
    repo = zoo.get_spec(NAME).hub_repo
    hub_env.add_repo(repo, v1, tags=["v1"], message="v1")
    hub_env.add_repo(repo, v2, message="v2 on main")  # main moves on; the spec pins tag v1
    got = radzoo.load(NAME)
    assert got.directory is not None and "models--radzoo--mococxr_resnet18" in str(got.directory)
    assert _same(got, radzoo.load(v1)) and not _same(got, radzoo.load(v2))
    assert _same(radzoo.load(NAME, revision="main"), radzoo.load(v2))


def test_local_zoo_wins_over_hub(hub_env, two_revisions, empty_home) -> None:
    v1, v2 = two_revisions
    hub_env.add_repo(zoo.get_spec(NAME).hub_repo, v1, tags=["v1"])
    shutil.copytree(v2, empty_home / "models" / NAME)
    assert _same(radzoo.load(NAME), radzoo.load(v2))
    assert NAME in zoo.local_models()


def test_tampered_hub_weights_are_refused(hub_env, two_revisions, empty_home, tmp_path: Path) -> None:
    v1, v2 = two_revisions
    bad = shutil.copytree(v1, tmp_path / "bad")
    shutil.copyfile(v2 / "model.safetensors", bad / "model.safetensors")  # config still has v1's sha256
    hub_env.add_repo("radzoo/mococxr_resnet18", bad, tags=["v1"], message="tampered")
    with pytest.raises(ArtifactError, match="sha256 does not match"):
        radzoo.load(NAME)


def test_missing_revision_gives_clear_error(hub_env, two_revisions, empty_home) -> None:
    hub_env.add_repo("radzoo/mococxr_resnet18", two_revisions[0], tags=["v1"])
    with pytest.raises(ModelNotFoundError) as err:
        radzoo.load(NAME, revision="v999")
    msg = str(err.value)
    assert "radzoo/mococxr_resnet18" in msg and "'v999'" in msg
    assert "radzoo convert moco_cxr" in msg and "radzoo.build('mococxr_resnet18')" in msg


def test_offline_mode_uses_the_hf_cache(hub_env, two_revisions, empty_home, monkeypatch) -> None:
    import huggingface_hub.constants as hfc

    hub_env.add_repo("radzoo/mococxr_resnet18", two_revisions[0], tags=["v1"])
    online = radzoo.load(NAME)  # fills the cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hfc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hfc, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens: any request would fail
    offline = radzoo.load(NAME)
    assert _same(online, offline)


def _hand_built_cache(cache: Path, repo_id: str, revision: str, artifact: Path) -> str:
    """The huggingface_hub cache layout, written by hand: refs/<rev> -> snapshots/<commit>/files."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / revision).write_text(commit)
    snap = repo / "snapshots" / commit
    shutil.copytree(artifact, snap)
    return commit


def test_offline_hand_built_cache_without_any_server(two_revisions, empty_home, tmp_path, monkeypatch) -> None:
    import huggingface_hub.constants as hfc

    cache = tmp_path / "hf-cache"
    _hand_built_cache(cache, "radzoo/mococxr_resnet18", "v1", two_revisions[0])
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hfc, "HF_HUB_OFFLINE", True)
    got = radzoo.load(NAME)
    assert _same(got, radzoo.load(two_revisions[0]))
    # a revision that is not cached: clear error, no network, no random fallback
    with pytest.raises(ModelNotFoundError, match="not in the local HF cache"):
        radzoo.load(NAME, revision="v2")


def test_card_has_hub_metadata(two_revisions) -> None:
    card = (two_revisions[0] / "README.md").read_text()
    front = card.split("---")[1]
    for key in ("license:", "library_name: radzoo", "pipeline_tag: image-feature-extraction", "tags:"):
        assert key in front
    config = json.loads((two_revisions[0] / "config.json").read_text())
    assert config["spec"]["hub_repo"] == "radzoo/mococxr_resnet18"
