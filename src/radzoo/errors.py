"""The exception family every public entry point raises.

Each error says what failed, on which file or key, and what the user can do about it. Callers
(CLI, HTTP service, batch extraction) catch ``RadzooError`` and turn it into a message, a 4xx
response or an errors-table row; anything else is a bug.
"""

from __future__ import annotations

from collections.abc import Iterable


class RadzooError(Exception):
    """Base class of every error radzoo raises on purpose."""


class ModelNotFoundError(RadzooError, LookupError):
    """A model name or path resolved to nothing (registry, local zoo, Hub)."""


class ArtifactError(RadzooError):
    """A directory or file is not a valid radzoo artifact (missing files, bad config, corrupt weights)."""


class SchemaVersionError(ArtifactError):
    """An artifact was written by a newer radzoo than this one."""


class WeightsError(RadzooError):
    """State-dict keys or shapes do not match the architecture (strict loading)."""

    def __init__(
        self,
        message: str,
        *,
        missing: Iterable[str] = (),
        unexpected: Iterable[str] = (),
        mismatched: Iterable[tuple[str, tuple[int, ...], tuple[int, ...]]] = (),
    ) -> None:
        self.missing = sorted(missing)
        self.unexpected = sorted(unexpected)
        self.mismatched = sorted(mismatched)
        parts = [message]
        if self.missing:
            parts.append(f"missing keys ({len(self.missing)}): {_preview(self.missing)}")
        if self.unexpected:
            parts.append(f"unexpected keys ({len(self.unexpected)}): {_preview(self.unexpected)}")
        if self.mismatched:
            shown = [f"{k}: checkpoint {tuple(a)} vs model {tuple(b)}" for k, a, b in self.mismatched]
            parts.append(f"shape mismatches ({len(shown)}): {_preview(shown)}")
        super().__init__("; ".join(parts))


class DeviceError(RadzooError, ValueError):
    """A device string is malformed or names a device this machine does not have."""


class InputError(RadzooError, ValueError):
    """User input (images, labels, prompts, options) is unusable; the message names the problem."""


class CapabilityError(RadzooError, TypeError):
    """The model cannot do what was asked (e.g. zero-shot on a model without a text tower)."""


class MissingExtra(CapabilityError, ImportError):
    """An optional package is not installed; the message names the extra to install.

    Raised by ``radzoo.extras.require_extra``; the HTTP service answers 501 with it and the CLI
    exits 1. It is an ``ImportError`` too, so code that falls back when a package is absent
    (the ``auto`` runtime without onnxruntime) keeps doing so.
    """

    def __init__(self, message: str, *, extra: str, module: str) -> None:
        super().__init__(message)
        self.extra = extra
        self.module = module
        self.name = module  # ImportError's attribute: the module that could not be imported


def _preview(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    if len(items) > limit:
        shown += f", ... (+{len(items) - limit} more)"
    return shown
