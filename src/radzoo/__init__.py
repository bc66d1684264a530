"""radzoo: medical image representation models (MoCo-CXR, LoVT, PRIOR, IGCL, graph-CT).

``from radzoo import zoo`` is the entry point: ``zoo.load(name)`` gives a ready encoder with its
preprocessing attached.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
