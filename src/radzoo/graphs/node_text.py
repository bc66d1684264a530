"""The frozen BERT whose contextual word vectors become IGCL's node features (METHODS 4.1).

Reproduces rajpurkarlab/IGCL: src/construct raw data/gen_word_embedding.py (``word_embedding``)
and collect_bert_embedding_tu.py:

* the report is marked ``"[CLS] " + text + " [SEP]"`` and split on single spaces (RadGraph's word
  indexing, so ``start_ix`` / ``end_ix`` address these words shifted by one for ``[CLS]``);
* every word is WordPiece-tokenised on its own (lower-cased: bert-base-uncased);
* one BERT pass with an all-ones attention mask and ``token_type_ids`` 0; a token's vector is the
  **sum of the last 4 hidden states**; a word's vector is the **sum over its word pieces**
  (a word with no pieces, e.g. from a double space, gets a zero vector);
* an entity's feature is its word's vector, or the **mean over the words** ``start..end``.

Reports of ``max_seq_len`` (512) tokens or more are cut into two overlapping windows exactly as
the original does: words up to the last one that fits, closed by a ``[UNK]`` token (the original
appends the string ``' [SEP]'`` with a leading space, which is not in the vocabulary), and the
trailing words that fit, opened by ``[UNK]`` (``'[CLS] '``); words before the cut come from the
first window, the rest from the second. Reports too long for two windows to overlap are refused,
as the original asserts.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from itertools import accumulate, takewhile
from pathlib import Path
from typing import Any

import torch

from radzoo.errors import ArtifactError, InputError, WeightsError
from radzoo.graphs.radgraph_entries import ReportGraph

WEIGHTS = "model.safetensors"
#: Keys of BertConfig written with the tower (everything that shapes the computation).
_CONFIG_KEYS = (
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
    "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
    "type_vocab_size", "layer_norm_eps", "pad_token_id",
)


def _bert_state(raw: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A BertModel state dict from the layouts HF checkpoints use: bare ``BertModel`` keys or
    ``bert.``-prefixed ones (``*ForPreTraining`` / ``*ForMaskedLM``, whose ``cls.`` heads are
    dropped), old ``LayerNorm.gamma/beta`` names, and no pooler (the features never use it)."""
    out = {}
    for key, value in raw.items():
        k = key[len("bert."):] if key.startswith("bert.") else key
        if k.startswith(("cls.", "pooler.")) or k.endswith("embeddings.position_ids"):
            continue
        if k.endswith(".gamma"):
            k = k[: -len(".gamma")] + ".weight"
        elif k.endswith(".beta"):
            k = k[: -len(".beta")] + ".bias"
        out[k] = value
    return out


class NodeTextTower:
    """A frozen BERT text tower + its WordPiece tokenizer, computing IGCL node text features."""

    def __init__(self, bert: Any, tokenizer: Any, *, source: str = "", device: str | torch.device = "cpu") -> None:
        self.bert = bert.to(device).eval()
        for p in self.bert.parameters():
            p.requires_grad_(False)
        self.tokenizer = tokenizer
        self.source = source
        self.device = torch.device(device)
        cfg = bert.config
        self.max_seq_len = min(512, int(cfg.max_position_embeddings))
        if len(tokenizer) > int(cfg.vocab_size):
            raise ArtifactError(
                f"node text tower {source}: the tokenizer has {len(tokenizer)} tokens but the BERT embedding "
                f"has {cfg.vocab_size} rows (tokenizer and weights do not belong together)"
            )
        self._digest: str | None = None

    # ---- construction ------------------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        return int(self.bert.config.hidden_size)

    @classmethod
    def from_dir(cls, directory: str | os.PathLike[str], device: str | torch.device = "cpu") -> NodeTextTower:
        """A BERT directory in Hugging Face layout (``config.json``, ``model.safetensors``,
        ``vocab.txt``, optional ``tokenizer_config.json``), e.g. bert-base-uncased. Strict load."""
        from safetensors.torch import load_file
        from transformers import BertConfig, BertModel

        directory = Path(directory)
        if not directory.is_dir():
            raise ArtifactError(f"BERT directory {directory} does not exist")
        if not (directory / "config.json").is_file():
            raise ArtifactError(f"{directory} is not a BERT directory: no config.json")
        weights = directory / WEIGHTS
        if not weights.is_file():
            pickles = [p.name for p in directory.glob("*.bin")]
            hint = f" (found {', '.join(pickles)}: convert it to safetensors first)" if pickles else ""
            raise ArtifactError(f"{directory}: no {WEIGHTS}; radzoo reads BERT weights only from safetensors{hint}")
        try:
            config = BertConfig.from_json_file(str(directory / "config.json"))
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{directory / 'config.json'}: not a BERT config: {exc}") from exc
        bert = BertModel(config, add_pooling_layer=False)
        try:
            state = _bert_state(load_file(str(weights), device="cpu"))
        except Exception as exc:  # safetensors raises its own error types
            raise ArtifactError(f"cannot read {weights}: {exc}") from exc
        from radzoo.zoo.weights import load_strict

        try:
            load_strict(bert, state, f"BERT weights {weights}")
        except WeightsError as exc:
            raise ArtifactError(str(exc)) from exc
        return cls(bert, _tokenizer(directory), source=str(directory), device=device)

    @classmethod
    def random(
        cls, config: Mapping[str, Any], vocab_dir: str | os.PathLike[str], seed: int = 0, device: str | torch.device = "cpu"
    ) -> NodeTextTower:
        """A seeded random BERT from a config dict (smoke runs and tests) with the vocabulary in ``vocab_dir``."""
        from transformers import BertConfig, BertModel

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            bert = BertModel(BertConfig(**dict(config)), add_pooling_layer=False)
        return cls(bert, _tokenizer(Path(vocab_dir)), source=f"random BERT (seed {seed})", device=device)

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the tower in the layout :meth:`from_dir` reads (what travels inside an IGCL artifact)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        cfg = self.bert.config.to_dict()
        config = {"model_type": "bert", **{k: cfg[k] for k in _CONFIG_KEYS if k in cfg}}
        (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        state = {k: v.detach().cpu().contiguous() for k, v in self.bert.state_dict().items()}
        save_file(state, str(directory / WEIGHTS), metadata={"format": "pt", "producer": "radzoo"})
        vocab = sorted(self.tokenizer.get_vocab().items(), key=lambda kv: kv[1])
        if [i for _, i in vocab] != list(range(len(vocab))):
            raise ArtifactError(f"node-feature tokenizer of {self.source}: vocabulary ids are not contiguous")
        (directory / "vocab.txt").write_text("".join(f"{token}\n" for token, _ in vocab), encoding="utf-8")
        tok_config = {"tokenizer_class": "BertTokenizer", "do_lower_case": self.lowercase,
                      "model_max_length": self.max_seq_len}
        (directory / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n")
        return directory

    @property
    def lowercase(self) -> bool:
        return bool(getattr(self.tokenizer, "do_lower_case", True))

    def digest(self) -> str:
        """sha256 of config, weights, vocabulary and casing: the node-feature cache key."""
        if self._digest is None:
            h = hashlib.sha256()
            cfg = self.bert.config.to_dict()
            h.update(json.dumps({k: cfg.get(k) for k in _CONFIG_KEYS}, sort_keys=True).encode())
            for key, value in sorted(self.bert.state_dict().items()):
                h.update(key.encode())
                h.update(value.detach().cpu().contiguous().float().numpy().tobytes())
            vocab = self.tokenizer.get_vocab()
            h.update(json.dumps(sorted(vocab.items(), key=lambda kv: kv[1])).encode())
            h.update(str(self.lowercase).encode())
            self._digest = h.hexdigest()
        return self._digest

    # ---- features ----------------------------------------------------------------------------
    def _pieces(self, words: list[str]) -> list[list[int]]:
        ids = self.tokenizer(words, add_special_tokens=False)["input_ids"] if words else []
        return [[self.tokenizer.cls_token_id]] + [list(w) for w in ids] + [[self.tokenizer.sep_token_id]]

    def _pass(self, ids: list[int], word_of_token: list[int], rows: int) -> torch.Tensor:
        """One BERT pass; per-word sums of the per-token sum of the last 4 hidden states."""
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.device)
        out = self.bert(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), output_hidden_states=True)
        token_vec = torch.stack(out.hidden_states, dim=0)[-4:, 0].sum(dim=0)  # [T, H]
        words = torch.zeros(rows, token_vec.shape[1], dtype=token_vec.dtype, device=token_vec.device)
        return words.index_add_(0, torch.tensor(word_of_token, device=token_vec.device), token_vec)

    @torch.inference_mode()
    def word_embeddings(self, text: str) -> torch.Tensor:
        """``[len(words) + 2, H]``: row 0 is ``[CLS]``, row ``i + 1`` word ``i``, the last ``[SEP]``."""
        pieces = self._pieces(text.split(" "))
        n_words = len(pieces)
        counts = [len(p) for p in pieces]
        limit = self.max_seq_len

        def flat(first: int, last: int) -> tuple[list[int], list[int]]:
            ids, where = [], []
            for w in range(first, last + 1):
                ids += pieces[w]
                where += [w] * len(pieces[w])
            return ids, where

        if sum(counts) < limit:
            ids, where = flat(0, n_words - 1)
            return self._pass(ids, where, n_words)
        unk = int(self.tokenizer.unk_token_id)
        last = len(list(takewhile(lambda c: c < limit, accumulate(counts)))) - 2
        from_back = len(list(takewhile(lambda c: c < limit, accumulate(reversed(counts))))) - 2
        first = n_words - (from_back + 1)
        if last <= first or last <= 0:
            raise InputError(
                f"report of {sum(counts)} tokens is too long for two overlapping {limit}-token windows "
                "(the original IGCL feature code refuses it too)"
            )
        ids1, where1 = flat(0, last)
        head = self._pass(ids1 + [unk], where1 + [last + 1], last + 2)
        ids2, where2 = flat(first, n_words - 1)
        tail = self._pass([unk] + ids2, [0] + [w - first + 1 for w in where2], n_words - first + 1)
        return torch.cat([head[: last + 1], tail[last - first + 2:]], dim=0)

    def span_features(self, graph: ReportGraph) -> torch.Tensor:
        """``[num_nodes, H]`` float32 on the CPU: the text part of each node's feature."""
        words = self.word_embeddings(graph.text)
        rows = []
        for start, end in graph.spans:
            rows.append(words[start + 1] if start == end else words[start + 1 : end + 2].mean(dim=0))
        return torch.stack(rows).float().cpu()


def _tokenizer(directory: Path) -> Any:
    """The WordPiece tokenizer of a BERT directory, offline (bert-base-uncased: lower case by default)."""
    from transformers import BertTokenizer

    if not any((directory / f).is_file() for f in ("vocab.txt", "tokenizer.json")):
        raise ArtifactError(f"{directory}: no vocab.txt or tokenizer.json for the node-feature tokenizer")
    try:
        return BertTokenizer.from_pretrained(str(directory.resolve()), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot load the tokenizer in {directory}: {exc}") from exc
