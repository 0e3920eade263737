"""The words search looks for, the same for what is stored and for what is asked.

Latin (and other spaced) scripts: lower-cased words. Chinese, Japanese and Korean, written
without spaces between words: every character and every pair of neighbouring characters, so
any substring of two or more characters is found through its pairs (then checked as a whole),
and a single character through itself. A term is at most TERM_LENGTH characters: a longer word
is kept by its beginning (and checked whole against the text)."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

TERM_LENGTH = 32
# Han (with extensions and compatibility ideographs), kana, Hangul syllables and jamo,
# half-width katakana: the scripts written without spaces between words.
_CJK = (
    "\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f"
)
_CJK_RUN = re.compile(f"[{_CJK}]+")
_WORD = re.compile(r"[^\W_]+")  # letters and digits (CJK runs are taken out first)


@dataclass(frozen=True, slots=True)
class Query:
    """What a search asks for: every word and every CJK run, in the text."""

    words: frozenset[str]
    runs: frozenset[str]

    @classmethod
    def parse(cls, text: str) -> Query:
        lowered = folded(text)
        return cls(frozenset(_words(lowered)), frozenset(_CJK_RUN.findall(lowered)))

    @property
    def terms(self) -> set[str]:
        """The index terms a matching text has (all of them)."""
        found = {word[:TERM_LENGTH] for word in self.words}
        for run in self.runs:
            found |= {run} if len(run) == 1 else _pairs(run)
        return found

    def matches(self, text: str) -> bool:
        """Whether `text` has every word (as a word) and every CJK run (as a substring)."""
        lowered = folded(text)
        return all(run in lowered for run in self.runs) and self.words <= set(_words(lowered))

    def first_at(self, text: str) -> int:
        """Where in `text` the first thing asked for begins (0 if none is found; near it where
        folding changed the text's length)."""
        lowered = folded(text)
        found = [lowered.find(part) for part in (*self.runs, *self.words)]
        return min((at for at in found if at >= 0), default=0)


def terms(text: str) -> set[str]:
    """The index terms of a stored text."""
    lowered = folded(text)
    found = {word[:TERM_LENGTH] for word in _words(lowered)}
    for run in _CJK_RUN.findall(lowered):
        found.update(run)
        found |= _pairs(run)
    return found


def folded(text: str) -> str:
    """Text as search compares it: compatibility forms folded (full-width Latin is Latin,
    a decomposed "é" is one letter), lower-cased."""
    return unicodedata.normalize("NFKC", text).lower()


def owner_key(user_id: str) -> int:
    """A user's terms are kept under this signed 64-bit key (a hash: what it finds is checked
    against the session's owner)."""
    digest = hashlib.blake2b(user_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _words(lowered: str) -> list[str]:
    return _WORD.findall(_CJK_RUN.sub(" ", lowered))


def _pairs(run: str) -> set[str]:
    return {run[i : i + 2] for i in range(len(run) - 1)}
