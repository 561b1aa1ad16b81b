"""'Did you mean ...?' for a misspelled name (task, setting, architecture, mixer, preset,
protocol field), put at the start of the parenthesis of the error that lists the names."""
from __future__ import annotations

import difflib
from typing import Iterable


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``"did you mean 'memorization'? "`` for the closest choice, or ``""`` when none is
    close."""
    choices = [str(c) for c in choices]
    close = difflib.get_close_matches(str(name), choices, n=1, cutoff=0.6)
    if not close:   # a case slip, or a prefix ('memo'), which difflib ranks low
        lowered = str(name).lower()
        close = [c for c in choices if c.lower() == lowered or
                 (len(lowered) >= 3 and c.lower().startswith(lowered))][:1]
    return f"did you mean {close[0]!r}? " if close else ""
