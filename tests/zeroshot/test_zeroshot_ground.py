"""Grounding maps: image-sized, aligned through the preprocessing, rendered to a readable PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from radzoo.errors import InputError
from radzoo.zeroshot.grounding import to_image_grid


def _check_png(path: Path, size: tuple[int, int]) -> None:
    with PILImage.open(path) as im:
        assert im.format == "PNG" and im.size == size
        rgb = np.asarray(im.convert("RGB")).astype(np.int16)
    # not blank: many distinct colours, and colour (the heatmap) where the image is gray
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 500
    chroma = np.abs(rgb[..., 0] - rgb[..., 2])
    assert (chroma > 40).mean() > 0.05


def test_prior_heatmap_matches_image_and_renders(prior_model, nih_images, tmp_path: Path) -> None:
    from radzoo.zeroshot.overlay import render_overlay

    g = prior_model.ground(nih_images[0], "Pleural Effusion is observed")
    assert g.method == "prior-gradcam"
    assert g.heatmap.shape == g.pixels.shape == (512, 512)
    assert g.grid.shape == (2, 2) and np.isfinite(g.heatmap).all() and g.heatmap.std() > 0
    again = prior_model.ground(nih_images[0], "Pleural Effusion is observed")
    np.testing.assert_array_equal(g.heatmap, again.heatmap)
    out = render_overlay(g.pixels, g.heatmap, g.text, tmp_path / "o.png", width_px=600)
    _check_png(out, (600, int(round((6 * 0.82 + 0.9) * 100))))


def test_lovt_heatmap_on_non_square_image(lovt_model, nih_images) -> None:
    # a 512 x 300 crop: LoVT pads to square before resizing, the map must be cropped back
    pixels = np.asarray(PILImage.open(nih_images[1]).convert("L"))[:, 100:400]
    g = lovt_model.ground(pixels, "Pleural Effusion is observed. The heart size is normal.")
    assert g.method == "lovt-region-alignment"
    assert g.heatmap.shape == (512, 300)
    assert g.details["sentence_scores"].shape == (2, 2, 2)
    assert np.all(g.heatmap >= -1 - 1e-5) and np.all(g.heatmap <= 1 + 1e-5)  # cosines


def test_inverse_geometry_undoes_pad_square() -> None:
    steps = [{"op": "pad_square", "value": 0.0}, {"op": "resize", "mode": "exact", "size": [8, 8]}]
    # image 6 (h) x 2 (w): padded by 2 columns each side to 6 x 6; left half of the grid = 1
    grid = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    heat = to_image_grid(grid, (6, 2), steps)
    assert heat.shape == (6, 2)
    full = to_image_grid(grid, (6, 6), steps[1:])  # the padded canvas itself
    np.testing.assert_allclose(heat, full[:, 2:4], atol=1e-6)


def test_bad_grounding_input(prior_model, nih_images, tmp_path: Path) -> None:
    from radzoo.zeroshot.overlay import render_overlay

    with pytest.raises(InputError, match="non-empty text"):
        prior_model.ground(nih_images[0], "  ")
    with pytest.raises(InputError, match="one image"):
        prior_model.ground(nih_images[:2], "Edema")
    with pytest.raises(InputError, match="does not match"):
        render_overlay(np.zeros((8, 8)), np.zeros((4, 4)), "t", tmp_path / "x.png")
    with pytest.raises(InputError, match="must end in"):
        render_overlay(np.zeros((8, 8)), np.zeros((8, 8)), "t", tmp_path / "x.gif")


def test_cli_ground(prior_dir: Path, nih_images, tmp_path: Path, capsys) -> None:
    from radzoo.cli import main

    out = tmp_path / "overlay.png"
    rc = main(["ground", str(nih_images[2]), "Edema is observed", "--model", str(prior_dir),
               "--out", str(out), "--heatmap", str(tmp_path / "h.npy"), "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    _check_png(out, (800, int(round((8 * 0.82 + 0.9) * 100))))
    assert np.load(tmp_path / "h.npy").shape == (512, 512)
    rc = main(["ground", str(tmp_path / "missing.png"), "Edema", "--model", str(prior_dir), "--out", str(out)])
    assert rc == 1 and "does not exist" in capsys.readouterr().err


def test_prior_literal_token_map(prior_model, nih_images) -> None:
    """``method="tokens"``: the 2x2 (tiny; 7x7 at full size) token-vs-prompt map, equal to a
    direct computation of the sigmoid cross-attention between the image tokens and the prompt."""
    g = prior_model.ground(nih_images[0], "Pleural Effusion is observed", method="tokens")
    assert g.method == "prior-tokens"
    assert g.grid.shape == (2, 2) and g.heatmap.shape == (512, 512)
    net = prior_model.net
    batch = prior_model.transform(g.pixels)[None]
    from radzoo.zeroshot.classify import encode_prompts

    emb, _ = encode_prompts(prior_model, ["Pleural Effusion is observed"], "ground")
    with torch.inference_mode():
        local = net.encode_image(batch)["local"][0]  # [L, E]
        q = emb["quantized"][0]
        ca = net.local_cross_attention
        scale = 1.0 / float(q.shape[-1]) ** 0.5
        a12 = torch.sigmoid((ca.query1(local) @ ca.key2(q)) * scale)  # [L]
        a21 = torch.sigmoid((ca.key1(local) @ ca.query2(q)) * scale)  # [L]
    expected = ((a12 + a21) / 2).view(2, 2).numpy()
    np.testing.assert_allclose(g.grid, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="unknown grounding method"):
        prior_model.ground(nih_images[0], "x", method="saliency")


def test_token_map_is_prior_only(lovt_model, nih_images) -> None:
    with pytest.raises(InputError, match="applies to PRIOR models only"):
        lovt_model.ground(nih_images[0], "Pleural Effusion is observed", method="tokens")
