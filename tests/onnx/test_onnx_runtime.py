"""``radzoo.load(DIR, runtime="onnx")``: the same ``embed`` API through onnxruntime, equal to torch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

import radzoo
from conftest import TINY_2D, TINY_TEXT
from radzoo.errors import ArtifactError, CapabilityError, InputError
from radzoo.onnx.ort_runtime import OnnxRuntime, onnx_runtime_for
from radzoo.zoo.tiny import tiny_specs


def _batch(model, n: int, seed: int) -> np.ndarray:
    shape = json.loads((model.directory / "config.json").read_text())["golden"]["inputs"]["image"][1:]
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


@pytest.mark.parametrize("name", TINY_2D)
def test_onnx_embed_equals_torch_at_batch_1_and_5(name: str, exported) -> None:
    directory = exported(name)
    torch_model = radzoo.load(directory, device="cpu", runtime="torch")
    onnx_model = radzoo.load(directory, device="cpu", runtime="onnx")
    assert onnx_model.runtime.name == "onnx" and isinstance(onnx_model.runtime, OnnxRuntime)
    for n, seed in ((1, 1), (5, 2)):
        x = _batch(torch_model, n, seed)
        for output in torch_model.outputs:
            ref = torch_model.embed_batch(x, output)
            got = onnx_model.embed_batch(torch.from_numpy(x), output)  # tensors are accepted too
            assert got.shape == (n, torch_model.outputs[output])
            np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0, err_msg=f"{name}/{output}/batch {n}")
    # sessions are created lazily once per graph and cached
    assert set(onnx_model.runtime._sessions) == {f"image_{o}" for o in torch_model.outputs}
    first = onnx_model.runtime.session(f"image_{torch_model.default_output}")
    assert onnx_model.runtime.session(f"image_{torch_model.default_output}") is first


def test_onnx_embed_from_images_uses_spec_preprocessing(exported) -> None:
    directory = exported("tiny-random-mococxr")
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, size=(80, 70), dtype=np.uint8) for _ in range(3)]
    ref = radzoo.load(directory, device="cpu", runtime="torch").embed(images)
    got = radzoo.load(directory, device="cpu", runtime="onnx").embed(images, batch_size=2)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)


def _text_inputs(vocab: int, batch: int, length: int, seed: int):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab, size=(batch, length), dtype=np.int64)
    mask = np.ones_like(ids)
    index = np.full_like(ids, -1)
    for r in range(batch):
        real = length - 2 * r
        mask[r, real:] = 0
        ids[r, real:] = 0
        index[r, 1 : real - 1] = np.arange(real - 2) * (r + 2) // (real - 2)  # r + 2 sentences
    return ids, mask, index


@pytest.mark.parametrize("name", TINY_TEXT)
def test_text_graph_dynamic_batch_and_sequence(name: str, exported) -> None:
    directory = exported(name)
    model = radzoo.load(directory, device="cpu", runtime="onnx")
    vocab = tiny_specs()[name].arch_args["text_config"]["vocab_size"]
    for batch, length, seed in ((1, 9, 1), (3, 27, 2)):
        ids, mask, index = _text_inputs(vocab, batch, length, seed)
        t = [torch.from_numpy(a) for a in (ids, mask, index)]
        with torch.inference_mode():
            if name == "tiny-random-prior":
                ref = model.net.encode_prompts(t[0], t[1])["global"].numpy()
            else:  # the canonical LoVT computation, not the export wrapper
                ref = model.net.encode_text(*t)["global"].numpy()
        got = model.runtime.encode_text(ids, mask, index if name == "tiny-random-lovt" else None)
        assert got.shape == ref.shape == (batch, 32)
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0, err_msg=f"{name} batch {batch} len {length}")
    if name == "tiny-random-lovt":
        with pytest.raises(InputError, match="sentence_index"):
            model.runtime.encode_text(ids, mask)


def test_graphct_patch_encoder_and_gnn_dynamic(exported) -> None:
    directory = exported("tiny-random-graphct")
    model = radzoo.load(directory, device="cpu", runtime="onnx")
    rng = np.random.default_rng(4)
    for n in (1, 5):
        patches = rng.uniform(-1, 1, size=(n, 1, 32, 32, 32)).astype(np.float32)
        with torch.inference_mode():
            ref = model.net.encode_patches(torch.from_numpy(patches)).numpy()
        np.testing.assert_allclose(model.runtime.encode_patches(patches), ref, atol=1e-4, rtol=0)
    feats = rng.standard_normal((21, 128)).astype(np.float32)
    edges = rng.integers(0, 21, size=(2, 50)).astype(np.int64)
    with torch.inference_mode():
        ref = model.net.encode_graph(torch.from_numpy(feats), torch.from_numpy(edges)).numpy()
    np.testing.assert_allclose(model.runtime.encode_graph(feats, edges), ref, atol=1e-4, rtol=0)
    with pytest.raises(CapabilityError, match="radzoo.ct"):
        model.runtime.run(np.zeros((1, 1, 8, 8), np.float32), "subject")


def test_options_are_validated_and_applied(exported) -> None:
    directory = exported("tiny-random-mococxr")
    model = radzoo.load(
        directory,
        runtime="onnx",
        runtime_options={
            "providers": ["CPUExecutionProvider"],
            "graph_optimization_level": "basic",
            "intra_op_num_threads": 1,
            "inter_op_num_threads": 1,
            "execution_mode": "sequential",
        },
    )
    model.embed_batch(_batch(model, 2, 0))
    session = model.runtime.session("image_trunk")
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert session.get_session_options().intra_op_num_threads == 1
    assert (
        session.get_session_options().graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    )
    # default: CPU here (no CUDA provider in this onnxruntime build / no GPU)
    default = radzoo.load(directory, device="cpu", runtime="onnx")
    assert default.runtime.providers == ["CPUExecutionProvider"]
    with pytest.raises(InputError, match="unknown onnx runtime option.*intra_threads"):
        radzoo.load(directory, runtime="onnx", runtime_options={"intra_threads": 2})
    with pytest.raises(InputError, match="CUDAExecutionProvider not available.*onnxruntime-gpu"):
        radzoo.load(directory, runtime="onnx", runtime_options={"providers": ["CUDAExecutionProvider"]})
    with pytest.raises(InputError, match="graph_optimization_level"):
        radzoo.load(directory, runtime="onnx", runtime_options={"graph_optimization_level": "max"})
    with pytest.raises(InputError, match="intra_op_num_threads"):
        radzoo.load(directory, runtime="onnx", runtime_options={"intra_op_num_threads": -1})
    with pytest.raises(InputError, match="execution_mode"):
        radzoo.load(directory, runtime="onnx", runtime_options={"execution_mode": "async"})
    with pytest.raises(InputError, match=r"expects shape \['batch', 3, 64, 64\], got \[2, 3, 32, 32\]"):
        model.embed_batch(np.zeros((2, 3, 32, 32), np.float32))


def test_clear_errors_without_export(saved, exported_copy, tmp_path: Path) -> None:
    built = radzoo.build(tiny_specs()["tiny-random-mococxr"], device="cpu", runtime="torch")
    with pytest.raises(ArtifactError, match=r"radzoo.build.*radzoo export DIR"):
        onnx_runtime_for(built)  # the low-level constructor needs an artifact export
    plain = saved("tiny-random-mococxr")
    with pytest.raises(ArtifactError, match=rf"no ONNX export; run `radzoo export {plain}`"):
        onnx_runtime_for(radzoo.load(plain, runtime="torch"))
    # a partial export names the missing graph and the command (runtime level) ...
    partial = tmp_path / "partial"
    shutil.copytree(plain, partial)
    from radzoo.artifacts import export_artifact

    export_artifact(partial, outputs=["trunk"])
    model = radzoo.load(partial, runtime="torch")
    with pytest.raises(ArtifactError, match=r"no ONNX graph 'image_proj'.*radzoo export"):
        onnx_runtime_for(model).run(_batch(model, 1, 0), "proj")
    # ... while radzoo.load(runtime="onnx") completes the export in the (writable) artifact
    completed = radzoo.load(partial, runtime="onnx")
    assert completed.embed_batch(_batch(model, 1, 0), "proj").shape == (1, 128)
    assert set(json.loads((partial / "config.json").read_text())["onnx"]["graphs"]) == {"image_trunk", "image_proj"}
    # a replaced graph file is refused by the runtime unless verify_files=False
    damaged = exported_copy("tiny-random-mococxr")
    (damaged / "onnx" / "image_trunk.onnx").write_bytes(
        (damaged / "onnx" / "image_proj.onnx").read_bytes()
    )
    with pytest.raises(ArtifactError, match="sha256 does not match"):
        onnx_runtime_for(radzoo.load(damaged, runtime="torch")).run(_batch(model, 1, 0), "trunk")
