"""`analogy run` on good, repairable and unusable inputs."""

import json
import os
from pathlib import Path

import pytest
from makers import awkward_images, encode, scene_image, unusable_images

from orchestration.cli import main


@pytest.fixture
def inputs(tmp_path):
    paths = {}
    for name, image in {"a": scene_image("red", "circle"), "a2": scene_image("blue", "circle"),
                        "b": scene_image("red", "square")}.items():
        paths[name] = tmp_path / f"{name}.png"
        paths[name].write_bytes(encode(image))
    for name, data in {**awkward_images(), **unusable_images()}.items():
        paths[name] = tmp_path / f"{name}.img"
        paths[name].write_bytes(data)
    return paths


def analogy_run(paths, a="a", a_prime="a2", b="b", *extra):
    out = paths["a"].parent / "out"
    return main(["run", "--a", str(paths[a]), "--a-prime", str(paths[a_prime]), "--b", str(paths[b]),
                 "--out", str(out), *extra]), out


def test_run_writes_b_prime_and_a_record(inputs, capsys):
    code, out = analogy_run(inputs)
    assert code == 0 and (out / "b_prime.png").exists()
    record = json.loads((out / "run.json").read_text())
    assert record["method"] == "no_edit" and record["inputs"]["b"]["image_hash"] == record["b_prime"]["image_hash"]


@pytest.mark.parametrize("name", ["palette", "rgba", "grey16", "exif_rotated"])
def test_repairable_input_is_converted_and_logged(inputs, capsys, name):
    code, out = analogy_run(inputs, "a", "a2", name)
    assert code == 0 and (out / "b_prime.png").exists()
    assert f"{name}.img" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["corrupt", "tiny", "huge", "empty", "missing", "bomb", "blank_rgba", "nan_tiff"])
def test_unusable_input_exits_with_one_line(inputs, capsys, name):
    inputs["missing"] = inputs["a"].parent / "missing.png"
    code, out = analogy_run(inputs, "a", name, "b")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(inputs[name]) in err[0] and "Traceback" not in err[0]
    assert not (out / "b_prime.png").exists()


def test_unknown_method_or_option_is_one_line(inputs, capsys):
    assert analogy_run(inputs, "a", "a2", "b", "--method", "nope")[0] == 2
    assert analogy_run(inputs, "a", "a2", "b", "--set", "strength=0.3")[0] == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 2


def test_change_map_and_instruction_are_used_and_recorded(inputs, capsys):
    from PIL import Image

    good, wide = inputs["a"].parent / "map.png", inputs["a"].parent / "wide.png"
    Image.new("L", (32, 32), 0).save(good)
    Image.new("L", (64, 32), 255).save(wide)
    code, out = analogy_run(inputs, "a", "a2", "b", "--change-map", str(good), "--instruction", "make it blue")
    record = json.loads((out / "run.json").read_text())
    assert code == 0 and record["change_map"]["path"] == str(good) and record["instruction"] == "make it blue"
    code, _ = analogy_run(inputs, "a", "a2", "b", "--change-map", str(wide))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and str(wide) in err[-1] and "aspect" in err[-1]


def test_no_option_is_taken_for_a_longer_one_and_bad_names_stop_the_demo_first(tmp_path, capsys):
    """`--method` is not `--methods` (no prefix matching); a wrong method or profile exits 2 with one
    line before anything is materialised."""
    with pytest.raises(SystemExit) as info:
        main(["demo", "--method", "no_edit", "--home", str(tmp_path)])
    assert info.value.code == 2 and "--method" in capsys.readouterr().err
    for extra in (["--methods", "typo"], ["--methods", "no_edit", "--profile", "sd99"]):
        assert main(["demo", "--home", str(tmp_path), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and ("typo" in err[0] or "sd99" in err[0]), err
    assert not (tmp_path / "tables").exists()


def test_run_with_an_unknown_profile_exits_2(inputs, capsys):
    assert analogy_run(inputs, "a", "a2", "b", "--profile", "sd99")[0] == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sd99" in err[0]


def test_ctrl_c_on_the_demo_ends_with_one_line_and_a_canceled_run(tmp_path):
    """SIGINT while a step runs: exit 130, one line on stderr (no Dagster tracebacks), the run
    recorded as canceled in the demo's instance, and the assets that finished kept."""
    import signal
    import subprocess
    import sys
    import time

    import dagster as dg

    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    demo = subprocess.Popen([sys.executable, "-m", "orchestration.cli", "demo", "--partition", "toyshard.001",
                             "--methods", "no_edit,difference_inversion[steps=5000]", "--home", str(tmp_path),
                             "--quiet"], cwd=Path(__file__).resolve().parents[1], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    triplets = tmp_path / "tables" / "triplets" / "dataset=toyshard.001" / "part-0.parquet"
    deadline = time.time() + 300
    while not triplets.exists():  # the run is under way: DIFF-token training comes next
        assert demo.poll() is None and time.time() < deadline, demo.communicate()
        time.sleep(0.5)
    time.sleep(3)
    demo.send_signal(signal.SIGINT)
    out, err = demo.communicate(timeout=120)
    assert demo.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("analogy demo: interrupted"), err
    assert "Traceback" not in out + err
    instance = dg.DagsterInstance.from_config(str(tmp_path / "dagster"))
    (run,) = instance.get_runs()
    assert run.status == dg.DagsterRunStatus.CANCELED and run.job_name == "analogy_job"
    assert triplets.exists()  # finished assets are kept
    instance.dispose()
