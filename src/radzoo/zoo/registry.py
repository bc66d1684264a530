"""The zoo registry: one literal dict of specs. No import-time side effects, no plugins.

Every number below comes from ``shared/specs/METHODS.md`` (section cited per entry).
"""

from __future__ import annotations

import difflib

from radzoo.errors import ModelNotFoundError
from radzoo.zoo.spec import ModelSpec, Preprocess, Source

# --------------------------------------------------------------------------------------------
# Preprocessing (METHODS.md sections 1.3, 2.3, 3.3, 4.3, 5.3)
# --------------------------------------------------------------------------------------------

MOCOCXR_PREPROCESS = Preprocess(
    input="image2d",
    steps=(
        {"op": "resize", "mode": "shorter", "size": 320, "interpolation": "bilinear", "backend": "pil"},
        {"op": "center_crop", "size": 320},
        {"op": "normalize", "mean": [0.5020], "std": [0.085585]},
        {"op": "channels", "n": 3},
    ),
    notes="MoCo-CXR inference/linear-eval transform (METHODS 1.3): Resize(320) shorter side, "
    "CenterCrop(320), Normalize(0.5020, 0.085585), grayscale replicated to RGB.",
)

PRIOR_IMAGE_PREPROCESS = Preprocess(
    input="image2d",
    steps=(
        {"op": "resize", "mode": "exact", "size": [224, 224], "interpolation": "bilinear", "backend": "pil"},
        {"op": "normalize", "mean": [0.4755], "std": [0.3011]},
        {"op": "channels", "n": 1},
    ),
    notes="PRIOR pretraining statistics (METHODS 3.3): squash to 224x224, Normalize(0.4755, 0.3011), 1 channel.",
)

PRIOR_ZEROSHOT_PREPROCESS = Preprocess(
    input="image2d",
    steps=(
        {"op": "resize", "mode": "exact", "size": [224, 224], "interpolation": "bilinear", "backend": "pil"},
        {"op": "normalize", "mean": [0.5062731200407803], "std": [0.28946775394688107]},
        {"op": "channels", "n": 1},
    ),
    notes="PRIOR zero-shot transform (METHODS 3.3, chexpert_zls.py): squash to 224x224, "
    "Normalize(0.50627, 0.28947) (CheXpert statistics), 1 channel.",
)

LOVT_PREPROCESS = Preprocess(
    input="image2d",
    steps=(
        {"op": "pad_square", "value": 0.0},
        {"op": "resize", "mode": "exact", "size": [224, 224], "interpolation": "bilinear", "backend": "pil"},
        {"op": "normalize", "mean": [0.50], "std": [0.29]},
        {"op": "channels", "n": 3},
    ),
    notes="LoVT validation transform (METHODS 2.3): integer half pad-to-square, Resize((224,224)) "
    "bilinear, Normalize(0.50, 0.29) (the recommended constant; MIMIC statistics were never "
    "shipped), expanded to 3 channels.",
)

IGCL_PREPROCESS = Preprocess(
    input="image2d",
    steps=(
        {"op": "resize", "mode": "longer", "size": 320, "interpolation": "lanczos", "backend": "pil"},
        {"op": "pad_center", "size": [320, 320], "value": 0.0},
        {"op": "scale", "factor": 255.0},
        {"op": "channels", "n": 3},
        {"op": "normalize", "mean": [101.48761], "std": [83.43944]},
        {"op": "resize", "mode": "exact", "size": [224, 224], "interpolation": "bicubic",
         "backend": "tensor", "antialias": False},
    ),
    notes="IGCL/CheXzero transform (METHODS 4.3): longer side to 320 (PIL ANTIALIAS) centred on a "
    "black 320x320 canvas, raw 0-255 values, 3 channels, Normalize(101.48761, 83.43944), THEN "
    "Resize(224, bicubic) on the tensor without antialiasing (torchvision 0.11 behaviour).",
)

GRAPHCT_PREPROCESS = Preprocess(
    input="ct_hu",
    steps=(
        {"op": "clip", "min": -1024.0, "max": 240.0},
        {"op": "affine", "scale": 1.0 / 632.0, "offset": 1024.0 / 632.0 - 1.0},
    ),
    notes="graph-CT patch intensities (METHODS 5.3): HU clipped to [-1024, 240], then "
    "(HU + 1024) / 632 - 1. Volumes are resampled to 1 mm isotropic (B-spline, default -1024) "
    "and padded by 60 voxels of -1024 before 32^3 patches are cut at the 581 registered atlas "
    "landmarks.",
)

# --------------------------------------------------------------------------------------------
# Citations and licences
# --------------------------------------------------------------------------------------------

_MOCOCXR_CITATION = (
    "@inproceedings{sowrirajan2021mococxr,\n"
    "  title={MoCo-CXR: MoCo Pretraining Improves Representation and Transferability of Chest X-ray Models},\n"
    "  author={Sowrirajan, Hari and Yang, Jingbo and Ng, Andrew Y. and Rajpurkar, Pranav},\n"
    "  booktitle={Medical Imaging with Deep Learning (MIDL)},\n  year={2021}\n}"
)
_LOVT_CITATION = (
    "@inproceedings{mueller2022lovt,\n"
    "  title={Joint Learning of Localized Representations from Medical Images and Reports},\n"
    "  author={M{\\\"u}ller, Philip and Kaissis, Georgios and Zou, Congyu and Rueckert, Daniel},\n"
    "  booktitle={European Conference on Computer Vision (ECCV)},\n  year={2022}\n}"
)
_PRIOR_CITATION = (
    "@inproceedings{cheng2023prior,\n"
    "  title={PRIOR: Prototype Representation Joint Learning from Medical Images and Reports},\n"
    "  author={Cheng, Pujin and Lin, Li and Lyu, Junyan and Huang, Yijin and Luo, Wenhan and Tang, Xiaoying},\n"
    "  booktitle={International Conference on Computer Vision (ICCV)},\n  year={2023}\n}"
)
_IGCL_CITATION = (
    "@misc{igcl2023,\n"
    "  title={IGCL: image-graph contrastive learning for chest X-rays (ML4H 2023)},\n"
    "  howpublished={\\url{https://github.com/rajpurkarlab/IGCL}},\n  year={2023}\n}"
)
_GRAPHCT_CITATION = (
    "@inproceedings{sun2021context,\n"
    "  title={Context Matters: Graph-based Self-supervised Representation Learning for Medical Images},\n"
    "  author={Sun, Li and Yu, Ke and Batmanghelich, Kayhan},\n"
    "  booktitle={AAAI Conference on Artificial Intelligence},\n  volume={35},\n  number={6},\n"
    "  pages={4874--4882},\n  year={2021}\n}"
)

_MOCOCXR_LICENSE = "cc-by-nc-4.0"  # code under CC BY-NC 4.0; weights unstated -> non-commercial (METHODS 1.8)
_MOCO_BUCKET = "https://storage.googleapis.com/moco-cxr/"

_BIO_CLINICALBERT = {
    # METHODS 2.1 / 3.1 / 0.6: Bio_ClinicalBERT configuration and tokenizer facts.
    "vocab_size": 28996,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-12,
}


def _moco(arch: str, dim: int, filename: str) -> ModelSpec:
    name = f"mococxr_{arch}"
    return ModelSpec(
        name=name,
        method="mococxr",
        arch="mococxr",
        arch_args={"trunk": arch, "proj_dim": None},
        outputs={"trunk": dim},
        default_output="trunk",
        modality="cxr",
        preprocess=MOCOCXR_PREPROCESS,
        license=_MOCOCXR_LICENSE,
        citation=_MOCOCXR_CITATION,
        paper_url="https://arxiv.org/abs/2010.05352",
        code_url="https://github.com/stanfordmlgroup/MoCo-CXR",
        description=(
            f"MoCo-CXR {arch} (MoCo v2 pretrained on CheXpert, ImageNet-initialised, lr 1e-4). "
            f"Embedding: globally average-pooled trunk features ({dim}-d)."
        ),
        sources=(Source(url=_MOCO_BUCKET + filename, filename=filename, format="moco_cxr"),),
        hub_repo=f"radzoo/{name}",
        hub_revision="v1",
        tags=("chest-x-ray", "self-supervised", "moco"),
    )


_REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _moco("resnet18", 512, "r8w-00001.pth.tar"),
        _moco("resnet50", 2048, "r5w-00001.pth.tar"),
        _moco("densenet121", 1024, "d1w-00001.pth.tar"),
        _moco("mnasnet1_0", 1280, "mnn-00001.pth.tar"),
        ModelSpec(
            name="prior_resnet50",
            method="prior",
            arch="prior",
            arch_args={"trunk": "resnet50", "in_chans": 1, "image_only": True},
            outputs={"trunk": 2048},
            default_output="trunk",
            modality="cxr",
            preprocess=PRIOR_IMAGE_PREPROCESS,
            license="apache-2.0",
            citation=_PRIOR_CITATION,
            paper_url="https://arxiv.org/abs/2307.12577",
            code_url="https://github.com/QtacierP/PRIOR",
            description=(
                "PRIOR image-encoder release (prior_resnet50.pt): ResNet-50 with a 1-channel conv1. "
                "The release has no attention-pool or projection weights, so this model offers only "
                "the mean-pooled layer4 trunk feature (2048-d); it has no zero-shot head."
            ),
            sources=(
                Source(
                    url="https://github.com/QtacierP/PRIOR/raw/main/pretrained/prior_resnet50.pt",
                    filename="prior_resnet50.pt",
                    format="prior_image",
                ),
            ),
            hub_repo="radzoo/prior_resnet50",
            hub_revision="v1",
            tags=("chest-x-ray", "image-text", "prior"),
        ),
        ModelSpec(
            name="prior_resnet50_imagetext",
            method="prior",
            arch="prior",
            arch_args={
                "trunk": "resnet50",
                "in_chans": 1,
                "image_only": False,
                "embed_dim": 768,
                "num_prototypes": 512,
                "pool_heads": 8,
                "text_config": _BIO_CLINICALBERT,
            },
            outputs={"trunk": 2048, "pooled": 2048, "global": 768},
            default_output="global",
            modality="cxr",
            preprocess=PRIOR_ZEROSHOT_PREPROCESS,
            license="apache-2.0",
            citation=_PRIOR_CITATION,
            paper_url="https://arxiv.org/abs/2307.12577",
            code_url="https://github.com/QtacierP/PRIOR",
            description=(
                "PRIOR whole image-text model: ResNet-50 (1-channel) + attention pool + 768-d global "
                "projection, Bio_ClinicalBERT text tower, sentence prototype bank and local "
                "cross-attention (everything zero-shot needs; decoders dropped)."
            ),
            sources=(
                Source(
                    url="https://drive.google.com/uc?id=1n6i775ztUSFBYhAlAIL6Ftvq5ZiXQsnN",
                    filename="total_prior.ckpt",
                    format="prior_full",
                    note="Google Drive file; large downloads need the confirm step.",
                ),
            ),
            hub_repo="radzoo/prior_resnet50_imagetext",
            hub_revision="v1",
            text={"tokenizer": "Bio_ClinicalBERT (cased WordPiece, 28,996 tokens)", "max_length": 256,
                  "lowercase": True},  # METHODS 0.6: the original lower-cased text
            tags=("chest-x-ray", "image-text", "zero-shot", "prior"),
        ),
        ModelSpec(
            name="lovt_resnet50",
            method="lovt",
            arch="lovt",
            arch_args={
                "trunk": "resnet50",
                "proj_dim": 512,
                "proj_hidden": 2048,
                "pool_heads": 8,
                "text_config": _BIO_CLINICALBERT,
            },
            outputs={"trunk": 2048, "pooled": 2048, "global": 512},
            default_output="pooled",
            modality="cxr",
            preprocess=LOVT_PREPROCESS,
            license="mit",
            citation=_LOVT_CITATION,
            paper_url="https://arxiv.org/abs/2112.02889",
            code_url="https://github.com/philip-mueller/lovt",
            description=(
                "LoVT ResNet-50 with multi-head attention pooling (yg_a, 2048-d, the default output) "
                "and the 512-d joint image-report space (zg_a). No original weights were published: "
                "weights come from radzoo's own training."
            ),
            hub_repo="radzoo/lovt_resnet50",
            hub_revision="v1",
            text={"tokenizer": "Bio_ClinicalBERT (cased WordPiece, 28,996 tokens)", "max_length": 512,
                  "lowercase": True},  # METHODS 0.6: the original lower-cased text
            tags=("chest-x-ray", "image-text", "lovt"),
        ),
        ModelSpec(
            name="igcl_vitb32",
            method="igcl",
            arch="igcl",
            arch_args={
                "vision_config": {
                    "hidden_size": 768,
                    "intermediate_size": 3072,
                    "num_hidden_layers": 12,
                    "num_attention_heads": 12,
                    "image_size": 224,
                    "patch_size": 32,
                    "hidden_act": "quick_gelu",
                    "num_channels": 3,
                },
                "embed_dim": 768,
                "node_features": 772,
                "num_relations": 4,
                "graph_layers": 2,
                "graph_hidden": 512,
                "trans_layers": 1,
                "attn_heads": 2,
                "trans_ff": 1024,
                "fc_layers": 2,
            },
            outputs={"trunk": 768, "global": 768},
            default_output="global",
            modality="cxr",
            preprocess=IGCL_PREPROCESS,
            license="other",
            citation=_IGCL_CITATION,
            paper_url="https://github.com/rajpurkarlab/IGCL",
            code_url="https://github.com/rajpurkarlab/IGCL",
            description=(
                "IGCL CLIP ViT-B/32 image tower contrasted with RadGraph report graphs (DRACON graph "
                "encoder). Embedding: pooler_output @ proj (768-d). The original repository has no "
                "licence (all rights reserved); no weights were published."
            ),
            hub_repo="radzoo/igcl_vitb32",
            hub_revision="v1",
            tags=("chest-x-ray", "image-graph", "igcl"),
        ),
        ModelSpec(
            name="graphct_copdgene",
            method="graphct",
            arch="graphct",
            arch_args={"feature_dim": 128, "num_patches": 581, "with_patch_proj": False},
            outputs={"patch": 128, "node": 128, "subject": 128},
            default_output="subject",
            modality="ct",
            preprocess=GRAPHCT_PREPROCESS,
            license="mit",
            citation=_GRAPHCT_CITATION,
            paper_url="https://arxiv.org/abs/2012.06457",
            code_url="https://github.com/batmanlab/Context_Aware_SSL",
            description=(
                "graph-CT 'Context Matters' (COPDGene): 3D patch encoder (32^3 -> 128) over 581 "
                "atlas-registered lung patches and a GCN over the patch-overlap graph; subject "
                "embedding = mean of the 581 node embeddings. Code MIT; the released weights carry "
                "no stated licence (COPDGene terms apply)."
            ),
            sources=(
                Source(
                    url="https://drive.google.com/uc?id=1SoW5zoTAagEwZk3AZ3wmTj05lq4bO-7v",
                    filename="checkpoint_patch.pth.tar+checkpoint_graph.pth.tar",
                    format="graph_ct",
                    note="Google Drive archive holding the patch and graph checkpoints.",
                ),
            ),
            hub_repo="radzoo/graphct_copdgene",
            hub_revision="v1",
            assets={
                "atlas_lung_mask.nii.gz": "graph_ct/atlas_lung_mask.nii.gz",
                "atlas_patch_loc.npy": "graph_ct/atlas_patch_loc.npy",
                "LICENSE-Context_Aware_SSL-MIT.txt": "graph_ct/LICENSE-Context_Aware_SSL-MIT.txt",
            },
            tags=("lung-ct", "graph", "self-supervised"),
        ),
    )
}


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The registered spec for ``name``; unknown names get close-match suggestions."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ModelNotFoundError(
            f"unknown model {name!r}.{hint} Known models: {', '.join(list_models())}."
        ) from None


def is_registered(name: str) -> bool:
    return name in _REGISTRY
