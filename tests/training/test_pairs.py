"""Paired image-report data: sections and sentences, manifests and the MIMIC-CXR layout with their
bad rows, the dataset's replacement of unreadable images, tokenizers, text inits and token layouts.

The NIH reports used here are DERIVED FROM THE IMAGES' LABELS (see derived_nih.py), not real reports.
"""

from __future__ import annotations

import csv
import gzip
import json
import shutil

import pytest
import torch
from PIL import Image as PILImage

from radzoo.errors import InputError
from radzoo.training.bert_init import bert_keys, load_text_weights, resolve_text_init
from radzoo.training.pairs import PairedDataset, Requirements, parse_views, read_pairs
from radzoo.training.report_tokens import (
    LoVTCollator,
    PriorCollator,
    random_swaps,
    shuffle_sentences,
)
from radzoo.training.report_vocab import load_tokenizer_dir, prepare_tokenizer, train_wordpiece
from radzoo.training.reports import extract_sections, parse_report, split_sentences
from radzoo.zoo.tiny import write_test_vocab

from .derived_nih import derived_report, write_derived_manifest

MIMIC_REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___ year old woman with cough.

 COMPARISON:  None.

 FINDINGS:

 The lungs are clear, e.g. without consolidation.  Heart size is
 normal.  There is a 1.5 cm nodule in the right upper lobe.

 IMPRESSION:

 1. No acute cardiopulmonary process. 2. Right upper lobe nodule!
"""


def test_sections_and_sentences():
    r = parse_report(MIMIC_REPORT, whole_if_headerless=False)
    assert r.findings == (
        "The lungs are clear, e.g. without consolidation.",
        "Heart size is normal.",
        "There is a 1.5 cm nodule in the right upper lobe.",
    )
    assert r.impression == ("1. No acute cardiopulmonary process.", "2. Right upper lobe nodule!")
    assert r.sentences == r.findings + r.impression and r.had_sections
    # synonyms: CONCLUSION is an impression; a report with other headers only has no usable text
    assert extract_sections("HISTORY: cough\nCONCLUSION: Normal chest.") == {"findings": "", "impression": "Normal chest."}
    assert extract_sections("INDICATION: cough.\nCOMPARISON: none.") is None
    # a report without any header is taken whole (manifests), or refused (MIMIC layout)
    assert parse_report("There is a left effusion. No pneumothorax.").findings == ("There is a left effusion.", "No pneumothorax.")
    assert parse_report("There is a left effusion.", whole_if_headerless=False) is None
    assert split_sentences("Dr. Smith was paged.\n\nNo change") == ["Dr. Smith was paged.", "No change"]
    assert split_sentences("___. ... Normal.") == ["Normal."]


def test_derived_reports_say_they_come_from_labels():
    text = derived_report(["Effusion", "Atelectasis"])
    r = parse_report(text)
    assert "There is a pleural effusion." in r.findings and "No pneumothorax." in r.findings
    assert r.impression == ("Pleural effusion, atelectasis.",)
    assert len(parse_report(derived_report(["No Finding"])).sentences) >= 4  # PRIOR's minimum


def _manifest_rows(nih_paths, tmp_path):
    rows = []
    for i, p in enumerate(nih_paths[:6]):
        rows.append({"image": str(p), "report": derived_report(["Effusion"] if i % 2 else ["No Finding"]),
                     "patient_id": str(i), "study_id": f"s{i}", "view": "PA", "split": "train"})
    rows[1]["image"] = "missing/nope.png"  # missing file
    rows[2]["report"] = "   "  # empty report
    rows[3]["report"] = "INDICATION: cough.\nCOMPARISON: none."  # neither section
    rows[4]["view"] = "LATERAL"  # not frontal
    rows.append({**rows[0], "image": str(nih_paths[6])})  # a second image of study s0
    rows.append({**rows[0], "study_id": "s7", "report": "FINDINGS: Clear.", "split": "validate"})
    return rows


def test_manifest_rows_are_skipped_and_counted(nih_paths, tmp_path, caplog):
    rows = _manifest_rows(nih_paths, tmp_path)
    path = tmp_path / "pairs.csv"
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    data = read_pairs(path, Requirements(views=("PA", "AP"), min_sentences=2))
    assert [s.study_id for s in data.studies] == ["s0", "s5"]
    assert len(data.studies[0].images) == 2  # two rows of study s0: one image drawn per epoch
    assert data.skipped == {
        "image file missing": 1,
        "empty report": 1,
        "no FINDINGS or IMPRESSION text": 1,
        "view LATERAL is not one of PA,AP": 1,
        "fewer than 2 sentences": 1,
    }
    assert "pairs.csv row 3 (" in caplog.text and "image file missing" in caplog.text
    summary = data.summary()
    assert summary["studies"] == 2 and summary["images"] == 3 and summary["skipped"]["empty report"] == 1
    # JSONL, relative paths, a validation split
    jl = tmp_path / "sub" / "pairs.jsonl"
    jl.parent.mkdir()
    shutil.copyfile(nih_paths[0], jl.parent / "a.png")
    jl.write_text(json.dumps({"image": "a.png", "report": "FINDINGS: Clear lungs. No effusion.", "split": "validate"}) + "\n")
    got = read_pairs(jl, Requirements())
    assert got.studies[0].images[0] == jl.parent / "a.png" and got.studies[0].split == "validate"
    with pytest.raises(InputError, match=r"lacks the column\(s\) \['report'\]"):
        bad = tmp_path / "bad.csv"
        bad.write_text("image,text\na.png,hi\n")
        read_pairs(bad, Requirements())
    with pytest.raises(InputError, match="no usable image-report pairs"):
        empty = tmp_path / "empty.csv"
        empty.write_text("image,report\nnope.png,FINDINGS: x.\n")
        read_pairs(empty, Requirements())
    assert parse_views("all") == () and parse_views("pa, ap") == ("PA", "AP")


def _mimic_tree(root, nih_paths, with_metadata=True):
    """A MIMIC-CXR-JPG-shaped folder from real NIH images re-encoded as JPEG (derived files)."""
    meta, split = [], []
    studies = [("10000032", "50414267", ["d1", "d2"], MIMIC_REPORT), ("10000032", "53189527", ["d3"], "INDICATION: none."),
               ("11000011", "51000000", ["d4"], None), ("11000011", "52000000", ["d5"], MIMIC_REPORT)]
    views = {"d1": "PA", "d2": "LATERAL", "d3": "AP", "d4": "PA", "d5": "AP"}
    for k, (pid, sid, dicoms, report) in enumerate(studies):
        folder = root / "files" / f"p{pid[:2]}" / f"p{pid}" / f"s{sid}"
        folder.mkdir(parents=True)
        for j, d in enumerate(dicoms):
            PILImage.open(nih_paths[k + j]).convert("L").resize((128, 128)).save(folder / f"{d}.jpg", quality=90)
            meta.append({"dicom_id": d, "subject_id": pid, "study_id": sid, "ViewPosition": views[d]})
            split.append({"dicom_id": d, "subject_id": pid, "study_id": sid, "split": "validate" if sid == "52000000" else "train"})
        if report is not None:
            (folder.parent / f"s{sid}.txt").write_text(report)
    if with_metadata:
        with gzip.open(root / "mimic-cxr-2.0.0-metadata.csv.gz", "wt", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(meta[0]))
            w.writeheader()
            w.writerows(meta)
    with open(root / "mimic-cxr-2.0.0-split.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(split[0]))
        w.writeheader()
        w.writerows(split)


def test_mimic_layout_frontal_views_and_splits(nih_paths, tmp_path):
    root = tmp_path / "mimic"
    _mimic_tree(root, nih_paths)
    data = read_pairs(root, Requirements(views=("PA", "AP"), min_tokens=3))
    assert [(s.patient_id, s.study_id, s.split) for s in data.studies] == [
        ("10000032", "50414267", "train"),
        ("11000011", "52000000", "validate"),
    ]
    assert [p.name for p in data.studies[0].images] == ["d1.jpg"]  # the lateral d2 is not used
    assert data.skipped == {"no FINDINGS or IMPRESSION text": 1, "report file missing": 1}
    assert data.layout == "mimic-cxr"
    bare = tmp_path / "bare"
    _mimic_tree(bare, nih_paths, with_metadata=False)
    with pytest.raises(InputError, match="no mimic-cxr-2.0.0-metadata.csv.*--view=all"):
        read_pairs(bare, Requirements())
    assert len(read_pairs(bare, Requirements(views=())).studies[0].images) == 2
    with pytest.raises(InputError, match="neither a manifest"):
        read_pairs(tmp_path, Requirements())


def test_unreadable_images_are_replaced_and_counted(nih_paths, tmp_path, caplog):
    rows = [{"image": str(p), "report": derived_report(["Edema"])} for p in nih_paths[:3]]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    rows[1]["image"] = str(broken)
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = read_pairs(path, Requirements(views=()))

    def aug(pixels, g):
        return torch.as_tensor(pixels)[None, :8, :8]

    ds = PairedDataset(data.studies, aug, lambda r: list(r.sentences), shuffle_sentences, seed=1)
    item = ds[1]
    assert item["replaced"] == 1 and item["image"].shape == (1, 8, 8)
    assert "unreadable image in p.jsonl line 2" in caplog.text
    again = ds[0]
    assert again["replaced"] == 0 and torch.equal(again["image"], ds[0]["image"])
    assert sorted(again["sentences"]) == sorted(data.studies[0].report.sentences)  # shuffled, same set


# ---------------------------------------------------------------------------------- tokens


def test_tokenizers_are_lower_cased_and_trained_offline(tmp_path):
    cased = write_test_vocab(tmp_path / "cased", lowercase=False)  # its config says do_lower_case false
    tok = load_tokenizer_dir(cased)
    assert tok.tokenize("Pleural Effusion") == ["pleural", "effusion"]  # METHODS 0.6: lower-cased anyway
    info = prepare_tokenizer(tmp_path / "run" / "tokenizer", tokenizer_dir=str(cased), text_init_tokenizer=None,
                             reports=[], vocab_size=100, lowercase=True)
    assert info["vocab_size"] == 512 and info["lowercase"] is True
    saved = json.loads((tmp_path / "run" / "tokenizer" / "tokenizer_config.json").read_text())
    assert saved["do_lower_case"] is True  # inference (zoo text_tokenizer) tokenises the same way
    wp = train_wordpiece([derived_report(["Effusion"]), derived_report(["No Finding"])] * 5, vocab_size=300)
    assert 5 < len(wp) <= 300 and wp.tokenize("There is a PLEURAL effusion")[:2] == ["there", "is"]
    with pytest.raises(InputError, match="is not a tokenizer directory"):
        load_tokenizer_dir(tmp_path)


def test_text_init_from_a_huggingface_directory(tmp_path):
    from transformers import BertConfig, BertForMaskedLM, BertModel

    cfg = BertConfig(vocab_size=512, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    torch.manual_seed(0)
    mlm = BertForMaskedLM(cfg)  # 'bert.'-prefixed keys, 'cls.' heads, no pooler
    mlm.save_pretrained(tmp_path / "hf", safe_serialization=True)
    write_test_vocab(tmp_path / "hf")
    init = resolve_text_init(str(tmp_path / "hf"), {})
    assert init.config["hidden_size"] == 32 and init.tokenizer_dir == tmp_path / "hf"
    target = BertModel(BertConfig(**init.config), add_pooling_layer=True)
    notes = load_text_weights(target, init)
    assert "no pooler weights" in notes[0]
    torch.testing.assert_close(target.embeddings.word_embeddings.weight, mlm.bert.embeddings.word_embeddings.weight)
    assert all(not k.startswith(("bert.", "cls.")) for k in bert_keys({"bert.x": torch.zeros(1), "cls.y": torch.zeros(1)}))
    (tmp_path / "hf" / "model.safetensors").unlink()
    torch.save({}, tmp_path / "hf" / "pytorch_model.bin")
    with pytest.raises(InputError, match="safetensors only"):
        resolve_text_init(str(tmp_path / "hf"), {})
    with pytest.raises(InputError, match="neither 'random', a Hugging Face BERT directory"):
        resolve_text_init(str(tmp_path / "nothing-here"), {})


def test_lovt_token_layout_drops_sentences_that_do_not_fit(tmp_path):
    tok = load_tokenizer_dir(write_test_vocab(tmp_path / "v"))
    col = LoVTCollator(tok, max_length=9)  # 7 word pieces of room
    ids, index = col.encode(["No effusion.", "Heart size normal.", "Lungs clear."])
    pieces = [tok(s, add_special_tokens=False)["input_ids"] for s in ["No effusion.", "Heart size normal."]]
    assert ids == [tok.cls_token_id, *pieces[0], *pieces[1], tok.sep_token_id]
    assert index == [-1] + [0] * len(pieces[0]) + [1] * len(pieces[1]) + [-1]  # the third did not fit
    long_first = col.encode(["the lungs are clear and the heart is normal and no effusion"])[0]
    assert len(long_first) == 9  # a first sentence alone too long is cut
    batch = col([{"image": torch.zeros(1, 2, 2), "sentences": ["No effusion."], "replaced": 0},
                 {"image": torch.zeros(1, 2, 2), "sentences": ["No effusion.", "Lungs clear."], "replaced": 1}])
    assert batch["input_ids"].shape == batch["sentence_index"].shape == batch["attention_mask"].shape
    assert int(batch["replaced"]) == 1 and batch["sentence_index"][0, -1] == -1


def test_prior_token_layout_is_the_originals(tmp_path):
    tok = load_tokenizer_dir(write_test_vocab(tmp_path / "v"))
    sentences = ["No effusion.", "Heart size normal.", "Lungs are clear."]
    ids, index = PriorCollator(tok, max_length=12).encode(sentences)
    # PRIOR mimiccxr.py _tokenizer, transcribed: join WITHOUT separator, pad to max_length without
    # truncation, 1-based indices counted from position 1 per sentence, then cut to max_length
    joined = tok("".join(sentences), max_length=12, padding="max_length", truncation=False)["input_ids"]
    ref_index = [-1] * len(joined)
    start = 1
    for k, s in enumerate(sentences):
        n = len(tok(s)["input_ids"]) - 2
        for j in range(start, min(start + n, len(ref_index))):
            ref_index[j] = k + 1
        start += n
    assert ids == [t for t in joined if t != tok.pad_token_id][:12] and index == ref_index[:12]
    batch = PriorCollator(tok, max_length=12)([{"image": torch.zeros(1, 2, 2), "sentences": sentences, "replaced": 0}])
    assert batch["input_ids"].shape == (1, 12) and int(batch["sentence_index"].max()) <= 3


def test_sentence_augmentations_are_seeded():
    s = [f"s{i}." for i in range(6)]
    swaps = random_swaps(0.6)
    a = swaps(list(s), torch.Generator().manual_seed(0))
    assert a == swaps(list(s), torch.Generator().manual_seed(0)) and sorted(a) == sorted(s)
    assert random_swaps(0.0)(list(s), torch.Generator()) == s  # swap_prob 0: never swaps
    draws = [swaps(list(s), torch.Generator().manual_seed(k)) != s for k in range(200)]
    assert 0.3 < sum(draws) / 200 < 0.75  # P(at least one effective swap) with Geometric(0.4)
    perm = shuffle_sentences(list(s), torch.Generator().manual_seed(1))
    assert sorted(perm) == sorted(s)


def test_derived_manifest_builder(shared_data, tmp_path):
    path = write_derived_manifest(shared_data / "cxr_nih", tmp_path, limit=10, val_fraction=0.3, fmt="jsonl")
    data = read_pairs(path, Requirements(views=("PA", "AP"), min_sentences=4))
    assert len(data.studies) + sum(data.skipped.values()) == 10
    assert {s.split for s in data.studies} <= {"train", "validate"}
