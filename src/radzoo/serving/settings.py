"""Server settings, read from the environment and an optional JSON/TOML config file.

BentoML imports the service module in fresh worker processes, so settings travel as
``RADZOO_*`` environment variables: ``radzoo serve`` writes them, ``bentoml serve`` reads the
ones the operator exported. A config file (``RADZOO_SERVE_CONFIG``) holds the same keys in lower
case; environment variables win over the file.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from radzoo.errors import InputError
from radzoo.runtimes import PRECISIONS as PRECISION_CHOICES  # one list of precisions
from radzoo.runtimes import RUNTIMES as RUNTIME_CHOICES  # one list of runtimes

#: Setting name -> environment variable.
ENV_NAMES = {
    "models": "RADZOO_MODELS",
    "default_model": "RADZOO_DEFAULT_MODEL",
    "runtime": "RADZOO_RUNTIME",
    "precision": "RADZOO_PRECISION",
    "device": "RADZOO_DEVICE",
    "random_weights": "RADZOO_RANDOM_WEIGHTS",
    "max_loaded_models": "RADZOO_MAX_LOADED_MODELS",
    "max_batch_size": "RADZOO_MAX_BATCH_SIZE",
    "batch_wait_ms": "RADZOO_BATCH_WAIT_MS",
    "max_items": "RADZOO_MAX_ITEMS",
    "max_body_mb": "RADZOO_MAX_BODY_MB",
    "max_in_flight": "RADZOO_MAX_IN_FLIGHT",
    "retry_after_s": "RADZOO_RETRY_AFTER_S",
    "max_pixels": "RADZOO_MAX_PIXELS",
    "api_key": "RADZOO_API_KEY",
    "host": "RADZOO_HOST",
    "threads": "RADZOO_SERVE_THREADS",
    "min_image_side": "RADZOO_MIN_IMAGE_SIDE",
    "url_allow_hosts": "RADZOO_URL_ALLOW_HOSTS",
    "url_max_mb": "RADZOO_URL_MAX_MB",
    "url_timeout_s": "RADZOO_URL_TIMEOUT_S",
    "heads": "RADZOO_HEADS",
    "index": "RADZOO_INDEX",
}
CONFIG_FILE_ENV = "RADZOO_SERVE_CONFIG"


@dataclass(frozen=True)
class ServeSettings:
    """Everything the HTTP service can be told. Defaults suit a 2-core CPU box."""

    models: tuple[str, ...] = ()  # names served; empty = every registry entry and local artifact
    default_model: str | None = None  # used when a request names no model (default: first of models)
    runtime: str = "auto"  # radzoo.runtimes: auto, torch or onnx
    precision: str = "fp32"  # radzoo.runtimes: fp32, bf16, fp16 (GPU) or int8
    device: str | None = None  # cpu, cuda, cuda:N; None = cuda when available
    random_weights: bool = False  # radzoo.build() weights: TEST/SMOKE ONLY, marked in answers
    max_loaded_models: int = 2  # least recently used model is unloaded beyond this
    max_batch_size: int | None = None  # images per forward pass across requests; None: radzoo bench's best batch
    batch_wait_ms: float = 0.0  # extra wait to grow a batch (0: take what is queued, no added latency)
    max_items: int = 64  # images per request
    max_body_mb: float = 32.0  # request body limit (413 beyond)
    max_in_flight: int = 32  # concurrent requests per process (429 + Retry-After beyond)
    retry_after_s: int = 1  # Retry-After header on 429
    max_pixels: int = 1 << 26  # decompression-bomb guard per image (67 M pixels, e.g. 8192 x 8192)
    api_key: str | None = field(default=None, repr=False)  # required header when set
    host: str | None = None  # bind address; default 127.0.0.1 without an API key, 0.0.0.0 with one
    threads: int = 16  # request handler threads (decode + preprocessing run there)
    min_image_side: int = 16  # smaller images (e.g. 1x1) are refused per item: nothing to embed
    url_allow_hosts: tuple[str, ...] = ()  # hosts whose http(s) image URLs are fetched; empty = none (SSRF)
    url_max_mb: float = 16.0  # size limit of one fetched image
    url_timeout_s: float = 10.0  # time limit of one fetch, connection to last byte
    heads: tuple[str, ...] = ()  # task head folders answering POST /classify (radzoo head train)
    index: str | None = None  # similar-case index folder or milvus:// URI behind POST /v1/search

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIME_CHOICES:
            raise InputError(f"runtime must be one of {', '.join(RUNTIME_CHOICES)}, got {self.runtime!r}")
        if self.precision not in PRECISION_CHOICES:
            raise InputError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {self.precision!r}")
        for name in ("max_loaded_models", "max_batch_size", "max_items", "max_in_flight", "max_pixels", "threads",
                     "min_image_side"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_body_mb <= 0 or self.url_max_mb <= 0 or self.url_timeout_s <= 0:
            raise InputError("max_body_mb, url_max_mb and url_timeout_s must be > 0")
        if self.batch_wait_ms < 0 or self.retry_after_s < 0:
            raise InputError("batch_wait_ms and retry_after_s must be >= 0")
        if self.default_model and self.models and self.default_model not in self.models:
            raise InputError(f"default model {self.default_model!r} is not among the served models {list(self.models)}")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def bind_host(self) -> str:
        """Where to listen: loopback unless an API key protects the server or a host was chosen."""
        if self.host:
            return self.host
        return "0.0.0.0" if self.api_key else "127.0.0.1"

    def resolved_default_model(self) -> str | None:
        return self.default_model or (self.models[0] if self.models else None)

    def with_(self, **changes: Any) -> ServeSettings:
        return replace(self, **changes)

    # ---- environment round trip -------------------------------------------------------------
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServeSettings:
        """Settings from ``RADZOO_SERVE_CONFIG`` (if set) overlaid with ``RADZOO_*`` variables."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        config_path = env.get(CONFIG_FILE_ENV)
        if config_path:
            values.update(read_config_file(Path(config_path)))
        for name, var in ENV_NAMES.items():
            raw = env.get(var)
            if raw is not None and raw != "":
                values[name] = raw
        return cls.from_mapping(values)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ServeSettings:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise InputError(f"unknown serving settings {unknown}; known: {', '.join(known)}")
        kwargs = {name: _coerce(name, value) for name, value in values.items()}
        return cls(**kwargs)

    def to_env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings in a worker process."""
        out: dict[str, str] = {}
        for name, value in asdict(self).items():
            if value is None:
                continue
            if name in _LISTS:
                out[ENV_NAMES[name]] = ",".join(value)
            elif isinstance(value, bool):
                out[ENV_NAMES[name]] = "1" if value else "0"
            else:
                out[ENV_NAMES[name]] = str(value)
        return out


def read_config_file(path: Path) -> dict[str, Any]:
    """A flat JSON or TOML mapping of setting name -> value."""
    if not path.is_file():
        raise InputError(f"serving config file {path} does not exist")
    text = path.read_text()
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"serving config file {path} is not valid {path.suffix.lstrip('.') or 'JSON'}: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"serving config file {path} must hold a mapping of settings")
    return data


_INTS = {"max_loaded_models", "max_batch_size", "max_items", "max_in_flight", "retry_after_s", "max_pixels", "threads",
         "min_image_side"}
_FLOATS = {"batch_wait_ms", "max_body_mb", "url_max_mb", "url_timeout_s"}
_LISTS = {"models", "url_allow_hosts", "heads"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(name: str, value: Any) -> Any:
    if value is None and name == "max_batch_size":  # unset: the model's measured best batch (see pool)
        return None
    try:
        if name in _LISTS:
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(s).strip() for s in items if str(s).strip())
        if name == "random_weights":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE | _FALSE:
                return text in _TRUE
            raise ValueError(f"expected a boolean (1/0, true/false), got {value!r}")
        if name in _INTS:
            if isinstance(value, bool):
                raise ValueError("expected an integer")
            return int(value)
        if name in _FLOATS:
            return float(value)
        return None if value is None else str(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"serving setting {name} ({ENV_NAMES.get(name, name)}): {exc}") from exc
