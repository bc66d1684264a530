"""LoVT pretraining (METHODS 2.1-2.4; philip-mueller/lovt) that saves a ``lovt_resnet50`` artifact.

The method is a composition: the zoo's own :class:`~radzoo.nets.lovt.LoVTNet` (ResNet-50 + mean-
query attention pools + BatchNorm projections + BERT with sentence max-pooling + the symmetric
cross-attention), the global cross-modal NT-Xent
(:func:`~radzoo.training.losses.nt_xent_cross_modal`, on embeddings gathered from every process)
and four local intra-sample losses (:func:`~radzoo.training.losses.local_intra_sample_contrastive`):
image regions vs their report-attended vectors with distance-weighted positives, sentences vs
their image-attended vectors, each element weighted by the attention-pool weights (stop-gradient).
Total = 0.75 a2b + 0.25 b2a + 0.375 x 4 local terms. AdamW over the trainable parameters (BERT's
embeddings and layers 0-5 are frozen), ``CosineAnnealingLR`` with ``T_max`` = one epoch's optimiser
steps (periodic, METHODS 2.6), gradient accumulation 16, early stopping on the validation loss;
the best validation weights are exported.

Deviations (in the model card): sentences are split by rules rather than stanza; augmentations act
on float pixels rather than 8-bit PIL images; the BERT pooler (unused by LoVT, so never updated by
the original either) is frozen so DDP needs no unused-parameter search; under several processes
the global negatives come from the whole global batch.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from radzoo.nets.lovt import LoVTNet
from radzoo.training import distributed as D
from radzoo.training.augment import LoVTAugment, eval_view
from radzoo.training.bert_init import load_text_weights
from radzoo.training.hparams import LoVTConfig, config_dict
from radzoo.training.imagetext import (
    TRUNKS,
    image_spec,
    image_trunk_state,
    load_paired_data,
    prepare_text,
    requirements,
    save_imagetext_artifact,
)
from radzoo.training.loop import Phase, Trainer, seed_everything
from radzoo.training.losses import (
    identity_positive_weights,
    local_intra_sample_contrastive,
    nt_xent_cross_modal,
    spatial_positive_weights,
)
from radzoo.training.pairs import PairedDataset
from radzoo.training.report_tokens import LoVTCollator, random_swaps
from radzoo.training.report_vocab import describe
from radzoo.training.runner import (
    Run,
    settings_for,
    start_run,
    write_resolved,
)
from radzoo.training.schedules import cosine_annealing
from radzoo.zoo.spec import ModelSpec

log = logging.getLogger(__name__)


class LoVTPretraining(nn.Module):
    """LoVT's objective around a :class:`LoVTNet`; ``forward(batch) -> (loss, metrics)``."""

    def __init__(self, net: LoVTNet, config: LoVTConfig, grid: int) -> None:
        super().__init__()
        self.net = net
        self.config = config
        self.register_buffer("image_positives", spatial_positive_weights(grid, grid, config.local_threshold, True, config.local_smooth_lambda), persistent=False)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self.config
        image = self.net.encode_image(batch["image"])
        text = self.net.encode_text(batch["input_ids"], batch["attention_mask"], batch["sentence_index"])
        total, parts = nt_xent_cross_modal(
            D.gather_global_batch(image["global"].float()),
            D.gather_global_batch(text["global"].float()),
            c.temperature,
            c.global_a2b,
            c.global_b2a,
        )
        attended = self.net.cross_attention(image["local"], text["local"], text["mask"])
        w_a = image["local_weights"].detach() if c.local_weights else None
        w_b = text["local_weights"].detach() if c.local_weights else None
        a_l2att, a_att2l = local_intra_sample_contrastive(
            image["local"].float(), attended["b2a"].float(), self.image_positives, c.local_temperature, None, w_a
        )
        n_sent = text["local"].shape[1]
        b_l2att, b_att2l = local_intra_sample_contrastive(
            text["local"].float(),
            attended["a2b"].float(),
            identity_positive_weights(n_sent).to(text["local"].device),
            c.local_temperature,
            text["mask"],
            w_b,
        )
        local = a_l2att + a_att2l + b_l2att + b_att2l
        total = total + c.local_weight * local
        metrics = {
            "global_a2b": parts["a2b"],
            "global_b2a": parts["b2a"],
            "local_a_l2att": a_l2att.detach(),
            "local_a_att2l": a_att2l.detach(),
            "local_b_l2att": b_l2att.detach(),
            "local_b_att2l": b_att2l.detach(),
            "replaced_images": batch.get("replaced", torch.zeros(())).float(),
        }
        return total, metrics


# ------------------------------------------------------------------------------------- building


def build_net(config: LoVTConfig, text_config: dict[str, Any]) -> LoVTNet:
    """The network (seeded), with LoVT's initialisations where they differ from torch's defaults."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        net = LoVTNet(
            trunk=TRUNKS[config.image_preset],
            proj_dim=config.proj_dim,
            proj_hidden=config.proj_hidden,
            pool_heads=config.pool_heads,
            text_config=text_config,
        )
        # lovt fc.py: kaiming_normal(fan_out) on both projection layers (ReLU / linear gain), zero bias;
        # attention.py: kaiming_normal(fan_out, linear) on the cross-attention projections, zero bias.
        for proj in (net.image_proj_global, net.image_proj_local, net.text_proj_global, net.text_proj_local):
            nn.init.kaiming_normal_(proj.projection_before.weight, mode="fan_out", nonlinearity="relu")
            nn.init.kaiming_normal_(proj.projection_after.weight, mode="fan_out", nonlinearity="linear")
            nn.init.zeros_(proj.projection_before.bias)
            nn.init.zeros_(proj.projection_after.bias)
        for lin in (net.cross_attention.key_projection, net.cross_attention.value_projection, net.cross_attention.output_projection):
            nn.init.kaiming_normal_(lin.weight, mode="fan_out", nonlinearity="linear")
            nn.init.zeros_(lin.bias)
    return net


def freeze_text_layers(net: LoVTNet, config: LoVTConfig) -> int:
    """LoVT's frozen BERT parts (embeddings, layers 0..N-1) plus the unused pooler; returns the count."""
    bert = net.text_backbone
    frozen = list(bert.pooler.parameters()) if bert.pooler is not None else []
    if config.freeze_embeddings:
        frozen += list(bert.embeddings.parameters())
    for layer in bert.encoder.layer[: config.freeze_layers]:
        frozen += list(layer.parameters())
    for p in frozen:
        p.requires_grad_(False)
    return sum(p.numel() for p in frozen)


def trained_spec(config: LoVTConfig, text_config: dict[str, Any], tok_info: dict[str, Any], source: str) -> ModelSpec:
    trunk = TRUNKS[config.image_preset]
    width = 2048 if trunk == "resnet50" else 512
    return image_spec(
        "lovt_resnet50",
        config,
        arch_args={
            "trunk": trunk,
            "proj_dim": config.proj_dim,
            "proj_hidden": config.proj_hidden,
            "pool_heads": config.pool_heads,
            "text_config": text_config,
        },
        outputs={"trunk": width, "pooled": width, "global": config.proj_dim},
        description=(
            f"LoVT {trunk} + BERT ({text_config['num_hidden_layers']} layers, hidden {text_config['hidden_size']}) "
            f"pretrained with radzoo.training on {source} ({config.size} px). Image embedding: yg_a "
            f"(attention-pooled, {width}-d); joint image-report space: zg_a / zg_b ({config.proj_dim}-d)."
        ),
        text={"tokenizer": describe(tok_info), "max_length": config.max_length, "lowercase": config.lowercase},
    )


# ---------------------------------------------------------------------------------------- train


def train_lovt(
    config: LoVTConfig,
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    resume: bool = False,
    overwrite: bool = False,
    val_data: str | os.PathLike[str] | None = None,
) -> Path:
    """Pretrain LoVT on paired images and reports and save the network to ``out`` (a zoo artifact).

    ``data`` is a manifest or a MIMIC-CXR-JPG folder (:mod:`radzoo.training.pairs`). Validation
    pairs (``val_data``, or the source's validate split) give the per-epoch validation loss,
    early stopping and the exported (best) weights; without them all epochs run and the last
    weights are exported. Under ``torchrun`` every process calls this; rank 0 alone writes.
    """
    run = start_run(config, out, resume=resume, overwrite=overwrite)
    try:
        return _train(run, config, data, val_data)
    finally:
        D.teardown(run.ctx)


def _train(run: Run, config: LoVTConfig, data: str | os.PathLike[str], val_data: str | os.PathLike[str] | None) -> Path:
    seed_everything(config.seed)
    train, val = load_paired_data(data, val_data, requirements(config, min_tokens=config.min_tokens))
    text = prepare_text(config, run.run_dir, [" ".join(s.report.sentences) for s in train.studies], resume=run.resume)
    net = build_net(config, text.text_config)
    notes = load_text_weights(net.text_backbone, text.init)
    state, image_from = image_trunk_state(config.init, TRUNKS[config.image_preset], 3)
    if state is not None:
        from radzoo.zoo.weights import load_strict

        load_strict(net.image_backbone, state, image_from)
    frozen = freeze_text_layers(net, config)
    spec = trained_spec(config, text.text_config, text.info, train.source)
    grid = config.size // 32
    method = LoVTPretraining(net, config, grid)

    augment = LoVTAugment.from_preprocess(spec.preprocess)
    order = lambda report: list(report.sentences)  # noqa: E731 - findings then impression (lovt)
    train_set = PairedDataset(train.studies, augment, order, random_swaps(config.swap_prob), seed=config.seed)
    val_set = PairedDataset(val.studies, eval_view(spec.preprocess), order, None, seed=config.seed) if val else None
    collate = LoVTCollator(text.tokenizer, config.max_length)

    def phases(steps_per_epoch: int) -> list[Phase]:
        def adamw(params: list[nn.Parameter]) -> torch.optim.Optimizer:
            return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)

        return [Phase("lovt", config.epochs, adamw, cosine_annealing(config.lr, steps_per_epoch))]

    if run.is_main:
        write_resolved(run, {"data": train.summary(), "validation": val.summary() if val else None, "tokenizer": text.info})
    trainer = Trainer(
        method, train_set, phases, settings_for(config), run.ctx, run.precision, run.run_dir,
        collate=collate, val_set=val_set, meta={"config": config_dict(config)},
    )
    result = trainer.fit(resume=run.resume)
    exported = "last"
    if result.best_weights is not None:
        best = load_file(str(result.best_weights))
        method.load_state_dict(best, strict=True)
        exported = f"best validation loss (epoch {result.state.best_epoch}, {result.state.best_val:.4f})"

    from radzoo.zoo.instantiate import instantiate
    from radzoo.zoo.weights import load_strict

    export = instantiate(spec)
    load_strict(export, {k: v.detach().cpu() for k, v in method.net.state_dict().items()}, "trained LoVT network")
    deviations = [
        "Trained by radzoo.training, not the original LoVT code (PyTorch Lightning 1.4).",
        "Report sentences are split by rules (radzoo.training.reports), not stanza; sections follow the "
        "MIMIC-CXR section parser's header rule.",
        "Augmentations act on the reader's float pixels, not 8-bit PIL images.",
        "The BERT pooler (unused by LoVT, so never updated by the original either) is frozen.",
        f"Exported weights: {exported}.",
    ]
    if run.ctx.world_size > 1:
        deviations.append(
            f"Trained with {run.ctx.world_size} processes: global negatives come from the whole global batch "
            f"of {config.batch_size} (the original ran on one GPU, also with all {config.batch_size})."
        )
    return save_imagetext_artifact(
        run, result, export, spec, text=text, train=train, val=val, image_from=image_from,
        deviations=deviations, notes=notes, frozen_text_parameters=frozen, exported=exported,
    )
