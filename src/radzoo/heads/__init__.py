"""Task heads: a site's small classifier on top of a zoo model's embeddings, as data.

A head folder holds ``head.json`` (labels, calibration maps, operating points, the base model's
identity, a digest of the training rows), ``head.safetensors`` (scaler and weights: no pickle)
and a card. This package reads, checks and applies heads with numpy (and torch for MLP heads);
training lives above, in ``radzoo.eval.head_fit``, next to the probes it reuses.

    head = read_head("heads/effusion")           # strict: digests, keys and shapes checked
    attach_head(model, head)                      # refused for another base model
    model.predict(images, operating_point="sens90")
"""

from __future__ import annotations

from radzoo.heads.head_apply import HeadPrediction, attach_head, check_base
from radzoo.heads.head_file import (
           HEAD_JSON,
           OPERATING_POINTS,
           TaskHead,
           is_head_dir,
           read_head,
           write_head,
)

__all__ = ["HEAD_JSON", "OPERATING_POINTS", "HeadPrediction", "TaskHead", "attach_head", "check_base", "is_head_dir",
           "read_head", "write_head"]
