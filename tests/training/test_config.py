import json

import pytest

from radzoo.training.hparams import (
    ConfigError,
    MoCoCXRConfig,
    config_dict,
    resolve_config,
    write_config,
)
from radzoo.training.schedules import step_decay


def test_defaults_are_the_papers():
    c = MoCoCXRConfig()
    assert (c.moco_t, c.moco_m, c.moco_k, c.proj_dim) == (0.2, 0.999, 24576, 128)
    assert (c.lr, c.weight_decay, c.beta1, c.beta2) == (1e-4, 1e-4, 0.9, 0.999)
    assert (c.schedule, c.lr_gamma, c.epochs, c.image_size, c.init) == (
        (12, 18),
        0.1,
        20,
        320,
        "imagenet",
    )


def test_step_schedule():
    lr_at = step_decay(1e-4, (12, 18), 0.1)
    assert [lr_at(0, e) for e in (0, 11)] == [1e-4, 1e-4]
    assert lr_at(0, 12) == pytest.approx(1e-5) and lr_at(0, 17) == pytest.approx(1e-5)
    assert lr_at(0, 18) == pytest.approx(1e-6) and lr_at(0, 19) == pytest.approx(1e-6)


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_file_then_overrides_resolve_and_round_trip(tmp_path, suffix):
    path = tmp_path / f"run{suffix}"
    if suffix == ".toml":
        path.write_text(
            'arch = "resnet50"\nlr = 0.001\nschedule = [3, 5]\nkeep_head = true\nepochs = 7\n'
        )
    else:
        path.write_text(
            json.dumps(
                {
                    "arch": "resnet50",
                    "lr": 0.001,
                    "schedule": [3, 5],
                    "keep_head": True,
                    "epochs": 7,
                }
            )
        )
    c = resolve_config(MoCoCXRConfig, path, ["--epochs=2", "--moco-k=64", "flip_p=0"])
    assert (c.arch, c.lr, c.schedule, c.keep_head) == ("resnet50", 0.001, (3, 5), True)
    assert (c.epochs, c.moco_k, c.flip_p) == (2, 64, 0.0)  # overrides win over the file
    written = write_config(c, tmp_path / "out" / "config.json")
    assert json.loads(written.read_text())["schedule"] == [3, 5]
    assert resolve_config(MoCoCXRConfig, written) == c
    assert config_dict(c)["method"] == "mococxr"


def test_bad_keys_and_values_name_the_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("learning_rate = 0.1\n")
    with pytest.raises(
        ConfigError, match=r"unknown mococxr config key 'learning_rate' in config file .*bad.toml"
    ):
        resolve_config(MoCoCXRConfig, bad)
    with pytest.raises(ConfigError, match=r"'momentum'.*overrides"):
        resolve_config(MoCoCXRConfig, None, ["--momentum=0.9"])
    with pytest.raises(ConfigError, match="did you mean moco_t"):
        resolve_config(MoCoCXRConfig, None, {"moco_tt": "0.1"})
    with pytest.raises(ConfigError, match="epochs in overrides: expected an integer, got 'ten'"):
        resolve_config(MoCoCXRConfig, None, ["epochs=ten"])
    with pytest.raises(ConfigError, match="keep_head .*true/false"):
        resolve_config(MoCoCXRConfig, None, ["keep_head=maybe"])
    with pytest.raises(ConfigError, match="must look like key=value"):
        resolve_config(MoCoCXRConfig, None, ["--epochs"])
    with pytest.raises(ConfigError, match="arch: 'vgg16' has no zoo spec"):
        resolve_config(MoCoCXRConfig, None, ["arch=vgg16"])
    with pytest.raises(ConfigError, match="moco_m"):
        resolve_config(MoCoCXRConfig, None, ["moco_m=2"])
    nested = tmp_path / "nested.toml"
    nested.write_text("[optim]\nlr = 1\n")
    with pytest.raises(ConfigError, match="'optim' is a table"):
        resolve_config(MoCoCXRConfig, nested)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        resolve_config(MoCoCXRConfig, broken)
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_config(MoCoCXRConfig, tmp_path / "missing.toml")
    yaml = tmp_path / "c.yaml"
    yaml.write_text("lr: 1")
    with pytest.raises(ConfigError, match=r"\.json or \.toml"):
        resolve_config(MoCoCXRConfig, yaml)
