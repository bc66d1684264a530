"""Training configs of the graph methods: IGCL (image vs report graph) and graph-CT (lung CT context).

Same conventions as :mod:`radzoo.training.hparams` (flat keys, ``--key=value`` overrides, help
text per key citing METHODS.md); the defaults are the originals' settings. This module imports no
torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from radzoo.training.hparams import ConfigError, RunConfig, _f, _positive

IGCL_SIZES = ("full", "tiny")


@dataclass
class IGCLConfig(RunConfig):
    """IGCL as rajpurkarlab/IGCL src/train.sh ran it (METHODS 4.4; exec_train.py, training/train.py)."""

    size: str = _f(
        "full",
        "full = igcl_vitb32 (CLIP ViT-B/32 + DRACON 772->512, bert-base node features) | tiny = the "
        "tiny-random-igcl geometry (CPU smoke runs; node-feature BERT hidden 16)",
    )
    image_init: str = _f(
        "random",
        "image tower start: 'random', a Hugging Face CLIP directory (config.json + model.safetensors of "
        "openai/clip-vit-base-patch32, as the original's pretrained=True), or a zoo model/artifact of IGCL",
    )
    text_init: str = _f(
        "random",
        "node-feature BERT: a Hugging Face BERT directory (bert-base-uncased layout, METHODS 4.1/0.6) or "
        "'random' (seeded random BERT of the size's config, WordPiece vocabulary trained on the reports)",
    )
    vocab_size: int = _f(30522, "WordPiece vocabulary size when text_init=random (bert-base-uncased has 30522)")
    epochs: int = _f(10, "training epochs (train.sh --epochs 10)")
    batch_size: int = _f(250, "global image-graph pairs per step (train.sh --batch_size 250)")
    lr: float = _f(1e-3, "AdamW learning rate (train.sh --lr 1e-3; torch defaults otherwise: betas 0.9/0.999, wd 0.01)")
    weight_decay: float = _f(0.01, "AdamW weight decay (torch's default, as the original)")
    image_freeze_batches: int = _f(
        20, "the image encoder (not its projection) is frozen for this many first batches (--image_freeze_interval 20)"
    )
    val_size: int = _f(500, "pairs held out for validation with random_split (the original: 500)")
    split_seed: int = _f(229, "seed of the validation random_split (the original: torch.Generator().manual_seed(229))")
    accumulate: int = _f(1, "micro-batches per optimiser step (1 = the original)")

    method = "igcl"
    #: the original trained in fp32
    paper_precision = "32"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.size not in IGCL_SIZES:
            raise ConfigError(f"size: must be one of {', '.join(IGCL_SIZES)}, got {self.size!r}")
        _positive(self, "epochs", "lr", "accumulate", "vocab_size")
        if self.batch_size < 2:
            raise ConfigError(f"batch_size: a contrastive batch needs >= 2 pairs, got {self.batch_size}")
        for name in ("weight_decay", "image_freeze_batches", "val_size"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")


@dataclass
class GraphCTConfig(RunConfig):
    """graph-CT as batmanlab/Context_Aware_SSL train.sh ran it (METHODS 5.3-5.4; train.py, model/builder_*.py)."""

    init: str = _f("random", "start weights: 'random' (as the original) or a graph-CT zoo model / artifact directory")
    epochs: int = _f(50, "patch epochs, each followed by sub_epochs graph epochs (train.sh --epochs=50)")
    sub_epochs: int = _f(10, "graph sub-epochs after each patch epoch (--num-sub-epoch 10)")
    batch_size: int = _f(128, "global patches per patch step, all from one landmark (--batch-size-patch=128)")
    graph_batch_size: int = _f(16, "global subjects (graphs) per graph step (--batch-size-graph=16)")
    lr: float = _f(0.03, "SGD learning rate of both phases (--lr=0.03)")
    momentum: float = _f(0.9, "SGD momentum (--momentum 0.9)")
    weight_decay: float = _f(1e-4, "SGD weight decay (--weight-decay 1e-4)")
    cos: bool = _f(True, "cosine LR (--cos); the graph phase's cosine is indexed by its sub-epoch counter (periodic, METHODS 5.6)")
    moco_dim: int = _f(128, "MoCo feature width (--moco-dim=128)")
    moco_k: int = _f(4096, "negatives per landmark queue: queue [dim, K, 581] (--moco-k-patch=4096)")
    graph_moco_k: int = _f(4096, "negatives of the graph-level queue (--moco-k-graph=4096)")
    moco_m: float = _f(0.999, "key-encoder momentum (--moco-m=0.999)")
    moco_t: float = _f(0.2, "softmax temperature (--moco-t=0.2)")
    steps_per_landmark: int = _f(
        0, "patch steps per landmark per epoch; 0 = the original's (subjects*581 // batch) // 581 (at least 1)"
    )
    landmark_stride: int = _f(
        1, "walk every N-th landmark per patch epoch (1 = all 581 in order, the original; >1 only for smoke runs)"
    )
    segmenter: str = _f("auto", "lung segmenter for the patch cache: auto | lungmask | threshold (radzoo.ct)")
    min_lung_ml: float = _f(300.0, "volumes with less segmented lung are left out of the cache (no lungs)")
    registration_base_spacing: float = _f(2.0, "mm grid of the mask-to-atlas registration (radzoo.ct.RegistrationSettings)")
    registration_shrink: tuple[int, ...] = _f((4, 2, 1), "registration shrink factors (ANTs 4x2x1)")
    registration_iterations: tuple[int, ...] = _f((500, 250, 100), "registration iterations per level (ANTs 500x250x100)")
    cache_workers: int = _f(1, "processes building the patch cache (registration is single-threaded)")

    method = "graphct"
    #: the original trained in fp32
    paper_precision = "32"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.registration_shrink = tuple(int(v) for v in self.registration_shrink)
        self.registration_iterations = tuple(int(v) for v in self.registration_iterations)
        _positive(self, "epochs", "sub_epochs", "lr", "moco_dim", "moco_k", "graph_moco_k", "moco_t",
                  "landmark_stride", "registration_base_spacing", "cache_workers")
        for name in ("batch_size", "graph_batch_size"):
            if getattr(self, name) < 2:
                raise ConfigError(f"{name}: BatchNorm and contrastive pairs need >= 2, got {getattr(self, name)}")
        if not 0.0 <= self.moco_m <= 1.0:
            raise ConfigError(f"moco_m: momentum must be in [0, 1], got {self.moco_m}")
        for name in ("momentum", "weight_decay", "steps_per_landmark", "min_lung_ml"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if len(self.registration_shrink) != len(self.registration_iterations):
            raise ConfigError("registration_shrink and registration_iterations need the same number of levels")
