"""Remote image URLs: refused unless the operator allow-lists the host, then fetched within limits.

A server that fetches whatever URL a client names can be made to reach internal services (SSRF),
so ``http(s)://`` inputs are refused by default. ``url_allow_hosts`` (``RADZOO_URL_ALLOW_HOSTS``)
names the hosts that may be fetched: ``host`` (any port), ``host:port``, or ``*.domain`` for its
subdomains. Fetches follow no redirects, carry no credentials, and stop at ``url_max_mb`` bytes or
about ``url_timeout_s`` seconds from connecting to the last byte (checked between network reads,
each of which may itself wait up to that long).
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from radzoo.errors import InputError
from radzoo.serving.settings import ServeSettings

_CHUNK = 64 * 1024


class UrlFetcher:
    """Fetches allow-listed ``http(s)`` image URLs for one server's settings."""

    def __init__(self, settings: ServeSettings) -> None:
        self.allow = tuple(h.lower() for h in settings.url_allow_hosts)
        self.max_bytes = int(settings.url_max_mb * 1024 * 1024)
        self.timeout_s = float(settings.url_timeout_s)

    def allowed(self, host: str, port: int) -> bool:
        host = host.lower()
        for entry in self.allow:
            name, _, want_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
            if want_port and want_port != str(port):
                continue
            if name == host or (name.startswith("*.") and host.endswith(name[1:])):
                return True
        return False

    def fetch(self, url: str, index: int) -> bytes:
        """The bytes at ``url``, or an ``InputError`` that names the item and the reason."""
        import requests
        import urllib3

        where = f"input[{index}]"
        if not self.allow:
            raise InputError(
                f"{where}: URLs are not fetched: this server does not fetch remote images (SSRF protection); "
                "send the image itself as base64 or a data URL, or ask the operator to allow the host "
                "(RADZOO_URL_ALLOW_HOSTS)"
            )
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"{where}: only http(s) URLs with a host are fetched")
        if parts.username or parts.password:
            raise InputError(f"{where}: URLs with credentials are not fetched")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if not self.allowed(parts.hostname, port):
            raise InputError(f"{where}: host {parts.hostname}:{port} is not on this server's URL allow-list")
        start = time.monotonic()
        try:
            # identity encoding: the byte limit applies to what is stored (no gzip bomb)
            with requests.get(url, stream=True, allow_redirects=False, timeout=self.timeout_s,
                              headers={"Accept": "image/png, image/jpeg, application/dicom",
                                       "Accept-Encoding": "identity"}) as resp:
                if resp.is_redirect:
                    raise InputError(f"{where}: the URL answered a redirect ({resp.status_code}); redirects are not followed")
                if resp.status_code != 200:
                    raise InputError(f"{where}: fetching the URL failed with HTTP {resp.status_code}")
                declared = resp.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self.max_bytes:
                    raise InputError(f"{where}: the remote image is {declared} bytes, over the {self._limit()} limit")
                chunks, total = [], 0
                # read1 returns after each network read, so a slow drip meets the deadline too
                while chunk := resp.raw.read1(_CHUNK):
                    total += len(chunk)
                    if total > self.max_bytes:
                        raise InputError(f"{where}: the remote image exceeds the {self._limit()} limit")
                    if time.monotonic() - start > self.timeout_s:
                        raise InputError(f"{where}: fetching the URL took longer than {self.timeout_s:g} s")
                    chunks.append(chunk)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            timeout = (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)
            kind = "timed out" if isinstance(exc, timeout) else f"failed ({type(exc).__name__})"
            raise InputError(f"{where}: fetching the URL {kind}") from None
        if not total:
            raise InputError(f"{where}: the URL returned no bytes")
        return b"".join(chunks)

    def _limit(self) -> str:
        return f"{self.max_bytes / 1024 / 1024:g} MB (RADZOO_URL_MAX_MB)"
