"""The test Hub server itself: a repo added with git is downloadable by tag and branch."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.hf_api  # noqa: F401  (imported before hub_env patches: the realistic order)


def test_hub_server_serves_tagged_revisions(hub_env, tmp_path: Path) -> None:
    from huggingface_hub import hf_hub_download, list_repo_files, snapshot_download

    files = tmp_path / "files"
    (files / "sub").mkdir(parents=True)
    (files / "config.json").write_text('{"v": 1}')
    (files / "sub" / "blob.bin").write_bytes(bytes(range(256)) * 10)
    sha1 = hub_env.add_repo("org/served", files, tags=["v1"])
    (files / "config.json").write_text('{"v": 2}')
    sha2 = hub_env.add_repo("org/served", files, tags=["v2"])
    assert sha1 != sha2

    v1 = hf_hub_download("org/served", "config.json", revision="v1")
    assert Path(v1).read_text() == '{"v": 1}'
    snap = Path(snapshot_download("org/served", revision="main"))
    assert (snap / "config.json").read_text() == '{"v": 2}'
    assert (snap / "sub" / "blob.bin").read_bytes() == bytes(range(256)) * 10
    assert sorted(list_repo_files("org/served", revision="v2")) == ["config.json", "sub/blob.bin"]
