import pytest
import torch

from radzoo.errors import InputError
from radzoo.io import ImageReadError
from radzoo.training.augment import MoCoCXRAugment
from radzoo.training.data import TwoViewDataset, data_summary, find_images
from radzoo.zoo.registry import MOCOCXR_PREPROCESS


def test_find_images_from_folder_and_list(nih_paths, nih_list, tmp_path):
    folder = tmp_path / "imgs" / "class_a"  # ImageFolder layout: searched recursively
    folder.mkdir(parents=True)
    for p in nih_paths[:3]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.png").write_bytes(nih_paths[0].read_bytes())
    found = find_images(tmp_path / "imgs")
    assert [p.name for p in found] == sorted(p.name for p in nih_paths[:3])
    assert find_images(nih_list) == nih_paths
    summary = data_summary(found, tmp_path / "imgs")
    assert summary["images"] == 3 and len(summary["file_list_sha256"]) == 64
    with pytest.raises(InputError, match="does not exist"):
        find_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        find_images(tmp_path / "empty")
    bad_list = tmp_path / "bad.txt"
    bad_list.write_text("missing.png\n")
    with pytest.raises(InputError, match=r"bad.txt, line 1: image .*missing.png does not exist"):
        find_images(bad_list)


def test_augment_matches_the_spec_and_is_seeded(nih_paths):
    from radzoo.io import read_image

    aug = MoCoCXRAugment.from_preprocess(MOCOCXR_PREPROCESS)
    assert (aug.size, aug.mean, aug.std, aug.channels, aug.rotation) == (
        320,
        0.5020,
        0.085585,
        3,
        10.0,
    )
    small = MoCoCXRAugment(size=64)
    pixels = read_image(nih_paths[0]).pixels
    a = small(pixels, torch.Generator().manual_seed(1))
    b = small(pixels, torch.Generator().manual_seed(1))
    c = small(pixels, torch.Generator().manual_seed(2))
    assert a.shape == (3, 64, 64) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a[0], a[2])  # grayscale replicated
    # undo the normalisation: values are the [0, 1] pixels (0 where rotation left black corners)
    raw = a * 0.085585 + 0.5020
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
    # no randomness: exactly the inference resize (square image, so the random crop is the whole image)
    plain = MoCoCXRAugment(size=64, rotation=0, flip_p=0)(pixels)
    from radzoo.io.transforms import make_transform
    from radzoo.zoo.registry import get_spec

    spec = get_spec("mococxr_resnet18")
    from radzoo.training.hparams import MoCoCXRConfig
    from radzoo.training.methods.mococxr_pretraining import trained_spec

    served = make_transform(trained_spec(MoCoCXRConfig(image_size=64), "x").preprocess)(pixels)
    torch.testing.assert_close(plain, served)
    assert spec.preprocess.steps[0]["size"] == 320  # the registry entry is untouched


def test_two_view_dataset_is_reproducible_per_epoch(nih_paths, tmp_path):
    ds = TwoViewDataset(nih_paths[:2], MoCoCXRAugment(size=32), seed=3)
    q0, k0 = ds[0]
    assert not torch.equal(q0, k0)  # two different views
    again = TwoViewDataset(nih_paths[:2], MoCoCXRAugment(size=32), seed=3)[0]
    assert torch.equal(q0, again[0]) and torch.equal(k0, again[1])
    ds.set_epoch(1)
    assert not torch.equal(ds[0][0], q0)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ImageReadError, match="broken.png"):
        TwoViewDataset([broken], MoCoCXRAugment(size=32))[0]
