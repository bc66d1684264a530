"""The report tokenizer a run trains with, stored inside the artifact it writes.

Two sources, as the training configs say:

* ``tokenizer=DIR``: a Hugging Face tokenizer directory (e.g. Bio_ClinicalBERT's). It is loaded
  offline and **lower-cased** by default, whatever its config says: the originals fed
  Bio_ClinicalBERT lower-cased text, because that Hub repo ships no ``tokenizer_config.json`` and
  ``BertTokenizer`` defaults to ``do_lower_case=True`` (METHODS 0.6). The choice is written into
  the saved ``tokenizer_config.json``, so inference (``radzoo.load(...).zero_shot``) tokenises
  the same way.
* no directory: a WordPiece vocabulary is trained on the training reports with the
  ``tokenizers`` library (BERT normalisation, lower case, the five BERT special tokens). The
  model card says so. The library breaks frequency ties in hash order, so two trainings on the
  same reports can differ slightly; to repeat a run exactly, pass the first run's
  ``<out>.train/tokenizer`` as ``tokenizer``.

Rank 0 prepares the tokenizer in the run directory; the other processes load that copy.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from radzoo.errors import InputError

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _has_tokenizer_files(directory: Path) -> bool:
    return any((directory / f).is_file() for f in ("tokenizer.json", "vocab.txt"))


def load_tokenizer_dir(directory: str | Path, lowercase: bool = True) -> Any:
    """A fast BERT tokenizer from a local directory (never the Hub), lower-cased unless told not to."""
    from transformers import BertTokenizerFast

    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"tokenizer directory {directory} does not exist")
    if not _has_tokenizer_files(directory):
        raise InputError(f"{directory} is not a tokenizer directory: it has neither tokenizer.json nor vocab.txt")
    try:
        return BertTokenizerFast.from_pretrained(str(directory.resolve()), do_lower_case=lowercase, local_files_only=True)
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(f"cannot load the tokenizer in {directory}: {exc}") from exc


def train_wordpiece(texts: Iterable[str], vocab_size: int, lowercase: bool = True, min_frequency: int = 2) -> Any:
    """A BERT WordPiece tokenizer trained on ``texts`` (at most ``vocab_size`` entries)."""
    import tempfile

    from tokenizers.implementations import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    wp = BertWordPieceTokenizer(lowercase=lowercase, strip_accents=lowercase, clean_text=True)
    wp.train_from_iterator(
        list(texts), vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS, show_progress=False
    )
    with tempfile.TemporaryDirectory() as tmp:
        wp.save_model(tmp)
        return BertTokenizerFast.from_pretrained(tmp, do_lower_case=lowercase, local_files_only=True)


def prepare_tokenizer(
    out_dir: Path,
    *,
    tokenizer_dir: str,
    text_init_tokenizer: Path | None,
    reports: list[str],
    vocab_size: int,
    lowercase: bool,
) -> dict[str, Any]:
    """Write the run's tokenizer to ``out_dir`` and describe where it came from (for the card)."""
    if tokenizer_dir:
        tok = load_tokenizer_dir(tokenizer_dir, lowercase)
        info = {"source": "directory", "path": str(tokenizer_dir)}
    elif text_init_tokenizer is not None:
        tok = load_tokenizer_dir(text_init_tokenizer, lowercase)
        info = {"source": "text_init", "path": str(text_init_tokenizer)}
    else:
        if not reports:
            raise InputError("cannot train a WordPiece vocabulary: no training reports")
        tok = train_wordpiece(reports, vocab_size, lowercase)
        info = {"source": "wordpiece", "trained_on_reports": len(reports), "requested_vocab_size": vocab_size}
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(str(out_dir))
    info.update({"vocab_size": len(tok), "lowercase": bool(lowercase)})
    log.info("tokenizer: %s (%d tokens, lower-case %s)", info["source"], len(tok), lowercase)
    return info


def describe(info: dict[str, Any]) -> str:
    """One sentence for the model card."""
    case = "lower-cased input" if info.get("lowercase") else "cased input"
    if info.get("source") == "wordpiece":
        return (
            f"Tokenizer: a WordPiece vocabulary of {info['vocab_size']} tokens trained by radzoo on the "
            f"{info['trained_on_reports']} training reports with the `tokenizers` library ({case}); it is "
            "not the originals' Bio_ClinicalBERT vocabulary."
        )
    return f"Tokenizer: from {info.get('path')} ({info['vocab_size']} tokens, {case}, as the originals fed Bio_ClinicalBERT)."
