"""Dataset kinds, shards and bad rows, without Dagster."""

import json

import pytest
from makers import ip2p_rows, magicbrush_rows, write_hub_parquet, write_manifest

from evaluation.ingestion.datasets import (
    DatasetSpec,
    benchmark_file_triplets,
    load_raw_triplets,
    load_specs,
    partition_keys,
    resolve_partition,
)
from evaluation.ingestion.hub import build_triplet_rows, ensure_triplet_file, load_hub_dataset, sample_pairs
from evaluation.ingestion.manifest import manifest_triplets
from evaluation.ingestion.triplets import triplet_row
from models.toy.world import make_triplets, triplet_rows


def store_nothing(image) -> str:
    return f"hash-of-{image.width}x{image.height}"


def test_partitions_are_datasets_or_their_shards(tmp_path):
    config = tmp_path / "datasets.yaml"
    config.write_text("datasets:\n  toy: {kind: toy, n: 4}\n  big: {kind: toy, seed: 1, n: 10, shard_size: 4}\n")
    specs = load_specs(config)
    assert partition_keys(specs) == ["toy", "big.000", "big.001", "big.002"]
    spec, rows = resolve_partition(specs, "big.002")
    assert [t.triplet_id for t in load_raw_triplets(spec, rows, tmp_path)] == ["toy-s1-00008", "toy-s1-00009"]
    with pytest.raises(KeyError, match="no dataset"):
        resolve_partition(specs, "other")


@pytest.mark.parametrize("text, problem", [("datasets:\n  Bad.Name: {kind: toy}\n", "names"),
                                           ("datasets:\n  x: {kind: nope}\n", "kind must be"),
                                           ("datasets: {}\n", "no datasets")])
def test_bad_config_is_refused(tmp_path, text, problem):
    (tmp_path / "d.yaml").write_text(text)
    with pytest.raises(ValueError, match=problem):
        load_specs(tmp_path / "d.yaml")


def test_toy_triplets_carry_captions_and_attributes(tmp_path):
    (triplet,) = load_raw_triplets(DatasetSpec("toy", "toy", {"seed": 0, "n": 1}), slice(None), tmp_path)
    assert triplet.captions["a"].startswith("a ") and triplet.captions["b_prime"].endswith("background")
    assert set(triplet.extra["attrs"]) == {"a", "a_prime", "b", "b_prime_gt"} and triplet.extra["changed"]
    row = triplet_row(triplet, "toy", store_nothing)
    assert row["error"] is None and row["b_prime_gt_hash"] and json.loads(row["extra"])["changed"]


def test_benchmark_file_is_read_in_slices(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "bench.parquet"
    pq.write_table(pa.Table.from_pylist(triplet_rows(make_triplets(seed=5, n=5))), path)
    assert [t.triplet_id for t in benchmark_file_triplets(path, slice(3, 10))] == ["toy-s5-00003", "toy-s5-00004"]
    pq.write_table(pa.table({"x": [1]}), tmp_path / "other.parquet")
    with pytest.raises(ValueError, match="not a triplet file"):
        benchmark_file_triplets(tmp_path / "other.parquet")


def test_manifest_bad_rows_become_error_rows(tmp_path):
    expected = write_manifest(tmp_path / "manifest")
    rows = [triplet_row(t, "manifest", store_nothing) for t in manifest_triplets(tmp_path / "manifest/manifest.csv")]
    assert [r["triplet_id"] for r in rows] == list(expected)
    for row in rows:
        want = expected[row["triplet_id"]]
        if want == "ok":
            assert row["error"] is None and row["a_hash"] and row["b_hash"], row
        else:
            assert want in row["error"] and row["a_hash"] is None, row
    assert "palette" in json.loads(rows[1]["notes"])[0]
    assert "b (../outside.png)" in rows[2]["error"]  # names the role and the file


def test_manifest_jsonl(tmp_path):
    write_manifest(tmp_path)
    lines = [json.dumps({"a": "a.png", "a_prime": "a2.png", "b": "b.png", "instruction": "blue"}), "{not json",
             json.dumps({"a": "a.png", "a_prime": "a2.png", "b": "b.png", "category": "Texture"})]
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    first, second, third = (triplet_row(t, "manifest", store_nothing)
                            for t in manifest_triplets(tmp_path / "m.jsonl"))
    assert first["error"] is None and first["triplet_id"] == "row-00001" and first["instruction"] == "blue"
    assert "not JSON" in second["error"] and second["category"] is None
    assert (first["category"], third["category"]) == ("colour", "texture")  # by the edit rule; as stated


def test_hub_pairs_share_an_edit_prompt_and_are_seeded():
    edits = ["blue", "blue", "star", "Blue ", "star", "unique"]
    pairs = sample_pairs(edits, n=10, seed=0)
    assert pairs == sample_pairs(edits, n=10, seed=0) and pairs != sample_pairs(edits, n=10, seed=1)
    assert len(pairs) == 5 and len(set(pairs)) == 5  # 3 pairs in the 'blue' cycle + 2 in 'star'
    for a, b in pairs:
        assert a != b and edits[a].strip().lower() == edits[b].strip().lower()
    assert 5 not in {i for pair in pairs for i in pair}  # a prompt seen once cannot make a triplet


def test_instructpix2pix_triplet_file_from_local_parquet(tmp_path):
    source = write_hub_parquet(tmp_path / "ip2p.parquet", "instructpix2pix", ip2p_rows())
    spec = DatasetSpec("ip2p", "instructpix2pix", {"data_files": str(source), "n": 4, "seed": 0})
    path = ensure_triplet_file(spec, tmp_path / "cache")
    assert ensure_triplet_file(spec, tmp_path / "cache") == path  # built once
    triplets = benchmark_file_triplets(path)
    assert len(triplets) == 4
    rows = [triplet_row(t, "instructpix2pix", store_nothing) for t in triplets]
    assert all(r["error"] is None and r["b_prime_gt_hash"] for r in rows)
    data = load_hub_dataset(spec)
    for t in triplets:
        source_rows = json.loads(t.extra["source_rows"])
        a, b = data[source_rows["a"]], data[source_rows["b"]]
        assert " ".join(a["edit_prompt"].lower().split()) == " ".join(b["edit_prompt"].lower().split())
        assert t.captions == {"a": a["original_prompt"], "a_prime": a["edited_prompt"],
                              "b": b["original_prompt"], "b_prime": b["edited_prompt"]}


def test_magicbrush_schema(tmp_path):
    source = write_hub_parquet(tmp_path / "mb.parquet", "magicbrush", magicbrush_rows())
    spec = DatasetSpec("mb", "magicbrush", {"data_files": str(source), "n": 5})
    rows = build_triplet_rows(load_hub_dataset(spec), "magicbrush", n=5, seed=0)
    assert [r["instruction"] for r in rows] == ["paint it blue", "paint it blue"]
    assert all(r["a_png"] and r["b_prime_gt_png"] and r["a_caption"] is None for r in rows)


def test_csv_keeps_text_exactly_and_rows_whole(tmp_path):
    """The csv module's quoting: an unquoted U+2028, a quoted newline and U+0085 stay inside
    their row's text; a row with too many fields is that row's error."""
    lines = ["triplet_id,a,a_prime,b,instruction",
             "sep,a.png,a2.png,b.png,make it\u2028blue",
             'quoted,a.png,a2.png,b.png,"two\nlines\u0085here"',
             "extra,a.png,a2.png,b.png,x,y",
             "last,a.png,a2.png,b.png,ok"]
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    triplets = {t.triplet_id: t for t in manifest_triplets(tmp_path / "m.csv")}
    assert list(triplets) == ["sep", "quoted", "row-00003", "last"]  # no bogus row, ids in order
    assert triplets["sep"].instruction == "make it\u2028blue" and triplets["sep"].error is None
    assert triplets["quoted"].instruction == "two\nlines\u0085here"
    assert "has 6 fields, the header has 5" in triplets["row-00003"].error
    assert triplets["last"].extra["manifest_line"] == 6  # the quoted newline counts as a line


def test_an_unreadable_manifest_fails_only_its_own_partition(tmp_path):
    from evaluation.ingestion.datasets import load_specs, partition_keys

    (tmp_path / "d.yaml").write_text("datasets:\n  toy: {kind: toy, n: 2}\n"
                                     "  gone: {kind: manifest, path: nowhere/manifest.jsonl}\n"
                                     "  folder: {kind: manifest, path: adir.jsonl, shard_size: 2}\n")
    (tmp_path / "adir.jsonl").mkdir()
    specs = load_specs(tmp_path / "d.yaml")
    assert partition_keys(specs) == ["toy", "gone", "folder"]  # counting never raises
    for name in ("gone", "folder"):
        with pytest.raises(ValueError, match="cannot be read"):
            manifest_triplets(specs[name].path())


def test_every_triplet_gets_a_category_stated_or_by_the_edit_prompt_rule():
    from evaluation.ingestion.datasets import toy_triplets
    from evaluation.ingestion.sources import category_of

    toy = toy_triplets(0, 8)
    assert {t.category for t in toy} == {"size", "colour", "shape", "background"}
    assert all(t.category == t.extra["changed"] for t in toy)
    assert category_of("Lighting ", "add a hat") == "lighting"  # a stated category wins
    rule = {"remove the dog": "remove", "make it snowy": "scene", "as a watercolor painting": "style",
            "make the car red": "colour", "turn the cat into a tiger": "replace", "add a hat": "add",
            "zoom out": "other"}
    assert {text: category_of(None, text) for text in rule} == rule
    assert category_of(None, None) is None
