"""Original-URL fallback against a real HTTP server on 127.0.0.1 (with Range support), and the
Hub pull side of a pushed artifact through the olah test server."""

from __future__ import annotations

import hashlib
import http.server
import logging
import threading
from pathlib import Path

import numpy as np
import pytest

import radzoo
from radzoo import zoo
from radzoo.converters.original import (
    MIRROR_ENV,
    ORIGINALS_EXTRA,
    DownloadError,
    OriginalUnavailable,
    download,
    drive_download,
    fetch_and_convert,
    source_urls,
    unpack_members,
)
from radzoo.converters.random_originals import write_checkpoint
from radzoo.zoo.spec import Source


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with single-range ``Range: bytes=N-`` support; ``cut`` truncates one reply."""

    cut_next: dict[str, int] = {}

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = self.cut_next.pop(path.name, None)
        self.wfile.write(body[:cut] if cut is not None else body)


@pytest.fixture
def file_server(tmp_path: Path):
    root = tmp_path / "www"
    root.mkdir()
    handler = lambda *a, **k: _RangeHandler(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def moco_file(manifest, ckpt_dir: Path) -> Path:
    return write_checkpoint(manifest("mococxr_resnet18"), ckpt_dir / "orig-r8w-shrink-q16.pth.tar", shrink={"module.queue": 16})


def test_download_resumes_with_range_and_checks_sha(file_server, tmp_path: Path) -> None:
    root, base = file_server
    payload = bytes(range(256)) * 4000
    (root / "blob.bin").write_bytes(payload)
    sha = hashlib.sha256(payload).hexdigest()
    dest = tmp_path / "dl" / "blob.bin"
    _RangeHandler.cut_next["blob.bin"] = 300_000  # the connection ends early
    with pytest.raises(DownloadError, match="ended early|kept"):
        download(base + "/blob.bin", dest, sha256=sha, progress=False)
    part = dest.with_name("blob.bin.part")
    assert part.stat().st_size == 300_000 and not dest.exists()
    download(base + "/blob.bin", dest, sha256=sha, progress=False)  # resumes with Range
    assert dest.read_bytes() == payload and not part.exists()
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        download(base + "/blob.bin", tmp_path / "dl2" / "blob.bin", sha256="0" * 64, progress=False)
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(base + "/absent.bin", tmp_path / "dl3" / "x", progress=False)


def test_fetch_and_convert_and_zoo_load_end_to_end(file_server, hub_env, moco_file: Path, tmp_path: Path, monkeypatch, image, caplog) -> None:
    root, base = file_server
    spec = zoo.get_spec("mococxr_resnet18")
    (root / spec.sources[0].filename).write_bytes(moco_file.read_bytes())
    monkeypatch.setenv("RADZOO_HOME", str(tmp_path / "home"))
    sha = hashlib.sha256(moco_file.read_bytes()).hexdigest()

    # direct call with an injected URL and the right sha256
    direct = spec.with_(sources=(Source(url=f"{base}/{spec.sources[0].filename}", filename=spec.sources[0].filename,
                                        format="moco_cxr", sha256=sha),))
    out = fetch_and_convert(direct, tmp_path / "direct")
    assert out == tmp_path / "direct" and radzoo.load(out).config["provenance"]["source_sha256"] == sha

    # a wrong sha256 -> OriginalUnavailable carrying the reason (also logged); nothing written
    wrong = direct.with_(sources=(Source(url=direct.sources[0].url, filename="other.pth.tar", format="moco_cxr", sha256="1" * 64),))
    (root / "other.pth.tar").write_bytes(moco_file.read_bytes())
    with caplog.at_level(logging.WARNING), pytest.raises(OriginalUnavailable) as err:
        fetch_and_convert(wrong, tmp_path / "wrong")
    assert "sha256 mismatch" in err.value.reasons[0] and "sha256 mismatch" in caplog.text
    assert not (tmp_path / "wrong").exists()

    # radzoo.load(name): not local, not on the (real, local) Hub -> original release via the mirror,
    # converted and cached. (HF_HUB_OFFLINE=1 now means "no downloads at all" in zoo.load.)
    monkeypatch.setenv(MIRROR_ENV, base)
    hub_env.remove_repo(spec.hub_repo)  # another test of this session may have published it
    model = radzoo.load("mococxr_resnet18")
    cached = tmp_path / "home" / "models" / "mococxr_resnet18"
    assert model.directory == cached and (cached / "model.safetensors").is_file()
    again = radzoo.load("mococxr_resnet18")  # now from the local zoo, no download
    np.testing.assert_array_equal(model.embed([image]), again.embed([image]))


def test_google_drive_sources_without_gdown_name_the_extra(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    monkeypatch.setenv("RADZOO_HOME", str(tmp_path))
    monkeypatch.setitem(__import__("sys").modules, "gdown", None)  # gdown not installed
    with caplog.at_level(logging.WARNING), pytest.raises(OriginalUnavailable, match="gdown does it and is not installed") as err:
        fetch_and_convert(zoo.get_spec("graphct_copdgene"), tmp_path / "g")
    assert ORIGINALS_EXTRA in err.value.reasons[0] and ORIGINALS_EXTRA in caplog.text
    assert "radzoo convert graph_ct checkpoint_patch.pth.tar --graph" in caplog.text  # the manual path
    assert not (tmp_path / "g").exists()


def test_offline_mode_downloads_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RADZOO_HOME", str(tmp_path))
    monkeypatch.setenv("RADZOO_OFFLINE", "1")
    with pytest.raises(OriginalUnavailable, match="offline mode"):
        fetch_and_convert(zoo.get_spec("prior_resnet50_imagetext"), tmp_path / "p")
    assert not (tmp_path / "downloads").exists()


def test_drive_sources_hand_gdown_the_drive_id(monkeypatch) -> None:
    """What we pass gdown: the spec's Drive URL, whose file id gdown's own parser finds (a
    multi-file source is one archive on Drive)."""
    import gdown

    monkeypatch.delenv(MIRROR_ENV, raising=False)
    for name, drive_id, local in (
        ("prior_resnet50_imagetext", "1n6i775ztUSFBYhAlAIL6Ftvq5ZiXQsnN", "total_prior.ckpt"),
        ("graphct_copdgene", "1SoW5zoTAagEwZk3AZ3wmTj05lq4bO-7v", "checkpoint_patch.pth.tar_and_checkpoint_graph.pth.tar.archive"),
    ):
        [(url, filename)] = source_urls(zoo.get_spec(name).sources[0])
        assert gdown.parse_url.parse_url(url) == (drive_id, True) and filename == local


def test_drive_download_through_gdown_checks_sha_and_places_atomically(file_server, tmp_path: Path) -> None:
    """gdown's real download code against a server on 127.0.0.1 (the URL form it accepts for a
    non-Drive host; Drive's confirm page itself is gdown's part): our sha256 check on the file it
    wrote, the atomic move into place, the mismatch error."""
    root, base = file_server
    payload = bytes(range(256)) * 3000
    (root / "total_prior.ckpt").write_bytes(payload)
    sha = hashlib.sha256(payload).hexdigest()
    dest = tmp_path / "dl" / "total_prior.ckpt"
    assert drive_download(base + "/total_prior.ckpt", dest, sha256=sha, progress=False) == dest
    assert dest.read_bytes() == payload and sorted(p.name for p in dest.parent.iterdir()) == ["total_prior.ckpt"]
    bad = tmp_path / "dl2" / "total_prior.ckpt"
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        drive_download(base + "/total_prior.ckpt", bad, sha256="0" * 64, progress=False)
    assert not bad.parent.exists() or list(bad.parent.iterdir()) == []  # nothing left behind
    import sys

    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "gdown", None)
        with pytest.raises(DownloadError, match=r"gdown is not installed: pip install 'radzoo\[originals\]'"):
            drive_download(base + "/total_prior.ckpt", tmp_path / "dl4" / "x", progress=False)
    with pytest.raises(DownloadError, match="gdown could not download"):
        drive_download(base + "/absent.ckpt", tmp_path / "dl3" / "x", progress=False)
    assert not (tmp_path / "dl3" / "x").exists()


def test_drive_archive_is_unpacked_into_the_named_files(file_server, tmp_path: Path) -> None:
    import tarfile

    root, base = file_server
    src = tmp_path / "src" / "ckpts"
    src.mkdir(parents=True)
    (src / "checkpoint_patch.pth.tar").write_bytes(b"patch")
    (src / "checkpoint_graph.pth.tar").write_bytes(b"graph")
    with tarfile.open(root / "release.tgz", "w:gz") as tar:
        tar.add(src, arcname="ckpts")
    folder = tmp_path / "dl"
    got = drive_download(base + "/release.tgz", folder / "x.archive", progress=False)
    files = unpack_members(got, ["checkpoint_patch.pth.tar", "checkpoint_graph.pth.tar"], folder)
    assert [f.read_bytes() for f in files] == [b"patch", b"graph"]
    with pytest.raises(DownloadError, match="holds no missing.bin"):
        unpack_members(got, ["missing.bin"], folder)
    with pytest.raises(DownloadError, match="neither"):
        unpack_members(files[0], ["a"], folder)


def test_push_refused_by_readonly_hub_and_pull_of_pushed_files(hub_env, moco_file: Path, tmp_path: Path, image) -> None:
    """olah is read-only: push must fail with a clear PushError; the same files served as a Hub
    repo (what push uploads) load back through zoo's Hub path with identical embeddings."""
    from radzoo.converters import convert
    from radzoo.zoo import hub
    from radzoo.zoo.hub import PushError, push

    art = convert("moco_cxr", moco_file, tmp_path / "art")
    with pytest.raises(PushError, match="create_repo"):
        push(art, "radzoo-test/pushed", revision="v1")
    hub_env.add_repo("radzoo-test/pushed", art, tags=["v1"])
    pulled = radzoo.load(hub.download("radzoo-test/pushed", "v1"))
    np.testing.assert_array_equal(pulled.embed([image]), radzoo.load(art).embed([image]))
    assert pulled.config["provenance"] == radzoo.load(art).config["provenance"]
