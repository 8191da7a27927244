"""The store: one explicit schema per table, atomic replace, content-addressed blobs."""

import pyarrow.parquet as pq
import pytest
import torch
from makers import gradient

from evaluation.presentation.schemas import GENERATIONS
from orchestration.storage import Store


def generation(triplet_id: str, **extra) -> dict:
    return {"triplet_id": triplet_id, "method": "no_edit", "config_hash": "abc", "config": "{}", "seed": 1,
            "profile": "toy", "models": "toy", "inputs_key": "k", "b_prime_hash": None, "seconds": 0.1, "run_id": None,
            "error": None,
            **extra}


def test_writing_a_partition_twice_replaces_it(tmp_path):
    store = Store(tmp_path)
    store.write_table("generations", "toy", [generation("t1"), generation("t2")])
    (store.partition_dir("generations", "toy") / "part-1.parquet").write_bytes(b"stale")
    path = store.write_table("generations", "toy", [generation("t1")])
    assert [p.name for p in path.parent.iterdir()] == ["part-0.parquet"]  # no temp files, no stale parts
    assert pq.read_schema(path).remove_metadata() == GENERATIONS.remove_metadata()
    assert [r["triplet_id"] for r in store.read_table("generations", "toy")] == ["t1"]


def test_rows_are_checked_against_the_schema(tmp_path):
    with pytest.raises((TypeError, ValueError)):
        Store(tmp_path).write_table("generations", "toy", [generation("t1", seed="not a number")])


def test_blobs_are_content_addressed(tmp_path):
    store = Store(tmp_path)
    first, second = store.put_png(gradient()), store.put_png(gradient())
    assert first == second and len(list((tmp_path / "blobs" / "png").iterdir())) == 1
    assert store.get_png(first).size == (40, 24)
    digest = store.put_tensors({"tokens": torch.arange(6.0).reshape(2, 3)})
    assert store.blob_path("tensors", digest, "safetensors").exists()
    assert torch.equal(store.get_tensors(digest)["tokens"], torch.arange(6.0).reshape(2, 3))


def test_home_defaults_to_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ANALOGY_HOME", str(tmp_path / "h"))
    assert Store().home == (tmp_path / "h").resolve()


def test_files_get_the_users_umask_and_dead_writers_temporaries_go(tmp_path):
    import os
    import subprocess

    from evaluation.ingestion.files import atomic_write

    old = os.umask(0o022)
    try:
        store = Store(tmp_path)
        path = store.write_table("generations", "toy", [])
        assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600: a colleague can read it
        proc = subprocess.Popen(["true"])  # its pid, once it has exited, is a dead writer's
        proc.wait()
        stale = path.parent / f".{path.name}.{proc.pid}.abc123.tmp"
        mine = path.parent / f".{path.name}.{os.getpid()}.def456.tmp"  # a live writer's: kept
        other = path.parent / ".other.parquet.1.x.tmp"
        for p in (stale, mine, other):
            p.write_bytes(b"half")
        store.write_table("generations", "toy", [])
        assert not stale.exists() and mine.exists() and other.exists()
        atomic_write(tmp_path / "x.bin", b"data")
        assert (tmp_path / "x.bin").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)


def test_previous_rows_are_empty_for_a_table_written_with_other_columns(tmp_path):
    """A partition written by an older version (other columns) is recomputed, not misread."""
    import pyarrow as pa

    store = Store(tmp_path)
    assert store.previous_rows("generations", "toy") == []  # nothing yet
    store.write_table("generations", "toy", [generation("t1")])
    assert [r["triplet_id"] for r in store.previous_rows("generations", "toy")] == ["t1"]
    old = pa.table({"triplet_id": ["t1"], "method": ["no_edit"]})
    pq.write_table(old, store.table_path("generations", "toy"))
    assert store.previous_rows("generations", "toy") == []


@pytest.mark.parametrize("partition", ["../escaped", "toy/../../x", "/abs", "", "Toy", "toy.1/..", "toy\x00"])
def test_a_partition_name_from_a_file_never_leaves_tables(tmp_path, partition):
    store = Store(tmp_path)
    with pytest.raises(ValueError, match="not a partition key"):
        store.write_table("survey_answers", partition, [])
    with pytest.raises(ValueError, match="no table"):
        store.table_path("../../outside", "toy")
    assert not any(p.is_file() for p in tmp_path.rglob("*"))
