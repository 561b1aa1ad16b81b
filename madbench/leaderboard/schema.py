"""The submission format: the versioned JSON Schema shipped in this package, a small validator
for the subset of JSON Schema 2020-12 it uses, and a loader for untrusted files.

The loader never hands a hostile file to a recursive parser unchecked: the size is capped
before reading (``MAX_BYTES``), the bracket nesting is measured by a linear scan before parsing
(``MAX_DEPTH``), and NaN/Infinity, integers longer than ``MAX_INT_DIGITS`` digits, non-finite
floats and duplicate keys are refused. Every problem is one line (``InvalidSubmission``,
exit code 3).

The validator follows JSON Schema semantics (keywords apply only to instances of their type;
booleans are not numbers; a pattern's ``$`` is the end of the text, as in ECMA-262, never
before a final line break as in Python) with one stricter rule: ``integer`` means a JSON number
written without a fraction or exponent (``1.0`` is not an integer here).
"""
from __future__ import annotations

import functools
import json
import math
import os
import re
import stat
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

from ..errors import CheckFailed, UsageError, printable

SCHEMA_VERSION = 1
SCHEMA_FILE = "submission.schema.json"
MAX_BYTES = 4 * 1024 * 1024      #: a paper submission with 3 seeds is about 1 MB
MAX_DEPTH = 32                   #: a valid submission nests 8 levels deep
MAX_INT_DIGITS = 19
MAX_SCHEMA_ERRORS = 20

#: keywords the validator implements; annotations it ignores
SUPPORTED_KEYWORDS = {"type", "enum", "const", "properties", "required",
                      "additionalProperties", "items", "minItems", "maxItems", "minLength",
                      "maxLength", "pattern", "minimum", "maximum", "exclusiveMinimum",
                      "maxProperties", "propertyNames", "$ref"}
ANNOTATIONS = {"$schema", "$id", "$defs", "title", "description"}


class InvalidSubmission(CheckFailed):
    """A file that is not a well-formed submission (exit code 3)."""


@functools.lru_cache(maxsize=1)
def load_schema() -> dict:
    """The submission schema shipped with madbench (``SCHEMA_FILE`` in this package)."""
    text = resources.files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    return json.loads(text)


# -- reading untrusted JSON ----------------------------------------------------------------
_SPECIAL = re.compile(r'[\[\]{}"\\]')


def nesting_depth(text: str, limit: int = MAX_DEPTH) -> int:
    """The deepest bracket nesting of JSON text, brackets inside strings ignored; the scan
    stops as soon as it passes ``limit`` (so the result is at most ``limit + 1``)."""
    depth = deepest = 0
    in_string = False
    skip = -1
    for match in _SPECIAL.finditer(text):
        i = match.start()
        if i == skip:
            continue
        c = text[i]
        if in_string:
            if c == "\\":
                skip = i + 1
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        elif c in "]}":
            depth -= 1
    return deepest


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (NaN and Infinity are refused)")


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"integer with {len(text.lstrip('-'))} digits is too large "
                         f"(at most {MAX_INT_DIGITS})")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:30]} overflows to infinity")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key[:50]!r}")
        out[key] = value
    return out


def parse_submission_text(text: str, source: str = "input") -> dict:
    """Parse JSON text of a submission, refusing hostile input in one line."""
    if text.startswith("\ufeff"):           # JSON text has no byte-order mark (RFC 8259)
        raise InvalidSubmission(f"{source}: starts with a byte-order mark (BOM); save it as "
                                "UTF-8 without one")
    depth = nesting_depth(text)
    if depth > MAX_DEPTH:
        raise InvalidSubmission(f"{source}: nested more than {MAX_DEPTH} levels deep; refused "
                                "before parsing")
    try:
        doc = json.loads(text, parse_constant=_refuse_constant, parse_int=_parse_int,
                         parse_float=_parse_float, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise InvalidSubmission(f"{source}: not valid JSON: {exc.msg} at line {exc.lineno} "
                                f"column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:
        raise InvalidSubmission(f"{source}: refused: {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise InvalidSubmission(f"{source}: a submission is a JSON object, not "
                                f"{_json_type(doc)}")
    return doc


def unlinked(path: str | os.PathLike, root: str | os.PathLike) -> Path:
    """``path``, if none of its components below ``root`` is a symbolic link (``root`` and the
    folders above it are not looked at: a checkout may live under a linked folder, such as /tmp
    on macOS); else an ``InvalidSubmission`` naming the first link, which is not followed."""
    part = Path(root)
    for name in Path(path).relative_to(root).parts:
        part = part / name
        if part.is_symlink():
            link = ("a symbolic link" if part == Path(path)
                    else f"reached through the symbolic link {part}")
            raise InvalidSubmission(f"{path}: {link}, not followed (it may lead out of "
                                    f"{root})")
    return Path(path)


def read_submission(path: str | os.PathLike) -> dict:
    """Read and parse one submission file (size checked before reading): a plain file whose
    name is UTF-8 text without control characters or bidirectional overrides."""
    path = Path(path)
    try:
        info = path.lstat()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    if stat.S_ISLNK(info.st_mode):
        raise InvalidSubmission(f"{path}: a symbolic link; a submission is a plain file")
    if not stat.S_ISREG(info.st_mode):
        raise InvalidSubmission(f"{path}: not a regular file")
    try:                        # git, README links and other systems need the name as text
        path.name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidSubmission(f"{path}: the file name {os.fsencode(path.name)!r} is not "
                                "UTF-8 text") from None
    if printable(path.name) != path.name:    # a PR's file list would show another name
        raise InvalidSubmission(f"{path}: the file name holds control characters or "
                                "bidirectional overrides (shown escaped); name it in plain text")
    if info.st_size > MAX_BYTES:
        raise InvalidSubmission(f"{path}: {info.st_size:,} bytes, over the "
                                f"{MAX_BYTES:,}-byte limit; refused before reading")
    flags = (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
             | getattr(os, "O_BINARY", 0))
    try:              # no symlink swapped in since the check, and nothing that can block
        fd = os.open(path, flags)
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise InvalidSubmission(f"{path}: not a regular file")
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise InvalidSubmission(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise InvalidSubmission(f"{path}: over the {MAX_BYTES:,}-byte limit")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidSubmission(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse_submission_text(text, str(path))


# -- the validator --------------------------------------------------------------------------
#: Python type -> JSON type name, bool before int (a bool is an int to Python, not to JSON)
_JSON_TYPES = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"),
               (list, "array"), (dict, "object"))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    for cls, name in _JSON_TYPES:
        if isinstance(value, cls):
            return name
    return type(value).__name__


def _is_type(value: Any, name: str) -> bool:
    actual = _json_type(value)
    return actual == name or (name == "number" and actual == "integer")


def _json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON sees it: booleans are not numbers, 1 equals 1.0."""
    ta, tb = _json_type(a), _json_type(b)
    if {ta, tb} <= {"integer", "number"}:
        return a == b
    if ta != tb:
        return False
    if ta == "array":
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    if ta == "object":
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    return a == b


def _resolve(ref: str, root: dict) -> dict:
    if not ref.startswith("#/"):
        raise ValueError(f"only local $ref is supported, not {ref!r}")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _where(path: str) -> str:
    return path or "the document"


def _show(value: Any) -> str:
    text = json.dumps(value) if _json_type(value) in ("null", "boolean", "integer", "number",
                                                      "string") else _json_type(value)
    return text if len(text) <= 40 else text[:37] + "..."


@functools.lru_cache(maxsize=None)
def _regex(pattern: str) -> re.Pattern:
    """``pattern`` as JSON Schema reads it (ECMA-262): ``$`` is the end of the text. Python's
    ``$`` also matches before a final line break, which let ``"name\\n"`` pass
    ``^[^\\n]*$``; here it is ``\\Z``."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":                                  # an escape: kept as written
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "$":
            c = r"\Z"
        out.append(c)
        i += 1
    return re.compile("".join(out))


def schema_errors(doc: Any, schema: dict | None = None) -> list[str]:
    """Every violation of ``schema`` (default: the submission schema) by ``doc``, as
    ``"at <path>: <problem>"`` lines, at most ``MAX_SCHEMA_ERRORS``."""
    root = load_schema() if schema is None else schema
    errors: list[str] = []
    for error in _check(doc, root, root, ""):
        errors.append(error)
        if len(errors) >= MAX_SCHEMA_ERRORS:
            break
    return errors


def _check(value: Any, schema: dict, root: dict, path: str) -> Iterator[str]:
    if "$ref" in schema:
        yield from _check(value, _resolve(schema["$ref"], root), root, path)
    where = _where(path)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, t) for t in types):
            yield f"at {where}: expected {' or '.join(types)}, got {_json_type(value)}"
            return
    if "const" in schema and not _json_equal(value, schema["const"]):
        yield f"at {where}: must be {_show(schema['const'])}, got {_show(value)}"
    if "enum" in schema and not any(_json_equal(value, e) for e in schema["enum"]):
        yield (f"at {where}: must be one of {', '.join(_show(e) for e in schema['enum'])}, "
               f"got {_show(value)}")
    kind = _json_type(value)
    if kind in ("integer", "number"):
        if "minimum" in schema and value < schema["minimum"]:
            yield f"at {where}: {_show(value)} is below the minimum {schema['minimum']}"
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            yield f"at {where}: {_show(value)} must be above {schema['exclusiveMinimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            yield f"at {where}: {_show(value)} is above the maximum {schema['maximum']}"
    elif kind == "string":
        if "minLength" in schema and len(value) < schema["minLength"]:
            yield f"at {where}: shorter than {schema['minLength']} characters"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            yield f"at {where}: longer than {schema['maxLength']} characters"
        if "pattern" in schema and not _regex(schema["pattern"]).search(value):
            why = f" ({schema['description']})" if "description" in schema else ""
            yield f"at {where}: {_show(value)} does not match {schema['pattern']}{why}"
    elif kind == "array":
        if "minItems" in schema and len(value) < schema["minItems"]:
            yield f"at {where}: fewer than {schema['minItems']} items"
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            yield f"at {where}: more than {schema['maxItems']} items"
            return
        if "items" in schema:
            for i, item in enumerate(value):
                yield from _check(item, schema["items"], root, f"{path}[{i}]")
    elif kind == "object":
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            yield f"at {where}: more than {schema['maxProperties']} keys"
            return
        missing = [key for key in schema.get("required", []) if key not in value]
        if missing:
            yield (f"at {where}: missing required key{'s' if len(missing) > 1 else ''} "
                   f"{', '.join(missing)}")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        names = schema.get("propertyNames")
        for key, item in value.items():
            sub = f"{path}.{key}" if path else key
            if names is not None:
                for problem in _check(key, names, root, sub):
                    yield problem.replace(f"at {sub}:", f"at {sub} (key):", 1)
            if key in props:
                yield from _check(item, props[key], root, sub)
            elif extra is False:
                yield f"at {where}: unexpected key {key[:60]!r}"
            elif isinstance(extra, dict):
                yield from _check(item, extra, root, sub)
