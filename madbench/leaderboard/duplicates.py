"""One entry per architecture and per name on a board, across files: ``duplicate_entries``
fails a board entry whose architecture or model hash, or whose name as a reader tells names
apart (``name_key``), is already on its board under another file, so that a renamed copy of
an entry or a lookalike of its name cannot rank twice."""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Collection, Iterable

from .report import Report

#: default-ignorable code points (Unicode's DerivedCoreProperties.txt): never drawn, so a name
#: that holds one reads as the name without it
_IGNORABLE = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f"
                        "\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f"
                        "\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3"
                        "\U0001d173-\U0001d17a\U000e0000-\U000e0fff]")


#: Cyrillic and Greek letters drawn like a Latin letter (Unicode's confusables.txt, those
#: two scripts), each to that letter in its own case: Greek capital nu reads N, small nu v
_LOOKALIKES = str.maketrans(
    "АВСЕНІЈКМОРЅТУХҮԚԜ" "авсеніјкморѕтухүһԁԛԝ"         # Cyrillic
    "ΑΒΕΖΗΙΚΜΝΟΡΤΥΧϹ" "αικνορτυχγϲϳ",                   # Greek
    "ABCEHIJKMOPSTYXYQW" "abcehijkmopstyxyhdqw"
    "ABEZHIKMNOPTYXC" "aikvoptuxycj")


def name_key(name: str) -> str:
    """An entry's name as a reader of the board tells names apart: compatibility forms folded
    (NFKC: full-width letters, ligatures), Cyrillic and Greek letters drawn like Latin ones
    folded to those (``_LOOKALIKES``: 'mаmba' with a Cyrillic а is 'mamba'; accents kept, on
    the Latin letter), case folded, invisible characters dropped, every dash a hyphen, runs of
    spaces one space, none at the ends. Lookalikes fold before and after case folding, so
    that a capital folds as the Latin capital it is drawn like."""
    text = unicodedata.normalize("NFKD", name).translate(_LOOKALIKES)
    text = _IGNORABLE.sub("", text.casefold().translate(_LOOKALIKES))
    text = "".join("-" if unicodedata.category(c) == "Pd" else c
                   for c in unicodedata.normalize("NFKC", text))
    return " ".join(text.split())


def duplicate_entries(reports: Iterable[Report],
                      changed: Collection[Path] | None = None) -> None:
    """Fail each board entry whose architecture hash or model hash an earlier file on the same
    board already carries (earlier: a file not in ``changed``, the files added or changed by
    the pull request, before one in it, so that the newcomer is blamed; then by path): the
    hash covers the layers, not the display name, so a renamed copy of an entry is the same
    architecture and cannot rank twice; the model hash (when the architecture was rebuilt)
    also equates spellings of the same model, e.g. a layer's default written out or a
    registered class named by its import path. Fail, too, each whose name reads as an earlier
    one's on that board (``name_key``): one name, one entry."""
    seen: dict[tuple[str, str], str | None] = {}
    names: dict[tuple[str, str], Report] = {}
    changed = None if changed is None else {Path(p).resolve() for p in changed}

    def order(report: Report) -> tuple[bool, str]:
        """Files already on the board first, then the added or changed ones; each by path."""
        path = report.path or ""
        return changed is not None and bool(path) and Path(path).resolve() in changed, path
    for report in sorted(reports, key=order):
        if not report.board or not report.architecture_hash:
            continue
        if report.name is not None:
            first = names.setdefault((report.board, name_key(report.name)), report)
            if first is not report:
                report.fail("duplicate", f"name {report.name!r} reads as {first.name!r}, the "
                            f"name of {first.path} on {report.board} (names are told apart "
                            "regardless of case, width, dashes, spacing, invisible characters "
                            "and Cyrillic or Greek lookalikes of Latin letters): one entry "
                            "per name")
        keys = [(report.board, h) for h in (report.architecture_hash, report.model_hash) if h]
        match = next((k for k in keys if k in seen), None)
        if match is not None:
            what = "architecture" if match[1] == report.architecture_hash else "model"
            report.fail("duplicate", f"{what} [{match[1]}] is already on {report.board} as "
                        f"{seen[match]}: one entry per architecture (a renamed architecture, "
                        "or one that writes out its layers' defaults, is the same "
                        "architecture)")
        else:
            seen.update({k: report.path for k in keys})
