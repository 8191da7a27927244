"""`analogy bench` on a small toy benchmark file, judged by the judge CLIP."""

import json

import pyarrow.parquet as pq
import pytest

from models.toy.benchmark import BENCHMARK_SCHEMA, write_benchmark
from ops.registry import parse_method_spec
from orchestration.bench import run_bench


def test_benchmark_file_is_seeded_and_complete(tmp_path):
    one = write_benchmark(tmp_path / "one.parquet", seed=5, n=8)
    two = write_benchmark(tmp_path / "two.parquet", seed=5, n=8)
    other = write_benchmark(tmp_path / "other.parquet", seed=6, n=8)
    t1, t2 = pq.read_table(one), pq.read_table(two)
    assert t1.schema.equals(BENCHMARK_SCHEMA) and t1.num_rows == 8
    assert t1.equals(t2) and not t1.equals(pq.read_table(other))
    rows = t1.to_pylist()
    assert [r["changed"] for r in rows[:4]] == ["size", "colour", "shape", "background"]
    for r in rows:
        a, ap, b, bgt = (json.loads(r[f"{k}_attrs"]) for k in ("a", "a_prime", "b", "b_prime_gt"))
        changed = r["changed"]
        assert a[changed] != ap[changed] and b[changed] == a[changed] and bgt[changed] == ap[changed]
        assert {k for k in a if a[k] != ap[k]} == {changed}  # A → A′ changes exactly one attribute
        assert {k for k in b if b[k] != bgt[k]} == {changed}
        assert b != a


def test_textured_benchmark_is_the_same_triplets_in_the_textured_world(tmp_path, capsys):
    from evaluation.ingestion.images import decode_image
    from models.toy.world import make_triplets, render_textured
    from orchestration.cli import main

    plain = pq.read_table(write_benchmark(tmp_path / "plain.parquet", seed=5, n=4)).to_pylist()
    assert main(["toy", "benchmark", "--seed", "5", "--n", "4", "--out", str(tmp_path / "tex.parquet"),
                 "--textured"]) == 0
    assert "4 textured triplets" in capsys.readouterr().out
    textured = pq.read_table(tmp_path / "tex.parquet").to_pylist()
    for p, t, triplet in zip(plain, textured, make_triplets(5, 4)):
        assert {k: v for k, v in p.items() if not k.endswith("_png")} == {k: v for k, v in t.items()
                                                                          if not k.endswith("_png")}
        b, b_gt = (decode_image(t[k]).image for k in ("b_png", "b_prime_gt_png"))
        assert b.tobytes() == render_textured(triplet.b, triplet.seed_b).tobytes()
        assert b_gt.tobytes() == render_textured(triplet.b_prime_gt, triplet.seed_b).tobytes()
        assert t["b_png"] != p["b_png"]  # blobs on the background
    assert main(["bench", "--profile", "toy-textured", "--benchmark", str(tmp_path / "tex.parquet"),
                 "--methods", "no_edit", "--rows", str(tmp_path / "rows.parquet")]) == 0
    assert "the judge never saw" in capsys.readouterr().err  # its verdicts there are not to be read
    rows = pq.read_table(tmp_path / "rows.parquet").to_pylist()
    assert len(rows) == 4 and all(r["gt_psnr"] is not None and r["error"] is None for r in rows)


def test_method_spec_parsing():
    assert parse_method_spec("no_edit") == ("no_edit", {})
    assert parse_method_spec("difference_inversion[inversion_steps=5;delta=image]") == (
        "difference_inversion", {"inversion_steps": 5, "delta": "image"})
    with pytest.raises(ValueError):
        parse_method_spec("dia[st]")


def test_bench_scores_no_edit_and_difference_inversion(tmp_path):
    path = write_benchmark(tmp_path / "bench.parquet", seed=1, n=4)
    out = run_bench(path, ["no_edit", "difference_inversion[pez_steps=30;steps=30;num_steps=10;inversion_steps=9]"])
    no_edit = out["no_edit"]
    assert no_edit["n"] == 4 and no_edit["errors"] == []
    assert no_edit["target"] <= 0.25  # B′ = B shows B's value of the changed attribute
    assert no_edit["joint"] <= no_edit["target"]
    assert set(no_edit["by_attribute"]) == {"size", "colour", "shape", "background"}
    di = out["difference_inversion[pez_steps=30;steps=30;num_steps=10;inversion_steps=9]"]
    assert di["n"] + len(di["errors"]) == 4
    with pytest.raises(ValueError, match="no setting"):
        run_bench(path, ["no_edit[st=1]"])


def test_bench_rows_are_per_triplet_and_add_up_to_the_summary(tmp_path, capsys):
    from orchestration.cli import main

    path = write_benchmark(tmp_path / "bench.parquet", seed=2, n=4)
    table = pq.read_table(path).to_pylist()
    table[1]["b_png"] = b"not an image"  # one bad triplet: an error row, the rest scored
    pq.write_table(pq.read_table(path).from_pylist(table, schema=BENCHMARK_SCHEMA), path)
    assert main(["bench", "--benchmark", str(path), "--methods", "no_edit", "--rows", str(tmp_path / "rows.parquet"),
                 "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1  # --json: the JSON object and nothing else on stdout
    summary = json.loads(out[-1])["no_edit"]
    rows = pq.read_table(tmp_path / "rows.parquet").to_pylist()
    assert [r["triplet_id"] for r in rows] == [table[i]["triplet_id"] for i in (0, 2, 3, 1)]
    scored, failed = rows[:3], rows[3]
    assert all(r["method"] == "no_edit" and r["error"] is None for r in scored)
    assert [r["changed"] for r in scored] == [table[i]["changed"] for i in (0, 2, 3)]
    assert sum(r["joint"] for r in scored) / 3 == pytest.approx(summary["joint"], abs=1e-4)
    assert failed["joint"] is None and failed["error"].startswith("ImageError: not a readable image"), failed
    # no_edit returns B: its PSNR to B′gt is B's, recomputed here from the file's pixels
    from evaluation.ingestion.images import decode_image
    from evaluation.scoring.metrics import pixel_mse_psnr

    for r, i in zip(scored, (0, 2, 3)):
        b, b_gt = (decode_image(table[i][k]).image for k in ("b_png", "b_prime_gt_png"))
        assert r["gt_psnr"] == pytest.approx(pixel_mse_psnr(b, b_gt)[1])
    assert summary["gt_psnr"]["mean"] == pytest.approx(sum(r["gt_psnr"] for r in scored) / 3)
    assert failed["gt_psnr"] is None


def test_bench_against_pairs_every_method_with_one(tmp_path, capsys):
    from orchestration.cli import main

    path = write_benchmark(tmp_path / "bench.parquet", seed=3, n=4)
    assert main(["bench", "--benchmark", str(path), "--methods", "no_edit", "--against", "sdedit"]) == 2
    assert "not one of --methods" in capsys.readouterr().err  # before any work
    specs = "no_edit,sdedit[num_steps=10]"
    assert main(["bench", "--benchmark", str(path), "--methods", specs, "--against", "sdedit[num_steps=10]",
                 "--rows", str(tmp_path / "rows.parquet"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = pq.read_table(tmp_path / "rows.parquet").to_pylist()
    joint = {(r["method"], r["triplet_id"]): r["joint"] for r in rows}
    ids = {r["triplet_id"] for r in rows}
    c = out["no_edit"]["paired"]
    assert c["against"] == "sdedit[num_steps=10]" and "paired" not in out["sdedit[num_steps=10]"]
    assert c["first_only"] == sum(joint[("sdedit[num_steps=10]", i)] > joint[("no_edit", i)] for i in ids)
    assert c["second_only"] == sum(joint[("no_edit", i)] > joint[("sdedit[num_steps=10]", i)] for i in ids)
    assert c["first_only"] + c["second_only"] + c["both"] + c["neither"] == 4
    assert c["difference"] == pytest.approx((c["first_only"] - c["second_only"]) / 4)  # sdedit's rate − no_edit's
    psnr = {(r["method"], r["triplet_id"]): r["gt_psnr"] for r in rows}
    d = out["no_edit"]["paired_gt_psnr"]  # closeness to B′gt, triplet by triplet: sdedit's minus no_edit's
    assert d["against"] == "sdedit[num_steps=10]" and d["n"] == 4
    assert d["difference"] == pytest.approx(sum(psnr[("sdedit[num_steps=10]", i)] - psnr[("no_edit", i)]
                                                for i in ids) / 4)
    assert d["difference_low"] < d["difference"] < d["difference_high"] and 0 < d["p_value"] <= 1
