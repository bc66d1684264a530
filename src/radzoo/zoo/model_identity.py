"""The identity of a loaded model's embeddings: name, weights revision, preprocessing digest,
output and precision. One definition, used by extraction rows, eval reports, DICOM provenance
and task heads (which refuse another base model)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ModelIdentity:
    """Everything that makes two embeddings comparable; stored in every row and the manifest."""

    model: str
    revision: str
    preprocess: str  # Preprocess.digest()
    output: str
    dim: int
    random_weights: bool
    precision: str = "fp32"  # what the runtime computed in (radzoo.runtimes.PRECISIONS)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def weights_digest(net: Any) -> str:
    """sha256 prefix over a network's state dict, for models without a recorded weights hash."""
    h = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def model_revision(model: Any) -> str:
    """The weights revision written into every row (and into radzoo's DICOM results, so the two
    join): the artifact's weights sha256 prefix, else a digest of the loaded state dict."""
    cached = model._cache.get("radzoo.model_revision")
    if cached is not None:
        return cached
    revision = model.revision
    if revision in ("", "unknown") or "sha256" not in model.config.get("weights", {}):
        revision = weights_digest(model.net)
    model._cache["radzoo.model_revision"] = revision
    return revision


def identity_of(model: Any, output: str | None) -> ModelIdentity:
    """The identity of a ``ZooModel`` for one output head."""
    name = model.resolve_output(output)
    return ModelIdentity(
        model=model.name,
        revision=model_revision(model),
        preprocess=model.spec.preprocess.digest(),
        output=name,
        dim=int(model.spec.outputs[name]),
        random_weights=bool(model.random_init),
        precision=str(getattr(model.runtime, "precision", "fp32")),
    )
