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
