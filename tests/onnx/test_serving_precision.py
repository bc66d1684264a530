"""The server's precision setting reaches ``radzoo.load`` and every embedding answer records it
(in process: ``Endpoints`` is the service minus HTTP)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import save_with_golden
from radzoo.errors import InputError
from radzoo.serving.endpoints import Endpoints
from radzoo.serving.settings import ServeSettings

MOCO = "tiny-random-mococxr"


def test_answers_record_runtime_and_precision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              shared_data: Path) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("RADZOO_HOME", str(home))
    save_with_golden(MOCO, home / "models" / MOCO)
    png = sorted((shared_data / "cxr_nih" / "images").glob("*.png"))[0].read_bytes()
    for precision, runtime in (("bf16", "torch"), ("fp32", "onnx")):
        endpoints = Endpoints(ServeSettings(models=(MOCO,), precision=precision))
        try:
            answer = endpoints.embed(MOCO, [png, png])
            assert (answer["runtime"], answer["precision"]) == (runtime, precision)
            assert answer["dim"] == 512 and len(answer["data"]) == 2
            listed = endpoints.models()
            assert listed["precision"] == precision and listed["data"][0]["precision"] == precision
        finally:
            endpoints.pool.close()
    assert ServeSettings.from_env({"RADZOO_PRECISION": "int8"}).precision == "int8"
    with pytest.raises(InputError, match="precision must be one of fp32, bf16, fp16, int8"):
        ServeSettings.from_env({"RADZOO_PRECISION": "fp8"})
