"""One DICOMweb endpoint: its URL, credentials, timeout and retry policy, and the one place where
HTTP failures become ``PacsError``s.

Every request goes through :meth:`PacsConnection.request`: connection errors, timeouts and the
HTTP statuses in :data:`RETRY_STATUS` (408, 429, 5xx) are retried with exponential backoff;
401/403/404 and other 4xx are not. The ``dicomweb_client.DICOMwebClient`` objects are made per
thread (``requests.Session`` is not thread-safe), with the library's own retrying switched off
so the policy lives here only.

Privacy: ``dicomweb_client`` logs request headers (the Authorization header) and URLs (UIDs) at
DEBUG, urllib3 logs URLs, and ``retrying`` (dicomweb-client's retry helper) logs tracebacks that
quote URLs at WARNING; these loggers are held above those levels so ``radzoo -v`` never prints them.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from radzoo.errors import InputError
from radzoo.pacs.credentials import AUTH_ENV, PacsAuth
from radzoo.pacs.pacs_errors import PacsAuthError, PacsError, PacsNotFound, PacsUnreachable

for _name, _level in (("dicomweb_client", logging.WARNING), ("urllib3.connectionpool", logging.WARNING),
                      ("retrying", logging.ERROR)):
    logging.getLogger(_name).setLevel(_level)

log = logging.getLogger(__name__)

#: HTTP statuses worth retrying: the request may succeed later (overload, gateway, server errors).
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})

T = TypeVar("T")


@dataclass(frozen=True)
class DicomwebTarget:
    """A DICOMweb URL split into the service root and an optional study/series/instance path."""

    root: str
    study: str | None = None
    series: str | None = None
    instance: str | None = None

    @property
    def key(self) -> str:
        """The resource path below the root (``studies/S/series/R/instances/I``), or ''."""
        parts = []
        for name, uid in (("studies", self.study), ("series", self.series), ("instances", self.instance)):
            if uid:
                parts += [name, uid]
        return "/".join(parts)


def is_dicomweb_url(text: object) -> bool:
    """Whether an input names a PACS over DICOMweb (an http(s) URL) rather than a file or folder."""
    return isinstance(text, str) and text.lower().startswith(("http://", "https://"))


def parse_dicomweb_url(url: str) -> DicomwebTarget:
    """``http(s)://host[:port]/prefix[/studies/S[/series/R[/instances/I]]]`` -> :class:`DicomwebTarget`."""
    if not is_dicomweb_url(url):
        raise InputError(f"{url!r} is not a DICOMweb URL (http:// or https://)")
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise InputError(
            "the DICOMweb URL contains credentials; put them in a file (--pacs-auth-file) or "
            f"${AUTH_ENV} instead ('basic USER:PASSWORD' or 'bearer TOKEN')"
        )
    if parts.query or parts.fragment:
        raise InputError("the DICOMweb URL must not carry a query; use --study/--series/--modality/--since")
    if not parts.hostname:
        raise InputError(f"DICOMweb URL {url!r} has no host")
    segments = [s for s in parts.path.split("/") if s]
    uids: dict[str, str] = {}
    for level in ("instances", "series", "studies"):
        if len(segments) >= 2 and segments[-2] == level:
            uids[level] = segments[-1]
            segments = segments[:-2]
    order = [lvl for lvl in ("studies", "series", "instances") if lvl in uids]
    expected = ["studies", "series", "instances"][: len(order)]
    if order != expected:
        raise InputError(f"DICOMweb URL {url!r}: a resource path is studies/S[/series/R[/instances/I]]")
    root = f"{parts.scheme}://{parts.netloc}" + ("/" + "/".join(segments) if segments else "")
    return DicomwebTarget(root, uids.get("studies"), uids.get("series"), uids.get("instances"))


_LOCAL = threading.local()


@dataclass(frozen=True)
class PacsConnection:
    """How to talk to one DICOMweb service (``url`` is its root, e.g. ``http://pacs:8042/dicom-web``).

    ``http_compression`` (off by default) lets the PACS gzip its answers. Pixel data is mostly
    compressed already or large, and gzip costs CPU on both ends: against Orthanc on localhost a
    127 kB JPEG instance took 18 ms per WADO-RS retrieve with gzip and 5 ms without
    (``benchmarks/bench_dicomweb.py`` prints both). Turn it on for slow links to a PACS that
    stores uncompressed images.
    """

    url: str
    auth: PacsAuth | None = None
    timeout: float = 30.0
    retries: int = 3
    backoff: float = 0.5
    http_compression: bool = False
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    def __post_init__(self) -> None:
        target = parse_dicomweb_url(self.url)
        if target.key:
            raise InputError(f"{self.url!r} names a resource; a connection takes the DICOMweb root ({target.root})")
        object.__setattr__(self, "url", target.root)
        if self.timeout <= 0:
            raise InputError(f"PACS timeout must be > 0 seconds, got {self.timeout}")
        if self.retries < 0:
            raise InputError(f"PACS retries must be >= 0, got {self.retries}")
        if self.backoff < 0:
            raise InputError(f"PACS backoff must be >= 0 seconds, got {self.backoff}")

    def client(self) -> Any:
        """This thread's ``DICOMwebClient`` for the endpoint (made on first use)."""
        clients = getattr(_LOCAL, "clients", None)
        if clients is None:
            clients = _LOCAL.clients = {}
        client = clients.get(self)
        if client is None:
            import requests

            from radzoo.extras import require_extra

            DICOMwebClient = require_extra("dicom", "dicomweb_client.api", feature="DICOMweb").DICOMwebClient

            session = requests.Session()
            if not self.http_compression:
                session.headers["Accept-Encoding"] = "identity"
            if self.auth is not None:
                self.auth.apply(session)
            client = DICOMwebClient(self.url, session=session, timeout=self.timeout)
            client.set_http_retry_params(retry=False)
            clients[self] = client
        return client

    def request(self, what: str, call: Callable[[Any], T]) -> T:
        """Run ``call(client)`` with the retry policy; failures become ``PacsError`` naming ``what``."""
        import requests

        attempts = self.retries + 1
        last: Exception | None = None
        for attempt in range(attempts):
            if attempt:
                delay = self.backoff * (2 ** (attempt - 1)) * (1 + 0.25 * random.random())
                log.info("PACS request failed (%s); retry %d/%d in %.2f s", _short(last), attempt, self.retries, delay)
                self.sleep(delay)
            try:
                return call(self.client())
            except requests.HTTPError as exc:
                status = exc.response.status_code if exc.response is not None else None
                if status in RETRY_STATUS:
                    last = exc
                    continue
                raise self._http_error(what, exc, status) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = exc
                continue
        assert last is not None
        if isinstance(last, requests.HTTPError):
            status = last.response.status_code if last.response is not None else None
            raise PacsError(f"{what}: HTTP {status} {_reason(last)} from {self.url} after {attempts} attempts",
                            status=status, response=last.response) from None
        if isinstance(last, requests.Timeout):
            raise PacsUnreachable(f"{what}: the PACS at {self.url} did not answer within {self.timeout:g} s "
                                  f"({attempts} attempts)") from None
        raise PacsUnreachable(f"{what}: cannot reach the PACS at {self.url} ({_short(last)}; {attempts} attempts)") from None

    def _http_error(self, what: str, exc: Any, status: int | None) -> PacsError:
        response = getattr(exc, "response", None)
        if status in (401, 403):
            how = (f"the credentials from {self.auth.origin} were refused" if self.auth is not None
                   else f"no credentials were given: set ${AUTH_ENV} or --pacs-auth-file")
            return PacsAuthError(f"{what}: the PACS at {self.url} answered HTTP {status} {_reason(exc)} ({how})",
                                 status=status, response=response)
        if status == 404:
            return PacsNotFound(f"{what}: HTTP 404 Not Found at {self.url}", status=status, response=response)
        return PacsError(f"{what}: HTTP {status} {_reason(exc)} from {self.url}", status=status, response=response)


def _reason(exc: Any) -> str:
    response = getattr(exc, "response", None)
    return (getattr(response, "reason", "") or "").strip()


def _short(exc: BaseException | None) -> str:
    """A one-line cause without the request URL (which holds UIDs)."""
    if exc is None:
        return "unknown error"
    import requests

    if isinstance(exc, requests.HTTPError):
        status = exc.response.status_code if exc.response is not None else "?"
        return f"HTTP {status} {_reason(exc)}".strip()
    if isinstance(exc, requests.Timeout):
        return "timed out"
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "No route to host", "Connection reset",
                   "Temporary failure in name resolution", "Remote end closed connection"):
        if marker in text:
            return marker.lower()
    return type(exc).__name__
