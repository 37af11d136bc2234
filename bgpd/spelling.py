"""How bgpd reads a word a user typed in a config or topology file: Calico's spellings of an enumeration
(`CrossSubnet`, `NotIn`, `Self` for `cross-subnet`, `NotIn`, `self`: any case, with or without dashes) and a
suggestion for a near miss. Shared by the daemon's config (`bgpd.config`, `bgpd.config_policy`) and the lab's
topology files, so a word means the same in both."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def _fold(word: str) -> str:
    return word.strip().lower().replace("-", "")


def spelled(word: str, choices: Iterable[str]) -> str | None:
    """The choice `word` names, written in any case and with or without dashes; None if it names none."""
    folded = _fold(word)
    return next((choice for choice in choices if _fold(choice) == folded), None)


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """` (did you mean 'X'?)` for the candidate closest to `word`, or "" when none is close."""
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
