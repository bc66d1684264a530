"""Who made a DICOM result: the model, its weights revision, radzoo's version and the prompt set.

The revision is the one every Parquet row of ``radzoo extract`` carries
(``radzoo.extract.state.model_revision``), so an SR or Parametric Map joins the embeddings table
of the same model on (model, revision).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from radzoo import __version__

MANUFACTURER = "radzoo"


@dataclass(frozen=True)
class Provenance:
    model: str
    revision: str
    radzoo_version: str
    prompt_set: str = ""
    random_weights: bool = False
    details: tuple[str, ...] = ()  # further "key=value" parameters (zero-shot rule, grounding method ...)
    algorithm_name: str = ""  # TID 4019 name when not the model (a task head); the model is then a parameter
    algorithm_version: str = ""  # ... and its version (the head's digest prefix)

    @property
    def parameters(self) -> list[str]:
        """TID 4019 Algorithm Parameters: one ``key=value`` text per item."""
        out = [f"radzoo_version={self.radzoo_version}"]
        if self.prompt_set:
            out.append(f"prompt_set={self.prompt_set}")
        out += list(self.details)
        if self.random_weights:
            out.append("random_weights=true")
        return out

    def algorithm_id(self) -> Any:
        """TID 4019 Algorithm Identification: name = model, version = weights revision (or, for a
        task head, name = the head, version = its digest prefix, the base model in the parameters)."""
        from radzoo.extras import require_extra

        hd = require_extra("dicom", "highdicom", feature="DICOM results")

        return hd.sr.AlgorithmIdentification(name=self.algorithm_name or self.model,
                                              version=self.algorithm_version or self.revision,
                                              parameters=self.parameters,
                                              manufacturer=MANUFACTURER)

    def device_uid(self) -> str:
        """A Device Observer UID that is the same for every result of one model revision."""
        from pydicom.uid import generate_uid

        return generate_uid(entropy_srcs=["radzoo", self.model, self.revision])


def provenance_of(model: Any, *, prompt_set: str = "", details: tuple[str, ...] = ()) -> Provenance:
    """The provenance of results computed by ``model`` (a ``radzoo.Model``)."""
    from radzoo.extract.state import model_revision

    return Provenance(model=model.name, revision=model_revision(model), radzoo_version=__version__,
                      prompt_set=prompt_set, random_weights=bool(model.random_init), details=details)
