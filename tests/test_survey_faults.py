"""`analogy survey import` against hostile and concurrent input: two imports at once keep both
participants, a key never leads a write out of tables/, one person under two spellings is one
participant, and FIFOs, devices, huge files and huge names are refused at once in one line."""

import json
import os
import socket
import subprocess
import sys
import time
import unicodedata

import pyarrow.parquet as pq
import pytest
from filelock import FileLock

from evaluation.scoring.survey import MAX_ANSWER_BYTES, MAX_PARTICIPANT_CHARS, answer_key
from orchestration.cli import main
from orchestration.cli import survey as survey_cli

METHODS = ["no_edit", "sdedit", "differential_diffusion", "difference_inversion[steps=5]"]
TABLE = ("tables", "survey_answers", "dataset=toy", "part-0.parquet")
# a child that imports everything first, then waits for `go` so that both imports start together
CHILD = """import os, sys, time
import evaluation.scoring.survey, evaluation.presentation.views, filelock, orchestration.storage
from orchestration.cli import main
open(sys.argv[1], "w").close()
while not os.path.exists(sys.argv[2]):
    time.sleep(0.005)
raise SystemExit(main(sys.argv[3:]))
"""
HANG_S = 120  # far beyond a refusal (seconds), short enough that a regression that blocks fails


@pytest.fixture
def study(tmp_path):
    questions = [{"id": f"q{i:02d}", "triplet_id": f"t{i}", "candidates": [(m, f"h{i}-{m}") for m in METHODS]}
                 for i in (1, 2)]
    key = answer_key("toy", METHODS, 0, questions)
    key_path = tmp_path / "answer_key.json"
    key_path.write_text(json.dumps(key, indent=1))
    return tmp_path / "home", key_path, key


def answers(folder, name, key, participant, **extra):
    path = folder / name
    path.write_text(json.dumps({"survey_id": key["survey_id"], "participant": participant,
                                "answers": {q["id"]: 1 for q in key["questions"]}, **extra}))
    return path


def run_import(capsys, home, key_path, *files):
    capsys.readouterr()
    code = main(["survey", "import", *map(str, files), "--key", str(key_path), "--home", str(home)])
    return code, capsys.readouterr().err


def cli(home, key_path, *files, timeout=HANG_S):
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "orchestration.cli", "survey", "import", *map(str, files),
                           "--key", str(key_path), "--home", str(home)],
                          capture_output=True, text=True, timeout=timeout, env=env)


def one_line(err):
    assert err.count("\n") == 1 and err.endswith("\n") and "Traceback" not in err, err
    return err


def participants(home):
    path = home.joinpath(*TABLE)
    return sorted(set(pq.read_table(path).column("participant").to_pylist())) if path.exists() else []


def tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_two_imports_started_together_keep_both_participants(study, tmp_path):
    home, key_path, key = study
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    go = tmp_path / "go"
    children = []
    for name in ("p1", "p2"):
        ready = tmp_path / f"ready-{name}"
        file = answers(tmp_path, f"{name}.json", key, name)
        children.append((ready, subprocess.Popen(
            [sys.executable, "-c", CHILD, str(ready), str(go), "survey", "import", str(file), "--key", str(key_path),
             "--home", str(home)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)))
    deadline = time.monotonic() + HANG_S
    while not all(ready.exists() for ready, _ in children):
        assert time.monotonic() < deadline and all(c.poll() is None for _, c in children), \
            [c.communicate() for _, c in children if c.poll() is not None]
        time.sleep(0.01)
    go.touch()
    for _, child in children:
        out, err = child.communicate(timeout=HANG_S)
        assert child.returncode == 0 and "imported 1 participant(s)" in out, err
    assert participants(home) == ["p1", "p2"]


@pytest.mark.parametrize("field, value", [("partition", "../../escaped"), ("partition", "toy/../../../escaped"),
                                          ("partition", "/tmp/escaped"), ("survey_id", "../../0123456789ab"),
                                          ("survey_id", "0123/456789abcde")])
def test_a_key_that_leads_out_of_tables_is_refused_before_any_answer_is_read(study, tmp_path, capsys, field, value):
    home, key_path, key = study
    key_path.write_text(json.dumps(key | {field: value}))
    good = answers(tmp_path, "good.json", key | {field: value}, "p1")
    before = tree(tmp_path)
    code, err = run_import(capsys, home, key_path, good, tmp_path / "no-such-answer-file.json")
    assert code == 2 and f"not an answer key ({field}" in one_line(err) and "no-such-answer-file" not in err
    assert tree(tmp_path) == before and not (tmp_path.parent / "escaped").exists()


@pytest.mark.parametrize("content", [b"[]", b'{"survey_id": 1}', b"[" * 200_000, b"\xff\xfe",
                                     json.dumps({"survey_id": "0" * 16, "partition": "toy", "methods": METHODS,
                                                 "questions": [{"id": "q01", "triplet_id": "t1",
                                                                "candidates": [[], {}, 1, 2]}]}).encode()])
def test_a_malformed_key_is_one_line(study, tmp_path, capsys, content):
    home, key_path, key = study
    key_path.write_bytes(content)
    code, err = run_import(capsys, home, key_path, answers(tmp_path, "good.json", key, "p1"))
    assert code == 2 and "not an answer key" in one_line(err)
    assert not home.exists()


def test_one_person_under_two_spellings_is_one_participant(study, tmp_path, capsys):
    home, key_path, key = study
    assert run_import(capsys, home, key_path, answers(tmp_path, "alice.json", key, "  Alice "))[0] == 0
    zoe = unicodedata.normalize("NFD", "Zoë")
    assert run_import(capsys, home, key_path, answers(tmp_path, "zoe.json", key, zoe))[0] == 0
    for spelling in ("alice", "ALICE", "ali\u200bce", "\ufeffAlice", "Al\u00adice", "Ali\u200dce",
                     unicodedata.normalize("NFC", "Zoë"), "zoë", "ZOË"):
        code, err = run_import(capsys, home, key_path, answers(tmp_path, "again.json", key, spelling))
        assert code == 2 and "answered twice (imported before" in one_line(err), spelling
    code, err = run_import(capsys, home, key_path, answers(tmp_path, "b1.json", key, "Bob  Smith"),
                           answers(tmp_path, "b2.json", key, "bob smith"))
    assert code == 2 and "answered twice (also in" in one_line(err)
    code, err = run_import(capsys, home, key_path, answers(tmp_path, "e.json", key, "\u200b \u200d\u00ad"))
    assert code == 2 and "no participant" in one_line(err)
    # the names as given (stripped) are what the table shows
    assert participants(home) == ["Alice", zoe]


def test_a_huge_name_is_refused_without_echoing_it(study, tmp_path, capsys):
    home, key_path, key = study
    huge = answers(tmp_path, "huge.json", key, "x" * 50_000_000)
    code, err = run_import(capsys, home, key_path, huge)
    assert code == 2 and len(one_line(err)) < 300 and "bytes, more than" in err
    long = answers(tmp_path, "long.json", key, "y" * (MAX_PARTICIPANT_CHARS + 1))
    code, err = run_import(capsys, home, key_path, long)
    assert code == 2 and f"more than {MAX_PARTICIPANT_CHARS} characters" in one_line(err) and "y" * 41 not in err
    padded = answers(tmp_path, "padded.json", key, "z" + "\u200b" * 10 * MAX_PARTICIPANT_CHARS)  # invisible bulk
    assert run_import(capsys, home, key_path, padded)[0] == 2
    assert participants(home) == []
    fits = answers(tmp_path, "fits.json", key, "y" * MAX_PARTICIPANT_CHARS)
    assert run_import(capsys, home, key_path, fits)[0] == 0


def test_fifos_and_devices_are_refused_at_once(study, tmp_path):
    home, key_path, key = study
    good = answers(tmp_path, "good.json", key, "p1")
    fifo = tmp_path / "answers.fifo"
    os.mkfifo(fifo)
    for bad in (fifo, "/dev/zero"):
        done = cli(home, key_path, good, bad)
        assert done.returncode == 2 and "not a regular file" in one_line(done.stderr), done.stderr
    fifo_key = tmp_path / "key.fifo"
    os.mkfifo(fifo_key)
    done = cli(home, key_path.parent / "key.fifo", good)
    assert done.returncode == 2 and "not an answer key (not a regular file)" in one_line(done.stderr)
    assert not home.exists()


def test_folders_sockets_and_oversized_files_import_nothing(study, tmp_path, capsys):
    home, key_path, key = study
    good = answers(tmp_path, "good.json", key, "p1")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "s.sock"))
    try:
        for bad in (tmp_path, tmp_path / "s.sock"):
            code, err = run_import(capsys, home, key_path, good, bad)
            assert code == 2 and "not a regular file" in one_line(err)
    finally:
        sock.close()
    big = answers(tmp_path, "big.json", key, "p2", padding=" " * MAX_ANSWER_BYTES)
    code, err = run_import(capsys, home, key_path, good, big)
    assert code == 2 and f"more than {MAX_ANSWER_BYTES}" in one_line(err)
    nested = tmp_path / "nested.json"
    nested.write_text("[" * 100_000)
    code, err = run_import(capsys, home, key_path, good, nested)
    assert code == 2 and "nested too deeply" in one_line(err)
    digits = answers(tmp_path, "digits.json", key, "p3")
    digits.write_text(digits.read_text().replace(": 1", ": " + "9" * 5000, 1))
    code, err = run_import(capsys, home, key_path, good, digits)
    assert code == 2 and "not an answer file" in one_line(err) and len(err) < 400
    assert not home.joinpath(*TABLE).exists()


def test_a_held_lock_times_out_in_one_line_and_writes_nothing(study, tmp_path, capsys, monkeypatch):
    home, key_path, key = study
    home.mkdir()
    monkeypatch.setattr(survey_cli, "LOCK_TIMEOUT_S", 0.2)
    with FileLock(home / survey_cli.LOCK_NAME):
        code, err = run_import(capsys, home, key_path, answers(tmp_path, "p1.json", key, "p1"))
    assert code == 1 and "another import" in one_line(err)
    assert not home.joinpath(*TABLE).exists()


def test_answers_written_with_other_columns_are_never_overwritten(study, tmp_path, capsys):
    import pyarrow as pa

    home, key_path, key = study
    old = home.joinpath(*TABLE)
    old.parent.mkdir(parents=True)
    pq.write_table(pa.table({"survey_id": [key["survey_id"]], "participant": ["early"]}), old)
    before = old.read_bytes()
    code, err = run_import(capsys, home, key_path, answers(tmp_path, "p1.json", key, "p1"))
    assert code == 2 and "other columns" in one_line(err)
    assert old.read_bytes() == before
