"""make_transform against the original torchvision/PIL pipelines on uint8 PIL images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from radzoo.io import TransformError, make_transform, preprocess_batch, preprocess_image, read_image
from radzoo.zoo import registry as R
from radzoo.zoo.spec import Preprocess

T = pytest.importorskip("torchvision.transforms")
PILImage = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module", params=[(457, 389), (389, 457), (300, 300), (301, 512)], ids=str)
def gray_u8(request, png_dir: Path) -> np.ndarray:
    """A real CXR crop of the given (H, W), uint8 (non-square and odd sizes exercise the rounding)."""
    arr = np.asarray(PILImage.open(sorted(png_dir.glob("*.png"))[3]).convert("L"))
    h, w = request.param
    return np.ascontiguousarray(arr[7 : 7 + h, 3 : 3 + w])


def _ours(spec: Preprocess, u8: np.ndarray) -> torch.Tensor:
    return make_transform(spec)(u8.astype(np.float32) / 255.0)


def test_mococxr_matches_torchvision(gray_u8: np.ndarray) -> None:
    ref = T.Compose([T.Resize(320), T.CenterCrop(320), T.ToTensor(),
                     T.Normalize([0.5020] * 3, [0.085585] * 3)])(PILImage.fromarray(gray_u8).convert("RGB"))
    ours = _ours(R.MOCOCXR_PREPROCESS, gray_u8)
    assert ours.shape == ref.shape == (3, 320, 320)
    # PIL resizes uint8 with 8-bit rounding: <= 1/255 before normalisation
    assert (ours - ref).abs().max().item() * 0.085585 <= 1.0 / 255 + 1e-6


@pytest.mark.parametrize("spec", [R.PRIOR_IMAGE_PREPROCESS, R.PRIOR_ZEROSHOT_PREPROCESS], ids=["prior", "prior_zs"])
def test_prior_matches_torchvision(gray_u8: np.ndarray, spec: Preprocess) -> None:
    norm = spec.steps[1]
    ref = T.Compose([T.Resize([224, 224]), T.ToTensor(), T.Normalize(norm["mean"], norm["std"])])(
        PILImage.fromarray(gray_u8))
    ours = _ours(spec, gray_u8)
    assert ours.shape == ref.shape == (1, 224, 224)
    assert (ours - ref).abs().max().item() * norm["std"][0] <= 1.0 / 255 + 1e-6


def test_lovt_matches_original(gray_u8: np.ndarray) -> None:
    import torchvision.transforms.functional as TF

    img = PILImage.fromarray(gray_u8)
    w, h = img.size
    side = max(w, h)
    padded = TF.pad(img, [int((side - w) / 2), int((side - h) / 2)], fill=0)  # LoVT PadToSquare
    ref = T.Compose([T.Resize((224, 224)), T.ToTensor(), T.Normalize([0.5], [0.29])])(padded).expand(3, -1, -1)
    ours = _ours(R.LOVT_PREPROCESS, gray_u8)
    assert ours.shape == ref.shape == (3, 224, 224)
    assert (ours - ref).abs().max().item() * 0.29 <= 1.0 / 255 + 1e-6


def test_igcl_matches_original(gray_u8: np.ndarray) -> None:
    img = PILImage.fromarray(gray_u8)
    ratio = 320.0 / max(img.size)
    new = tuple(int(x * ratio) for x in img.size)
    small = img.resize(new, PILImage.LANCZOS)  # PIL ANTIALIAS == LANCZOS
    canvas = PILImage.new("L", (320, 320))
    canvas.paste(small, ((320 - new[0]) // 2, (320 - new[1]) // 2))
    x = torch.from_numpy(np.asarray(canvas, dtype=np.float32))[None].repeat(3, 1, 1)
    x = T.Normalize([101.48761] * 3, [83.43944] * 3)(x)
    ref = T.Resize(224, interpolation=T.InterpolationMode.BICUBIC, antialias=False)(x)
    ours = _ours(R.IGCL_PREPROCESS, gray_u8)
    assert ours.shape == ref.shape == (3, 224, 224)
    # <= 1 grey level of PIL rounding on the 0-255 scale, amplified at most ~1.3x by bicubic overshoot
    assert (ours - ref).abs().max().item() * 83.43944 <= 1.3


def test_graphct_hu_transform() -> None:
    fn = make_transform(R.GRAPHCT_PREPROCESS)
    hu = np.array([[-3000.0, -1024.0], [240.0, 1000.0]])
    out = fn(hu)
    assert out.dtype == np.float32 and out.shape == (2, 2)
    np.testing.assert_allclose(out, [[-1.0, -1.0], [1.0, 1.0]], atol=1e-6)
    np.testing.assert_allclose(fn(np.array([-392.0])), [0.0], atol=1e-6)
    t = fn(torch.zeros(2, 3, 4))
    assert isinstance(t, torch.Tensor) and t.shape == (2, 3, 4)


def test_png_and_dicom_give_the_same_model_input(dicom_dir: Path, tmp_path: Path) -> None:
    dcm = read_image(dicom_dir / "cr_chest_pa_siim_jpegbaseline.dcm")
    u8 = np.round(dcm.pixels * 255).astype(np.uint8)
    PILImage.fromarray(u8).save(tmp_path / "same.png")
    png = read_image(tmp_path / "same.png")
    for spec in (R.MOCOCXR_PREPROCESS, R.PRIOR_IMAGE_PREPROCESS, R.LOVT_PREPROCESS, R.IGCL_PREPROCESS):
        a, b = make_transform(spec)(dcm), make_transform(spec)(png)
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_pad_square_keeps_lovt_off_by_one() -> None:
    spec = Preprocess(input="image2d", steps=({"op": "pad_square", "value": 0.0},))
    out = make_transform(spec)(np.ones((10, 7), dtype=np.float32))
    assert out.shape == (1, 10, 9)  # int(3/2) = 1 on each side: one short of square
    assert out[0, :, 0].sum() == 0 and out[0, :, -1].sum() == 0


def test_center_crop_rounding_and_padding() -> None:
    spec = Preprocess(input="image2d", steps=({"op": "center_crop", "size": 4},))
    x = np.arange(7 * 9, dtype=np.float32).reshape(7, 9)
    ref = T.CenterCrop(4)(torch.from_numpy(x)[None])
    torch.testing.assert_close(make_transform(spec)(x), ref)
    small = np.ones((3, 2), dtype=np.float32)
    torch.testing.assert_close(make_transform(spec)(small), T.CenterCrop(4)(torch.from_numpy(small)[None]))


def test_cache_batch_and_errors(png_dir: Path) -> None:
    assert make_transform(R.PRIOR_IMAGE_PREPROCESS) is make_transform(
        Preprocess.from_dict(R.PRIOR_IMAGE_PREPROCESS.to_dict()))
    paths = sorted(png_dir.glob("*.png"))[:3]
    batch = preprocess_batch(paths, R.LOVT_PREPROCESS)
    assert batch.shape == (3, 3, 224, 224) and batch.dtype == torch.float32
    torch.testing.assert_close(batch[0], preprocess_image(read_image(paths[0]), R.LOVT_PREPROCESS))
    with pytest.raises(TransformError, match="unknown_op"):
        make_transform(Preprocess(input="image2d", steps=({"op": "unknown_op"},)))
    with pytest.raises(TransformError):
        make_transform(Preprocess(input="volume4d", steps=()))
    with pytest.raises(TransformError, match="expect a"):
        make_transform(R.PRIOR_IMAGE_PREPROCESS)(np.zeros((2, 3, 4), dtype=np.float32))
