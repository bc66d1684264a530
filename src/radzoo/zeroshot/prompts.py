"""Versioned prompt sets: the words a zero-shot model is asked, stored as data in the artifact.

A prompt set lives in the artifact's ``config.json`` under ``zero_shot.prompt_sets.<name>``::

    {"version": "1", "mode": "single-label",
     "classes": {"Atelectasis": ["Atelectasis is observed"], ...},      # explicit prompts, or
     "templates": {"positive": ["{label} is observed"], "negative": ["No {label} is observed"]}}

Explicit ``classes`` prompts win over ``templates`` for the labels they name; templates cover any
other label. Changing the words of a set means a new ``version``: cached text embeddings and
reported results are keyed by name + version + the exact texts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from radzoo.errors import CapabilityError, InputError

MODES = ("single-label", "multi-label")

#: The five CheXpert classes of PRIOR's 5x200 protocol, in PRIOR's label order (METHODS 3.5).
CHEXPERT5 = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")

PRIOR_DEVIATION = (
    "Zero-shot prompts are embedded deterministically: the sentence prototype bank uses the "
    "noise-free expectation softmax(s E^T / 0.9) E instead of the original's test-time Gumbel "
    "sampling (F.gumbel_softmax), so predictions do not change between runs. The local score is "
    "computed per image (the original averages over the whole batch, correct only at batch size "
    "1). Reported probabilities are the original score P_g + 0.5 P_l divided by 1.5 so they sum to "
    "1; the argmax is unchanged."
)

LOVT_DEVIATION = (
    "LoVT has no zero-shot protocol in the paper; radzoo scores labels as image-report retrieval: "
    "cosine between the L2-normalised joint embeddings zg_a and zg_b of one-sentence prompts, "
    "divided by LoVT's global NT-Xent temperature 0.1, softmax over the labels."
)


@dataclass(frozen=True)
class PromptSet:
    """One named, versioned set of prompts (pure data; see the module docstring)."""

    name: str
    version: str
    mode: str = "single-label"
    classes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    negatives: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    templates: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise InputError("a prompt set needs a non-empty name")
        if not str(self.version):
            raise InputError(f"prompt set {self.name!r} needs a version")
        if self.mode not in MODES:
            raise InputError(f"prompt set {self.name!r}: mode must be one of {MODES}, got {self.mode!r}")
        for kind in self.templates:
            if kind not in ("positive", "negative"):
                raise InputError(f"prompt set {self.name!r}: template kinds are positive/negative, got {kind!r}")
            for t in self.templates[kind]:
                if "{label}" not in t:
                    raise InputError(f"prompt set {self.name!r}: template {t!r} has no '{{label}}' placeholder")

    # ---- (de)serialisation -------------------------------------------------------------------
    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": str(self.version), "mode": self.mode}
        if self.classes:
            out["classes"] = {k: list(v) for k, v in self.classes.items()}
        if self.negatives:
            out["negatives"] = {k: list(v) for k, v in self.negatives.items()}
        if self.templates:
            out["templates"] = {k: list(v) for k, v in self.templates.items()}
        if self.description:
            out["description"] = self.description
        return out

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> PromptSet:
        if not isinstance(data, Mapping):
            raise InputError(f"prompt set {name!r} must be a mapping, got {type(data).__name__}")
        unknown = set(data) - {"version", "mode", "classes", "negatives", "templates", "description"}
        if unknown:
            raise InputError(f"prompt set {name!r}: unknown fields {sorted(unknown)}")
        if "version" not in data:
            raise InputError(f"prompt set {name!r} has no version")
        return cls(
            name=name,
            version=str(data["version"]),
            mode=str(data.get("mode", "single-label")),
            classes=_prompt_table(name, "classes", data.get("classes", {})),
            negatives=_prompt_table(name, "negatives", data.get("negatives", {})),
            templates=_prompt_table(name, "templates", data.get("templates", {})),
            description=str(data.get("description", "")),
        )

    # ---- use ----------------------------------------------------------------------------------
    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.classes)

    def positives(self, label: str) -> tuple[str, ...]:
        if label in self.classes:
            return tuple(self.classes[label])
        if self.templates.get("positive"):
            return tuple(t.replace("{label}", label) for t in self.templates["positive"])
        raise InputError(
            f"prompt set {self.key} has no prompt for label {label!r} (it covers {', '.join(self.classes) or 'none'}) "
            "and no positive template; pass prompts={label: [...]} or a template such as '{label} is observed'"
        )

    def negatives_for(self, label: str) -> tuple[str, ...]:
        if label in self.negatives:
            return tuple(self.negatives[label])
        if self.templates.get("negative"):
            return tuple(t.replace("{label}", label) for t in self.templates["negative"])
        raise InputError(
            f"multi-label mode needs a negative prompt for {label!r}; prompt set {self.key} has none. "
            "Pass prompts={label: {'positive': [...], 'negative': [...]}} or a negative template"
        )


def _prompt_table(name: str, what: str, value: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, Mapping):
        raise InputError(f"prompt set {name!r}: {what} must map names to prompt lists")
    out: dict[str, tuple[str, ...]] = {}
    for k, v in value.items():
        texts = (v,) if isinstance(v, str) else tuple(v)
        if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise InputError(f"prompt set {name!r}: {what}[{k!r}] must be non-empty strings")
        out[str(k)] = texts
    return out


#: PRIOR's zero-shot prompts (METHODS 3.5): one "<Class> is observed" per CheXpert class. The
#: negative template is radzoo's own, used only in multi-label mode (PRIOR has no such protocol).
PRIOR_CHEXPERT5 = PromptSet(
    name="prior-chexpert5",
    version="1",
    mode="single-label",
    classes={c: (f"{c} is observed",) for c in CHEXPERT5},
    templates={"positive": ("{label} is observed",), "negative": ("No {label} is observed",)},
    description="PRIOR zero-shot prompts for CheXpert 5x200 (codes/prior/downstream/zero_classification_model.py)",
)

#: Same words for LoVT, whose paper has no prompts: a one-sentence "report" per class.
LOVT_CHEXPERT5 = PromptSet(
    name="lovt-chexpert5",
    version="1",
    mode="single-label",
    classes={c: (f"{c} is observed.",) for c in CHEXPERT5},
    templates={"positive": ("{label} is observed.",), "negative": ("No {label} is observed.",)},
    description="radzoo's one-sentence report prompts for LoVT retrieval scoring",
)

_DEFAULTS = {"prior": (PRIOR_CHEXPERT5, PRIOR_DEVIATION), "lovt": (LOVT_CHEXPERT5, LOVT_DEVIATION)}

_NO_TEXT = {
    "igcl": "IGCL has no text tower: its 'text' side is a RadGraph graph encoder, so zero-shot would "
    "need a RadGraph graph prompt (none exists in the original work, METHODS 4.5)",
    "mococxr": "MoCo-CXR is an image-only model (no text tower)",
    "graphct": "graph-CT is an image-only CT model (no text tower)",
}


def require_text(spec: Any) -> None:
    """Raise ``CapabilityError`` unless ``spec`` can score prompts (``spec.capabilities``), saying why not."""
    if "zero_shot" in spec.capabilities:
        return
    offers = ", ".join(sorted(spec.capabilities)) or "nothing"
    why = _NO_TEXT.get(spec.method) or (
        "it is PRIOR's image-only release (no text tower); use an image-text PRIOR model such as "
        "prior_resnet50_imagetext"
    )
    raise CapabilityError(f"model {spec.name!r} cannot do zero-shot or grounding: {why} (it offers: {offers})")


def zero_shot_section(spec: Any) -> dict[str, Any]:
    """The artifact config section ``zero_shot`` with the method's default prompt set and the
    deviation text the model card prints. For converters and ``zoo.save(..., sections=...)``."""
    require_text(spec)
    default, deviation = _DEFAULTS[spec.method]
    return {
        "default_prompt_set": default.name,
        "prompt_sets": {default.name: default.to_dict()},
        "deviation": deviation,
    }


def prompt_sets(config: Mapping[str, Any], spec: Any) -> tuple[str, dict[str, PromptSet]]:
    """(default name, {name: PromptSet}) from an artifact config, falling back to the method's
    defaults for artifacts written before the section existed."""
    section = config.get("zero_shot") or zero_shot_section(spec)
    raw = section.get("prompt_sets") or {}
    sets = {name: PromptSet.from_dict(name, data) for name, data in raw.items()}
    default = section.get("default_prompt_set") or (next(iter(sets)) if sets else None)
    if default is None or default not in sets:
        raise InputError(f"model {spec.name!r}: zero_shot.default_prompt_set {default!r} is not among {sorted(sets)}")
    return default, sets


def add_prompt_set(config: dict[str, Any], spec: Any, prompt_set: PromptSet, *, default: bool = False) -> dict[str, Any]:
    """Store ``prompt_set`` in ``config['zero_shot']`` (creating the section); refuses to silently
    replace a stored set of the same name and version with different words."""
    section = config.setdefault("zero_shot", zero_shot_section(spec))
    stored = section.setdefault("prompt_sets", {})
    old = stored.get(prompt_set.name)
    if old is not None and str(old.get("version")) == prompt_set.version and old != prompt_set.to_dict():
        raise InputError(
            f"prompt set {prompt_set.key} already exists with different prompts; bump its version"
        )
    stored[prompt_set.name] = prompt_set.to_dict()
    if default:
        section["default_prompt_set"] = prompt_set.name
    return section


def check_labels(labels: Sequence[str] | None) -> list[str]:
    """Non-empty, unique, non-blank label names (whitespace-trimmed)."""
    if labels is None:
        raise InputError("no labels given")
    if isinstance(labels, str):
        raise InputError(f"labels must be a list of names, got the single string {labels!r}")
    out = []
    for lab in labels:
        if not isinstance(lab, str) or not lab.strip():
            raise InputError(f"label names must be non-empty strings, got {lab!r}")
        out.append(lab.strip())
    if not out:
        raise InputError("the label list is empty; give at least one label (two for single-label mode)")
    seen: dict[str, str] = {}
    dups = []
    for lab in out:
        k = lab.casefold()
        if k in seen:
            dups.append(lab)
        seen.setdefault(k, lab)
    if dups:
        raise InputError(f"duplicate labels: {sorted(set(dups))} (labels are compared case-insensitively)")
    return out


def resolve_prompts(
    prompts: Any,
    labels: Sequence[str] | None,
    mode: str | None,
    sets: Mapping[str, PromptSet],
    default: str,
) -> tuple[PromptSet, list[str], str]:
    """Turn the user's ``prompts`` argument into (prompt set, labels, mode).

    ``prompts`` may be None (the artifact's default set), a stored set's name (``"name"`` or
    ``"name@version"``), a ``PromptSet``, a template string with ``{label}``, a list of templates,
    or a mapping ``label -> prompt(s)`` (multi-label: ``label -> {"positive": [...], "negative": [...]}``).
    """
    if prompts is None:
        pset = sets[default]
    elif isinstance(prompts, PromptSet):
        pset = prompts
    elif isinstance(prompts, str) and "{label}" not in prompts:
        name, _, version = prompts.partition("@")
        if name not in sets:
            raise InputError(f"unknown prompt set {name!r}; this model stores {', '.join(sorted(sets))}")
        pset = sets[name]
        if version and version != pset.version:
            raise InputError(f"prompt set {name!r} is stored at version {pset.version}, not {version}")
    elif isinstance(prompts, str) or (
        isinstance(prompts, (list, tuple)) and prompts and all(isinstance(p, str) for p in prompts)
    ):
        templates = (prompts,) if isinstance(prompts, str) else tuple(prompts)
        base = sets[default]
        pset = PromptSet(
            name="user-templates",
            version="0",
            mode=base.mode,
            templates={"positive": templates, **({"negative": base.templates["negative"]} if "negative" in base.templates else {})},
        )
    elif isinstance(prompts, Mapping):
        pos: dict[str, tuple[str, ...]] = {}
        neg: dict[str, tuple[str, ...]] = {}
        for lab, value in prompts.items():
            if isinstance(value, Mapping):
                pos[lab] = _texts(value.get("positive"), lab)
                if value.get("negative") is not None:
                    neg[lab] = _texts(value.get("negative"), lab)
            else:
                pos[lab] = _texts(value, lab)
        pset = PromptSet(name="user-prompts", version="0", mode=mode or "single-label", classes=pos, negatives=neg)
    else:
        raise InputError(
            f"prompts must be None, a prompt-set name, a template with '{{label}}', a list of templates "
            f"or a mapping label -> prompts; got {type(prompts).__name__}"
        )
    fallback = list(pset.labels) or list(sets[default].labels)  # templates: the default set's classes
    chosen = check_labels(labels if labels is not None else (fallback or None))
    mode = mode or pset.mode
    if mode not in MODES:
        raise InputError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "single-label" and len(chosen) < 2:
        raise InputError("single-label mode needs at least two labels (softmax over labels); use mode='multi-label'")
    return pset, chosen, mode


def _texts(value: Any, label: str) -> tuple[str, ...]:
    texts = (value,) if isinstance(value, str) else tuple(value or ())
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise InputError(f"prompts for label {label!r} must be one or more non-empty strings")
    return texts
