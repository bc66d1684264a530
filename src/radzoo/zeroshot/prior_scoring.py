"""PRIOR's zero-shot rule (METHODS 3.5), made deterministic, and its grounding map.

Per image and prompt: the global score ``logit_scale * cos(g_img, g_txt)`` and the local
score ``(mean A_img->txt + mean A_txt->img) / 2`` of the sigmoid cross-attention between the image
tokens and the prompt's quantised sentence ``q``. Per class: max of the global scores, mean of the
local scores over the class's prompts; ``P = softmax(G) + 0.5 * softmax(S)``.

The global score multiplies by the RAW ``logit_scale`` parameter (about 4.6 at init), not by
``logit_scale.exp()``: the original zero-shot code passes ``self.logit_scale`` straight into
``global_loss`` (QtacierP/PRIOR ``downstream/zero_classification_model.py`` lines 128-130, 169);
only pretraining exponentiates. The scale sets the balance between ``P_g`` and ``P_l``, so it
changes predictions (METHODS 3.5, corrected).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from radzoo.zoo.text_tokenizer import Tokens

RULE = "prior-global-local"
LOCAL_WEIGHT = 0.5


def encode_texts(net: Any, tokens: Tokens, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Prompt embeddings ``global`` [P, E] and ``quantized`` [P, E] (deterministic SPB unless a
    seeded ``generator`` asks for the stochastic-compatible mode)."""
    out = net.encode_prompts(tokens.input_ids, tokens.attention_mask, generator=generator)
    return {"global": out["global"], "quantized": out["quantized"]}


def encode_images(net: Any, batch: torch.Tensor) -> dict[str, torch.Tensor]:
    return net.encode_image(batch)


def prompt_scores(net: Any, image: dict[str, torch.Tensor], text: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``global`` and ``local`` scores, each [N images, P prompts], computed per image."""
    cosine = global_cosine(image, text)
    global_ = net.logit_scale * cosine  # raw parameter, as the original zero-shot code (module doc)
    n = image["local"].shape[0]
    # Each prompt is its own one-sentence "report"; the maps are element-wise sigmoids, so putting
    # the P prompts side by side as keys gives exactly the P separate per-prompt maps.
    q = text["quantized"][None].expand(n, -1, -1)
    _, _, a_img2txt, a_txt2img = net.local_cross_attention(image["local"], q)  # [N,L,P], [N,P,L]
    local = (a_img2txt.mean(dim=1) + a_txt2img.mean(dim=2)) / 2
    return {"global": global_, "local": local}


def global_cosine(image: dict[str, torch.Tensor], text: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cosine between global image and prompt embeddings, [N images, P prompts]."""
    return F.normalize(image["global"], dim=-1) @ F.normalize(text["global"], dim=-1).t()


def combine(scores: dict[str, torch.Tensor], groups: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(rule score ``P_g + 0.5 P_l``, probabilities = score / 1.5) over the given prompt groups."""
    g = torch.stack([scores["global"][:, list(idx)].amax(dim=1) for idx in groups], dim=1)
    s = torch.stack([scores["local"][:, list(idx)].mean(dim=1) for idx in groups], dim=1)
    raw = torch.softmax(g, dim=1) + LOCAL_WEIGHT * torch.softmax(s, dim=1)
    return raw, raw / (1.0 + LOCAL_WEIGHT)


def ground(net: Any, batch: torch.Tensor, text: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
    """A [h, w] relevance map on the layer4 grid for one image and one prompt (Grad-CAM style).

    PRIOR's local tokens come from a view without permute (METHODS 3.6 quirk 1): token i is a
    slice of channels across all positions, not an image region, so a token-index map would put
    colours in the wrong places. Instead the prompt's image-text score (global cosine + local
    sigmoid score) is differentiated with respect to the layer4 map, and each position gets
    ``sum_c mean_hw(dscore/dA_c) * A_c[h, w]`` (Grad-CAM without the ReLU, so the sign is kept).
    """
    captured: dict[str, torch.Tensor] = {}

    def hook(_module: Any, _inp: Any, out: torch.Tensor) -> torch.Tensor:
        # a detached leaf: gradients stop here, whatever the parameters' requires_grad flags
        captured["fmap"] = out.detach().requires_grad_(True)
        return captured["fmap"]

    handle = net.image_backbone.layer4.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            image = net.encode_image(batch)
            fmap = captured["fmap"]
            scores = prompt_scores(net, image, text)
            target = (global_cosine(image, text) + scores["local"]).sum()
            (grad,) = torch.autograd.grad(target, fmap)
    finally:
        handle.remove()
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = (weights * fmap).sum(dim=1)[0].detach()
    return cam, {
        "method": "prior-gradcam",
        "global_score": float(scores["global"][0, 0].detach()),
        "local_score": float(scores["local"][0, 0].detach()),
    }


def token_map(net: Any, batch: torch.Tensor, text: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
    """The literal token-vs-prompt map: ``(A_img->txt + A_txt->img) / 2`` per local token, laid out
    on the 7x7 grid in token order (token i at row i // 7, column i % 7).

    Offered for fidelity with the original's local score; because of the view-without-permute
    quirk a token is a channel slice spanning the image, so this layout is not a spatial map (the
    default ``gradcam`` map is).
    """
    with torch.inference_mode():
        image = net.encode_image(batch)
        q = text["quantized"][:1][None]  # [1, 1, E]
        _, _, a_img2txt, a_txt2img = net.local_cross_attention(image["local"], q)
    values = (a_img2txt[0, :, 0] + a_txt2img[0, 0, :]) / 2  # [L]
    side = int(round(values.numel() ** 0.5))
    if side * side != values.numel():
        raise ValueError(f"PRIOR has {values.numel()} local tokens: not a square grid")
    return values.view(side, side), {"method": "prior-tokens", "local_score": float(values.mean())}
