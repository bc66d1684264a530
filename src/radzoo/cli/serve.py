"""``radzoo serve``: start the BentoML HTTP service with settings from flags, env and a config file."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path
from typing import Any

from radzoo.errors import InputError
from radzoo.runtimes import PRECISIONS, RUNTIMES

SERVICE_IMPORT = "radzoo.serving.service:RadzooService"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="serve embeddings over HTTP (BentoML): /v1/embeddings, /embed, /models",
        description="Start the radzoo HTTP service. Every flag also has a RADZOO_* environment variable "
        "(see radzoo.serving.settings); the API key is read from RADZOO_API_KEY only, never from a flag, "
        "so it does not show up in process listings.",
    )
    p.add_argument("--port", type=int, default=3000, help="TCP port (default 3000)")
    p.add_argument("--host", help="bind address (default 127.0.0.1; 0.0.0.0 when RADZOO_API_KEY is set)")
    p.add_argument("--models", help="comma-separated model names to serve (default: registry + local zoo)")
    p.add_argument("--default-model", help="model used when a request names none (default: first of --models)")
    p.add_argument(
        "--random-weights", action="store_true",
        help="use explicitly RANDOM weights (radzoo.build): tests and smoke runs only; answers say random_weights: true",
    )
    p.add_argument("--runtime", choices=RUNTIMES,
                   help="inference runtime (default auto: onnxruntime with graphs exported once on first load, "
                        "torch when they do not export)")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="fp32 (default), bf16 (CPU), fp16 (GPU) or int8 (gated static QDQ); answers record it")
    p.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda when available)")
    p.add_argument("--max-loaded-models", type=int, help="models kept in memory; LRU unloaded beyond (default 2)")
    p.add_argument("--max-batch-size", type=int, help="images per forward pass across requests (default: the best batch `radzoo bench` "
                   "recorded for the model, precision and machine, else 8 on CPU, 32 on GPU; GET /models says which)")
    p.add_argument("--max-items", type=int, help="images per request (default 64)")
    p.add_argument("--max-body-mb", type=float, help="request body limit in MB (default 32)")
    p.add_argument("--max-in-flight", type=int, help="concurrent requests before 429 + Retry-After (default 32)")
    p.add_argument("--url-allow-hosts",
                   help="comma-separated hosts (host, host:port, *.domain) whose http(s) image URLs the server may "
                        "fetch (default: none, URLs are refused)")
    p.add_argument("--heads", help="comma-separated task head folders (radzoo head train) answering POST /classify; "
                                   "their base models must be served")
    p.add_argument("--min-image-side", type=int, help="smaller images are refused per item (default 16 px)")
    p.add_argument("--index", help="similar-case index folder (or milvus:// URI) for POST /v1/search (RADZOO_INDEX)")
    p.add_argument("--config", type=Path, help="JSON or TOML file of settings (RADZOO_SERVE_CONFIG)")
    p.set_defaults(func=_serve)


_FLAG_SETTINGS = (
    "models", "default_model", "runtime", "precision", "device", "host", "max_loaded_models", "max_batch_size",
    "max_items", "max_body_mb", "max_in_flight", "url_allow_hosts", "min_image_side", "heads", "index",
)


def resolve_settings(args: argparse.Namespace, environ: dict[str, str] | None = None):  # noqa: ANN201
    """Settings from the config file and environment, overridden by the flags given."""
    from radzoo.serving.settings import CONFIG_FILE_ENV, ServeSettings

    env = dict(os.environ if environ is None else environ)
    if args.config is not None:
        env[CONFIG_FILE_ENV] = str(args.config)
    base = ServeSettings.from_env(env)
    changes: dict[str, Any] = {k: getattr(args, k) for k in _FLAG_SETTINGS if getattr(args, k, None) is not None}
    if args.random_weights:
        changes["random_weights"] = True
    merged = {**{k: v for k, v in vars(base).items()}, **changes}
    return ServeSettings.from_mapping(merged)


def check_models(names: tuple[str, ...]) -> None:
    """Fail before starting the server when a named model resolves to nothing."""
    from radzoo.errors import ModelNotFoundError
    from radzoo.resolve import spec_of

    for name in names:
        try:
            spec_of(name)
        except ModelNotFoundError as exc:
            raise ModelNotFoundError(f"--models: {exc}") from None


def _serve(args: argparse.Namespace) -> int:
    settings = resolve_settings(args)
    if not 0 < args.port < 65536:
        raise InputError(f"--port must be 1..65535, got {args.port}")
    check_models(settings.models)
    if settings.heads:  # read strictly now: a bad head stops the start with its reason
        from radzoo.serving.served_heads import ServedHeads

        ServedHeads(settings.heads)
        settings = settings.with_(heads=tuple(str(Path(h).expanduser().resolve()) for h in settings.heads))
    host = settings.bind_host
    if not settings.api_key and not _is_loopback(host):
        print(f"warning: serving on {host} without an API key (set RADZOO_API_KEY)", file=sys.stderr)
    if settings.random_weights:
        print("note: --random-weights: models use RANDOM weights; embeddings carry no meaning", file=sys.stderr)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADZOO_") or k in ("RADZOO_HOME", "RADZOO_SHARED")}
    env.update(settings.to_env())
    if settings.api_key:
        env["RADZOO_API_KEY"] = settings.api_key
    argv = [sys.executable, "-m", "bentoml", "serve", SERVICE_IMPORT, "--port", str(args.port), "--host", host]
    sys.stdout.flush()
    sys.stderr.flush()
    # replace this process: signals (SIGTERM from an orchestrator) reach BentoML directly
    os.execvpe(argv[0], argv, env)
    return 0  # pragma: no cover - exec does not return


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
