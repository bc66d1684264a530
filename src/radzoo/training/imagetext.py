"""What LoVT and PRIOR training share: paired data, the tokenizer, the towers' configs and starts.

* :func:`load_paired_data`: training (and validation) studies from ``--data`` / ``--val-data`` or
  the source's own split column.
* :func:`prepare_text`: the text tower's BertConfig, its initial weights and the tokenizer; rank 0
  writes the tokenizer to ``<run dir>/tokenizer`` (kept across resumes) and every rank loads that
  copy. A tokenizer whose size differs from ``text_init``'s embedding rows is refused.
* :func:`image_trunk_state`: the image trunk's initial weights (ImageNet, random, or a zoo model).
* :func:`image_spec`: a registry spec re-pointed at the trained towers (size, presets, tokenizer).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from radzoo.errors import InputError, WeightsError
from radzoo.training import distributed as D
from radzoo.training.bert_init import TextInit, resolve_text_init
from radzoo.training.hparams import ImageTextConfig
from radzoo.training.pairs import (
    TRAIN_SPLITS,
    VAL_SPLITS,
    PairedData,
    Requirements,
    parse_views,
    read_pairs,
)
from radzoo.training.report_vocab import load_tokenizer_dir, prepare_tokenizer
from radzoo.zoo.spec import ModelSpec, Preprocess

log = logging.getLogger(__name__)

#: ``text_preset=tiny``: every BERT part, two layers of width 128 (tests and smoke runs only).
TINY_TEXT = {
    "hidden_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 512,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-12,
}

TRUNKS = {"resnet50": "resnet50", "tiny": "resnet18"}


def preset_text_config(preset: str) -> dict[str, Any]:
    """The BertConfig dict of a text preset (``vocab_size`` is set from the tokenizer later)."""
    if preset == "tiny":
        return dict(TINY_TEXT)
    from radzoo.zoo.registry import get_spec

    cfg = dict(get_spec("lovt_resnet50").arch_args["text_config"])  # Bio_ClinicalBERT (METHODS 2.1)
    cfg.pop("vocab_size", None)
    return cfg


# ----------------------------------------------------------------------------------------- data


def load_paired_data(
    data: str | Path, val_data: str | Path | None, req: Requirements
) -> tuple[PairedData, PairedData | None]:
    """(training studies, validation studies or None). Without ``val_data``, a source with a split
    column trains on ``train`` rows and validates on ``validate``/``val`` rows; test rows are unused."""
    full = read_pairs(data, req)
    if val_data is not None:
        val = read_pairs(val_data, req)
        train = full.select(TRAIN_SPLITS) if full.has_splits else full
    elif full.has_splits:
        train, val = full.select(TRAIN_SPLITS), full.select(VAL_SPLITS)
        val = val if val.studies else None
    else:
        train, val = full, None
    if not train.studies:
        raise InputError(f"{data}: no studies in the training split (split column values: train or empty)")
    return train, val


def requirements(config: ImageTextConfig, *, min_sentences: int = 1, min_tokens: int = 0) -> Requirements:
    return Requirements(views=parse_views(config.view), min_sentences=min_sentences, min_tokens=min_tokens)


# ----------------------------------------------------------------------------------------- text


@dataclass
class TextSetup:
    tokenizer: Any
    tokenizer_dir: Path
    text_config: dict[str, Any]
    init: TextInit
    info: dict[str, Any]


def prepare_text(config: ImageTextConfig, run_dir: Path, reports: list[str], *, resume: bool) -> TextSetup:
    """Tokenizer + text config + initial text weights, identical on every rank (module docstring).

    A resumed run reuses the tokenizer its checkpoint was trained with; a new run replaces any
    tokenizer a failed earlier attempt left in the run directory.
    """
    import shutil

    from radzoo.training.resume import has_training_state

    init = resolve_text_init(config.text_init, preset_text_config(config.text_preset))
    tok_dir = run_dir / "tokenizer"
    error = None
    info: dict[str, Any] = {}
    if D.current_rank() == 0:
        try:
            reuse = resume and has_training_state(run_dir)
            if not reuse and tok_dir.exists():
                shutil.rmtree(tok_dir)
            if reuse and ((tok_dir / "tokenizer.json").is_file() or (tok_dir / "vocab.txt").is_file()):
                tok = load_tokenizer_dir(tok_dir, config.lowercase)
                info = {"source": "run directory (resumed)", "path": str(tok_dir), "vocab_size": len(tok), "lowercase": config.lowercase}
            else:
                info = prepare_tokenizer(
                    tok_dir,
                    tokenizer_dir=config.tokenizer,
                    text_init_tokenizer=init.tokenizer_dir,
                    reports=reports,
                    vocab_size=config.vocab_size,
                    lowercase=config.lowercase,
                )
        except InputError as exc:
            error = str(exc)
    if not D.all_agree(error is None):
        raise InputError(error or "rank 0 could not prepare the tokenizer (see its log)")
    info = D.broadcast_object(info)  # type: ignore[assignment]
    tokenizer = load_tokenizer_dir(tok_dir, config.lowercase)
    text_config = dict(init.config)
    if init.state is None:
        text_config["vocab_size"] = len(tokenizer)
    else:
        rows = int(init.state["embeddings.word_embeddings.weight"].shape[0])
        if len(tokenizer) != rows:
            raise InputError(
                f"the tokenizer ({info.get('path') or 'trained on the reports'}) has {len(tokenizer)} tokens but "
                f"text_init {config.text_init}'s word embeddings have {rows} rows: give the tokenizer that tower was "
                "trained with (--tokenizer DIR)"
            )
        text_config["vocab_size"] = rows
    if int(text_config.get("max_position_embeddings", 512)) < getattr(config, "max_length", 0):
        raise InputError(
            f"max_length {config.max_length} exceeds the text tower's max_position_embeddings "  # type: ignore[attr-defined]
            f"{text_config['max_position_embeddings']}"
        )
    return TextSetup(tokenizer, tok_dir, text_config, init, info)


# ---------------------------------------------------------------------------------------- image


def image_trunk_state(init: str, trunk: str, in_chans: int) -> tuple[dict[str, torch.Tensor] | None, str]:
    """Initial trunk weights (torchvision keys, no ``fc``) and where they came from; None = random.

    ``imagenet`` takes torchvision's IMAGENET1K_V1 weights from the torch hub cache (or downloads
    them); for a 1-channel trunk (PRIOR) conv1's kernel is summed over RGB, as PRIOR's
    ``resnet50_224`` does. A zoo name or artifact directory contributes its ``image_backbone``.
    """
    if init == "random":
        return None, "random"
    if init == "imagenet":
        import torchvision

        weights = torchvision.models.get_model_weights(trunk)["IMAGENET1K_V1"]
        try:
            state = weights.get_state_dict(progress=False, check_hash=True)
        except Exception as exc:  # noqa: BLE001 - any cache/network failure
            raise WeightsError(
                f"init: ImageNet weights for {trunk} are not available ({type(exc).__name__}: {exc}). Place "
                f"{Path(weights.url).name} in $TORCH_HOME/hub/checkpoints, or pass --init=random "
                "(or init=<zoo model or artifact dir>)"
            ) from exc
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        if in_chans == 1:
            state["conv1.weight"] = state["conv1.weight"].sum(dim=1, keepdim=True)
        return state, f"torchvision {trunk} IMAGENET1K_V1" + (" (conv1 summed over RGB)" if in_chans == 1 else "")
    from radzoo.resolve import load

    source = load(init, device="cpu", runtime="torch")
    state = {k[len("image_backbone.") :]: v for k, v in source.net.state_dict().items() if k.startswith("image_backbone.")}
    if not state:
        raise InputError(f"init: {init!r} has no image_backbone to start from")
    return state, f"image tower of {init}"


def sized_preprocess(pre: Preprocess, size: int) -> Preprocess:
    """The same inference steps with every spatial size set to ``size``."""
    if all(s["op"] not in ("resize", "center_crop") or s["size"] in (size, [size, size]) for s in pre.steps):
        return pre
    steps = []
    for step in pre.steps:
        s = dict(step)
        if s["op"] in ("resize", "center_crop"):
            s["size"] = [size, size] if isinstance(s["size"], (list, tuple)) else size
        steps.append(s)
    return Preprocess(pre.input, tuple(steps), notes=f"{pre.notes} Served at {size} px (the size it was trained at).")


def image_spec(
    base_name: str, config: ImageTextConfig, *, arch_args: dict[str, Any], outputs: dict[str, int], description: str,
    text: dict[str, Any],
) -> ModelSpec:
    """A registry spec (``lovt_resnet50`` / ``prior_resnet50_imagetext``) re-pointed at our weights."""
    from radzoo.zoo.registry import get_spec

    base = get_spec(base_name)
    name = base_name if config.image_preset == "resnet50" and config.text_preset != "tiny" else f"{base.method}_tiny"
    return base.with_(
        name=name,
        arch_args=arch_args,
        outputs=outputs,
        preprocess=sized_preprocess(base.preprocess, config.size),
        sources=(),
        hub_repo=None,
        hub_revision=None,
        random_init=False,
        description=description,
        text=text,
        tags=tuple(t for t in base.tags) + (("tiny",) if name.endswith("_tiny") else ()),
    )


# ------------------------------------------------------------------------------------- artifact


def save_imagetext_artifact(
    run: Any,
    result: Any,
    export: torch.nn.Module,
    spec: ModelSpec,
    *,
    text: TextSetup,
    train: Any,
    val: Any,
    image_from: str,
    deviations: list[str],
    notes: list[str],
    **provenance_extra: Any,
) -> Path:
    """Write an image-text method's artifact: the deviations every such run shares (preset, inits,
    tokenizer) appended to the method's own, the provenance, the zero-shot section and the tokenizer."""
    from radzoo.training.report_vocab import describe
    from radzoo.training.runner import provenance, save_artifact
    from radzoo.zeroshot.prompts import zero_shot_section

    config = run.config
    deviations = list(deviations)
    if config.image_preset != "resnet50" or config.text_preset == "tiny":
        deviations.append("TINY preset: not the paper's architecture (tests and smoke runs only).")
    if config.init != "imagenet":
        deviations.append(f"Image tower initialised from {config.init!r} instead of ImageNet.")
    if text.init.state is None:
        deviations.append("Text tower initialised randomly instead of from Bio_ClinicalBERT.")
    deviations += notes
    deviations.append(describe(text.info))
    prov = provenance(
        run, result, train.summary(),
        validation=val.summary() if val else None,
        image_init=image_from,
        text_init=text.init.source,
        tokenizer=text.info,
        **provenance_extra,
    )
    return save_artifact(
        run, export, spec, provenance=prov,
        sections={"deviations": deviations, "zero_shot": zero_shot_section(spec)},
        assets={"tokenizer": text.tokenizer_dir},
    )
