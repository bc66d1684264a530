"""The JSON schema the evaluation tests hold every report to (``radzoo-eval/1``)."""

from __future__ import annotations

_EST = {"type": "object", "required": ["value", "ci", "n_boot"],
        "properties": {"value": {"type": ["number", "null"]},
                       "ci": {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": ["number", "null"]}},
                       "n_boot": {"type": "integer", "minimum": 0}}}
SCHEMA = {
    "type": "object",
    "required": ["format", "task", "model", "systems", "data", "seed", "protocol", "results", "skipped", "notes", "files"],
    "properties": {
        "format": {"const": "radzoo-eval/1"},
        "task": {"enum": ["linear-probe", "knn", "retrieval", "zero-shot"]},
        "model": {"type": "object", "required": ["name", "revision", "preprocess", "random_weights"],
                  "properties": {"name": {"type": "string"}, "revision": {"type": "string", "minLength": 6},
                                 "preprocess": {"type": "string", "minLength": 6}, "random_weights": {"type": "boolean"}}},
        "systems": {"type": "object", "required": ["model"]},
        "data": {"type": "object", "required": ["labels_file", "n_rows", "n_groups", "digest", "labels"],
                 "properties": {"digest": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}},
        "seed": {"type": "integer"},
        "protocol": {"type": "object", "required": ["bootstrap", "ci_level"]},
        "results": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["system", "overall", "per_label"],
            "properties": {"overall": {"type": "object", "additionalProperties": _EST},
                           "per_label": {"type": "object", "additionalProperties": {
                               "type": "object", "additionalProperties": _EST}}}}},
        "skipped": {"type": "array"},
        "notes": {"type": "array", "items": {"type": "string"}},
        "files": {"type": "object", "required": ["json", "markdown"]},
    },
}
