"""The 4-choice human study: export the questionnaire, answer it by clicking in headless Chromium,
save the answers, import them, and read `survey_results`; bad answer files import nothing."""

import json
import os
import shutil

import pytest

from orchestration.cli import main
from orchestration.materialize import materialize_partition

CHROMIUM = shutil.which("chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
if CHROMIUM is None and os.environ.get("CI"):  # CI installs it (scripts/install-browser): absent there is a failure
    raise RuntimeError("chromium is not installed: run scripts/install-browser")

METHODS = ["no_edit", "sdedit", "differential_diffusion",
           "difference_inversion[steps=5;num_steps=10;inversion_steps=9]"]


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    home = tmp_path_factory.mktemp("survey-home")
    assert materialize_partition("toyshard.001", str(home), methods=METHODS).success
    out = home / "survey"
    assert main(["survey", "export", "--partition", "toyshard.001", "--methods", ",".join(METHODS), "--n", "5",
                 "--seed", "3", "--out", str(out), "--home", str(home)]) == 0
    return home, out, json.loads((out / "answer_key.json").read_text())


def sql(home, capsys, query):
    capsys.readouterr()
    assert main(["sql", query, "--home", str(home), "--format", "csv"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "\r" not in out  # Unix line ends
    return out.splitlines()[1:]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/install-browser)")
def test_the_questionnaire_answered_in_a_browser_imports_into_survey_results(survey, tmp_path, capsys):
    from playwright.sync_api import sync_playwright

    home, out, key = survey
    page_html = (out / "survey.html").read_text()
    assert len(key["questions"]) == 2  # the partition's two triplets
    assert not any(m in page_html for m in ("sdedit", "differential", "difference_inversion", "no_edit"))
    # participant 1 picks whatever no_edit made, participant 2 whatever sdedit made (the key says where)
    wants = {"p1": "no_edit", "p2": "sdedit"}
    files = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        for participant, method in wants.items():
            page = browser.new_page(accept_downloads=True)
            requests = []
            page.on("request", lambda r, seen=requests: seen.append(r.url))
            page.goto((out / "survey.html").as_uri())
            assert page.text_content("#progress") == "0 of 2 answered"
            assert page.eval_on_selector_all("img", "i => i.every(x => x.complete && x.naturalWidth > 0)")
            page.click("#save")
            assert "name or participant id" in page.text_content("#status")  # nothing saved yet
            page.fill("#participant", participant)
            for question in key["questions"]:
                slot = question["candidates"].index(method) + 1
                page.click(f'section[data-question="{question["id"]}"] input[value="{slot}"]')
            assert page.text_content("#progress") == "2 of 2 answered"
            with page.expect_download() as download:
                page.click("#save")
            target = tmp_path / f"{participant}.json"
            download.value.save_as(target)
            files.append(target)
            assert all(url.startswith(("file:", "data:", "blob:")) for url in requests), requests
        browser.close()
    assert main(["survey", "import", *map(str, files), "--key", str(out / "answer_key.json"), "--home", str(home)]) == 0
    rows = sql(home, capsys, "select method, votes, answers, share from survey_results order by method")
    assert rows == sorted([f"{m},{2 if m in wants.values() else 0},4,{0.5 if m in wants.values() else 0.0}"
                           for m in METHODS])
    # the judge against the people: the pairs the judge decided where the two participants' majority is not a tie
    # (no_edit vs sdedit is 1–1: left out; each of them beats the two methods nobody picked), at most 4 per triplet
    (agreement,) = sql(home, capsys, "select judge, survey_id, tasks between 1 and 8, agreements <= tasks, "
                                     "agreement_low <= agreement_rate from judge_agreement")
    assert agreement == f"toy-judge-clip,{key['survey_id']},True,True,True"
    (quality,) = sql(home, capsys, "select judge, asks, position_bias between 0 and 1 from judge_quality")
    assert quality == "toy-judge-clip,24,True"  # 6 pairs of 4 methods × 2 triplets × 2 orders
    # the same participant again: refused, and nothing added
    capsys.readouterr()
    assert main(["survey", "import", str(files[0]), "--key", str(out / "answer_key.json"), "--home", str(home)]) == 2
    assert "answered twice (imported before)" in capsys.readouterr().err
    assert sql(home, capsys, "select count(*) from survey_answers") == ["4"]


def test_bad_answer_files_import_nothing(survey, tmp_path, capsys):
    home, out, key = survey
    answers = {q["id"]: 1 for q in key["questions"]}
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"survey_id": key["survey_id"], "participant": "q1", "answers": answers}))
    cases = {
        "another survey": {"survey_id": "0" * 16, "participant": "x", "answers": answers},
        "missing answers to q02": {"survey_id": key["survey_id"], "participant": "x", "answers": {"q01": 1}},
        "is not a candidate": {"survey_id": key["survey_id"], "participant": "x", "answers": answers | {"q01": 5}},
        "no participant": {"survey_id": key["survey_id"], "participant": " ", "answers": answers},
    }
    before = sql(home, capsys, "select count(*) from survey_answers") if (home / "tables" / "survey_answers").exists() \
        else None
    for reason, content in cases.items():
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(content))
        capsys.readouterr()
        assert main(["survey", "import", str(good), str(bad), "--key", str(out / "answer_key.json"),
                     "--home", str(home)]) == 2
        err = capsys.readouterr().err
        assert reason in err and "nothing imported" in err, err
    twice = tmp_path / "twice.json"
    twice.write_text(good.read_text())
    assert main(["survey", "import", str(good), str(twice), "--key", str(out / "answer_key.json"),
                 "--home", str(home)]) == 2
    assert "answered twice (also in" in capsys.readouterr().err
    after = sql(home, capsys, "select count(*) from survey_answers") if before is not None else None
    assert after == before
