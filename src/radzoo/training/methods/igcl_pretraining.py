"""IGCL pretraining (METHODS 4.4) that saves an ``igcl_vitb32``-layout artifact with both towers.

rajpurkarlab/IGCL src/train.sh + training/train.py: a CLIP ViT-B/32 image tower (``pooler_output
@ proj``) and the DRACON graph encoder over RadGraph report graphs (``@ proj``), contrasted with
the symmetric CLIP loss ``(CE(logits_img, arange) + CE(logits_graph, arange)) / 2`` on
L2-normalised embeddings and a learnable ``logit_scale`` (init ln(1/0.07), not clamped);
``AdamW(lr=1e-3)`` with torch's defaults, no schedule; the image encoder (not its projection) is
frozen for the first 20 batches; batch 250, 10 epochs; 500 pairs held out with
``random_split(..., generator=torch.Generator().manual_seed(229))``.

Composition on the shared loop (:class:`radzoo.training.loop.Trainer`): the network is the zoo's
own :class:`radzoo.nets.igcl.IGCLNet`; node features come from ``radzoo.graphs`` (the frozen BERT,
computed once into a :class:`~radzoo.graphs.NodeFeatureCache`); the loss is
:func:`radzoo.training.losses.clip_loss` over embeddings gathered from every process.

Freezing: a frozen batch runs the image encoder without gradient, so its parameters get no
gradient and AdamW skips them (no moments, no weight decay), exactly as ``requires_grad=False``
did; unlike toggling ``requires_grad`` this works under DDP. The count of trained batches lives in
a buffer, so a resumed run unfreezes at the same batch.

The artifact carries the node-feature BERT (``graph_text/``), so ``radzoo.load(out).embed_graphs``
turns RadGraph entries into graph embeddings in the image embeddings' joint space.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from radzoo.errors import ArtifactError, InputError, WeightsError
from radzoo.graphs.node_feature_cache import NodeFeatureCache
from radzoo.graphs.node_text import NodeTextTower
from radzoo.graphs.radgraph_entries import ENTITY_LABELS
from radzoo.graphs.report_graph_data import graph_data
from radzoo.nets.igcl import IGCLNet
from radzoo.training import distributed as D
from radzoo.training.graph_hparams import IGCLConfig
from radzoo.training.hparams import config_dict
from radzoo.training.igcl_pairs import GraphPairDataset, GraphPairs, collate_pairs, read_graph_pairs
from radzoo.training.loop import Phase, Trainer, seed_everything
from radzoo.training.losses import clip_loss
from radzoo.training.runner import (
    Run,
    provenance,
    save_artifact,
    settings_for,
    start_run,
    write_resolved,
)

__all__ = ["IGCLMethod", "train_igcl"]

log = logging.getLogger(__name__)

NODE_TEXT_DIR = "graph_text"  # inside the run directory and the artifact (radzoo.zoo.artifact.CARRIED_DIRS)

#: bert-base-uncased's architecture (METHODS 4.1 / 0.6); the vocabulary size comes from the tokenizer.
BERT_BASE = {
    "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
    "max_position_embeddings": 512, "type_vocab_size": 2, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
}


class IGCLMethod(nn.Module):
    """``forward(batch) -> (loss, metrics)``: CLIP loss of images vs report graphs (see module doc)."""

    batches_seen: torch.Tensor

    def __init__(self, net: IGCLNet, freeze_batches: int) -> None:
        super().__init__()
        self.net = net
        self.freeze_batches = int(freeze_batches)
        self.register_buffer("batches_seen", torch.zeros((), dtype=torch.long))
        # frozen batches leave the image encoder without gradient: DDP must expect that
        self.find_unused_parameters = self.freeze_batches > 0

    @property
    def image_frozen(self) -> bool:
        return self.training and int(self.batches_seen) < self.freeze_batches

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        net = self.net
        frozen = self.image_frozen
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            pooled = net.image_backbone(pixel_values=batch["image"]).pooler_output
        image = net.image_proj(pooled)
        # the original's padding: graphs padded to the (per-process) batch's largest, padding attends
        graph = net.encode_graph(batch["x"], batch["edge_index"], batch["edge_type"], batch["batch"])
        scale = net.logit_scale.exp()
        loss = clip_loss(D.gather_global_batch(image.float()), D.gather_global_batch(graph.float()), scale)
        return loss, {
            "logit_scale": scale.detach(),
            "image_frozen": torch.tensor(float(frozen)),
            "replaced_images": batch["replaced"],
        }

    def after_optimizer_step(self) -> None:
        self.batches_seen += 1


# ------------------------------------------------------------------------------- spec and init


def igcl_spec(config: IGCLConfig, data_source: str) -> Any:
    """``igcl_vitb32`` (size full) or the tiny test geometry, re-pointed at our weights."""
    from radzoo.zoo.registry import get_spec

    if config.size == "full":
        spec = get_spec("igcl_vitb32")
    else:
        from radzoo.zoo.tiny import tiny_specs

        spec = tiny_specs()["tiny-random-igcl"].with_(name="igcl_tiny", tags=("chest-x-ray", "image-graph", "igcl", "tiny"))
    return spec.with_(
        sources=(),
        hub_repo=None,
        hub_revision=None,
        random_init=False,
        description=(
            f"IGCL ({config.size}) pretrained with radzoo.training on {data_source}: CLIP-style contrast of the "
            "ViT image tower with the DRACON encoder of RadGraph report graphs. Embedding: pooler_output @ proj "
            f"({spec.outputs['global']}-d); embed_graphs() gives report-graph embeddings in the same space."
        ),
    )


def text_config(config: IGCLConfig, vocab_size: int) -> dict[str, Any]:
    from radzoo.zoo.tiny import TINY_NODE_TEXT_CONFIG

    base = dict(BERT_BASE) if config.size == "full" else dict(TINY_NODE_TEXT_CONFIG)
    return {**base, "vocab_size": int(vocab_size)}


def _init_projection(linear: nn.Linear) -> None:
    """The original ``Encoder.proj``: ``in ** -0.5 * randn(in, out)`` (our weight is its transpose)."""
    with torch.no_grad():
        linear.weight.copy_((linear.in_features ** -0.5) * torch.randn(linear.in_features, linear.out_features).t())


def initial_net(config: IGCLConfig, spec: Any) -> IGCLNet:
    """The spec's IGCLNet, seeded; projections as the original; image tower from ``image_init``."""
    from radzoo.zoo.instantiate import instantiate
    from radzoo.zoo.weights import load_strict

    init = config.image_init
    path = Path(init).expanduser()
    clip = init != "random" and path.is_dir() and (path / "config.json").is_file() and _is_hf_clip(path)
    clip_state = _clip_vision_state(path, spec) if clip else None  # checked before the network is built
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        net = instantiate(spec)
        _init_projection(net.image_proj)
        _init_projection(net.graph_proj)
    if init == "random":
        return net  # type: ignore[return-value]
    if clip_state is not None:
        load_strict(net.image_backbone, clip_state, f"CLIP vision weights in {path}")
        return net  # type: ignore[return-value]
    from radzoo.resolve import load

    source = load(init, device="cpu", runtime="torch")
    if source.spec.method != "igcl":
        raise InputError(f"image_init: {init!r} is a {source.spec.method} model; give an IGCL artifact or a CLIP directory")
    try:
        load_strict(net, source.net.state_dict(), f"weights of {init}")
    except WeightsError as exc:
        raise InputError(f"image_init: {init!r} does not fit size={config.size}: {exc}") from exc
    return net  # type: ignore[return-value]


def _is_hf_clip(path: Path) -> bool:
    try:
        cfg = json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return "vision_config" in cfg or cfg.get("model_type") in ("clip", "clip_vision_model")


def _clip_vision_state(path: Path, spec: Any) -> dict[str, torch.Tensor]:
    """The vision tower of a Hugging Face CLIP directory (``CLIPModel`` or ``CLIPVisionModel``), checked
    against the spec's vision config, keys re-rooted at ``embeddings.`` (METHODS 0.4)."""
    from safetensors.torch import load_file

    cfg = json.loads((path / "config.json").read_text())
    vision = cfg.get("vision_config", cfg)
    want = dict(spec.arch_args["vision_config"])
    differ = {k: (vision.get(k), v) for k, v in want.items() if k in vision and vision.get(k) != v}
    if differ:
        raise InputError(f"image_init: the CLIP vision config in {path} differs from {spec.name}: {differ}")
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise ArtifactError(f"image_init: {path} has no model.safetensors (radzoo reads only safetensors)")
    raw = load_file(str(weights), device="cpu")
    nested = any(k.startswith("vision_model.") for k in raw)  # CLIPModel, or CLIPVisionModel of transformers 4
    state = {}
    for key, value in raw.items():
        if key.endswith("embeddings.position_ids"):
            continue
        if nested and key.startswith("vision_model."):
            state[key[len("vision_model."):]] = value
        elif not nested and key.startswith(("embeddings.", "pre_layrnorm.", "encoder.", "post_layernorm.")):
            state[key] = value  # CLIPVisionModel of transformers 5 (no vision_model level, METHODS 0.4)
    if not state:
        raise ArtifactError(f"image_init: {weights} holds no CLIP vision tensors")
    return state


# ------------------------------------------------------------------------------ node features


def prepare_text_tower(run: Run, config: IGCLConfig, pairs: GraphPairs, spec: Any) -> tuple[NodeTextTower, dict[str, Any]]:
    """The run's node-feature BERT (``<run>/graph_text``): kept from an earlier start of the same run,
    else made once from ``text_init`` (rank 0, one process)."""
    text_dir = run.run_dir / NODE_TEXT_DIR
    info_path = run.run_dir / f"{NODE_TEXT_DIR}.json"
    if (text_dir / "model.safetensors").is_file() and info_path.is_file():
        info = json.loads(info_path.read_text())
        if info.get("text_init") != config.text_init:
            raise InputError(f"{text_dir} was made from text_init={info.get('text_init')!r}, not {config.text_init!r}; "
                             "use --overwrite to start over")
        tower = NodeTextTower.from_dir(text_dir, device=run.ctx.device)
    else:
        if run.ctx.distributed:
            raise InputError(_prepare_first(run))
        with tempfile.TemporaryDirectory(dir=run.run_dir) as tmp:
            if config.text_init == "random":
                from radzoo.training.report_vocab import train_wordpiece

                texts = sorted({p.graph.text for p in pairs.pairs})
                vocab = train_wordpiece(texts, config.vocab_size, lowercase=True)  # bert-base-uncased is lower case
                vocab.save_pretrained(str(Path(tmp) / "vocab"))
                tower = NodeTextTower.random(text_config(config, len(vocab)), Path(tmp) / "vocab",
                                             seed=config.seed, device=run.ctx.device)
                info = {"text_init": "random", "source": "random BERT", "vocab": "WordPiece trained on the reports",
                        "trained_on_reports": len(texts), "vocab_size": len(tower.tokenizer)}
            else:
                tower = NodeTextTower.from_dir(config.text_init, device=run.ctx.device)
                info = {"text_init": config.text_init, "source": str(config.text_init), "vocab_size": len(tower.tokenizer)}
            tower.save(Path(tmp) / "tower")
            shutil.rmtree(text_dir, ignore_errors=True)
            os.replace(Path(tmp) / "tower", text_dir)
        info["digest"] = tower.digest()
        info_path.write_text(json.dumps(info, indent=2) + "\n")
    expected = int(spec.arch_args["node_features"]) - len(ENTITY_LABELS)
    if tower.hidden_size != expected:
        raise InputError(f"text_init: the BERT is {tower.hidden_size} wide; IGCL size={config.size} needs {expected} "
                         f"(+ {len(ENTITY_LABELS)} label bits = {spec.arch_args['node_features']} node features)")
    return tower, info


def _prepare_first(run: Run) -> str:
    return (f"the node features of {run.run_dir} are not prepared yet: run the same `radzoo train igcl ...` command "
            "once in a single process with --features-only, then start torchrun")


def prepare_features(run: Run, tower: NodeTextTower, pairs: GraphPairs, cache_dir: Path) -> NodeFeatureCache:
    """Node text features of every report, computed once (rank 0, one process); reports the tower
    cannot take (too long) are dropped from ``pairs`` and counted."""
    cache = NodeFeatureCache.for_tower(cache_dir, tower)
    graphs = {p.graph.report_id: p.graph for p in pairs.pairs}
    missing = [g for g in graphs.values() if not cache.is_current(g)]
    if missing:
        if run.ctx.distributed:
            raise InputError(_prepare_first(run))
        counts = cache.build(missing, tower)
        log.info("node features: %d computed, %d failed (%d already cached)", counts["computed"], counts["failed"],
                 len(graphs) - len(missing))
    kept = [p for p in pairs.pairs if cache.is_current(p.graph)]
    if len(kept) < len(pairs.pairs):
        pairs.skipped["report too long for the node-feature BERT"] += len(pairs.pairs) - len(kept)
        pairs.pairs = kept
    return cache


# ------------------------------------------------------------------------------------- train


def train_igcl(
    config: IGCLConfig,
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    resume: bool = False,
    overwrite: bool = False,
    radgraph: str | os.PathLike[str] | None = None,
    feature_cache: str | os.PathLike[str] | None = None,
    features_only: bool = False,
) -> Path:
    """Pretrain IGCL on the image / RadGraph pairs of ``data`` + ``radgraph``; save the artifact to ``out``.

    Node features go to ``feature_cache`` (default ``<out>.train/node_features``). In one process
    everything is prepared on the way; under ``torchrun`` run once with ``features_only`` first.
    """
    if radgraph is None:
        raise InputError("IGCL needs --radgraph FILE: the RadGraph JSON the manifest's report_id column points into")
    run = start_run(config, out, resume=resume, overwrite=overwrite)
    try:
        return _train(run, config, data, Path(radgraph), feature_cache, features_only, overwrite)
    finally:
        D.teardown(run.ctx)


def _train(run: Run, config: IGCLConfig, data: Any, radgraph: Path, feature_cache: Any, features_only: bool,
           overwrite: bool) -> Path:
    from radzoo.io.transforms import preprocess_image

    pairs = read_graph_pairs(data, radgraph)
    spec = igcl_spec(config, str(data))
    if run.is_main:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        if overwrite and not run.resume:  # start over: the run's node-feature BERT and its default cache too
            shutil.rmtree(run.run_dir / NODE_TEXT_DIR, ignore_errors=True)
            (run.run_dir / f"{NODE_TEXT_DIR}.json").unlink(missing_ok=True)
            if not feature_cache:
                shutil.rmtree(run.run_dir / "node_features", ignore_errors=True)
    D.barrier()
    tower, text_info = prepare_text_tower(run, config, pairs, spec)
    cache_dir = Path(feature_cache) if feature_cache else run.run_dir / "node_features"
    cache = prepare_features(run, tower, pairs, cache_dir)
    if features_only:
        return cache_dir
    n = len(pairs.pairs)
    if config.val_size and config.val_size >= n:
        raise InputError(f"val_size {config.val_size} leaves no training pairs out of {n}; lower val_size")
    split = torch.utils.data.random_split(range(n), [n - config.val_size, config.val_size],
                                          generator=torch.Generator().manual_seed(config.split_seed))
    train_idx, val_idx = list(split[0].indices), list(split[1].indices)

    def transform(path: Path) -> torch.Tensor:
        return preprocess_image(path, spec.preprocess)

    def graph_of(graph: Any) -> Any:
        return graph_data(graph, cache.get(graph.report_id))

    train_set = GraphPairDataset([pairs.pairs[i] for i in train_idx], transform, graph_of)
    val_set = GraphPairDataset([pairs.pairs[i] for i in val_idx], transform, graph_of) if val_idx else None
    seed_everything(config.seed)
    net = initial_net(config, spec)
    method = IGCLMethod(net, config.image_freeze_batches)

    def phases(steps_per_epoch: int) -> list[Phase]:
        def adamw(params: list[nn.Parameter]) -> torch.optim.Optimizer:
            return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)

        return [Phase("igcl", config.epochs, adamw, lambda step, epoch: config.lr)]

    summary = {**pairs.summary(), "train_pairs": len(train_idx), "val_pairs": len(val_idx),
               "node_text": text_info, "feature_cache": str(cache_dir)}
    if run.is_main:
        write_resolved(run, {"train_pairs": len(train_idx), "val_pairs": len(val_idx)})
    trainer = Trainer(method, train_set, phases, settings_for(config), run.ctx, run.precision, run.run_dir,
                      collate=collate_pairs, val_set=val_set, meta={"config": config_dict(config)})
    result = trainer.fit(resume=run.resume)

    from radzoo.zoo.instantiate import instantiate
    from radzoo.zoo.weights import load_strict

    exported = instantiate(spec)
    load_strict(exported, {k: v.detach().cpu() for k, v in method.net.state_dict().items()}, "trained IGCL network")
    deviations = [
        "Trained by radzoo.training, not the original code. The logit scale is not clamped (as the original). Under "
        "several processes each process pads its graphs to its own largest graph (the original: one GPU).",
    ]
    if config.image_init == "random":
        deviations.append("The image tower started from random weights, not OpenAI CLIP ViT-B/32 (the original's).")
    if config.text_init == "random":
        deviations.append("Node features come from a random BERT with a WordPiece vocabulary trained on the training "
                          "reports, not from bert-base-uncased.")
    if config.size != "full":
        deviations.append(f"size={config.size}: a shrunken architecture for smoke runs, not ViT-B/32 + DRACON 512.")
    prov = provenance(run, result, summary, final_logit_scale=float(method.net.logit_scale.detach().exp()))
    return save_artifact(run, exported, spec, provenance=prov,
                         sections={"deviations": deviations, "graph_text": text_info},
                         extra_files={NODE_TEXT_DIR: run.run_dir / NODE_TEXT_DIR})
