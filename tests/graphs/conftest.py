"""IGCL report-graph fixtures: a tiny node-feature BERT, the tiny IGCL net, derived RadGraph entries.

The RadGraph entries here are DERIVED from NIH ChestX-ray14 labels by fixed templates
(tests/derived_radgraph.py): they are not real RadGraph annotations.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import radzoo

#: A hand-worked RadGraph entry (see test_report_graphs.py for the expected graph).
HAND_ENTRY = {
    "text": "Small left pleural effusion . No pneumothorax . Heart size normal .",
    "entities": {
        "1": {"tokens": "Small", "label": "OBS-DP", "start_ix": 0, "end_ix": 0, "relations": [["modify", "4"]]},
        "2": {"tokens": "left", "label": "ANAT-DP", "start_ix": 1, "end_ix": 1, "relations": [["modify", "3"]]},
        "3": {"tokens": "pleural", "label": "ANAT-DP", "start_ix": 2, "end_ix": 2, "relations": [["modify", "3"]]},
        "4": {"tokens": "effusion", "label": "OBS-DP", "start_ix": 3, "end_ix": 3,
              "relations": [["located_at", "3"], ["suggestive_of", "2"]]},
        "5": {"tokens": "pneumothorax", "label": "OBS-DA", "start_ix": 6, "end_ix": 6, "relations": []},
        "6": {"tokens": "Heart size", "label": "ANAT-DP", "start_ix": 8, "end_ix": 9, "relations": []},
        "7": {"tokens": "normal", "label": "obs-dp", "start_ix": 10, "end_ix": 10, "relations": [["located_at", "6"]]},
    },
}


@pytest.fixture(scope="session")
def vocab_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from radzoo.zoo.tiny import write_test_vocab

    return write_test_vocab(tmp_path_factory.mktemp("graphs") / "vocab", lowercase=True)


@pytest.fixture(scope="session")
def tower(vocab_dir: Path):
    import torch

    from radzoo.graphs import NodeTextTower
    from radzoo.zoo.tiny import TINY_NODE_TEXT_CONFIG

    torch.set_num_threads(1)  # tiny matrices: threads only add overhead on a shared 2-core machine
    return NodeTextTower.random(TINY_NODE_TEXT_CONFIG, vocab_dir, seed=5)


@pytest.fixture(scope="session")
def igcl_model():
    from radzoo.zoo.tiny import tiny_specs

    return radzoo.build(tiny_specs()["tiny-random-igcl"], seed=2)


@pytest.fixture(scope="session")
def derived_entries(shared_data: Path) -> dict:
    from derived_radgraph import derived_entry, nih_rows

    rows = nih_rows(shared_data)[:16]
    return {f"nih/{r['image_id']}": derived_entry(r["finding_labels"].split("|")) for r in rows}
