"""Model pages for the docs site, rendered from the same spec dictionary ``radzoo info`` prints.

One page per zoo entry: architecture, outputs and what each means, preprocessing, licence and
weight availability, sources, known deviations from the original and, where a ``radzoo bench``
record exists, its throughput table. The page embeds the ``radzoo info`` JSON verbatim, and
every section below is read from that dictionary (plus the meanings and deviations here), so the
site and the command cannot disagree. ``docs/hooks.py`` writes the pages at ``mkdocs build``
time; ``radzoo info NAME --markdown`` prints the same page.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from radzoo.zoo.card import throughput_lines
from radzoo.zoo.spec import ModelSpec

#: What each named output is, per architecture (the numbers are in the spec's ``outputs``).
OUTPUT_MEANINGS: dict[str, dict[str, str]] = {
    "mococxr": {
        "trunk": "globally average-pooled features of the CNN trunk's last block (the MoCo-CXR linear-eval feature)",
        "proj": "the 128-d MoCo projection head (only when converted with `--keep-head`)",
    },
    "prior": {
        "trunk": "mean-pooled ResNet-50 layer4 feature map (no attention pool, no projection)",
        "pooled": "PRIOR's attention pool over the 7x7 layer4 tokens, before the projection",
        "global": "the 768-d global image embedding: the attention-pooled feature through the global "
                  "projection, in the joint space of the report embeddings (zero-shot, retrieval)",
    },
    "lovt": {
        "trunk": "mean-pooled ResNet-50 layer4 feature map",
        "pooled": "LoVT's multi-head attention pool over the 49 region tokens (`yg_a` in the paper's code): "
                  "the image representation before any projection; radzoo's default LoVT embedding",
        "global": "`pooled` through the global projection (`zg_a`): the 512-d joint image-report space "
                  "that text embeddings share (compare by cosine)",
    },
    "igcl": {
        "trunk": "the CLIP ViT-B/32 `pooler_output` (layer-normed CLS token), before the projection",
        "global": "`pooler_output @ proj`: the 768-d image embedding in the space of the report-graph embeddings",
    },
    "graphct": {
        "patch": "one 128-d vector per 32^3 lung patch, from the 3D patch encoder (581 per subject)",
        "node": "the GCN's 128-d node embeddings over the patch-overlap graph (581 per subject)",
        "subject": "the mean of the 581 node embeddings: one 128-d vector per CT",
    },
}

#: Known deviations from the original release, per method (zero-shot rules add their own).
DEVIATIONS: dict[str, tuple[str, ...]] = {
    "mococxr": (
        "Served with the pretraining normalisation (0.5020, 0.085585); the separate CheXpert fine-tuning "
        "pipeline defaulted to ImageNet statistics (METHODS 1.3).",
    ),
    "prior": (
        "The image-only release (`prior_resnet50`) has no attention-pool or projection weights, so it "
        "offers only the mean-pooled trunk feature.",
        "`prior_resnet50_imagetext` is served with the CheXpert statistics of PRIOR's zero-shot script "
        "(0.50627, 0.28947), `prior_resnet50` with the pretraining statistics (0.4755, 0.3011) (METHODS 3.3).",
    ),
    "lovt": (
        "No original weights were published: LoVT weights come from radzoo's own training "
        "(`radzoo train lovt`).",
        "Normalisation is the constant (0.50, 0.29): the MIMIC statistics of the original were never "
        "shipped (METHODS 2.3).",
        "A report's global text feature is computed one report per batch, so it does not depend on "
        "the other reports of its batch (the original's zero-filled mean does).",
    ),
    "igcl": (
        "No weights were published and the original repository has no licence: weights come from "
        "radzoo's own training (`radzoo train igcl`).",
        "Graph embeddings mask padding nodes, so a graph's embedding does not depend on its batch "
        "(`pad_to=N` reproduces the original's unmasked padding).",
    ),
    "graphct": (
        "Lungs are segmented classically (threshold and morphology) unless `lungmask` is installed "
        "with its weights.",
    ),
}


def _weights_lines(spec: Mapping[str, Any]) -> list[str]:
    lines = []
    if spec.get("hub_repo"):
        lines.append(f"- **Hub**: `{spec['hub_repo']}` at revision `{spec.get('hub_revision')}` "
                     "(`radzoo.load` looks there after the local zoo)")
    if spec.get("sources"):
        for src in spec["sources"]:
            note = f" ({src['note']})" if src.get("note") else ""
            lines.append(f"- **Original release**: [{src['filename']}]({src['url']}), converted with "
                         f"`radzoo convert {src['format']}`{note}")
    else:
        lines.append("- **Original release**: none was published; weights come from `radzoo train "
                     f"{spec['method']}`")
    lines.append(f"- **Random weights** for offline smoke runs: `radzoo build {spec['name']} --out DIR` "
                 "or `--random-weights`")
    return lines


def model_page(info: Mapping[str, Any], *, throughput: Mapping[str, Any] | None = None,
               zero_shot_deviation: str | None = None) -> str:
    """The Markdown page for one model from its ``radzoo info`` dictionary (``ModelSpec.to_dict()``).

    ``throughput`` is a model card "throughput" section (from a ``radzoo bench`` record);
    ``zero_shot_deviation`` the zero-shot rule's deviation text, for image-text models.
    """
    spec = ModelSpec.from_dict(info)
    meanings = OUTPUT_MEANINGS.get(spec.method, {})
    lines = [f"# {spec.name}", "", spec.description, "",
             "| | |", "|---|---|",
             f"| method | `{spec.method}` ([paper]({spec.paper_url}), [code]({spec.code_url})) |",
             f"| modality | `{spec.modality}` |",
             f"| capabilities | {', '.join(f'`{c}`' for c in sorted(spec.capabilities))} |",
             f"| default output | `{spec.default_output}` ({spec.dim}-d) |",
             f"| licence | `{spec.license}` |", "",
             "## Architecture", "",
             f"`radzoo.nets` architecture `{spec.arch}` with these arguments:", "",
             "```json", json.dumps(info["arch_args"], indent=2), "```", "",
             "## Outputs", "",
             "Pick one with `model.embed(images, output=NAME)` or `radzoo embed --output NAME`.", "",
             "| output | dim | default | what it is |", "|---|---|---|---|"]
    for name, dim in spec.outputs.items():
        default = "yes" if name == spec.default_output else ""
        lines.append(f"| `{name}` | {dim} | {default} | {meanings.get(name, '')} |")
    pre = info["preprocess"]
    lines += ["", "## Preprocessing", "", pre.get("notes", ""), "",
              f"Input `{pre['input']}`; steps (data run by `radzoo.io.transforms.make_transform`):", "",
              "```json", json.dumps(pre["steps"], indent=2), "```", ""]
    if spec.text:
        lines += ["## Text tower", ""] + [f"- **{k}**: {v}" for k, v in spec.text.items()] + [""]
    lines += ["## Licence and weights", "", f"Licence: `{spec.license}`. Check the original release's "
              "terms before use.", "", *_weights_lines(info), ""]
    deviations = [*DEVIATIONS.get(spec.method, ()), *([zero_shot_deviation] if zero_shot_deviation else [])]
    if deviations:
        lines += ["## Known deviations from the original", ""] + [f"- {d}" for d in deviations] + [""]
    if throughput:
        lines += throughput_lines(dict(throughput))
    else:
        lines += ["## Throughput", "", "No `radzoo bench` record is published for this model yet: run "
                  f"`radzoo bench {spec.name} --random-weights` on your hardware.", ""]
    lines += ["## Sources", "", f"- Paper: {spec.paper_url}", f"- Original code: {spec.code_url}",
              "", "```bibtex", spec.citation, "```", "",
              "## `radzoo info`", "", f"`radzoo info {spec.name}` prints the spec this page is made from:", "",
              "```json", json.dumps(info, indent=2), "```", ""]
    return "\n".join(lines)


def registry_page(name: str, throughput: Mapping[str, Any] | None = None) -> str:
    """``model_page`` for a registry name, with its zero-shot deviation when it has one."""
    from radzoo import zoo
    from radzoo.zeroshot.prompts import zero_shot_section

    spec = zoo.get_spec(name)
    deviation = zero_shot_section(spec)["deviation"] if "zero_shot" in spec.capabilities else None
    return model_page(spec.to_dict(), throughput=throughput, zero_shot_deviation=deviation)


def models_index() -> str:
    """The models overview page: one row per registry entry, linking to its page."""
    from radzoo import zoo

    lines = ["# Models", "", "One page per zoo entry, generated from the registry at build time "
             "(the same data as `radzoo models` and `radzoo info NAME`).", "",
             "| model | method | modality | outputs | licence |", "|---|---|---|---|---|"]
    for name in zoo.list_models():
        spec = zoo.get_spec(name)
        outs = ", ".join(f"`{k}` {v}" for k, v in spec.outputs.items())
        lines.append(f"| [{name}]({name}.md) | {spec.method} | {spec.modality} | {outs} | `{spec.license}` |")
    return "\n".join(lines) + "\n"
