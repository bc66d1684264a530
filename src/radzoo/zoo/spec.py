"""Model specs: pure data describing one zoo entry (architecture + weights + preprocessing).

A spec binds an architecture to one weight set and the exact preprocessing those weights were
trained with; a variant is a new name. Nothing here imports torch: specs are data that the
registry, the artifact ``config.json`` and the model card all share.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

#: Version of the artifact ``config.json`` layout. Bump on any incompatible change; loaders refuse
#: artifacts whose schema_version is newer than the one they know.
SCHEMA_VERSION = 1

METHODS = ("mococxr", "prior", "lovt", "igcl", "graphct")
MODALITIES = ("cxr", "ct")

#: What a model can do (``ModelSpec.capabilities``); every caller reads this one source:
#: ``embed`` 2D image embeddings, ``text`` text embeddings in the joint space, ``zero_shot`` /
#: ``ground`` prompt scoring and grounding maps, ``ct`` lung CT features from volumes,
#: ``graph`` report knowledge-graph embeddings (IGCL's graph tower).
CAPABILITIES = ("embed", "text", "zero_shot", "ground", "ct", "graph")

#: Architectures with a text tower (unless built ``image_only``) and with a graph tower.
_TEXT_ARCHS = ("prior", "lovt")
_GRAPH_ARCHS = ("igcl",)


@dataclass(frozen=True)
class Preprocess:
    """Inference preprocessing as an ordered list of steps (data, never code).

    ``input`` names what the steps receive:

    * ``"image2d"``: a float32 ``(H, W)`` grayscale array in [0, 1] from ``radzoo.io.read_image``
      (8-bit PNG/JPEG divided by 255; 16-bit PNG by 65535; DICOM after modality LUT, VOI LUT
      and MONOCHROME1 inversion, rescaled to [0, 1]). This mirrors what the original pipelines
      saw: 8-bit grayscale images opened with PIL.
    * ``"ct_hu"``: float32 Hounsfield units (3D patches).

    Each step is a mapping with an ``op`` key; ``radzoo.io.transforms.make_transform`` turns the
    list into a callable. The ops are documented there.
    """

    input: str
    steps: tuple[Mapping[str, Any], ...]
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input, "steps": [dict(s) for s in self.steps], "notes": self.notes}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocess:
        return cls(
            input=str(data["input"]),
            steps=tuple(dict(s) for s in data["steps"]),
            notes=str(data.get("notes", "")),
        )

    def digest(self) -> str:
        """Stable short hash of the numeric pipeline (notes excluded): a resume/cache key."""
        payload = json.dumps({"input": self.input, "steps": [dict(s) for s in self.steps]}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @property
    def channels(self) -> int:
        """Number of channels the model receives (the last ``channels`` step, default 1)."""
        n = 1
        for step in self.steps:
            if step["op"] == "channels":
                n = int(step["n"])
        return n


@dataclass(frozen=True)
class Source:
    """One original release file the zoo can fetch and convert (converters issue)."""

    url: str
    filename: str
    format: str  # converter format name, e.g. "moco_cxr"
    sha256: str | None = None  # recorded once a download has been verified
    note: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """One zoo entry. ``arch`` + ``arch_args`` build the network from ``radzoo.nets``."""

    name: str
    method: str
    arch: str
    arch_args: Mapping[str, Any]
    outputs: Mapping[str, int]  # output name -> embedding dimension
    default_output: str
    modality: str
    preprocess: Preprocess
    license: str
    citation: str
    paper_url: str
    code_url: str
    description: str
    sources: tuple[Source, ...] = ()
    hub_repo: str | None = None
    hub_revision: str | None = None
    assets: Mapping[str, str] = field(default_factory=dict)  # artifact name -> packaged resource
    text: Mapping[str, Any] = field(default_factory=dict)  # tokenizer / prompt facts for text models
    tags: tuple[str, ...] = ()
    random_init: bool = False  # True in artifacts whose weights come from radzoo.build()

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"spec {self.name!r}: unknown method {self.method!r} (one of {METHODS})")
        if self.modality not in MODALITIES:
            raise ValueError(f"spec {self.name!r}: unknown modality {self.modality!r}")
        if self.default_output not in self.outputs:
            raise ValueError(
                f"spec {self.name!r}: default output {self.default_output!r} is not among {sorted(self.outputs)}"
            )

    @property
    def dim(self) -> int:
        return int(self.outputs[self.default_output])

    @property
    def capabilities(self) -> frozenset[str]:
        """What this model can do, derived once from its architecture (see ``CAPABILITIES``)."""
        caps: set[str] = set()
        if self.modality == "cxr" and self.preprocess.input == "image2d":
            caps.add("embed")
        if self.modality == "ct":
            caps.add("ct")
        if self.arch in _TEXT_ARCHS and self.arch_args.get("text_config") and not self.arch_args.get("image_only"):
            caps |= {"text", "zero_shot", "ground"}
        if self.arch in _GRAPH_ARCHS:
            caps.add("graph")
        return frozenset(caps)

    def require(self, capability: str, what: str) -> None:
        """Raise a ``CapabilityError`` naming what this model can do when it lacks ``capability``."""
        if capability not in CAPABILITIES:
            raise ValueError(f"unknown capability {capability!r}; known: {CAPABILITIES}")
        if capability not in self.capabilities:
            from radzoo.errors import CapabilityError

            offers = ", ".join(c for c in CAPABILITIES if c in self.capabilities) or "nothing"
            hint = {
                "embed": "2D image embeddings need a chest X-ray model",
                "text": "text needs an image-text model (PRIOR or LoVT with a text tower)",
                "zero_shot": "zero-shot needs an image-text model (PRIOR or LoVT with a text tower)",
                "ground": "grounding needs an image-text model (PRIOR or LoVT with a text tower)",
                "ct": "CT features need a graph-CT model",
                "graph": "report graphs need IGCL's graph tower",
            }[capability]
            raise CapabilityError(
                f"model {self.name!r} (a {self.method} {self.modality} model) cannot do {what}: {hint}; it offers: {offers}"
            )

    def with_(self, **changes: Any) -> ModelSpec:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Preprocess):
                value = value.to_dict()
            elif f.name == "sources":
                value = [asdict(s) for s in value]
            elif isinstance(value, Mapping):
                value = _plain(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown spec fields: {sorted(unknown)}")
        kwargs = dict(data)
        kwargs["preprocess"] = Preprocess.from_dict(data["preprocess"])
        kwargs["sources"] = tuple(Source(**s) for s in data.get("sources", ()))
        kwargs["tags"] = tuple(data.get("tags", ()))
        kwargs["outputs"] = {str(k): int(v) for k, v in data["outputs"].items()}
        return cls(**kwargs)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
