"""A DICOMweb input: where (endpoint + optional resource path), what (QIDO filters) and how fast
(bounded concurrency). Batch extraction, ``radzoo embed``, ``radzoo zero-shot`` and ``radzoo
ground`` all take one of these where they take files."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from radzoo.errors import InputError
from radzoo.pacs.connection import DicomwebTarget, PacsConnection, parse_dicomweb_url
from radzoo.pacs.credentials import PacsAuth, read_auth
from radzoo.pacs.qido import InstanceRef, QueryFilters, QueryResult, find_instances
from radzoo.pacs.wado import fetch_instance, map_bounded

_FROM_ENV: Any = object()


@dataclass(frozen=True)
class DicomwebSource:
    """Instances of one DICOMweb service selected by a resource path and/or QIDO filters."""

    connection: PacsConnection
    target: DicomwebTarget
    filters: QueryFilters = field(default_factory=QueryFilters)
    concurrency: int = 4

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise InputError(f"PACS concurrency must be >= 1, got {self.concurrency}")

    @classmethod
    def from_url(cls, url: str, *, auth: PacsAuth | None = _FROM_ENV, filters: QueryFilters | None = None,
                 concurrency: int = 4, timeout: float = 30.0, retries: int = 3, backoff: float = 0.5,
                 http_compression: bool = False) -> DicomwebSource:
        """``url``: the DICOMweb root, optionally followed by ``studies/S[/series/R[/instances/I]]``.
        ``auth`` defaults to ``$RADZOO_PACS_AUTH`` (None: no authentication)."""
        target = parse_dicomweb_url(url)
        if auth is _FROM_ENV:
            auth = read_auth()
        conn = PacsConnection(target.root, auth=auth, timeout=timeout, retries=retries, backoff=backoff,
                              http_compression=http_compression)
        return cls(conn, target, filters or QueryFilters(), concurrency)

    @property
    def url(self) -> str:
        """The URL as given (no credentials ever appear in it)."""
        return self.target.root + (f"/{self.target.key}" if self.target.key else "")

    def query(self) -> QueryResult:
        """QIDO-RS: the instances this source names, plus problems for the errors table."""
        t = self.target
        return find_instances(self.connection, self.filters, study=t.study, series=t.series, instance=t.instance)

    def fetch(self, refs: Iterable[InstanceRef]) -> Iterator[tuple[InstanceRef, bytes | BaseException]]:
        """WADO-RS bytes of ``refs``, ``concurrency`` at a time, in order; a failed fetch yields its error."""
        return map_bounded(lambda ref: fetch_instance(self.connection, ref), refs, self.concurrency)
