"""PRIOR pretraining (METHODS 3.1-3.4; QtacierP/PRIOR ``prior.py``) that saves a
``prior_resnet50_imagetext`` artifact.

The method is a composition around the zoo's :class:`~radzoo.nets.prior.PriorNet` plus the
pretraining-only modules of :mod:`radzoo.training.prior_modules`, in three stages (phases of the
shared loop, each with a NEW AdamW optimiser and its own linear-warm-up cosine schedule, stepped
per optimiser step; resuming mid-stage restores the stage, its optimiser and its schedule):

* **stage 1**: global CLIP loss between the attention-pooled image embedding and the global text
  embedding (the sentence attention pool over sentence vectors = the mean of each sentence's
  projected BERT tokens), gathered over all processes, learnable ``logit_scale`` (init 100); local
  losses per report: SimSiam between the image tokens and their text-attended versions (sigmoid
  cross-attention) and InfoNCE among the report's sentences and their image-attended versions;
* **stage 2**: sentences replaced by Gumbel-softmax mixtures of the 512 sentence prototypes
  (tau 0.9), plus the prototype bank's L1 loss x 10;
* **stage 3**: at most 16 sentences per report; the global loss x 10; image reconstruction (L1)
  from the channel-dropped image tokens and the text-attended tokens; report reconstruction: 16
  prototype queries through the 8-layer BERT decoder attending to the image tokens, Hungarian
  matched (``scipy.optimize.linear_sum_assignment``, L1 cost) to the report's prototypes (SPG L1
  x 10, padded slots included), a KL term between the generated and real prototype assignments,
  and GPA: the global loss between the generated report's global embedding and the real one.

Faithful quirks kept: the view-without-permute local image tokens; sentences concatenated
without a separator; the Hungarian re-ordering ``generated[cols]``; the causal mask transformers
applies to the query decoder.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from radzoo.nets.prior import PriorNet
from radzoo.training import distributed as D
from radzoo.training.augment import PriorAugment, eval_view
from radzoo.training.bert_init import load_text_weights
from radzoo.training.hparams import PriorConfig, config_dict
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
    clip_loss,
    gumbel_prototypes,
    image_recon_l1,
    intra_report_info_nce,
    prototype_kl,
    simsiam_loss,
    spg_loss,
)
from radzoo.training.pairs import PairedDataset
from radzoo.training.prior_modules import ImageDecoder, sentence_decoder, simsiam_predictor
from radzoo.training.report_tokens import PriorCollator, shuffle_sentences
from radzoo.training.report_vocab import describe
from radzoo.training.runner import (
    Run,
    settings_for,
    start_run,
    write_resolved,
)
from radzoo.training.schedules import linear_warmup_cosine
from radzoo.zoo.spec import ModelSpec

log = logging.getLogger(__name__)

STAGES = ("stage1", "stage2", "stage3")


def gather_sentences(tokens: torch.Tensor, sentence_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """PRIOR's ``SentenceGather('avg')``: the mean of the token vectors of each 1-based sentence index.

    Returns ``[B, S, E]`` sentence vectors (present sentences first, in index order; a sentence with
    no token left, e.g. cut by ``max_length``, is skipped as in the original) and their ``[B, S]`` mask.
    """
    b = tokens.shape[0]
    n = int(sentence_index.max().item()) if sentence_index.numel() else 0
    n = max(n, 1)
    member = (sentence_index[:, None, :] == torch.arange(1, n + 1, device=tokens.device)[None, :, None]).to(tokens.dtype)
    counts = member.sum(-1)  # [B, n]
    means = (member @ tokens) / counts.clamp_min(1.0)[..., None]
    present = counts > 0
    order = torch.argsort((~present).to(torch.int8), dim=1, stable=True)  # present sentences first
    means = torch.gather(means, 1, order[..., None].expand_as(means))
    mask = torch.gather(present, 1, order)
    keep = int(mask.sum(1).max().item()) if b else 0
    return means[:, : max(keep, 1)] * mask[:, : max(keep, 1), None], mask[:, : max(keep, 1)]


def _scatter(flat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Rows of ``flat`` (the masked entries in order) back into a zero-padded ``[B, S, E]``."""
    out = flat.new_zeros(*mask.shape, flat.shape[-1])
    out[mask] = flat
    return out


class PriorPretraining(nn.Module):
    """PRIOR's three-stage objective around a :class:`PriorNet`; ``forward(batch) -> (loss, metrics)``."""

    find_unused_parameters = True  # stages 1-2 leave the decoders (and stage 1 the prototype bank) unused

    def __init__(self, net: PriorNet, config: PriorConfig, text_config: dict[str, Any], embed_dim: int, grid: int) -> None:
        super().__init__()
        self.net = net
        self.config = config
        self.grid = grid
        self.embed_dim = embed_dim
        self.predictor = simsiam_predictor(embed_dim)
        self.sentence_decoder = sentence_decoder(text_config, config.decoder_layers, embed_dim)
        self.prototype_queries = nn.Parameter(torch.randn(1, config.num_queries, embed_dim))
        self.image_decoder = ImageDecoder(embed_dim, grid, config.image_dropout)
        self.stage = STAGES[0]

    def set_phase(self, name: str) -> None:
        if name not in STAGES:
            raise ValueError(f"unknown PRIOR stage {name!r}")
        self.stage = name

    # ---- pieces -----------------------------------------------------------------------------
    def _global(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return clip_loss(D.gather_global_batch(a.float()), D.gather_global_batch(b.float()), self.net.logit_scale.exp())

    def _text_global(self, sentences: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.net.text_pool(sentences, mask)

    def _local(self, image_local: torch.Tensor, sentences: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per report: SimSiam (image side) and intra-report InfoNCE (text side), batch means; also
        the text-attended image tokens ``[B, L, E]`` (stage 3's image decoder input)."""
        scale = self.net.local_logit_scale.exp()
        image_loss = image_local.new_zeros(())
        text_loss = image_local.new_zeros(())
        attended_images = []
        for img, sent, m in zip(image_local, sentences, mask, strict=True):
            s = sent[m]
            t2i, i2t, _, _ = self.net.local_cross_attention(img, s)
            image_loss = image_loss + simsiam_loss(img, t2i, self.predictor)
            text_loss = text_loss + intra_report_info_nce(s, i2t, scale)
            attended_images.append(t2i)
        n = image_local.shape[0]
        return image_loss / n, text_loss / n, torch.stack(attended_images)

    def _prototypes(self, sentences: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """SPB on every real sentence: (prototype mixtures [B, S, E], L1 loss, assignment logits)."""
        bank = self.net.sentence_bank.embed.weight.float()
        out, loss, _, logits = gumbel_prototypes(sentences[mask].float(), bank, self.config.spb_tau)
        return _scatter(out, mask), loss, logits

    # ---- the objective ----------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self.config
        image = batch["image"]
        enc = self.net.encode_image(image)
        image_local, image_global = enc["local"].float(), enc["global"].float()
        hidden = self.net.text_backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        sentences, mask = gather_sentences(self.net.text_proj_local(hidden).float(), batch["sentence_index"])
        stage = self.stage
        metrics: dict[str, torch.Tensor] = {"replaced_images": batch.get("replaced", torch.zeros(())).float()}
        if stage == "stage3":
            sentences, mask = sentences[:, : c.num_queries], mask[:, : c.num_queries]
        if stage == "stage1":
            text_local, proto_loss, gt_logits = sentences, None, None
        else:
            text_local, proto_loss, gt_logits = self._prototypes(sentences, mask)
        text_global = self._text_global(text_local, mask)
        global_loss = self._global(image_global, text_global)
        local_image, local_text, text_to_image = self._local(image_local, text_local, mask)
        weight = c.stage3_global_weight if stage == "stage3" else 1.0
        total = weight * global_loss + local_image + local_text
        metrics.update(global_loss=global_loss.detach(), local_image_loss=local_image.detach(), local_text_loss=local_text.detach())
        if proto_loss is not None:
            total = total + c.lambda_proto * proto_loss
            metrics["proto_loss"] = proto_loss.detach()
        if stage == "stage3":
            b, e, g = image.shape[0], self.embed_dim, self.grid
            reconstruction = self.image_decoder(image_local.view(b, e, g, g), text_to_image.view(b, e, g, g))
            rec_image = image_recon_l1(reconstruction, image.float())
            queries = self.prototype_queries.expand(b, -1, -1)
            generated = self.sentence_decoder(inputs_embeds=queries, encoder_hidden_states=image_local).last_hidden_state.float()
            q = c.num_queries
            padded = text_local.new_zeros(b, q, e)
            padded[:, : text_local.shape[1]] = text_local
            pmask = torch.zeros(b, q, dtype=torch.bool, device=mask.device)
            pmask[:, : mask.shape[1]] = mask
            spg, kept = spg_loss(generated, padded, pmask)
            bank = self.net.sentence_bank.embed.weight.float()
            kept_flat = torch.cat(kept)
            kl = prototype_kl(kept_flat, bank, gt_logits)
            generated_protos, _, _, _ = gumbel_prototypes(kept_flat, bank, c.spb_tau)
            kept_mask = torch.zeros(b, q, dtype=torch.bool, device=mask.device)
            for i, k in enumerate(kept):
                kept_mask[i, : k.shape[0]] = True
            gen_global = self._text_global(_scatter(generated_protos, kept_mask), kept_mask)
            gpa = self._global(gen_global, text_global)
            total = total + rec_image + c.lambda_proto * spg + kl + gpa
            metrics.update(rec_image_loss=rec_image.detach(), spg_loss=spg.detach(), kl_loss=kl.detach(), gpa_loss=gpa.detach())
        metrics["logit_scale"] = self.net.logit_scale.detach().exp()
        return total, metrics


# ------------------------------------------------------------------------------------- building


def build(config: PriorConfig, text_config: dict[str, Any]) -> PriorPretraining:
    """Networks (seeded) with PRIOR's ``inititalize_parameters``: normal(std = fan_in^-0.5) on the
    projections and the predictor's first layer."""
    embed = config.embed_dim or int(text_config["hidden_size"])
    grid = config.size // 32
    trunk = TRUNKS[config.image_preset]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        net = PriorNet(
            trunk=trunk, in_chans=1, image_only=False, embed_dim=embed, num_prototypes=config.spb_k,
            pool_heads=config.pool_heads, spatial=grid, text_config=text_config,
        )
        with torch.no_grad():
            net.logit_scale.fill_(float(torch.log(torch.tensor(1.0 / config.temperature))))
            net.local_logit_scale.fill_(float(torch.log(torch.tensor(1.0 / config.local_temperature))))
        method = PriorPretraining(net, config, text_config, embed, grid)
        width = net.image_proj_global.in_features
        nn.init.normal_(net.image_proj_global.weight, std=width**-0.5)
        nn.init.normal_(net.image_proj_local.weight, std=width**-0.5)
        nn.init.normal_(net.text_proj_local.weight, std=int(text_config["hidden_size"]) ** -0.5)
        nn.init.normal_(method.predictor[0].weight, std=embed**-0.5)
    return method


def trained_spec(config: PriorConfig, method: PriorPretraining, text_config: dict[str, Any], tok_info: dict[str, Any], source: str) -> ModelSpec:
    trunk = TRUNKS[config.image_preset]
    width = method.net.image_proj_global.in_features
    return image_spec(
        "prior_resnet50_imagetext",
        config,
        arch_args={
            "trunk": trunk,
            "in_chans": 1,
            "image_only": False,
            "embed_dim": method.embed_dim,
            "num_prototypes": config.spb_k,
            "pool_heads": config.pool_heads,
            "spatial": method.grid,
            "text_config": text_config,
        },
        outputs={"trunk": width, "pooled": width, "global": method.embed_dim},
        description=(
            f"PRIOR {trunk} (1 channel) + BERT ({text_config['num_hidden_layers']} layers, hidden "
            f"{text_config['hidden_size']}) pretrained with radzoo.training on {source} ({config.size} px): "
            f"attention pool, {method.embed_dim}-d global projection (the embedding), sentence prototype bank "
            "and local cross-attention (zero-shot); the decoders used only in training are not exported."
        ),
        text={"tokenizer": describe(tok_info), "max_length": config.max_length, "lowercase": config.lowercase},
    )


def stage_phases(config: PriorConfig, steps_per_epoch: int) -> list[Phase]:
    """The stages with epochs, each with a fresh AdamW and its warm-up cosine (per optimiser step)."""
    out = []
    for n, name in enumerate(STAGES, start=1):
        epochs = getattr(config, f"stage{n}_epochs")
        if not epochs:
            continue
        lr = getattr(config, f"stage{n}_lr")
        start = getattr(config, f"stage{n}_lr_start")
        warm = getattr(config, f"stage{n}_warmup_epochs")

        def adamw(params: list[nn.Parameter], lr: float = lr) -> torch.optim.Optimizer:
            return torch.optim.AdamW(params, lr=lr, weight_decay=config.weight_decay)

        schedule = linear_warmup_cosine(lr, min(warm, epochs) * steps_per_epoch, epochs * steps_per_epoch, start, config.lr_end)
        out.append(Phase(name, epochs, adamw, schedule))
    return out


# ---------------------------------------------------------------------------------------- train


def train_prior(
    config: PriorConfig,
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    resume: bool = False,
    overwrite: bool = False,
    val_data: str | os.PathLike[str] | None = None,
) -> Path:
    """Pretrain PRIOR on paired images and reports (all three stages) and save it to ``out``.

    ``data`` is a manifest or a MIMIC-CXR-JPG folder (:mod:`radzoo.training.pairs`). PRIOR monitors
    no validation loss; given validation pairs, their loss is logged each epoch and the best
    weights are exported. Under ``torchrun`` every process calls this; rank 0 alone writes.
    """
    run = start_run(config, out, resume=resume, overwrite=overwrite)
    try:
        return _train(run, config, data, val_data)
    finally:
        D.teardown(run.ctx)


def _order(report: Any) -> list[str]:
    """Impression sentences, then findings (PRIOR ``_tokenizer``); shuffled afterwards anyway."""
    return list(report.impression) + list(report.findings)


def _train(run: Run, config: PriorConfig, data: str | os.PathLike[str], val_data: str | os.PathLike[str] | None) -> Path:
    seed_everything(config.seed)
    train, val = load_paired_data(data, val_data, requirements(config, min_sentences=config.min_sentences))
    text = prepare_text(config, run.run_dir, ["".join(_order(s.report)) for s in train.studies], resume=run.resume)
    method = build(config, text.text_config)
    notes = load_text_weights(method.net.text_backbone, text.init)
    state, image_from = image_trunk_state(config.init, TRUNKS[config.image_preset], 1)
    if state is not None:
        from radzoo.zoo.weights import load_strict

        load_strict(method.net.image_backbone, state, image_from)
    spec = trained_spec(config, method, text.text_config, text.info, train.source)

    augment = PriorAugment(size=config.size, mean=config.normalize_mean, std=config.normalize_std)
    train_set = PairedDataset(train.studies, augment, _order, shuffle_sentences, seed=config.seed)
    val_set = PairedDataset(val.studies, eval_view(spec.preprocess), _order, None, seed=config.seed) if val else None
    collate = PriorCollator(text.tokenizer, config.max_length)

    if run.is_main:
        write_resolved(run, {"data": train.summary(), "validation": val.summary() if val else None, "tokenizer": text.info})
    trainer = Trainer(
        method, train_set, lambda steps: stage_phases(config, steps), settings_for(config, epochs=config.epochs),
        run.ctx, run.precision, run.run_dir, collate=collate, val_set=val_set, meta={"config": config_dict(config)},
    )
    result = trainer.fit(resume=run.resume)
    exported = "last"
    if result.best_weights is not None:
        method.load_state_dict(load_file(str(result.best_weights)), strict=True)
        exported = f"best validation loss (epoch {result.state.best_epoch}, {result.state.best_val:.4f})"

    from radzoo.zoo.instantiate import instantiate
    from radzoo.zoo.weights import load_strict

    export = instantiate(spec)
    load_strict(export, {k: v.detach().cpu() for k, v in method.net.state_dict().items()}, "trained PRIOR network")
    stages_done = sorted({h["phase"] for h in result.history}, key=STAGES.index)
    deviations = [
        "Trained by radzoo.training, not the original PRIOR code (PyTorch Lightning 1.5).",
        "Report sentences are split by rules (radzoo.training.reports), not stanza; sections follow the "
        "MIMIC-CXR section parser's header rule.",
        "Trained with PRIOR's pretraining normalisation (0.4755/0.3011) and served with its zero-shot "
        "normalisation (CheXpert statistics), as the original pipeline did.",
        "Augmentations act on the reader's float pixels, not 8-bit PIL images.",
        f"Stages trained: {', '.join(stages_done)}; exported weights: {exported}.",
        "The pretraining-only modules (sentence decoder, prototype queries, image decoder, predictor) are "
        "not exported; PRIOR's never-used global_text_projection is not built.",
    ]
    if run.ctx.world_size > 1 and run.ctx.device.type != "cuda" and config.sync_bn:
        deviations.append("sync_bn was requested but SyncBatchNorm needs GPUs: each CPU process kept its own statistics.")
    return save_imagetext_artifact(
        run, result, export, spec, text=text, train=train, val=val, image_from=image_from,
        deviations=deviations, notes=notes, stages=stages_done, exported=exported,
    )
