"""Keyed pseudonyms for identifiers (paths, DICOM UIDs, file hashes) in shared output tables.

HMAC-SHA256 with a user secret: the same identifier always maps to the same pseudonym (so
resumed runs and joins across tables still work), and without the secret the mapping cannot be
recomputed from a guessed identifier, which a plain hash would allow.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from radzoo.errors import InputError

#: Environment variable the CLI reads the secret from when no key file is given.
KEY_ENV = "RADZOO_PSEUDONYM_KEY"
_CHECK_MESSAGE = b"radzoo-extract-pseudonym-key-check"


class Pseudonymizer:
    """Maps identifiers to ``hmac_sha256(secret, value)`` hex prefixes (32 hex = 128 bits)."""

    def __init__(self, secret: bytes | str) -> None:
        key = secret.encode() if isinstance(secret, str) else bytes(secret)
        if len(key) < 16:
            raise InputError("pseudonymisation secret must be at least 16 bytes; use a long random string")
        self._key = key

    def __call__(self, value: str | None) -> str | None:
        if value is None or value == "":
            return value
        return hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()[:32]

    @property
    def fingerprint(self) -> str:
        """Identifies the secret (not reversible) so a rerun with another secret is refused."""
        return hmac.new(self._key, _CHECK_MESSAGE, hashlib.sha256).hexdigest()[:16]


def read_secret(key_file: str | os.PathLike[str] | None) -> bytes | None:
    """The secret from ``key_file``, else ``$RADZOO_PSEUDONYM_KEY``, else None (no pseudonymisation).

    Secrets never come from the command line itself: arguments are visible to other users in ``ps``.
    """
    if key_file is not None:
        path = Path(key_file)
        try:
            data = path.read_bytes().strip()
        except OSError as exc:
            raise InputError(f"cannot read pseudonymisation key file {path}: {exc.strerror or exc}") from exc
        if not data:
            raise InputError(f"pseudonymisation key file {path} is empty")
        return data
    env = os.environ.get(KEY_ENV)
    return env.encode() if env else None
