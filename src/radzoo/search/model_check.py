"""Is a query embedded the way the index was? Compare the five fields that make vectors comparable."""

from __future__ import annotations

from typing import Any

from radzoo.errors import CapabilityError, InputError

#: fields of ``radzoo.extract.state.ModelIdentity`` that must match between a query and the index
IDENTITY_FIELDS = ("model", "revision", "preprocess", "output", "precision")


class ModelMismatchError(InputError):
    """The query model differs from the index's; the message names both."""


def describe(ident: dict[str, Any]) -> str:
    return ", ".join(f"{k}={ident.get(k)!r}" for k in IDENTITY_FIELDS)


def check_same(index_ident: dict[str, Any], query_ident: dict[str, Any], what: str = "query") -> None:
    """Refuse a query whose model, revision, preprocessing, output or precision differs."""
    diff = [k for k in IDENTITY_FIELDS if str(index_ident.get(k)) != str(query_ident.get(k))]
    if diff:
        raise ModelMismatchError(
            f"the {what} was embedded differently from the index ({', '.join(diff)} differ): "
            f"index [{describe(index_ident)}] vs {what} [{describe(query_ident)}]; "
            f"embed queries with the index's model (or build an index for this one)"
        )


def text_models() -> list[str]:
    """Registry models that can embed text into their image space (PRIOR, LoVT)."""
    from radzoo.zoo.registry import get_spec, list_models

    return [n for n in list_models() if "text" in get_spec(n).capabilities]


def require_text(index_ident: dict[str, Any], model: Any | None) -> None:
    """Text queries need a joint image-text model and the index's joint-space output."""
    from radzoo.resolve import JOINT_OUTPUT

    can = model is not None and "text" in model.capabilities
    if not can or index_ident.get("output") != JOINT_OUTPUT:
        why = (f"model {index_ident.get('model')!r} has no text tower" if not can
               else f"the index holds output {index_ident.get('output')!r}, not the joint-space {JOINT_OUTPUT!r}")
        raise CapabilityError(
            f"text queries need an index of a joint image-text model's {JOINT_OUTPUT!r} output; {why}. "
            f"Models that can: {', '.join(text_models())}"
        )
