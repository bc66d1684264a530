"""MoCo-CXR pretraining (MoCo v2, METHODS 1.4) that saves a normal zoo artifact.

The method is a composition: the query encoder is the zoo's own ``MoCoCXRNet`` (trunk + 128-d
MLP head), the key encoder is its deep copy moved by momentum, negatives come from a
``NegativeQueue`` and the loss is ``moco_info_nce``. Only the query encoder is exported, in the
canonical key layout, so ``radzoo.load`` reads the result strictly with no converter.

It runs on the shared loop (:mod:`radzoo.training.loop`): under ``torchrun`` the key batch is
shuffled across processes for BatchNorm (MoCo's shuffle-BN) and the keys of every process are
gathered into the queue, as in the original's DDP code; in one process both are no-ops (as in the
released runs, one GPU under DDP).

Deviations from the original, by design:

* **Momentum update after each optimiser step** instead of at the start of the next forward;
  with ``accumulate = 1`` this is the same sequence of updates (the original's first update is
  a no-op because key == query at step 0), and with accumulation it keeps one update per step.
* **The queue wraps around** instead of asserting ``K % batch_size == 0``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn

from radzoo.errors import InputError, WeightsError
from radzoo.nets.mococxr import MoCoCXRNet
from radzoo.training import distributed as D
from radzoo.training.augment import MoCoCXRAugment
from radzoo.training.data import TwoViewDataset, data_summary, find_images
from radzoo.training.hparams import MoCoCXRConfig, config_dict
from radzoo.training.loop import Phase, Trainer, seed_everything
from radzoo.training.losses import moco_info_nce
from radzoo.training.momentum import NegativeQueue, make_key_encoder, momentum_update
from radzoo.training.runner import (
    Run,
    checkpoint_dir,
    provenance,
    save_artifact,
    settings_for,
    start_run,
    write_resolved,
)
from radzoo.training.schedules import step_decay
from radzoo.zoo.spec import ModelSpec, Preprocess

__all__ = ["MoCo", "checkpoint_dir", "initial_encoder", "train_mococxr", "trained_spec"]

log = logging.getLogger(__name__)


class MoCo(nn.Module):
    """MoCo v2 around an encoder with a ``proj`` output (L2-normalised contrastive embedding).

    ``forward((im_q, im_k))`` returns the InfoNCE loss of the query view against its key and the
    queue, then enqueues the keys of every process. ``after_optimizer_step`` moves the key encoder.
    ``shared_seed`` (set by the loop before each micro-batch, equal on every rank) seeds the
    shuffle-BN permutation.
    """

    def __init__(
        self,
        encoder: MoCoCXRNet,
        queue_size: int,
        momentum: float,
        temperature: float,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if "proj" not in encoder.image_outputs:
            raise ValueError("MoCo needs an encoder with a projection head (proj_dim set)")
        self.encoder_q = encoder
        self.encoder_k = make_key_encoder(encoder)
        self.queue = NegativeQueue(queue_size, encoder.image_outputs["proj"], generator=generator)
        self.momentum = float(momentum)
        self.temperature = float(temperature)
        self.shared_seed = 0

    def forward(
        self, batch: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        im_q, im_k = batch
        q = self.encoder_q.image_features(im_q, "proj")
        with torch.no_grad():
            shuffled, inverse = D.shuffle_batch(im_k, torch.Generator().manual_seed(self.shared_seed))
            k = D.unshuffle_batch(self.encoder_k.image_features(shuffled, "proj"), inverse)
        loss, logits = moco_info_nce(q, k, self.queue(), self.temperature)
        self.queue.enqueue(D.gather_no_grad(k.float()))
        acc = (logits.detach().argmax(dim=1) == 0).float().mean()
        return loss, {"acc1": acc}

    def after_optimizer_step(self) -> None:
        momentum_update(self.encoder_k, self.encoder_q, self.momentum)


# --------------------------------------------------------------------------------- the spec


def base_spec(arch: str) -> ModelSpec:
    from radzoo.zoo.registry import get_spec

    return get_spec(f"mococxr_{arch}")


def trained_spec(config: MoCoCXRConfig, data_source: str) -> ModelSpec:
    """The registry spec ``mococxr_<arch>`` re-pointed at our weights.

    Sources and Hub pins are removed (these are not the original release), the inference resize
    and crop follow ``image_size``, and ``keep_head`` adds the ``proj`` output.
    """
    spec = base_spec(config.arch)
    pre = spec.preprocess
    if config.image_size != 320:
        steps = []
        for step in pre.steps:
            s = dict(step)
            if s["op"] in ("resize", "center_crop"):
                s["size"] = config.image_size
            steps.append(s)
        pre = Preprocess(
            pre.input, tuple(steps), notes=pre.notes.replace("320", str(config.image_size))
        )
    arch_args = dict(spec.arch_args)
    outputs = dict(spec.outputs)
    if config.keep_head:
        arch_args["proj_dim"] = config.proj_dim
        outputs["proj"] = config.proj_dim
    return spec.with_(
        arch_args=arch_args,
        outputs=outputs,
        preprocess=pre,
        sources=(),
        hub_repo=None,
        hub_revision=None,
        random_init=False,
        description=(
            f"MoCo-CXR {config.arch} pretrained with radzoo.training (MoCo v2, T={config.moco_t}, "
            f"m={config.moco_m}, K={config.moco_k}, {config.image_size} px, init {config.init}) on {data_source}. "
            f"Embedding: globally average-pooled trunk features ({outputs['trunk']}-d)."
        ),
    )


# --------------------------------------------------------------------------- initial weights


def initial_encoder(config: MoCoCXRConfig) -> MoCoCXRNet:
    """Query encoder with the head MoCo-CXR trains (seeded), trunk from ``config.init``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        net = MoCoCXRNet(trunk=config.arch, proj_dim=config.proj_dim)
    init = config.init
    if init == "random":
        return net
    if init == "imagenet":
        state = _imagenet_trunk(config.arch)
        what = f"torchvision {config.arch} IMAGENET1K_V1"
    else:
        from radzoo.resolve import load

        source = load(init, device="cpu", runtime="torch")
        if source.spec.method != "mococxr" or source.spec.arch_args.get("trunk") != config.arch:
            raise InputError(
                f"init: {init!r} is a {source.spec.method} model with trunk "
                f"{source.spec.arch_args.get('trunk')!r}; need a mococxr {config.arch} model"
            )
        state = {
            k[len("image_backbone.") :]: v
            for k, v in source.net.state_dict().items()
            if k.startswith("image_backbone.")
        }
        what = f"trunk of {init}"
    from radzoo.zoo.weights import load_strict

    load_strict(net.image_backbone, state, what)
    return net


def _imagenet_trunk(arch: str) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights minus the classifier (from the torch hub cache or a download)."""
    import torchvision

    weights = torchvision.models.get_model_weights(arch)["IMAGENET1K_V1"]
    try:
        state = weights.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # noqa: BLE001 - network/cache errors of any kind end up here
        raise WeightsError(
            f"init: ImageNet weights for {arch} are not available ({type(exc).__name__}: {exc}). "
            f"Place {Path(weights.url).name} in $TORCH_HOME/hub/checkpoints, or pass --init-random "
            "(or init=<zoo model or artifact dir>)"
        ) from exc
    head = ("fc.", "classifier.")
    return {k: v for k, v in state.items() if not k.startswith(head)}


# ------------------------------------------------------------------------------------ train


def train_mococxr(
    config: MoCoCXRConfig,
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    resume: bool = False,
    overwrite: bool = False,
) -> Path:
    """Pretrain MoCo-CXR on the images under ``data`` and save the query encoder to ``out``.

    ``out`` becomes a zoo artifact (``radzoo.load(out)`` works); resume state, per-step metrics
    and the resolved config go to :func:`~radzoo.training.runner.checkpoint_dir`. With
    ``resume`` the run continues from the last checkpoint there, which must have been written
    with the same config (``epochs`` and the run settings may change, the number of processes too).
    Under ``torchrun`` every process calls this; rank 0 alone writes.
    """
    run = start_run(config, out, resume=resume, overwrite=overwrite)
    try:
        return _train(run, config, data)
    finally:
        D.teardown(run.ctx)


def _train(run: Run, config: MoCoCXRConfig, data: str | os.PathLike[str]) -> Path:
    paths = find_images(data)
    summary = data_summary(paths, data)
    seed_everything(config.seed)
    encoder = initial_encoder(config)
    gen = torch.Generator().manual_seed(config.seed)
    method = MoCo(encoder, config.moco_k, config.moco_m, config.moco_t, generator=gen)
    spec = trained_spec(config, summary["source"])
    augment = MoCoCXRAugment.from_preprocess(
        spec.preprocess, rotation=config.rotation, flip_p=config.flip_p
    )
    dataset = TwoViewDataset(paths, augment, seed=config.seed)

    def phases(steps_per_epoch: int) -> list[Phase]:
        def adam(params: list[nn.Parameter]) -> torch.optim.Optimizer:
            return torch.optim.Adam(
                params, lr=config.lr, betas=(config.beta1, config.beta2), weight_decay=config.weight_decay
            )

        return [Phase("moco", config.epochs, adam, step_decay(config.lr, config.schedule, config.lr_gamma))]

    if run.is_main:
        write_resolved(run)
    trainer = Trainer(
        method, dataset, phases, settings_for(config), run.ctx, run.precision, run.run_dir,
        meta={"config": config_dict(config)},
    )
    result = trainer.fit(resume=run.resume)

    net = export_encoder(method.encoder_q, spec)
    deviations = [
        "Trained by radzoo.training, not the original MoCo-CXR code: key-encoder momentum applied after "
        "each optimiser step, queue wraps around.",
    ]
    if config.image_size != 320:
        deviations.append(
            f"Trained and served at {config.image_size} px instead of the paper's 320 px."
        )
    if config.init != "imagenet":
        deviations.append(f"Trunk initialised from {config.init!r} instead of ImageNet.")
    return save_artifact(
        run, net, spec, provenance=provenance(run, result, summary), sections={"deviations": deviations}
    )


def export_encoder(encoder: MoCoCXRNet, spec: ModelSpec) -> nn.Module:
    """A fresh network built from ``spec`` holding the query encoder's weights (strictly copied):
    exactly what ``radzoo.load`` will build, so the artifact is checked before it is written."""
    from radzoo.zoo.instantiate import instantiate
    from radzoo.zoo.weights import load_strict

    net = instantiate(spec)
    keep = set(net.state_dict())
    state = {k: v.detach().to("cpu") for k, v in encoder.state_dict().items() if k in keep}
    load_strict(net, state, "trained query encoder")
    return net
