"""IGCL report graphs: parsing, node text features and AddReactionNodes against hand-worked results.

Independent references: the expected graph of ``HAND_ENTRY`` is worked out by hand below from
the original code's rules (construct_tu_files.py, radgraph_tu.py, add_reaction_node.py), and the
node text features are recomputed with a plain transcription of gen_word_embedding.py.
"""

from __future__ import annotations

import copy
import json
from itertools import accumulate, takewhile
from pathlib import Path

import pytest
import torch

from conftest import HAND_ENTRY
from radzoo.graphs import (
    RadGraphEntryError,
    graph_data,
    parse_entry,
    read_radgraph,
)
from radzoo.graphs.reaction_nodes import add_reaction_nodes

# words: 0 Small 1 left 2 pleural 3 effusion 4 . 5 No 6 pneumothorax 7 . 8 Heart 9 size 10 normal 11 .
# nodes: entity ids 1..7 -> 0..6; labels OBS-DP 0, OBS-DA 1, OBS-U 2, ANAT-DP 3
HAND_LABELS = (0, 3, 3, 0, 1, 3, 0)
# first relations only: 1 modify 4, 2 modify 3, 3 modify 3 (self-loop: removed), 4 located_at 3
# (its suggestive_of is ignored), 7 located_at 6; sorted by (head, tail) as coalesce does
HAND_EDGES = ((0, 3, 1), (1, 2, 1), (3, 2, 0), (6, 5, 0))
# node 4 (pneumothorax) is isolated -> components, each in DFS order from its lowest node:
# [0, 3, 2, 1], [4], [5, 6] -> dummies 7, 8, 9 and the reaction node 10
HAND_REACTION_EDGES = {
    (0, 7), (7, 0), (3, 7), (7, 3), (2, 7), (7, 2), (1, 7), (7, 1),
    (4, 8), (8, 4),
    (5, 9), (9, 5), (6, 9), (9, 6),
    (10, 7), (7, 10), (10, 8), (8, 10), (10, 9), (9, 10),
}


def test_parse_hand_worked_entry() -> None:
    g = parse_entry("hand", HAND_ENTRY)
    assert g.entity_ids == ("1", "2", "3", "4", "5", "6", "7")
    assert g.labels == HAND_LABELS
    assert g.spans == ((0, 0), (1, 1), (2, 2), (3, 3), (6, 6), (8, 9), (10, 10))
    assert g.edges == HAND_EDGES


def test_graph_data_and_reaction_nodes_hand_worked(tower) -> None:
    g = parse_entry("hand", HAND_ENTRY)
    feats = torch.randn(7, tower.hidden_size)
    d = graph_data(g, feats)
    assert d.num_nodes == 11 and d.x.shape == (11, tower.hidden_size + 4)
    torch.testing.assert_close(d.x[:7, : tower.hidden_size], feats)
    torch.testing.assert_close(d.x[:7, tower.hidden_size :], torch.eye(4)[list(HAND_LABELS)])
    assert not d.x[7:].any()  # dummy and reaction nodes have zero features
    pairs = d.edge_index.t().tolist()
    assert [tuple(p) for p in pairs[:4]] == [(h, t) for h, t, _ in HAND_EDGES]
    assert {tuple(p) for p in pairs[4:]} == HAND_REACTION_EDGES and len(pairs) == 4 + len(HAND_REACTION_EDGES)
    assert d.edge_attr.shape == (24, 4)
    torch.testing.assert_close(d.edge_attr[:4], torch.eye(4)[[1, 1, 0, 0]])
    torch.testing.assert_close(d.edge_attr[4:], torch.eye(4)[[3] * 20])
    assert d.edge_type.tolist() == [1, 1, 0, 0] + [3] * 20


def test_reaction_nodes_only_when_isolated_nodes_exist() -> None:
    from torch_geometric.data import Data

    x = torch.randn(3, 5)
    # connected chain: only the 4th (zero) edge column is added
    chain = Data(x=x, edge_index=torch.tensor([[0, 1], [1, 2]]), edge_attr=torch.eye(3)[[0, 2]])
    out = add_reaction_nodes(chain)
    assert out.num_nodes == 3 and out.edge_index.shape == (2, 2)
    torch.testing.assert_close(out.edge_attr, torch.tensor([[1.0, 0, 0, 0], [0, 0, 1, 0]]))
    # two components without isolated nodes: unchanged as well (the original checks isolation first)
    two = Data(x=torch.randn(4, 5), edge_index=torch.tensor([[0, 2], [1, 3]]), edge_attr=torch.eye(3)[[0, 1]])
    assert add_reaction_nodes(two).num_nodes == 4
    # one isolated node only: a single component, nothing added
    single = Data(x=torch.randn(1, 5), edge_index=torch.zeros(2, 0, dtype=torch.long), edge_attr=torch.zeros(0, 3))
    out = add_reaction_nodes(single)
    assert out.num_nodes == 1 and out.edge_attr.shape == (0, 4)
    # the input is left untouched
    assert chain.edge_attr.shape == (2, 3)


def _original_word_embedding(tower, text: str) -> torch.Tensor:
    """A plain transcription of gen_word_embedding.word_embedding (incl. the two-window path)."""
    tok, bert, max_len = tower.tokenizer, tower.bert, tower.max_seq_len
    words = ("[CLS] " + text + " [SEP]").split(" ")
    tokens = [tok.tokenize(w) for w in words]
    word_idx = [[i] * len(t) for i, t in enumerate(tokens)]
    num_tokens = [len(t) for t in tokens]

    def embed(tokenized, index):
        ids = torch.tensor([tok.convert_tokens_to_ids(tokenized)])
        with torch.no_grad():
            hidden = bert(ids, torch.ones_like(ids), output_hidden_states=True).hidden_states
        vec = torch.stack(hidden, 0).squeeze(1).permute(1, 0, 2)[:, -4:].sum(dim=1)
        out = torch.zeros(int(max(index)) + 1, vec.shape[1])
        for row, w in enumerate(index):
            out[w] += vec[row]
        return out

    if sum(num_tokens) < max_len:
        return embed([t for ts in tokens for t in ts], [i for ws in word_idx for i in ws])
    last = len(list(takewhile(lambda x: x < max_len, accumulate(num_tokens)))) - 1 - 1
    toks1 = [t for ts in tokens[: last + 1] for t in ts] + [" [SEP]"]
    idx1 = [i for ws in word_idx[: last + 1] for i in ws] + [last + 1]
    e1 = embed(toks1, idx1)
    last_b = len(list(takewhile(lambda x: x < max_len, accumulate(reversed(num_tokens))))) - 1 - 1
    first = len(words) - (last_b + 1)
    flat2 = [i for ws in word_idx[first:] for i in ws]
    toks2 = ["[CLS] "] + [t for ts in tokens[first:] for t in ts]
    idx2 = [0] + [i - flat2[0] + 1 for i in flat2]
    e2 = embed(toks2, idx2)
    word_idx_2 = [w[0] for w in word_idx if w[0] >= first and w[0] < word_idx[-1][0]]
    emb_idx_2 = word_idx_2.index(last) + 1
    return torch.cat((e1[0:-1], e2[emb_idx_2 + 1 :]), dim=0)


def _original_span(words: torch.Tensor, start: int, end: int) -> torch.Tensor:
    return words[start + 1] if start == end else words[start + 1 : end + 2].mean(dim=0)


def test_node_text_features_match_the_original_recipe(tower) -> None:
    g = parse_entry("hand", HAND_ENTRY)
    words = _original_word_embedding(tower, g.text)
    expected = torch.stack([_original_span(words, s, e) for s, e in g.spans])
    torch.testing.assert_close(tower.span_features(g), expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(expected[5], words[9])  # the two-word span is a mean, not one word


def test_long_report_uses_the_two_windows_as_the_original(tower) -> None:
    sentence = "There is a small pleural effusion . No pneumothorax ."
    text = " ".join([sentence] * 12)  # well over the tiny tower's 128 positions
    n_words = len(text.split(" "))
    entry = {"text": text, "entities": {
        "1": {"tokens": "small", "label": "OBS-DP", "start_ix": 3, "end_ix": 3, "relations": []},
        "2": {"tokens": "pleural effusion", "label": "OBS-DP", "start_ix": n_words - 6, "end_ix": n_words - 5,
              "relations": []},
    }}
    g = parse_entry("long", entry)
    assert len(tower.tokenizer.tokenize(text)) >= tower.max_seq_len
    words = _original_word_embedding(tower, text)
    assert words.shape[0] == n_words + 2
    torch.testing.assert_close(tower.word_embeddings(text), words, rtol=1e-5, atol=1e-5)
    expected = torch.stack([_original_span(words, s, e) for s, e in g.spans])
    torch.testing.assert_close(tower.span_features(g), expected, rtol=1e-5, atol=1e-5)


def test_report_too_long_for_two_windows_is_refused(tower) -> None:
    from radzoo.errors import InputError

    with pytest.raises(InputError, match="too long for two overlapping"):
        tower.word_embeddings(" ".join(["effusion"] * 400))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: e.update(entities={}), "has no entities"),
        (lambda e: e["entities"]["4"].update(relations=[["located_at", "99"]]), "'99', which does not exist"),
        (lambda e: e["entities"]["2"].update(label="ANAT-DA"), "unknown label 'ANAT-DA'"),
        (lambda e: e["entities"]["2"].update(relations=[["part_of", "3"]]), "unknown relation 'part_of'"),
        (lambda e: e["entities"]["6"].update(end_ix=40), "outside the text's 12 words"),
        (lambda e: e["entities"]["6"].update(start_ix="x"), "start_ix must be an integer"),
        (lambda e: e.pop("text"), "has no report 'text'"),
        (lambda e: e.pop("entities"), "has no 'entities' field"),
    ],
)
def test_bad_entries_name_the_report_and_the_problem(change, message: str) -> None:
    entry = copy.deepcopy(HAND_ENTRY)
    change(entry)
    with pytest.raises(RadGraphEntryError, match=message) as info:
        parse_entry("p10/s1.txt", entry)
    assert info.value.report_id == "p10/s1.txt" and "p10/s1.txt" in str(info.value)


def test_later_dangling_relations_are_ignored_and_test_split_nesting_is_read() -> None:
    entry = copy.deepcopy(HAND_ENTRY)
    entry["entities"]["4"]["relations"].append(["modify", "99"])  # not the first: unused by IGCL
    assert parse_entry("a", entry).edges == HAND_EDGES
    nested = {"text": HAND_ENTRY["text"], "labeler_1": {"entities": HAND_ENTRY["entities"]}, "labeler_2": {}}
    assert parse_entry("b", nested).edges == HAND_EDGES


def test_read_radgraph_json_and_jsonl(tmp_path: Path) -> None:
    from radzoo.errors import InputError

    (tmp_path / "g.json").write_text(json.dumps({"r1": HAND_ENTRY}))
    assert list(read_radgraph(tmp_path / "g.json")) == ["r1"]
    (tmp_path / "g.jsonl").write_text(json.dumps({"report_id": "r2", **HAND_ENTRY}) + "\n\n" + json.dumps({"r3": HAND_ENTRY}) + "\n")
    assert list(read_radgraph(tmp_path / "g.jsonl")) == ["r2", "r3"]
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(InputError, match="bad.jsonl, line 1"):
        read_radgraph(tmp_path / "bad.jsonl")
    with pytest.raises(InputError, match="does not exist"):
        read_radgraph(tmp_path / "missing.json")


def test_derived_entries_cover_every_label_and_relation(derived_entries: dict) -> None:
    """The label-derived test entries (NOT real RadGraph) exercise all patterns IGCL handles."""
    graphs = [parse_entry(k, v) for k, v in derived_entries.items()]
    assert {lab for g in graphs for lab in g.labels} == {0, 1, 2, 3}
    assert {rel for g in graphs for _, _, rel in g.edges} == {0, 1, 2}
    isolated = [g for g in graphs if any(i not in {n for e in g.edges for n in e[:2]} for i in range(g.num_nodes))]
    assert isolated  # reaction nodes get exercised


def test_text_tower_from_a_hugging_face_bert_directory(tmp_path: Path, vocab_dir: Path) -> None:
    """``--text-init DIR``: bert-base-uncased-style directories (``BertForPreTraining`` keys with ``bert.``
    prefixes and ``cls.`` heads) load strictly; pickled weights are refused."""
    import shutil

    from transformers import BertConfig, BertForPreTraining

    from radzoo.errors import ArtifactError
    from radzoo.graphs import NodeTextTower
    from radzoo.zoo.tiny import TINY_NODE_TEXT_CONFIG

    torch.manual_seed(4)
    hf = BertForPreTraining(BertConfig(**TINY_NODE_TEXT_CONFIG))
    hf.save_pretrained(str(tmp_path / "bert"))
    for name in ("vocab.txt", "tokenizer_config.json"):
        shutil.copy(vocab_dir / name, tmp_path / "bert" / name)
    tower = NodeTextTower.from_dir(tmp_path / "bert")
    ours = tower.bert.state_dict()
    for key, value in hf.bert.state_dict().items():
        if not key.startswith("pooler.") and not key.endswith("position_ids"):
            torch.testing.assert_close(ours[key], value)
    (tmp_path / "bert" / "model.safetensors").rename(tmp_path / "bert" / "pytorch_model.bin")
    with pytest.raises(ArtifactError, match="only from safetensors.*pytorch_model.bin"):
        NodeTextTower.from_dir(tmp_path / "bert")
