"""Opening original research checkpoints safely: ``weights_only`` first, full unpickling only on request.

The five original formats are pickles. Most open with ``torch.load(weights_only=True)``, which
refuses to run code. Real Lightning files of LoVT key ``callbacks`` by class objects and pickle an
OmegaConf config; those need ``trust_pickle=True`` (CLI ``--trust-pickle``), and even then unknown
classes are replaced by inert stubs instead of importing pytorch_lightning / omegaconf.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from radzoo.errors import ArtifactError


class CheckpointError(ArtifactError):
    """An original checkpoint file is missing, truncated, corrupt or not the expected format."""


class _Stub:
    """Inert stand-in for a class the checkpoint references but this environment lacks."""

    _qualname = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<stub {self._qualname}>"


class _StubbingUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return type(name, (_Stub,), {"_qualname": f"{module}.{name}"})


class _StubbingPickleModule:
    """A ``pickle_module`` for ``torch.load`` that stubs classes it cannot import."""

    Unpickler = _StubbingUnpickler
    UnpicklingError = pickle.UnpicklingError

    @staticmethod
    def load(fh: Any, **kwargs: Any) -> Any:
        return _StubbingUnpickler(fh, **kwargs).load()



def open_checkpoint(path: str | Path, *, trust_pickle: bool = False, mmap: bool = False) -> Any:
    """The unpickled object of ``path`` on CPU.

    ``mmap=True`` maps tensor storages from the file instead of reading them, so dropping a
    1.2 GB queue never costs 1.2 GB of RAM (the zip format written by torch >= 1.6 only).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): re-download it")
    use_mmap = mmap and zipfile.is_zipfile(path)
    try:
        if trust_pickle:
            return torch.load(
                path, map_location="cpu", weights_only=False, mmap=use_mmap, pickle_module=_StubbingPickleModule
            )
        return torch.load(path, map_location="cpu", weights_only=True, mmap=use_mmap)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        if not trust_pickle and "Unsupported global" in msg:
            refused = next((line.strip() for line in msg.splitlines() if "Unsupported global" in line), "")
            raise CheckpointError(
                f"{path} holds Python objects that a safe (weights_only) load refuses "
                f"({refused}). If you trust this file, re-run with --trust-pickle "
                "(trust_pickle=True): unknown classes are then stubbed, not imported"
            ) from exc
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (corrupt or truncated): {_first_line(exc)}") from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError, AttributeError) as exc:
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (truncated or corrupt download?): {_first_line(exc)}"
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def state_dict_of(obj: Any, path: Path, *, location: str | None, optional_wrapper: bool = False) -> Mapping[str, Any]:
    """The tensor mapping inside a checkpoint object.

    ``location="state_dict"``: the file is a wrapper dict (MoCo/graph-CT ``torch.save`` dicts,
    Lightning checkpoints) whose ``state_dict`` entry holds the weights; ``None``: the file *is*
    the state_dict. ``optional_wrapper`` accepts both (PRIOR's whole-model release).
    """
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a dict of tensors: wrong file or format")
    if location is not None:
        inner = obj.get(location)
        if isinstance(inner, Mapping):
            return inner
        if not optional_wrapper:
            keys = ", ".join(sorted(map(str, obj))[:10])
            raise CheckpointError(
                f"{path} has no {location!r} entry (top-level keys: {keys}); is it the right format?"
            )
    tensors = [k for k, v in obj.items() if isinstance(v, torch.Tensor)]
    if not tensors:
        keys = ", ".join(sorted(map(str, obj))[:10])
        raise CheckpointError(f"{path} holds no tensors at the top level (keys: {keys}); wrong format?")
    return obj
