"""PACS credentials: HTTP basic or a bearer token, read from a file or an environment variable.

Never from the command line (arguments are visible to every user in ``ps``) and never from the
URL. The file (or ``$RADZOO_PACS_AUTH``) holds one line, the scheme first::

    basic USER:PASSWORD
    bearer TOKEN

``repr`` and error messages never show the secret.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radzoo.errors import InputError

#: Environment variable read when no credentials file is given.
AUTH_ENV = "RADZOO_PACS_AUTH"
SCHEMES = ("basic", "bearer")


@dataclass(frozen=True)
class PacsAuth:
    """One set of credentials; ``apply`` puts them on a ``requests.Session``."""

    scheme: str
    username: str = ""
    secret: str = field(default="", repr=False)
    origin: str = ""  # where they came from ("file /x", "$RADZOO_PACS_AUTH"), for messages

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise InputError(f"PACS credentials scheme must be one of {', '.join(SCHEMES)}, got {self.scheme!r}")

    def __repr__(self) -> str:
        who = f", user={self.username!r}" if self.username else ""
        return f"PacsAuth({self.scheme}{who}, secret=***, from {self.origin or 'code'})"

    def apply(self, session: Any) -> None:
        if self.scheme == "basic":
            session.auth = (self.username, self.secret)
        else:
            session.headers["Authorization"] = f"Bearer {self.secret}"


def parse_auth(text: str, origin: str) -> PacsAuth:
    """``basic USER:PASSWORD`` or ``bearer TOKEN`` (first non-empty line; scheme case-insensitive)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if not lines:
        raise InputError(f"PACS credentials in {origin} are empty; write 'basic USER:PASSWORD' or 'bearer TOKEN'")
    scheme, _, value = lines[0].partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "basic":
        user, sep, password = value.partition(":")
        if not sep or not user:
            raise InputError(f"PACS credentials in {origin}: 'basic' needs USER:PASSWORD")
        return PacsAuth("basic", user, password, origin)
    if scheme == "bearer":
        if not value or " " in value:
            raise InputError(f"PACS credentials in {origin}: 'bearer' needs one token")
        return PacsAuth("bearer", "", value, origin)
    raise InputError(
        f"PACS credentials in {origin} must start with 'basic' or 'bearer' "
        "(e.g. 'basic USER:PASSWORD' or 'bearer TOKEN')"
    )


def read_auth(auth_file: str | os.PathLike[str] | None = None, *, env: str = AUTH_ENV) -> PacsAuth | None:
    """Credentials from ``auth_file``, else ``$RADZOO_PACS_AUTH``, else None (no authentication)."""
    if auth_file is not None:
        path = Path(auth_file).expanduser()
        try:
            text = path.read_text()
        except OSError as exc:
            raise InputError(f"cannot read PACS credentials file {path}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise InputError(f"PACS credentials file {path} is not a text file") from exc
        return parse_auth(text, f"file {path}")
    value = os.environ.get(env)
    return parse_auth(value, f"${env}") if value else None
