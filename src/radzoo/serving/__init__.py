"""HTTP serving of the zoo with BentoML (``radzoo serve``).

``service.py`` is the BentoML layer; everything it calls (settings, model pool, batching,
endpoints, error mapping) is importable without BentoML so it can be tested in-process.
"""

from __future__ import annotations

from radzoo.serving.settings import ServeSettings

__all__ = ["ServeSettings"]
