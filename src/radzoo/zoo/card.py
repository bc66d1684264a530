"""Model cards (the artifact's README.md), generated from the config: Hub metadata + the facts users need."""

from __future__ import annotations

import json
from typing import Any

_PIPELINE_TAG = {"cxr": "image-feature-extraction", "ct": "image-feature-extraction"}


def _yaml_value(value: Any) -> str:
    return json.dumps(value)


def render_card(config: dict[str, Any]) -> str:
    """Markdown card with YAML front matter (license, tags, library_name, pipeline_tag)."""
    spec = config["spec"]
    prov = config.get("provenance", {})
    tags = ["radzoo", "medical-imaging", spec["method"], *spec.get("tags", [])]
    lines = [
        "---",
        f"license: {spec['license']}",
        "library_name: radzoo",
        f"pipeline_tag: {_PIPELINE_TAG.get(spec['modality'], 'feature-extraction')}",
        "tags:",
        *[f"  - {t}" for t in dict.fromkeys(tags)],
        "---",
        "",
        f"# {spec['name']}",
        "",
    ]
    if spec.get("random_init"):
        lines += [
            "> **Random weights.** This artifact was built with `radzoo.build` (random initialisation) and is",
            "> meant for tests and offline smoke runs only. Its embeddings carry no medical meaning.",
            "",
        ]
    if config.get("tokenizer", {}).get("generated"):
        tok = config["tokenizer"]
        lines += [
            f"> **Generated tokenizer.** The text tower's tokenizer ({tok.get('vocab_size')} WordPiece pieces) was",
            "> generated offline by radzoo from the prompt sets and a radiology word list, so the text paths run",
            "> without downloads. It is not the original tokenizer; real weights need their own.",
            "",
        ]
    lines += [spec["description"], "", "## Usage", "", "```python", "import radzoo", ""]
    if spec["modality"] == "ct":
        lines += [
            "import radzoo.ct",
            f'result = radzoo.ct.features("chest_ct.nii.gz", model="{spec["name"]}")',
            "result.subject_embedding  # (128,)",
        ]
    else:
        lines += [
            f'model = radzoo.load("{spec["name"]}")',
            'emb = model.embed(["chest_xray.dcm"])  # float32 (N, D)',
        ]
    lines += ["```", "", "## Outputs", "", "| output | dim | default |", "|---|---|---|"]
    for name, dim in spec["outputs"].items():
        lines.append(f"| `{name}` | {dim} | {'yes' if name == spec['default_output'] else ''} |")
    pre = spec["preprocess"]
    lines += ["", "## Preprocessing", "", pre.get("notes", ""), "", "```json", json.dumps(pre["steps"], indent=1), "```", ""]
    text = spec.get("text") or {}
    if text:
        from radzoo.zoo.text_tokenizer import casing_note

        lines += ["## Text", ""] + [f"- **{k}**: {v}" for k, v in text.items()]
        note = casing_note(spec["method"], text)
        lines += ([f"- {note}"] if note else []) + [""]
    deviations = config.get("deviations") or []
    zs = config.get("zero_shot")
    if zs and zs.get("deviation"):
        deviations = [*deviations, zs["deviation"]]
    if deviations:
        lines += ["## Deviations from the original", ""] + [f"- {d}" for d in deviations] + [""]
    if zs:
        from radzoo.zoo.dicom_codes import card_markdown

        lines += card_markdown()
    lines += ["## Provenance", ""]
    if prov:
        for key, value in prov.items():
            if key == "golden":
                continue
            lines.append(f"- **{key}**: `{_yaml_value(value) if not isinstance(value, str) else value}`")
    else:
        lines.append("- built by radzoo" + (" with random initialisation" if spec.get("random_init") else ""))
    weights = config.get("weights", {})
    if weights.get("sha256"):
        lines.append(f"- **weights sha256**: `{weights['sha256']}`")
    onnx = config.get("onnx")
    if onnx:
        lines += [
            "",
            "## ONNX",
            "",
            f"Exporter: {onnx.get('exporter')}, opset {onnx.get('opset')}, "
            f"onnxruntime {onnx.get('onnxruntime_version')}.",
            "",
        ]
        for name, entry in onnx.get("graphs", {}).items():
            diff = entry.get("parity_max_abs_diff")
            lines.append(f"- `{entry.get('file', name)}` (fp32, opset {onnx.get('opset')}): parity max abs diff {diff}")
        lines += _precision_lines(onnx)
    if config.get("throughput"):
        lines += ["", *throughput_lines(config["throughput"])]
    lines += [
        "",
        "## Source",
        "",
        f"- Paper: {spec['paper_url']}",
        f"- Original code: {spec['code_url']}",
    ]
    for src in spec.get("sources", []):
        lines.append(f"- Original weights: {src['url']}" + (f" (sha256 `{src['sha256']}`)" if src.get("sha256") else ""))
    lines += ["", "## License", "", f"`{spec['license']}`. Check the original release's terms before use.", ""]
    lines += ["## Citation", "", "```bibtex", spec["citation"], "```", ""]
    return "\n".join(lines)


def _precision_lines(onnx: dict[str, Any]) -> list[str]:
    """The reduced-precision graphs: int8 with its calibration digest and gate, fp16 with its check."""
    lines: list[str] = []
    int8 = onnx.get("int8") or {}
    if int8.get("graphs"):
        cal = int8.get("calibration", {})
        lines += [
            "",
            "### int8 (static QDQ, onnxruntime quantization tools)",
            "",
            f"Calibrated on {cal.get('calibration_inputs')} inputs from {cal.get('source')} "
            f"(calibration digest `{str(cal.get('digest', ''))[:16]}`); cosine to fp32 measured on "
            f"{cal.get('held_apart_inputs')} held-apart inputs.",
            "",
        ]
        for name, entry in int8["graphs"].items():
            gate = entry.get("gate", {})
            lines.append(
                f"- `{entry.get('file', name)}`: cosine to fp32 mean {gate.get('cosine_mean', float('nan')):.4f}, "
                f"min {gate.get('cosine_min', float('nan')):.4f} (gate >= {gate.get('gate_mean')} / {gate.get('gate_min')})"
            )
    fp16 = onnx.get("fp16") or {}
    for name, entry in (fp16.get("graphs") or {}).items():
        lines.append(f"- `{entry.get('file', name)}` (fp16, GPUs): cosine to fp32 min {entry.get('cosine_min')}")
    return lines


def throughput_lines(section: dict[str, Any]) -> list[str]:
    """The card's "Throughput" section from the latest ``radzoo bench`` run (named hardware)."""
    hw = section.get("hardware", {})
    lines = [
        "## Throughput",
        "",
        f"Measured by `radzoo bench` on {section.get('date', '?')} on **{hw.get('name', 'unknown hardware')}** "
        f"({hw.get('cores', '?')} cores, {section.get('threads', '?')} threads; radzoo {section.get('radzoo_version', '?')}, "
        f"onnxruntime {section.get('versions', {}).get('onnxruntime', '?')}, torch {section.get('versions', {}).get('torch', '?')}). "
        "Numbers from another machine will differ; rerun `radzoo bench` there.",
        "",
        "| precision | runtime | device | path | batch | items/s (median) | min-max |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in section.get("rows", []):
        rate = row.get("items_per_s")
        shown = f"{rate:.1f}" if isinstance(rate, (int, float)) else str(rate)
        low, high = row.get("low"), row.get("high")
        spread = f"{low:.1f}-{high:.1f}" if isinstance(low, (int, float)) and isinstance(high, (int, float)) else ""
        lines.append(f"| {row.get('precision')} | {row.get('runtime')} | {row.get('device')} | {row.get('path')} | "
                     f"{row.get('batch')} | {shown} {row.get('unit', 'img/s')} | {spread} |")
    best = section.get("best_batches") or []
    if best:
        lines += ["", "Best batch per precision (the default batch of `radzoo extract` and `radzoo serve` on this "
                  "machine, unless one is given):", "",
                  "| precision | runtime | device | best batch | items/s (median) |", "|---|---|---|---|---|"]
        lines += [f"| {b.get('precision')} | {b.get('runtime')} | {b.get('device')} | {b.get('batch')} | "
                  f"{b.get('items_per_s', 0):.1f} {b.get('unit', 'img/s')} |" for b in best]
    lines.append("")
    return lines
