"""Original-URL fallback: download a model's original release, verify, convert, cache.

``radzoo.load(name)`` calls ``fetch_and_convert(spec, dest)`` when the model is neither in the
local zoo nor on the Hub. Downloads resume (HTTP Range on a ``.part`` file), show a tqdm progress bar,
and are checked against the spec's sha256 when it is known.

``RADZOO_ORIGINALS_MIRROR``: a base URL (e.g. a hospital's internal file server) that replaces the
original host; each file is then fetched from ``<mirror>/<filename>``. It also serves releases
that live on Google Drive, which cannot be downloaded unattended: fetch them by hand (see the
logged instructions), put them on the mirror or convert them with ``radzoo convert``.
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from radzoo.zoo.home import radzoo_home
from radzoo.zoo.spec import ModelSpec, Source
from radzoo.zoo.weights import sha256_file

log = logging.getLogger(__name__)

MIRROR_ENV = "RADZOO_ORIGINALS_MIRROR"
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
    checkpoints); it can only be fetched from a mirror.
    """
    names = source.filename.split("+")
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if mirror:
        return [(mirror.rstrip("/") + "/" + name, name) for name in names]
    if is_google_drive(source.url) or len(names) > 1:
        raise DownloadError(manual_instructions(source))
    return [(source.url, names[0])]


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
        f"{source.url} is a Google Drive file, which needs an interactive confirm step for large files: "
        f"download {' and '.join(names)} by hand in a browser, then run `{conv}` (DIR = the local zoo entry), "
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
    if sha256:
        got = sha256_file(part)
        if got != sha256.lower():
            part.unlink()
            raise DownloadError(f"sha256 mismatch for {url}: expected {sha256}, got {got}; the partial file was deleted")
    os.replace(part, dest)
    return dest


def fetch_and_convert(spec: ModelSpec, dest_dir: str | os.PathLike[str]) -> Path:
    """Download ``spec``'s original release, convert it into ``dest_dir`` and return it.

    Raises ``OriginalUnavailable`` with one reason per source when none can be downloaded;
    conversion errors of a downloaded file are raised as they are, since they mean the file is
    not what the spec says.
    """
    from radzoo.converters import convert

    dest = Path(dest_dir)
    reasons: list[str] = []
    for source in spec.sources:
        if source.format == "prior_full":
            msg = (f"{spec.name}'s original needs a tokenizer directory: download {source.url} by hand and run "
                   f"`radzoo convert prior_full FILE --tokenizer DIR --out {dest}`")
            log.warning(msg)
            reasons.append(msg)
            continue
        try:
            files = []
            for url, filename in source_urls(source):
                target = downloads_dir() / spec.name / filename
                if target.is_file() and (source.sha256 is None or sha256_file(target) == source.sha256):
                    log.info("using the already downloaded %s", target)
                else:
                    log.info("downloading the original release of %s from %s", spec.name, url)
                    download(url, target, sha256=source.sha256 if len(source.filename.split("+")) == 1 else None)
                files.append(target)
        except DownloadError as exc:
            log.warning("cannot fetch the original release of %s: %s", spec.name, exc)
            reasons.append(str(exc))
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
