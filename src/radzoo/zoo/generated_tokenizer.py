"""A generated tokenizer for random-weight builds of image-text models, so every text path runs offline.

Real weights come with the tokenizer they were trained with (it travels in the artifact). A
random-weight build has no such tokenizer, and none can be downloaded offline, so
``radzoo.build`` attaches this one: a WordPiece vocabulary (cased as the model's text is cased,
``text_tokenizer.lowercase_choice``: lower-case for LoVT and PRIOR) trained with the
``tokenizers`` library on the model's prompt sets plus a small radiology word list shipped with
radzoo (``assets/text/radiology_words.txt``), never larger than the text tower's vocabulary. It
is marked as generated in its own folder, in the artifact config (``tokenizer.generated``) and in
the model card. Its ids mean nothing to real weights: real-weight loads never get it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import string
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from radzoo.errors import ArtifactError
from radzoo.zoo.spec import ModelSpec

WORD_LIST = "text/radiology_words.txt"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MARKER = "radzoo_generated.json"
#: Bump when the recipe changes: cached vocabularies are keyed by it.
RECIPE = "wordpiece-v3"


def word_list() -> list[str]:
    """The packaged radiology words (comments and blank lines dropped)."""
    from radzoo.zoo.packaged import packaged_asset

    lines = packaged_asset(WORD_LIST).read_text(encoding="utf-8").splitlines()
    return [w.strip() for w in lines if w.strip() and not w.startswith("#")]


def tower_vocab_size(spec: ModelSpec) -> int:
    """Rows of the text tower's token embedding (the vocabulary may not exceed it)."""
    size = spec.arch_args.get("text_config", {}).get("vocab_size")
    if not size:
        raise ArtifactError(f"model {spec.name!r} has no text tower (arch_args.text_config.vocab_size)")
    return int(size)


def generated_tokenizer(spec: ModelSpec, prompts: Iterable[str]) -> tuple[Path, dict[str, Any]]:
    """``(directory, config section)`` of the generated tokenizer for ``spec``'s text tower.

    Trained once per (recipe, corpus, size) and cached under ``$RADZOO_HOME/tokenizers``; the
    directory is written atomically (temp folder, then rename), so concurrent builds are safe.
    """
    from radzoo.zoo.home import radzoo_home
    from radzoo.zoo.text_tokenizer import lowercase_choice

    lower = lowercase_choice(spec) is not False  # the casing the model's text gets; unknown: lower-case
    corpus = sorted({p.strip() for p in prompts if isinstance(p, str) and p.strip()}) + word_list()
    limit = tower_vocab_size(spec)
    max_len = int(spec.arch_args["text_config"].get("max_position_embeddings", 512))
    key = hashlib.sha256(json.dumps([RECIPE, lower, limit, max_len, corpus]).encode()).hexdigest()[:16]
    directory = radzoo_home() / "tokenizers" / f"generated-{key}"
    if not (directory / MARKER).is_file():
        shutil.rmtree(directory, ignore_errors=True)  # an interrupted copy without its marker
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            _train(corpus, limit, max_len, lower, tmp)
            try:
                os.replace(tmp, directory)
            except OSError:  # another process finished first: keep its copy
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    section = json.loads((directory / MARKER).read_text())
    return directory, section


def _train(corpus: list[str], limit: int, max_len: int, lower: bool, out: Path) -> None:
    """Train the WordPiece vocabulary and write ``vocab.txt`` + ``tokenizer_config.json`` + marker."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    letters = string.ascii_lowercase if lower else string.ascii_letters
    alphabet = letters + string.digits + string.punctuation
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lower)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    # Every character, alone and as a word continuation, is seeded before the learned pieces: no
    # ASCII word becomes [UNK], and fixed piece ids make the trainer's tie-breaking (and so the
    # vocabulary) the same in every process.
    seeded = list(SPECIAL_TOKENS) + list(alphabet) + ["##" + c for c in alphabet]
    if limit < len(seeded):
        raise ArtifactError(f"a text tower with {limit} token rows is too small for a generated tokenizer "
                            f"(needs at least {len(seeded)})")
    trainer = trainers.WordPieceTrainer(vocab_size=limit, special_tokens=seeded, min_frequency=1)
    tok.train_from_iterator(corpus, trainer)
    vocab = [piece for piece, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])][:limit]
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "BertTokenizer", "do_lower_case": lower, "model_max_length": max_len,
        "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]",
    }, indent=2))
    section = {
        "generated": True,
        "recipe": RECIPE,
        "how": "WordPiece trained with the tokenizers library on the model's prompt sets and radzoo's "
               "radiology word list; for random-weight builds only, meaningless to real weights",
        "lowercase": lower,
        "vocab_size": len(vocab),
        "tower_vocab_size": limit,
        "corpus_lines": len(corpus),
    }
    (out / MARKER).write_text(json.dumps(section, indent=2))
