"""Original-URL fallback: download a model's original release, verify, convert, cache.

``radzoo.load(name)`` calls ``fetch_and_convert(spec, dest)`` when the model is neither in the
local zoo nor on the Hub. Downloads resume (HTTP Range on a ``.part`` file), show a tqdm progress bar,
and are checked against the spec's sha256 when it is known.

``RADZOO_ORIGINALS_MIRROR``: a base URL (e.g. a hospital's internal file server) that replaces the
original host; each file is then fetched from ``<mirror>/<filename>``.

Google Drive releases (PRIOR, graph-CT) go through ``gdown`` (the ``originals`` extra), which
handles Drive's confirm page for large files; the file it writes is sha256-checked (when the
spec knows the digest) before it is moved into place. A Drive item holding several files (graph-CT's
two checkpoints) is a zip or tar archive, unpacked here. Without gdown the error names the extra
and the manual path. ``RADZOO_OFFLINE=1`` / ``HF_HUB_OFFLINE=1`` disable every download.
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

from radzoo.zoo.home import offline, radzoo_home
from radzoo.zoo.spec import ModelSpec, Source
from radzoo.zoo.weights import sha256_file

log = logging.getLogger(__name__)

MIRROR_ENV = "RADZOO_ORIGINALS_MIRROR"
ORIGINALS_EXTRA = "pip install 'radzoo[originals]'"
CHUNK = 1 << 20
TIMEOUT_S = 60


class DownloadError(Exception):
    """A download failed; ``str(self)`` is the reason logged and reported by ``radzoo.load``."""


class OriginalUnavailable(Exception):
    """No original release of a model could be fetched; ``reasons`` says why, per source."""

    def __init__(self, name: str, reasons: list[str]) -> None:
        self.reasons = list(reasons)
        super().__init__(f"original release of {name} not obtainable: " + "; ".join(self.reasons))


def downloads_dir() -> Path:
    return radzoo_home() / "downloads"


def source_urls(source: Source) -> list[tuple[str, str]]:
    """``(url, filename)`` pairs for one source, honouring ``RADZOO_ORIGINALS_MIRROR``.

    A source whose ``filename`` is ``a+b`` consists of two files (graph-CT's patch and graph
    checkpoints): a mirror serves them one by one; on Google Drive they are one archive, named
    :func:`archive_name` here. Other hosts cannot serve such a source.
    """
    names = source.filename.split("+")
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if mirror:
        return [(mirror.rstrip("/") + "/" + name, name) for name in names]
    if is_google_drive(source.url):
        return [(source.url, names[0] if len(names) == 1 else archive_name(source))]
    if len(names) > 1:
        raise DownloadError(manual_instructions(source))
    return [(source.url, names[0])]


def archive_name(source: Source) -> str:
    """Local name of the one Drive download that holds a multi-file source's files."""
    return source.filename.replace("+", "_and_") + ".archive"


def is_google_drive(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host.endswith("drive.google.com") or host.endswith("docs.google.com")


def manual_instructions(source: Source) -> str:
    names = source.filename.split("+")
    conv = (
        f"radzoo convert graph_ct {names[0]} --graph {names[1]} --out DIR"
        if source.format == "graph_ct"
        else f"radzoo convert {source.format} {names[0]} --out DIR"
    )
    return (
        f"{source.url} is a Google Drive file, which needs Drive's confirm step for large files: "
        f"gdown does it and is not installed ({ORIGINALS_EXTRA}), or download {' and '.join(names)} by hand in a browser, "
        f"then run `{conv}` (DIR = the local zoo entry), "
        f"or serve the files(s) from an internal mirror and set {MIRROR_ENV}=<base URL>"
    )


def download(url: str, dest: Path, *, sha256: str | None = None, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` with resume and optional sha256 check; returns ``dest``.

    Bytes accumulate in ``dest.part``; a later call continues it with an HTTP Range request (a
    server that ignores Range sends the whole file, and the part file is restarted).
    """
    from tqdm.auto import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    total: int | None = None
    request = urllib.request.Request(url, headers={"User-Agent": "radzoo", **({"Range": f"bytes={have}-"} if have else {})})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as resp:
            status = resp.status
            if have and status == 206:
                mode, start = "ab", have
            else:
                mode, start = "wb", 0
            length = resp.headers.get("Content-Length")
            total = start + int(length) if length is not None else None
            with open(part, mode) as fh, tqdm(
                total=total, initial=start, unit="B", unit_scale=True, desc=dest.name, disable=not progress
            ) as bar:
                while block := resp.read(CHUNK):
                    fh.write(block)
                    bar.update(len(block))
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the part file is already complete
            pass
        else:
            raise DownloadError(f"HTTP {exc.code} for {url}: {exc.reason}") from exc
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        kept = part.stat().st_size if part.exists() else 0
        raise DownloadError(f"download of {url} failed ({exc}); {kept} bytes kept in {part} for resuming") from exc
    size = part.stat().st_size if part.exists() else 0
    if total is not None and size != total:
        raise DownloadError(f"download of {url} ended early ({size} of {total} bytes); {part} is kept for resuming")
    return _verified_into_place(part, dest, url, sha256, "partial")


def _verified_into_place(staged: Path, dest: Path, url: str, sha256: str | None, what: str) -> Path:
    """Check ``staged`` against ``sha256`` (deleting it on a mismatch), then rename it to ``dest``."""
    if sha256:
        got = sha256_file(staged)
        if got != sha256.lower():
            staged.unlink()
            raise DownloadError(f"sha256 mismatch for {url}: expected {sha256}, got {got}; the {what} file was deleted")
    os.replace(staged, dest)
    return dest


def drive_download(url: str, dest: Path, *, sha256: str | None = None, progress: bool = True) -> Path:
    """Download a Google Drive file with gdown (its confirm step, retries and resume) to ``dest``.

    gdown writes ``dest.gdown`` (resuming its own partial file); that file is sha256-checked, then
    moved to ``dest`` with ``os.replace``, so ``dest`` only ever holds a verified file.
    """
    try:
        import gdown
        from gdown.exceptions import DownloadError as GdownError
        from gdown.exceptions import FileURLRetrievalError
        from requests import RequestException
    except ImportError as exc:
        raise DownloadError(f"{url} is a Google Drive file and gdown is not installed: {ORIGINALS_EXTRA}") from exc
    dest.parent.mkdir(parents=True, exist_ok=True)
    staged = dest.with_name(dest.name + ".gdown")
    try:
        written = gdown.download(url=url, output=str(staged), quiet=not progress, resume=True)
    except (FileURLRetrievalError, GdownError, RequestException, OSError) as exc:
        raise DownloadError(f"gdown could not download {url}: {exc}") from exc
    if written is None or not staged.is_file():
        raise DownloadError(f"gdown could not download {url} (no file written)")
    return _verified_into_place(staged, dest, url, sha256, "downloaded")


def unpack_members(archive: Path, names: list[str], folder: Path) -> list[Path]:
    """Unpack ``archive`` (zip or tar, any compression) and move the files called ``names`` (found
    anywhere inside it) into ``folder``; raises ``DownloadError`` naming what is missing."""
    if zipfile.is_zipfile(archive):
        fmt = "zip"
    elif tarfile.is_tarfile(archive):
        fmt = "tar"
    else:
        raise DownloadError(f"{archive} should be a zip or tar archive holding {' and '.join(names)}, but is neither")
    with tempfile.TemporaryDirectory(dir=folder, prefix=".unpack-") as tmp:
        shutil.unpack_archive(archive, tmp, format=fmt, **({"filter": "data"} if fmt == "tar" else {}))
        found = {p.name: p for p in Path(tmp).rglob("*") if p.is_file() and p.name in names}
        missing = [n for n in names if n not in found]
        if missing:
            raise DownloadError(f"archive {archive} holds no {' or '.join(missing)}")
        out = []
        for name in names:
            os.replace(found[name], folder / name)
            out.append(folder / name)
    return out


def fetch_files(name: str, source: Source) -> list[Path]:
    """The verified local files of one source (downloaded unless already there), in ``filename`` order."""
    names = source.filename.split("+")
    folder = downloads_dir() / name
    targets = [folder / n for n in names]
    single_sha = source.sha256 if len(names) == 1 else None
    if all(t.is_file() for t in targets) and (single_sha is None or sha256_file(targets[0]) == single_sha):
        log.info("using the already downloaded %s", ", ".join(map(str, targets)))
        return targets
    pairs = source_urls(source)
    mirrored = bool(os.environ.get(MIRROR_ENV, "").strip())
    if mirrored or not is_google_drive(source.url):
        for url, filename in pairs:
            log.info("downloading the original release of %s from %s", name, url)
            download(url, folder / filename, sha256=single_sha)
        return targets
    try:
        import gdown  # noqa: F401
    except ImportError:
        raise DownloadError(manual_instructions(source)) from None
    url, filename = pairs[0]
    log.info("downloading the original release of %s from Google Drive (%s) with gdown", name, url)
    got = drive_download(url, folder / filename, sha256=source.sha256)
    return targets if len(names) == 1 else unpack_members(got, names, folder)


def fetch_and_convert(spec: ModelSpec, dest_dir: str | os.PathLike[str]) -> Path:
    """Download ``spec``'s original release, convert it into ``dest_dir`` and return it.

    Raises ``OriginalUnavailable`` with one reason per source when none can be downloaded;
    conversion errors of a downloaded file are raised as they are, since they mean the file is
    not what the spec says.
    """
    from radzoo.converters import convert

    dest = Path(dest_dir)
    reasons: list[str] = []
    if offline():
        raise OriginalUnavailable(spec.name, ["not downloaded in offline mode (HF_HUB_OFFLINE / RADZOO_OFFLINE)"])
    for source in spec.sources:
        try:
            files = fetch_files(spec.name, source)
        except DownloadError as exc:
            log.warning("cannot fetch the original release of %s: %s", spec.name, exc)
            reasons.append(str(exc))
            continue
        if source.format == "prior_full":
            msg = (f"{spec.name}'s original is downloaded ({files[0]}) but needs its tokenizer directory: run "
                   f"`radzoo convert prior_full {files[0]} --tokenizer DIR --out {dest}`")
            log.warning(msg)
            reasons.append(msg)
            continue
        options: dict = {"graph": files[1]} if source.format == "graph_ct" else {}
        if source.format == "moco_cxr":
            options["arch"] = spec.arch_args.get("trunk")  # the file's own arch entry must agree
        convert(source.format, files[0], dest, overwrite=True, spec=spec, **options)  # atomic (zoo.save)
        log.info("converted %s into %s", files[0].name, dest)
        return dest
    if not spec.sources:
        reasons.append(f"{spec.name} lists no original release")
    raise OriginalUnavailable(spec.name, reasons)
