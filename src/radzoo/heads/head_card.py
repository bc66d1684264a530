"""The head's card (README.md): what it predicts, how well (CV, with CIs, next to the floors), how
well calibrated, at which operating points, and what it was and was not validated on."""

from __future__ import annotations

from typing import Any


def _est(d: dict[str, Any] | None) -> str:
    if not d or d.get("value") is None:
        return "n/a"
    lo, hi = (d.get("ci") or [None, None])[:2]
    return f"{d['value']:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else "")


def operating_point_table(document: dict[str, Any]) -> str:
    """Markdown: one row per (label, operating point) with its CV sensitivity, specificity, PPV, NPV."""
    lines = ["| label | operating point | threshold | sensitivity | specificity | PPV | NPV |",
             "|---|---|---|---|---|---|---|"]
    for label in document["labels"]:
        for name, point in document["heads"][label]["operating_points"].items():
            lines.append(f"| {label} | {name} | {point['threshold']:.4f} | {_est(point.get('sensitivity'))} | "
                         f"{_est(point.get('specificity'))} | {_est(point.get('ppv'))} | {_est(point.get('npv'))} |")
    return "\n".join(lines) + "\n"


def moved_markdown(entry: dict[str, Any]) -> str:
    """How one recalibration moved each operating point, and what the old threshold did on the new site."""
    lines = ["| label | point | threshold before -> after | old threshold on new site: sens / spec | "
             "new threshold: sens / spec | predicted positive old / new / true |", "|---|---|---|---|---|---|"]
    for label, points in entry.get("moved", {}).items():
        for name, m in points.items():
            o, n = m["old_threshold_on_new_site"], m["new_threshold_on_new_site"]
            lines.append(f"| {label} | {name} | {m['threshold_before']:.4f} -> {m['threshold_after']:.4f} | "
                         f"{_est(o['sensitivity'])} / {_est(o['specificity'])} | {_est(n['sensitivity'])} / "
                         f"{_est(n['specificity'])} | {m['predicted_positive_old']} / {m['predicted_positive_new']} / "
                         f"{m['true_positive_count']} |")
    return "\n".join(lines) + "\n"


def render_head_card(document: dict[str, Any]) -> str:
    base, data = document["base"], document["data"]
    rnd = " (RANDOM weights: a smoke test, not a result)" if base.get("random_weights") else ""
    level = int(round(100 * document.get("protocol", {}).get("ci_level", 0.95)))
    out = [
        f"# Task head `{document.get('name')}`", "",
        f"Labels: {', '.join(document['labels'])}. Kind: {document.get('kind')} on embeddings of "
        f"**{base['model']}**{rnd}, output `{base['output']}` ({base.get('dim')}-d), weights revision "
        f"`{base['revision']}`, preprocessing `{str(base['preprocess'])[:16]}`, trained at precision "
        f"{base.get('precision')}" + (f", seed {base['seed']}" if base.get("seed") is not None else "") + ".", "",
        "Use: `radzoo.load(THIS_FOLDER).predict(images, operating_point=\"youden\")`, "
        "`radzoo predict --head THIS_FOLDER IMAGES --out F`, `radzoo extract --head`, `radzoo serve --heads`.", "",
        "## Training data", "",
        f"{data['n_rows']} images from {data['n_groups']} patients in `{data['labels_file']}` "
        f"(data digest `{str(data['digest'])[:16]}`).", "",
        "| label | positives | negatives | prevalence | calibration | ECE before | ECE after |",
        "|---|---|---|---|---|---|---|",
    ]
    for label in document["labels"]:
        h = document["heads"][label]
        rel = h.get("reliability", {})
        out.append(f"| {label} | {h['n_pos']} | {h['n_neg']} | {h['prevalence']:.3f} | {h['calibration']['method']} | "
                   f"{rel.get('before', {}).get('ece', float('nan')):.3f} | {rel.get('after', {}).get('ece', float('nan')):.3f} |")
    out += ["", f"## Cross-validated metrics ({level}% patient-bootstrap CIs), next to the floors", ""]
    out.append(document.get("cv", {}).get("markdown", "").replace("## ", "### "))
    out += ["## Operating points", "",
            "Chosen on out-of-fold calibrated probabilities; sensitivity, specificity, PPV and NPV are "
            "cross-validated on the same rows at the training prevalence.", "",
            operating_point_table(document)]
    figures = document.get("files", {}).get("reliability", {})
    if figures:
        out += ["## Reliability (out of fold, before and after calibration)", ""]
        out += [f"![{label}]({path})" for label, path in figures.items()] + [""]
    for entry in document.get("history", []):
        out += [f"## Recalibrated on `{entry.get('labels_file')}` ({entry.get('n_rows')} rows, {entry.get('created')}; "
                f"weights unchanged, previous head `{str(entry.get('previous_digest'))[:16]}`)", "",
                moved_markdown(entry)]
    out += ["## What it was and was not validated on", "",
            f"- Validated: {document.get('protocol', {}).get('folds', {}).get('n_splits')}-fold patient-grouped "
            f"cross-validation on the {data['n_rows']} training images above only, one site, this base model "
            "and preprocessing.",
            "- Not validated: other sites, scanners, protocols or populations; other prevalences (PPV and NPV "
            "move with prevalence); other base models or weights (refused at load time).",
            "- A threshold carried to another site is a known failure: recalibrate with "
            "`radzoo head recalibrate HEAD --labels-csv SITE.csv --out HEAD2` on a labelled sample there.", ""]
    for note in document.get("notes", []):
        out.append(f"- note: {note}")
    out += ["", f"Head digest: `{document.get('digest', '')}`", ""]
    return "\n".join(out)
