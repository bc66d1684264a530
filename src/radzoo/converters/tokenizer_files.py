"""Tokenizer files for text-bearing checkpoints (PRIOR full, LoVT): the originals ship none."""

from __future__ import annotations

import json
from pathlib import Path

from radzoo.errors import InputError


def vocab_size(directory: Path) -> int:
    """Number of entries of a BERT tokenizer directory (``tokenizer.json`` or ``vocab.txt``)."""
    tok_json = directory / "tokenizer.json"
    if tok_json.is_file():
        data = json.loads(tok_json.read_text())
        return len(data["model"]["vocab"])
    vocab = directory / "vocab.txt"
    if vocab.is_file():
        return sum(1 for line in vocab.read_text(encoding="utf-8").splitlines() if line != "")
    raise InputError(f"tokenizer directory {directory} has neither tokenizer.json nor vocab.txt")


def check_tokenizer(directory: str | Path | None, rows: int, fmt: str) -> Path:
    """The tokenizer directory, after checking its vocabulary matches the checkpoint's embedding rows."""
    if directory is None:
        raise InputError(
            f"format {fmt!r} has a text tower: pass --tokenizer DIR (tokenizer=...) with the tokenizer files "
            f"its word embeddings were trained with ({rows} tokens; Bio_ClinicalBERT has 28,996). "
            "The original checkpoints ship no tokenizer."
        )
    path = Path(directory)
    if not path.is_dir():
        raise InputError(f"tokenizer directory {path} does not exist")
    size = vocab_size(path)
    if size != rows:
        raise InputError(
            f"tokenizer {path} has {size} tokens but the checkpoint's word_embeddings has {rows} rows: "
            "wrong tokenizer for this checkpoint"
        )
    return path
