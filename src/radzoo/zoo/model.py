"""``ZooModel``: a network bound to its spec, preprocessing, assets and runtime."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from radzoo.errors import InputError
from radzoo.nets.base import EncoderNet
from radzoo.zoo.devices import resolve_device
from radzoo.zoo.spec import ModelSpec
from radzoo.zoo.torch_runtime import Runtime, TorchRuntime


class ZooModel:
    """A network bound to its spec: what every artifact loads into (``radzoo.Model`` adds the
    zero-shot, grounding and text methods that live above the zoo).

    * ``spec``: the model's spec (from the artifact's ``config.json`` when loaded).
    * ``net``: the torch network, in eval mode, on ``device``.
    * ``assets``: files that travel with the weights (atlas, tokenizer ...), name -> path.
    * ``config``: the whole artifact config (provenance, ONNX and prompt sections ...).
    * ``embed(images, output=None)``: float32 ``(N, D)`` embeddings of 2D images, preprocessing
      taken only from the spec.
    """

    def __init__(
        self,
        spec: ModelSpec,
        net: EncoderNet,
        *,
        device: str | torch.device | None = None,
        assets: dict[str, Path] | None = None,
        directory: Path | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.spec = spec
        self.device = resolve_device(device)
        self.net = net.to(self.device).eval()
        self.assets = dict(assets or {})
        self.directory = directory
        self.config = dict(config or {})
        self.runtime: Runtime = TorchRuntime(self.net, self.device)
        self._cache: dict[Any, Any] = {}  # per-model caches (e.g. prompt embeddings)

    # ---- description ----------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def outputs(self) -> dict[str, int]:
        return dict(self.spec.outputs)

    @property
    def default_output(self) -> str:
        return self.spec.default_output

    @property
    def dim(self) -> int:
        return self.spec.dim

    @property
    def random_init(self) -> bool:
        return self.spec.random_init

    @property
    def capabilities(self) -> frozenset[str]:
        """What this model can do (``ModelSpec.capabilities``)."""
        return self.spec.capabilities

    @property
    def revision(self) -> str:
        """Identifies the weights: the safetensors sha256 prefix when known, else the spec's revision."""
        sha = self.config.get("weights", {}).get("sha256")
        return sha[:12] if sha else (self.spec.hub_revision or "unknown")

    def __repr__(self) -> str:
        init = ", random weights" if self.random_init else ""
        precision = getattr(self.runtime, "precision", "fp32")
        return (f"{type(self).__name__}({self.name!r}, outputs={self.outputs}, device={self.device}, "
                f"runtime={self.runtime.name}, precision={precision}{init})")

    # ---- device / runtime -----------------------------------------------------------------
    def to(self, device: str | torch.device | None) -> ZooModel:
        self.device = resolve_device(device)
        self.net.to(self.device)
        if isinstance(self.runtime, TorchRuntime):
            self.runtime = TorchRuntime(self.net, self.device, self.runtime.reason, self.runtime.precision)
        return self

    def use_runtime(self, runtime: Runtime) -> ZooModel:
        self.runtime = runtime
        return self

    # ---- preprocessing --------------------------------------------------------------------
    @functools.cached_property
    def transform(self):  # noqa: ANN201 - a callable from radzoo.io.transforms
        from radzoo.io.transforms import make_transform

        return make_transform(self.spec.preprocess)

    def _require_2d(self) -> None:
        self.spec.require("embed", "2D image embeddings (CT volumes go through radzoo.ct.features)")

    def prepare(self, images: Iterable[Any]) -> torch.Tensor:
        """Read and preprocess images into one ``[N, C, H, W]`` float32 batch."""
        from radzoo.zoo.pixels import to_pixels

        self._require_2d()
        tensors = [self.transform(to_pixels(item, i, self.spec.modality)) for i, item in enumerate(images)]
        if not tensors:
            raise InputError("no images given")
        return torch.stack(tensors)

    # ---- embeddings -----------------------------------------------------------------------
    def resolve_output(self, output: str | None) -> str:
        name = output or self.default_output
        if name not in self.spec.outputs:
            raise InputError(
                f"model {self.name!r} has no output {name!r}; it offers {', '.join(sorted(self.spec.outputs))}"
            )
        return name

    def embed(self, images: Any, output: str | None = None, batch_size: int = 16) -> np.ndarray:
        """Embeddings ``(N, D)`` float32 for a list of images (or one image)."""
        self._require_2d()
        name = self.resolve_output(output)
        items: Sequence[Any] = images if isinstance(images, (list, tuple)) else [images]
        if len(items) == 0:
            raise InputError("no images given")
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        chunks = []
        for start in range(0, len(items), batch_size):
            batch = self.prepare(items[start : start + batch_size])
            chunks.append(self.embed_batch(batch, name))
        return np.concatenate(chunks, axis=0)

    def embed_batch(self, batch: np.ndarray | torch.Tensor, output: str | None = None) -> np.ndarray:
        """Embeddings of an already preprocessed batch (used by batch extraction and serving)."""
        name = self.resolve_output(output)
        out = np.asarray(self.runtime.run(batch, name), dtype=np.float32)
        expected = self.spec.outputs[name]
        if out.ndim != 2 or out.shape[1] != expected:
            raise RuntimeError(f"{self.name}: output {name!r} has shape {out.shape}, spec says (N, {expected})")
        return out
