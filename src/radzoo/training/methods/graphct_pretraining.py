"""graph-CT "Context Matters" pretraining (METHODS 5.4) that saves a ``graphct_copdgene``-layout artifact.

batmanlab/Context_Aware_SSL: train.py alternates two MoCo v2 models, each with its own SGD
optimiser (lr 0.03, momentum 0.9, wd 1e-4, cosine):

* **patch level** (model/builder_patch.py): the query encoder is the 3D patch CNN whose 128-d
  feature is concatenated with the landmark's atlas location (normalised by the column max) and
  fed to the MLP head; negatives come only from the same landmark (:class:`LandmarkQueue`,
  ``queue[:, :, landmark]``). A patch epoch walks the landmarks in order, ``steps_per_landmark``
  batches each (``(subjects * 581 // batch) // 581``); every batch holds one landmark's patches
  of random subjects.
* **graph level** (model/builder_graph.py), ``sub_epochs`` (10) after every patch epoch: the
  frozen patch query encoder (eval mode, conv feature only) embeds all 581 patches of two
  augmentations of each subject; ``GraphNet`` (GCN -> BatchNorm -> ELU -> mean over nodes -> MLP)
  runs on both with the subject's overlap graph (> 0.13); one global queue.

Both phases run on the shared loop (:class:`radzoo.training.loop.Trainer`, one per phase, each
with its own run directory, optimiser state, metrics and checkpoints under
``<out>.train/patch`` and ``<out>.train/graph``): under ``torchrun`` the key batches are shuffled
across processes for BatchNorm (shuffle-BN) and the keys of all processes are gathered into the
queues, as in the original's DDP code; AMP, resume (any world size) and JSONL metrics come with it.
For the patch phase one *loop epoch* is one landmark block, so the loop's resumable sampler draws
the subjects while the landmark walk stays in the original order.

Deviations, by design (also in the model card): the momentum update follows each optimiser step
(the original's comes first in the next forward: the same sequence), queues wrap around instead
of asserting ``K % batch == 0``, the per-landmark walk reads the landmark's patches as intended
(the original set the landmark on the main-process dataset, which its DataLoader workers never
saw), and the patches come from radzoo's CT pipeline (SimpleITK registration, see
``radzoo.ct.register``) instead of ANTs.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from radzoo.errors import ArtifactError, InputError
from radzoo.nets.graphct import GraphNet, PatchEncoder3D
from radzoo.training import distributed as D
from radzoo.training.ct_augment import graphct_augmentation, two_views
from radzoo.training.ct_patch_cache import PatchCache, build_patch_cache, cache_key
from radzoo.training.graph_hparams import GraphCTConfig
from radzoo.training.hparams import config_dict
from radzoo.training.landmark_queue import LandmarkQueue
from radzoo.training.loop import FitResult, Phase, Trainer, seed_everything
from radzoo.training.losses import moco_info_nce
from radzoo.training.momentum import NegativeQueue, make_key_encoder, momentum_update
from radzoo.training.resume import has_training_state, load_training_state, read_training_meta
from radzoo.training.runner import (
    Run,
    check_resumable,
    provenance,
    save_artifact,
    settings_for,
    start_run,
    write_resolved,
)

__all__ = ["GraphMoCo", "PatchMoCo", "train_graphct"]

log = logging.getLogger(__name__)

BASE_SPEC = "graphct_copdgene"
PATCH_DIR, GRAPH_DIR = "patch", "graph"


# ------------------------------------------------------------------------------------ modules


class PatchQuery(nn.Module):
    """The patch phase's ``encoder_q``: conv trunk (128) ++ location (3) -> MLP head (``--mlp``)."""

    def __init__(self, dim: int = 128) -> None:
        super().__init__()
        self.patch_encoder = PatchEncoder3D(dim)
        self.fc = nn.Sequential(nn.Linear(dim + 3, dim + 3), nn.ReLU(), nn.Linear(dim + 3, dim))

    def forward(self, patches: torch.Tensor, location: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cat([self.patch_encoder(patches), location.to(patches.dtype)], dim=1))


class PatchMoCo(nn.Module):
    """Location-conditioned MoCo v2 with per-landmark negatives (``forward(batch) -> (loss, metrics)``).

    ``batch``: ``q``/``k`` two views ``[B, 1, 32, 32, 32]``, ``loc`` ``[B, 3]`` and ``landmark`` ``[B]``
    (one landmark per batch).
    """

    def __init__(self, dim: int, queue_size: int, landmarks: int, momentum: float, temperature: float,
                 generator: torch.Generator | None = None, query: PatchQuery | None = None) -> None:
        super().__init__()
        self.encoder_q = query if query is not None else PatchQuery(dim)
        self.encoder_k = make_key_encoder(self.encoder_q)
        self.queue = LandmarkQueue(dim, queue_size, landmarks, generator=generator)
        self.momentum = float(momentum)
        self.temperature = float(temperature)
        self.shared_seed = 0

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        landmark = int(batch["landmark"][0])
        if not bool((batch["landmark"] == landmark).all()):
            raise RuntimeError("a patch batch must hold one landmark (the landmark-ordered walk)")
        loc = batch["loc"]
        q = F.normalize(self.encoder_q(batch["q"], loc), dim=1)
        with torch.no_grad():
            shuffled, inverse = D.shuffle_batch(batch["k"], torch.Generator().manual_seed(self.shared_seed))
            k = F.normalize(self.encoder_k(shuffled, loc), dim=1)  # one landmark: every row has the same location
            k = D.unshuffle_batch(k, inverse)
        loss, logits = moco_info_nce(q, k, self.queue.negatives(landmark).to(q.dtype), self.temperature)
        self.queue.enqueue(D.gather_no_grad(k.float()), landmark)
        acc = (logits.detach().argmax(dim=1) == 0).float().mean()
        return loss, {"acc1": acc, "landmark": torch.tensor(float(landmark))}

    def after_optimizer_step(self) -> None:
        momentum_update(self.encoder_k, self.encoder_q, self.momentum)


class GraphQuery(nn.Module):
    """The graph phase's ``encoder_q``: ``GraphNet`` (GCN, BatchNorm, ELU) -> mean over nodes -> MLP."""

    def __init__(self, dim: int = 128) -> None:
        super().__init__()
        self.gnn = GraphNet(dim)
        self.fc = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        from torch_geometric.nn import global_mean_pool

        return self.fc(global_mean_pool(self.gnn(x, edge_index), batch))


def sparse_graphs(features: torch.Tensor, adjacency: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[B, N, D]`` node features + ``[B, N, N]`` adjacency -> PyG ``(x, edge_index, batch)``
    (``dense_to_sparse`` per graph, then batched, as the original's ``_prep_batch``)."""
    b, n, d = features.shape
    g, i, j = torch.nonzero(adjacency, as_tuple=True)
    edge_index = torch.stack([i + g * n, j + g * n])
    batch = torch.arange(b, device=features.device).repeat_interleave(n)
    return features.reshape(b * n, d), edge_index, batch


class GraphMoCo(nn.Module):
    """Graph-level MoCo v2 on the GCN with a global queue; node features from the frozen patch encoder.

    The patch encoder is held outside the module tree (it belongs to :class:`PatchMoCo` and is
    neither trained nor checkpointed here); it runs in eval mode, as ``model_patch.eval()``.
    ``batch``: ``q``/``k`` ``[B, N, 1, 32, 32, 32]`` (two augmentations of each subject's
    patches) and ``adj`` ``[B, N, N]`` (the same for both views).
    """

    def __init__(self, patch_encoder: PatchEncoder3D, dim: int, queue_size: int, momentum: float,
                 temperature: float, generator: torch.Generator | None = None, query: GraphQuery | None = None,
                 chunk: int = 128) -> None:
        super().__init__()
        self._patch_encoder = [patch_encoder]  # a list: not a submodule
        self.encoder_q = query if query is not None else GraphQuery(dim)
        self.encoder_k = make_key_encoder(self.encoder_q)
        self.queue = NegativeQueue(queue_size, dim, generator=generator)
        self.momentum = float(momentum)
        self.temperature = float(temperature)
        self.chunk = int(chunk)
        self.shared_seed = 0

    @torch.no_grad()
    def node_features(self, views: torch.Tensor) -> torch.Tensor:
        """``[B, N, 1, 32, 32, 32]`` -> ``[B, N, D]`` with the frozen patch encoder in eval mode, ``chunk``
        patches at a time (eval-mode BatchNorm: chunks change the memory, not the result)."""
        encoder = self._patch_encoder[0]
        was_training = encoder.training
        encoder.eval()
        try:
            flat = views.reshape(-1, *views.shape[2:])
            out = torch.cat([encoder(flat[s : s + self.chunk]) for s in range(0, flat.shape[0], self.chunk)])
        finally:
            encoder.train(was_training)
        return out.reshape(views.shape[0], views.shape[1], -1).float()

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        adj = batch["adj"]
        fq = self.node_features(batch["q"])
        fk = self.node_features(batch["k"])
        q = F.normalize(self.encoder_q(*sparse_graphs(fq, adj)), dim=1)
        with torch.no_grad():
            fk_s, inverse = D.shuffle_batch(fk, torch.Generator().manual_seed(self.shared_seed))
            adj_s, _ = D.shuffle_batch(adj, torch.Generator().manual_seed(self.shared_seed))  # same permutation
            k = F.normalize(self.encoder_k(*sparse_graphs(fk_s, adj_s)), dim=1)
            k = D.unshuffle_batch(k, inverse)
        loss, logits = moco_info_nce(q, k, self.queue().to(q.dtype), self.temperature)
        self.queue.enqueue(D.gather_no_grad(k.float()))
        acc = (logits.detach().argmax(dim=1) == 0).float().mean()
        return loss, {"acc1": acc}

    def after_optimizer_step(self) -> None:
        momentum_update(self.encoder_k, self.encoder_q, self.momentum)


# --------------------------------------------------------------------------------------- data


class LandmarkBlocks(Dataset):
    """The patch epoch as loop epochs: loop epoch ``b`` trains landmark ``order[b % len(order)]``.

    Item ``i`` is subject ``i % subjects`` (as the original's ``idx % sid_list_len``); the loop's
    sampler shuffles the items, so each batch holds one landmark's patches of random subjects.
    Views are augmented with seeds from ``(seed, block, item)``: identical at any world size,
    with any number of workers, and after a resume.
    """

    def __init__(self, cache: PatchCache, order: list[int], steps_per_landmark: int, global_batch: int,
                 locations: np.ndarray, seed: int) -> None:
        self.cache = cache
        self.order = list(order)
        self.length = steps_per_landmark * global_batch
        self.locations = torch.from_numpy(np.asarray(locations, dtype=np.float32))
        self.seed = seed
        self.block = 0
        self.transform = graphct_augmentation()

    @property
    def landmark(self) -> int:
        return self.order[self.block % len(self.order)]

    def set_epoch(self, block: int) -> None:
        self.block = int(block)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        landmark = self.landmark
        sid = self.cache.subjects[i % len(self.cache.subjects)]
        q, k = two_views(self.transform, self.cache.patch(sid, landmark)[None], D.step_seed(self.seed, 1, self.block, i))
        return {"q": q, "k": k, "loc": self.locations[landmark], "landmark": torch.tensor(landmark)}


class SubjectGraphs(Dataset):
    """The graph phase: one item per subject, two augmentations of its 581-patch stack + adjacency."""

    def __init__(self, cache: PatchCache, seed: int) -> None:
        self.cache = cache
        self.seed = seed
        self.epoch = 0
        self.transform = graphct_augmentation()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.cache.subjects)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        sid = self.cache.subjects[i]
        q, k = two_views(self.transform, self.cache.patches(sid), D.step_seed(self.seed, 2, self.epoch, i))
        return {"q": q[:, None], "k": k[:, None], "adj": torch.from_numpy(self.cache.adjacency(sid))}


# --------------------------------------------------------------------------------------- train


def landmark_order(num_patches: int, stride: int) -> list[int]:
    """Landmarks walked per patch epoch, in the original's order (every ``stride``-th one)."""
    return list(range(0, num_patches, stride))


def steps_per_landmark(config: GraphCTConfig, subjects: int, num_patches: int) -> int:
    """The original's ``(len(loader)) // 581`` with ``len(loader) = subjects * 581 // batch`` (>= 1)."""
    if config.steps_per_landmark:
        return config.steps_per_landmark
    return max(1, (subjects * num_patches // config.batch_size) // num_patches)


def registration_settings(config: GraphCTConfig) -> Any:
    from radzoo.ct.register import RegistrationSettings

    return RegistrationSettings(
        base_spacing=config.registration_base_spacing,
        shrink_factors=config.registration_shrink,
        smoothing_sigmas=tuple(float(s // 2) for s in config.registration_shrink),  # 4,2,1 -> 2,1,0 (ANTs)
        iterations=config.registration_iterations,
    )


def _sgd(config: GraphCTConfig) -> Any:
    def make(params: list[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)

    return make


def _cosine(config: GraphCTConfig, per_epoch: int) -> Any:
    """``adjust_learning_rate``: ``lr * (1 + cos(pi * e / epochs)) / 2`` with ``e = loop epoch // per_epoch``
    (patch: per_epoch = landmark blocks; graph: 1, so the sub-epoch counter runs past ``epochs``)."""

    def lr_at(step: int, epoch: int) -> float:
        if not config.cos:
            return config.lr  # the original's step schedule (120, 160) is never reached in 50 epochs
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * (epoch // per_epoch) / config.epochs))

    return lr_at


def trained_spec(config: GraphCTConfig, subjects: int) -> Any:
    from radzoo.zoo.registry import get_spec

    spec = get_spec(BASE_SPEC)
    return spec.with_(
        sources=(),
        hub_repo=None,
        hub_revision=None,
        random_init=False,
        description=(
            f"graph-CT 'Context Matters' pretrained with radzoo.training on {subjects} CT volume(s): patch-level "
            f"location-conditioned MoCo v2 (per-landmark queues, K={config.moco_k}) and graph-level MoCo v2 "
            f"(K={config.graph_moco_k}), T={config.moco_t}, m={config.moco_m}, {config.epochs} patch epochs x "
            f"{config.sub_epochs} graph sub-epochs. Subject embedding = mean of the 581 node embeddings (128-d)."
        ),
    )


def _initial(config: GraphCTConfig) -> tuple[PatchQuery, GraphQuery]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        patch, graph = PatchQuery(config.moco_dim), GraphQuery(config.moco_dim)
    if config.init == "random":
        return patch, graph
    from radzoo.resolve import load
    from radzoo.zoo.weights import load_strict

    source = load(config.init, device="cpu", runtime="torch")
    source.spec.require("ct", f"init={config.init!r} for graph-CT training")
    state = source.net.state_dict()
    for module, prefix in ((patch.patch_encoder, "patch_encoder."), (graph.gnn, "gnn.")):
        load_strict(module, {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, f"{prefix[:-1]} of {config.init}")
    return patch, graph


def train_graphct(
    config: GraphCTConfig,
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    resume: bool = False,
    overwrite: bool = False,
    cache: str | os.PathLike[str] | None = None,
    cache_only: bool = False,
) -> Path:
    """Pretrain graph-CT on the CT volumes under ``data`` and save a ``graphct_copdgene``-layout artifact.

    ``data``: volume files, DICOM series folders or folders of them, or ``@list.txt``. The patch
    cache (``cache``, default ``<out>.train/patch_cache``) is built first, once, in this process
    (``cache_workers`` processes); under ``torchrun`` it must already be complete (run once with
    ``cache_only`` first). Returns the artifact directory (or the cache directory with ``cache_only``).
    """
    run = start_run(config, out, resume=resume, overwrite=overwrite)
    try:
        return _train(run, config, data, Path(cache) if cache else run.run_dir / "patch_cache", cache_only, overwrite)
    finally:
        D.teardown(run.ctx)


def _prepare_cache(run: Run, config: GraphCTConfig, data: Any, cache_dir: Path) -> PatchCache:
    from radzoo.resolve import build

    model = build(BASE_SPEC, device="cpu")  # the atlas and spec; its random weights are never used
    settings = registration_settings(config)
    seg = config.segmenter
    key = cache_key(model, seg, settings)
    try:
        return PatchCache(cache_dir, key)
    except ArtifactError as exc:
        if "incomplete" not in str(exc) and (cache_dir / "manifest.json").is_file():
            raise
    if run.ctx.distributed:
        raise InputError(
            f"the patch cache {cache_dir} is not built yet: build it in one process first "
            "(`radzoo train graphct --data ... --out ... --cache-only`), then start torchrun"
        )
    report = build_patch_cache(data, cache_dir, model, segmenter=seg, registration=settings,
                               min_lung_ml=config.min_lung_ml, workers=config.cache_workers)
    log.info(
        "patch cache %s: %d built, %d kept from before, %d left out%s", cache_dir, report.built, report.cached,
        len(report.excluded), "".join(f"\n  {k}: {v}" for k, v in report.excluded.items()),
    )
    return PatchCache(cache_dir, key)


def _phase_state(directory: Path) -> dict[str, Any] | None:
    return read_training_meta(directory) if has_training_state(directory) else None


def _train(run: Run, config: GraphCTConfig, data: Any, cache_dir: Path, cache_only: bool, overwrite: bool) -> Path:
    from radzoo.ct.landmarks import load_atlas
    from radzoo.zoo.packaged import spec_assets

    cache = _prepare_cache(run, config, data, cache_dir)
    if cache_only:
        return cache_dir
    patch_dir, graph_dir = run.run_dir / PATCH_DIR, run.run_dir / GRAPH_DIR
    if run.is_main and overwrite and not run.resume:
        for d in (patch_dir, graph_dir):
            shutil.rmtree(d, ignore_errors=True)
    D.barrier()
    for d in (patch_dir, graph_dir):
        state = _phase_state(d)
        if state is not None and not run.resume:
            raise ArtifactError(f"{d} holds a previous run's checkpoint; pass --resume to continue it or --overwrite")
        if state is not None:
            check_resumable(state.get("config", {}), config, d)
    spec = trained_spec(config, len(cache))
    num_patches = cache.num_patches
    if int(spec.arch_args["num_patches"]) != num_patches:
        raise ArtifactError(f"the patch cache has {num_patches} landmarks; {BASE_SPEC} expects {spec.arch_args['num_patches']}")
    if len(cache) < config.graph_batch_size:
        raise InputError(
            f"only {len(cache)} usable subject(s) in the patch cache for graph_batch_size {config.graph_batch_size}; "
            "add volumes or lower graph_batch_size"
        )
    seed_everything(config.seed)
    patch_q, graph_q = _initial(config)
    gen = torch.Generator().manual_seed(config.seed)
    patch_method = PatchMoCo(config.moco_dim, config.moco_k, num_patches, config.moco_m, config.moco_t, gen, patch_q)
    graph_method = GraphMoCo(patch_method.encoder_q.patch_encoder, config.moco_dim, config.graph_moco_k,
                             config.moco_m, config.moco_t, gen, graph_q)
    # a resumed run whose patch phase is ahead of its graph phase: the graph phase (node features)
    # and the export need the trained patch encoder, so its weights come back before anything runs
    for d, method in ((patch_dir, patch_method), (graph_dir, graph_method)):
        if has_training_state(d):
            load_training_state(d, method, None)
    patch_method.to(run.ctx.device)
    atlas = load_atlas(spec_assets(spec))
    order = landmark_order(num_patches, config.landmark_stride)
    spl = steps_per_landmark(config, len(cache), num_patches)
    blocks = len(order)
    patch_set = LandmarkBlocks(cache, order, spl, config.batch_size, atlas.locations, config.seed)
    graph_set = SubjectGraphs(cache, config.seed)
    summary = {
        "source": str(data),
        "cache": str(cache_dir),
        "subjects": len(cache),
        "excluded": len(cache.manifest["excluded"]),
        "excluded_reasons": {k: v["reason"] for k, v in list(cache.manifest["excluded"].items())[:20]},
        "cache_key": cache.manifest["key"],
        "landmarks_per_epoch": blocks,
        "steps_per_landmark": spl,
    }
    if run.is_main:
        write_resolved(run, {"patch_steps_per_epoch": blocks * spl, "graph_global_batch": config.graph_batch_size,
                             "landmarks_per_epoch": blocks, "steps_per_landmark": spl})
    meta = {"config": config_dict(config)}
    patch_result: FitResult | None = None
    graph_result: FitResult | None = None
    for epoch in range(config.epochs):
        p_state = (_phase_state(patch_dir) or {}).get("loop", {})
        p_target = (epoch + 1) * blocks
        stopped = False
        if p_state.get("epoch", 0) < p_target or p_state.get("sample_in_epoch"):
            settings = settings_for(config, epochs=p_target, checkpoint_every=blocks)
            phases = lambda _steps, n=p_target: [Phase("patch", n, _sgd(config), _cosine(config, blocks))]  # noqa: E731
            trainer = Trainer(patch_method, patch_set, phases, settings, run.ctx, run.precision, patch_dir, meta=meta)
            patch_result = trainer.fit(resume=has_training_state(patch_dir))
            stopped = patch_result.stopped_by_max_steps
        g_state = (_phase_state(graph_dir) or {}).get("loop", {})
        g_target = (epoch + 1) * config.sub_epochs
        if g_state.get("epoch", 0) < g_target or g_state.get("sample_in_epoch"):
            settings = settings_for(config, epochs=g_target, batch_size=config.graph_batch_size,
                                    checkpoint_every=config.sub_epochs, max_steps=0, checkpoint_every_steps=0)
            phases = lambda _steps, n=g_target: [Phase("graph", n, _sgd(config), _cosine(config, 1))]  # noqa: E731
            trainer = Trainer(graph_method, graph_set, phases, settings, run.ctx, run.precision, graph_dir, meta=meta)
            graph_result = trainer.fit(resume=has_training_state(graph_dir))
        if stopped:
            break
    ran = patch_result or graph_result
    if ran is None:
        raise InputError(f"nothing to train: the checkpoints in {run.run_dir} already reached epoch {config.epochs}; raise epochs")

    net = export_network(patch_method.encoder_q, graph_method.encoder_q, spec)
    p_loop, g_loop = read_training_meta(patch_dir)["loop"], read_training_meta(graph_dir)["loop"]
    prov = provenance(run, ran, summary)
    prov.update({
        "steps": p_loop["step"],
        "epochs": p_loop["history"][-1]["epoch"] // blocks + 1 if p_loop["history"] else 0,
        "final_loss": p_loop["history"][-1]["last_loss"] if p_loop["history"] else float("nan"),
        "history": _per_epoch(p_loop["history"], blocks),
        "graph": {"steps": g_loop["step"], "history": g_loop["history"],
                  "final_loss": g_loop["history"][-1]["last_loss"] if g_loop["history"] else float("nan")},
    })
    deviations = [
        "Trained by radzoo.training, not the original code: momentum update after each optimiser step, queues "
        "wrap around, each patch batch reads its landmark's patches (the original's DataLoader workers never saw "
        "the landmark it set), patches from radzoo.ct (SimpleITK affine registration instead of ANTs).",
    ]
    if config.landmark_stride != 1:
        deviations.append(f"Smoke-run setting: every {config.landmark_stride}-th landmark walked per patch epoch, not all 581.")
    if config.steps_per_landmark:
        deviations.append(f"{config.steps_per_landmark} patch steps per landmark instead of the original's rule.")
    return save_artifact(run, net, spec, provenance=prov, sections={"deviations": deviations},
                         assets=spec_assets(spec),
                         extra_files={"training/patch_metrics.jsonl": patch_dir / "metrics.jsonl",
                                      "training/graph_metrics.jsonl": graph_dir / "metrics.jsonl"})


def _per_epoch(history: list[dict[str, Any]], blocks: int) -> list[dict[str, Any]]:
    """Loop epochs are landmark blocks: summarise them per patch epoch for the provenance."""
    out: dict[int, dict[str, Any]] = {}
    for h in history:
        e = h["epoch"] // blocks
        row = out.setdefault(e, {"epoch": e, "steps": 0, "loss_sum": 0.0, "acc_sum": 0.0, "seconds": 0.0})
        row["steps"] += h["steps"]
        row["loss_sum"] += h["mean_loss"] * h["steps"]
        row["acc_sum"] += h.get("acc1", 0.0) * h["steps"]
        row["seconds"] += h["seconds"]
        row["last_loss"] = h["last_loss"]
        row["lr"] = h["lr"]
    result = []
    for row in out.values():
        n = max(row.pop("steps"), 1)
        result.append({**row, "steps": n, "mean_loss": row.pop("loss_sum") / n, "acc1": row.pop("acc_sum") / n})
    return result


def export_network(patch: PatchQuery, graph: GraphQuery, spec: Any) -> nn.Module:
    """The ``GraphCTNet`` ``radzoo.load`` builds from ``spec``, holding the trained query encoders
    (``patch_encoder.*`` from the patch phase, ``gnn.*`` from the graph phase; heads dropped)."""
    from radzoo.zoo.instantiate import instantiate
    from radzoo.zoo.weights import load_strict

    net = instantiate(spec)
    state = {f"patch_encoder.{k}": v for k, v in patch.patch_encoder.state_dict().items()}
    state.update({f"gnn.{k}": v for k, v in graph.gnn.state_dict().items()})
    load_strict(net, {k: v.detach().cpu() for k, v in state.items()}, "trained graph-CT query encoders")
    return net
