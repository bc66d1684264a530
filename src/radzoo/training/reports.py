"""Report text for image-report pretraining: FINDINGS and IMPRESSION sections, split into sentences.

Both originals (LoVT's MIMIC-CXR builder and PRIOR's, which borrows it) cut a report into
sections with the MIT-LCP MIMIC-CXR section parser (all-caps ``NAME:`` headers, names
normalised through a table of synonyms and typos), keep the findings and impression sections,
and split each into sentences with stanza. Here:

* :func:`extract_sections` follows the same header rule (an all-caps header at the start of a
  line, ending in a colon; text up to the next header belongs to it; synonyms such as
  ``CONCLUSION`` or ``FINDINGS/IMPRESSION`` map onto impression or findings; empty sections are
  dropped). A report with no header at all is taken whole as findings when ``whole_if_headerless``
  (manifests written without headers); the MIMIC layout requires the sections, as the originals
  did (such studies are skipped).
* :func:`split_sentences` is a rule-based splitter (stanza needs a model download, which radzoo
  never does): sentence ends are ``.``, ``!``, ``?`` followed by white space, and blank lines;
  abbreviations (``e.g.``, ``Dr.``, ``approx.`` ...) and list numbers (``1.``) do not end
  sentences; white space is collapsed as in the originals' ``clean_text``. This is a documented
  deviation: on odd punctuation the two splitters can disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEADER = re.compile(r"(?:^|\n)[ \t]*([A-Z][A-Z ()/,&-]*[A-Z)])[ \t]*:", re.MULTILINE)

#: Section-name synonyms that mean findings or impression (lower-case, after whitespace
#: normalisation), from the set the MIMIC-CXR section parser normalises; other names are other sections.
_SYNONYMS = {
    "findings": "findings",
    "finding": "findings",
    "findins": "findings",
    "findindgs": "findings",
    "findgings": "findings",
    "findngs": "findings",
    "findnings": "findings",
    "finidngs": "findings",
    "chest, two views": "findings",
    "impression": "impression",
    "impressions": "impression",
    "conclusion": "impression",
    "conclusions": "impression",
    "findings and impression": "impression",
    "findings/impression": "impression",
    "findings/ impression": "impression",
    "impresson": "impression",
    "imprression": "impression",
    "imoression": "impression",
    "impressoin": "impression",
    "imprssion": "impression",
    "impresion": "impression",
    "imperssion": "impression",
    "mpression": "impression",
    "impession": "impression",
}

_ABBREVIATIONS = frozenset(
    "e.g i.e dr mr mrs ms vs approx appox etc fig no nos st pt pts cm mm min max al resp incl".split()
)
_SPLIT = re.compile(r"(?<=[.!?])\s+|\n\s*\n")
_SPACES = re.compile(r"\s+")
_WORDS = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True)
class ReportText:
    """The parts of one report the methods train on (each a list of sentences)."""

    findings: tuple[str, ...]
    impression: tuple[str, ...]
    had_sections: bool

    @property
    def sentences(self) -> tuple[str, ...]:
        """Findings then impression: LoVT's order."""
        return self.findings + self.impression

    @property
    def n_tokens(self) -> int:
        """Word and punctuation tokens (LoVT skips studies with fewer than 3)."""
        return sum(len(_WORDS.findall(s)) for s in self.sentences)


def _normalise_name(name: str) -> str:
    return _SPACES.sub(" ", name.strip().lower())


def extract_sections(text: str, whole_if_headerless: bool = True) -> dict[str, str] | None:
    """``{"findings": ..., "impression": ...}`` (either may be empty) or ``None`` when the report
    has headers but neither section (or no headers and ``whole_if_headerless`` is False)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    matches = list(_HEADER.finditer(text))
    if not matches:
        if whole_if_headerless and text.strip():
            return {"findings": text.strip(), "impression": ""}
        return None
    found: dict[str, str] = {"findings": "", "impression": ""}
    seen = False
    for m, nxt in zip(matches, [*matches[1:], None], strict=True):
        name = _SYNONYMS.get(_normalise_name(m.group(1)))
        body = text[m.end() : nxt.start() if nxt else len(text)].strip()
        if name is None or not body:
            continue
        found[name] = body  # a later non-empty section of the same name wins, as in the original
        seen = True
    return found if seen else None


def split_sentences(text: str) -> list[str]:
    """Sentences of one section, white space collapsed (see the module docstring for the rules)."""
    pieces = [p for p in _SPLIT.split(text) if p and p.strip()]
    out: list[str] = []
    carry = ""
    for piece in pieces:
        piece = _SPACES.sub(" ", piece).strip()
        if carry:
            piece = f"{carry} {piece}"
            carry = ""
        last = piece.rsplit(" ", 1)[-1].rstrip(".").lower()
        if piece.endswith(".") and (last in _ABBREVIATIONS or re.fullmatch(r"\d{1,2}\.", piece)):
            carry = piece  # "e.g." / "Dr." and a bare list number "1." do not end a sentence
            continue
        out.append(piece)
    if carry:
        out.append(carry)
    return [s for s in out if any(ch.isalnum() for ch in s)]


def parse_report(text: str, whole_if_headerless: bool = True) -> ReportText | None:
    """Sections and sentences of a report, or ``None`` when it has no usable section."""
    sections = extract_sections(text, whole_if_headerless)
    if sections is None:
        return None
    had = bool(_HEADER.search(text.replace("\r\n", "\n")))
    return ReportText(
        findings=tuple(split_sentences(sections["findings"])),
        impression=tuple(split_sentences(sections["impression"])),
        had_sections=had,
    )
