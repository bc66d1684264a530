"""MoCo-CXR pretraining (MoCo v2, METHODS 1.4) that saves a normal zoo artifact.

The method is a composition: the query encoder is the zoo's own ``MoCoCXRNet`` (trunk + 128-d
MLP head), the key encoder is its deep copy moved by momentum, negatives come from a
``NegativeQueue`` and the loss is ``moco_info_nce``. Only the query encoder is exported, in the
canonical key layout, so ``radzoo.load`` reads the result strictly with no converter.

Deviations from the original, by design:

* **Shuffle-BN is a no-op here.** MoCo shuffles the key batch across GPUs so BatchNorm statistics
  cannot leak the positive pair. On one process (the released MoCo-CXR runs used one GPU under
  DDP) the shuffle permutes samples within one BatchNorm batch, which changes nothing; radzoo
  trains in one process and skips it.
* **Momentum update after each optimiser step** instead of at the start of the next forward;
  with ``accumulate = 1`` this is the same sequence of updates (the original's first update is
  a no-op because key == query at step 0), and with accumulation it keeps one update per step.
* **The queue wraps around** instead of asserting ``K % batch_size == 0``.
"""

from __future__ import annotations

import logging
import os
import platform
from pathlib import Path
from typing import Any

import torch
from torch import nn

from radzoo import __version__
from radzoo.errors import ArtifactError, InputError, WeightsError
from radzoo.nets.mococxr import MoCoCXRNet
from radzoo.training.augment import MoCoCXRAugment
from radzoo.training.data import TwoViewDataset, data_summary, find_images
from radzoo.training.hparams import MoCoCXRConfig, config_dict, write_config
from radzoo.training.loop import EpochStats, fit, seed_everything, step_lr
from radzoo.training.losses import moco_info_nce
from radzoo.training.momentum import NegativeQueue, make_key_encoder, momentum_update
from radzoo.training.resume import has_training_state, load_training_state, save_training_state
from radzoo.zoo.spec import ModelSpec, Preprocess

log = logging.getLogger(__name__)


class MoCo(nn.Module):
    """MoCo v2 around an encoder with a ``proj`` output (L2-normalised contrastive embedding).

    ``training_step((im_q, im_k))`` returns the InfoNCE loss of the query view against its key
    and the queue, then enqueues the keys. ``after_optimizer_step`` moves the key encoder.
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

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        im_q, im_k = batch
        q = self.encoder_q.image_features(im_q, "proj")
        with torch.no_grad():
            k = self.encoder_k.image_features(im_k, "proj")
        loss, logits = moco_info_nce(q, k, self.queue(), self.temperature)
        self.queue.enqueue(k)
        acc = (logits.detach().argmax(dim=1) == 0).float().mean()
        return loss, {"acc1": float(acc)}

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


def checkpoint_dir(out: str | os.PathLike[str]) -> Path:
    """Where resume state lives: ``<out>/../<out name>.train/`` (beside, never inside, the artifact)."""
    out = Path(out)
    return out.parent / f"{out.name}.train"


def train_mococxr(
    config: MoCoCXRConfig,
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    resume: bool = False,
    overwrite: bool = False,
) -> Path:
    """Pretrain MoCo-CXR on the images under ``data`` and save the query encoder to ``out``.

    ``out`` becomes a zoo artifact (``radzoo.load(out)`` works); resume state and the resolved
    config go to :func:`checkpoint_dir`. With ``resume`` the run continues from the last
    checkpoint there, which must have been written with the same config (``epochs`` may grow).
    """
    from radzoo import zoo
    from radzoo.zoo.devices import resolve_device
    from radzoo.zoo.model import ZooModel

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (overwrite or resume):
        raise ArtifactError(f"output {out} exists and is not empty; pass --overwrite to replace it")
    ckpt = checkpoint_dir(out)
    if not resume and has_training_state(ckpt) and not overwrite:
        raise ArtifactError(
            f"{ckpt} holds a previous run's checkpoint; pass --resume to continue it or --overwrite"
        )
    device = resolve_device(config.device)
    paths = find_images(data)
    summary = data_summary(paths, data)
    seed_everything(config.seed)

    encoder = initial_encoder(config)
    gen = torch.Generator().manual_seed(config.seed)
    method = MoCo(encoder, config.moco_k, config.moco_m, config.moco_t, generator=gen).to(device)
    optimizer = torch.optim.Adam(
        method.encoder_q.parameters(),
        lr=config.lr,
        betas=(config.beta1, config.beta2),
        weight_decay=config.weight_decay,
    )
    start_epoch, global_step, history = 0, 0, []
    if resume and has_training_state(ckpt):
        meta = load_training_state(ckpt, method, optimizer)
        _check_resume(meta.get("config", {}), config, ckpt)
        start_epoch, global_step, history = (
            meta["next_epoch"],
            meta["global_step"],
            meta.get("history", []),
        )
        if start_epoch >= config.epochs:
            raise InputError(
                f"nothing to train: checkpoint {ckpt} already reached epoch {start_epoch}; raise epochs"
            )
        log.info("resuming %s at epoch %d (step %d)", ckpt, start_epoch, global_step)
    write_config(config, ckpt / "config.json")

    spec = trained_spec(config, summary["source"])
    augment = MoCoCXRAugment.from_preprocess(
        spec.preprocess, rotation=config.rotation, flip_p=config.flip_p
    )
    dataset = TwoViewDataset(paths, augment, seed=config.seed)

    def on_epoch_end(stats: EpochStats, step: int) -> None:
        history.append(_stats_dict(stats))
        last = stats.epoch + 1 == config.epochs
        if config.checkpoint_every and ((stats.epoch + 1) % config.checkpoint_every == 0 or last):
            meta = {
                "next_epoch": stats.epoch + 1,
                "global_step": step,
                "history": history,
                "config": config_dict(config),
            }
            save_training_state(ckpt, method, optimizer, meta)

    result = fit(
        method,
        dataset,
        optimizer,
        epochs=config.epochs,
        batch_size=config.batch_size,
        device=device,
        seed=config.seed,
        start_epoch=start_epoch,
        global_step=global_step,
        lr_at=step_lr(config.lr, config.schedule, config.lr_gamma),
        accumulate=config.accumulate,
        num_workers=config.num_workers,
        max_steps=config.max_steps,
        log_every=config.log_every,
        on_epoch_end=on_epoch_end,
    )
    if not history:
        raise InputError(
            f"nothing to train: no complete batch in epochs {start_epoch}..{config.epochs - 1}"
        )

    net = export_encoder(method.encoder_q, spec)
    provenance: dict[str, Any] = {
        "trained_by": "radzoo.training",
        "method": "mococxr",
        "config": config_dict(config),
        "epochs": history[-1]["epoch"] + 1,
        "steps": result.global_step,
        "stopped_by_max_steps": result.stopped_by_max_steps,
        "data": summary,
        "final_loss": history[-1]["last_loss"],
        "history": history,
        "device": str(device),
        "radzoo_version": __version__,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
    }
    deviations = [
        "Trained by radzoo.training, not the original MoCo-CXR code: shuffle-BN skipped (a no-op in one process), "
        "key-encoder momentum applied after each optimiser step, queue wraps around.",
    ]
    if config.image_size != 320:
        deviations.append(
            f"Trained and served at {config.image_size} px instead of the paper's 320 px."
        )
    if config.init != "imagenet":
        deviations.append(f"Trunk initialised from {config.init!r} instead of ImageNet.")
    model = ZooModel(spec, net, device="cpu")
    zoo.save(
        model,
        out,
        overwrite=overwrite or out.exists(),
        provenance=provenance,
        sections={"deviations": deviations},
        extra_files={"training/config.json": ckpt / "config.json"},
    )
    log.info("saved %s (final loss %.4f)", out, provenance["final_loss"])
    return out


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


def _stats_dict(stats: EpochStats) -> dict[str, Any]:
    return {
        "epoch": stats.epoch,
        "steps": stats.steps,
        "mean_loss": stats.mean_loss,
        "last_loss": stats.last_loss,
        "lr": stats.lr,
        "seconds": round(stats.seconds, 3),
        **stats.metrics,
    }


#: Keys that may change when a run is resumed.
_RESUMABLE = {"epochs", "device", "num_workers", "max_steps", "log_every", "checkpoint_every"}


def _check_resume(saved: dict[str, Any], config: MoCoCXRConfig, ckpt: Path) -> None:
    current = config_dict(config)
    changed = sorted(k for k in current if k not in _RESUMABLE and saved.get(k) != current[k])
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in changed)
        raise InputError(
            f"cannot resume {ckpt} with a different config ({detail}); only {sorted(_RESUMABLE)} may change"
        )
