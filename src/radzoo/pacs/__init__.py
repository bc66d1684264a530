"""Reading from and writing back to a PACS over DICOMweb (``dicomweb-client``).

Public API::

    PacsConnection(url, auth=None, timeout=30, retries=3, backoff=0.5)   # one endpoint, retry policy
    read_auth(auth_file=None) -> PacsAuth | None        # 'basic USER:PASSWORD' / 'bearer TOKEN', file or $RADZOO_PACS_AUTH
    parse_dicomweb_url(url) -> DicomwebTarget           # root + optional studies/S/series/R/instances/I
    QueryFilters.parse(studies, series, modality, since)
    find_instances(conn, filters, study=None, series=None, instance=None) -> QueryResult   # QIDO-RS
    fetch_instance(conn, ref) -> bytes; fetch_dataset(conn, ref) -> pydicom.Dataset     # WADO-RS
    DicomwebSource.from_url(url, auth=<env>, filters=..., concurrency=4).query()
    map_bounded(fn, refs, concurrency)                  # bounded-concurrency fetches, in order
    stow(datasets_or_paths, url, auth=None) -> StowResult                                # STOW-RS

Errors are ``PacsError`` subclasses (``PacsUnreachable``, ``PacsAuthError``, ``PacsNotFound``,
``StowRejected``), all ``RadzooError``s. Nothing here logs patient data, UIDs or credentials.
"""

from __future__ import annotations

from radzoo.pacs.connection import (
    DicomwebTarget,
    PacsConnection,
    is_dicomweb_url,
    parse_dicomweb_url,
)
from radzoo.pacs.credentials import AUTH_ENV, PacsAuth, parse_auth, read_auth
from radzoo.pacs.pacs_errors import (
    PacsAuthError,
    PacsError,
    PacsNotFound,
    PacsUnreachable,
    StowRejected,
)
from radzoo.pacs.qido import InstanceRef, QueryFilters, QueryResult, find_instances
from radzoo.pacs.source import DicomwebSource
from radzoo.pacs.stow import StowResult, stow
from radzoo.pacs.wado import dataset_bytes, fetch_dataset, fetch_instance, map_bounded

__all__ = [
    "AUTH_ENV",
    "DicomwebSource",
    "DicomwebTarget",
    "InstanceRef",
    "PacsAuth",
    "PacsAuthError",
    "PacsConnection",
    "PacsError",
    "PacsNotFound",
    "PacsUnreachable",
    "QueryFilters",
    "QueryResult",
    "StowRejected",
    "StowResult",
    "dataset_bytes",
    "fetch_dataset",
    "fetch_instance",
    "find_instances",
    "is_dicomweb_url",
    "map_bounded",
    "parse_auth",
    "parse_dicomweb_url",
    "read_auth",
    "stow",
]
