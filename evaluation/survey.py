"""The 4-choice human study: a self-contained questionnaire, its answer key kept apart, and the import
of the answers it saves.

`export_survey` writes `survey.html` (one static page, every image inside it as a data URL, no server:
per question A, A′, B and four candidates in a seeded shuffled order, the methods' names hidden, a
progress line and a button that saves the answers as a JSON file) and `answer_key.json` (which method
stands behind each candidate), to be kept away from participants. `read_answers` checks answer files
against the key: a file of another survey, a participant seen twice, a missing or impossible answer is
a `SurveyError` naming the file, and nothing is imported. `survey_results` = each method's share of
the votes with its 95 % Wilson interval (evaluation.stats).
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
from collections import defaultdict
from pathlib import Path

from jinja2 import Environment, select_autoescape

from evaluation.images import png_bytes
from evaluation.stats import estimate

CHOICES = 4


class SurveyError(ValueError):
    """An answer file that does not fit its survey's key."""


def _data_url(image) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image.convert("RGB"))).decode()


def survey_questions(triplets: list[dict], generations: list[dict], methods: list[str], n: int,
                     seed: int) -> list[dict]:
    """Up to `n` usable triplets that every method generated, drawn with `seed`, each with its candidates'
    seeded order: [{id, triplet_id, a_hash, a_prime_hash, b_hash, candidates: [(method, b_prime_hash)]}]."""
    if len(methods) != CHOICES or len(set(methods)) != CHOICES:
        raise ValueError(f"a survey compares {CHOICES} different methods, got {methods}")
    made = {(g["triplet_id"], g["method"]): g["b_prime_hash"] for g in generations
            if not g["error"] and g["b_prime_hash"]}
    usable = [t for t in triplets if not t["error"] and all((t["triplet_id"], m) in made for m in methods)]
    if not usable:
        raise ValueError(f"no triplet has a B′ from each of {', '.join(methods)}: materialise them first")
    rng = random.Random(seed)
    chosen = sorted(rng.sample(usable, min(n, len(usable))), key=lambda t: t["triplet_id"])
    questions = []
    for number, t in enumerate(chosen, start=1):
        order = list(methods)
        rng.shuffle(order)
        questions.append({"id": f"q{number:02d}", "triplet_id": t["triplet_id"], "a_hash": t["a_hash"],
                          "a_prime_hash": t["a_prime_hash"], "b_hash": t["b_hash"],
                          "candidates": [(m, made[(t["triplet_id"], m)]) for m in order]})
    return questions


def answer_key(partition: str, methods: list[str], seed: int, questions: list[dict]) -> dict:
    body = {"partition": partition, "methods": list(methods), "seed": seed,
            "questions": [{"id": q["id"], "triplet_id": q["triplet_id"], "candidates": [m for m, _ in q["candidates"]],
                           "b_prime_hashes": [h for _, h in q["candidates"]]} for q in questions]}
    survey_id = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    return {"survey_id": survey_id, **body}


PAGE = """<!doctype html>
<html lang="en"><meta charset="utf-8"><title>Image analogies: which image completes the analogy?</title>
<style>
body { font-family: sans-serif; margin: 2em; max-width: 70em; }
.row, .candidates { display: flex; gap: 1em; flex-wrap: wrap; align-items: flex-end; }
figure { margin: 0; text-align: center; } img { width: 128px; height: 128px; image-rendering: pixelated; }
.candidates label { border: 3px solid #ccc; padding: 4px; cursor: pointer; text-align: center; }
.candidates input:checked + img { outline: 4px solid #2a6; }
section { border-top: 1px solid #ddd; padding: 1em 0; }
#progress { position: sticky; top: 0; background: #fff; padding: .5em 0; font-weight: bold; }
.arrow { font-size: 2em; }
</style>
<h1>Which image completes the analogy?</h1>
<p>A′ is A after an edit. For each question pick the candidate that is to B what A′ is to A: the same
edit applied to B, and the rest of B kept.</p>
<p><label>Your name or participant id: <input id="participant" autocomplete="off"></label></p>
<p id="progress">0 of {{ questions|length }} answered</p>
{% for q in questions %}
<section class="question" data-question="{{ q.id }}">
  <h2>Question {{ loop.index }} of {{ questions|length }}</h2>
  <div class="row">
    <figure><img src="{{ q.a }}" alt="A"><figcaption>A</figcaption></figure>
    <span class="arrow">→</span>
    <figure><img src="{{ q.a_prime }}" alt="A′"><figcaption>A′</figcaption></figure>
    <span class="arrow">::</span>
    <figure><img src="{{ q.b }}" alt="B"><figcaption>B</figcaption></figure>
    <span class="arrow">→ ?</span>
  </div>
  <div class="candidates">
  {% for image in q.candidates %}
    <label><input type="radio" name="{{ q.id }}" value="{{ loop.index }}" data-choice="{{ loop.index }}">
      <img src="{{ image }}" alt="candidate {{ loop.index }}"><br>{{ loop.index }}</label>
  {% endfor %}
  </div>
</section>
{% endfor %}
<p><button id="save">Save my answers</button> <span id="status"></span></p>
<script>
const SURVEY_ID = {{ survey_id|tojson }};
const QUESTIONS = {{ question_ids|tojson }};
function answers() {
  const out = {};
  for (const id of QUESTIONS) {
    const picked = document.querySelector(`input[name="${id}"]:checked`);
    if (picked) out[id] = Number(picked.value);
  }
  return out;
}
function update() {
  document.getElementById("progress").textContent =
    `${Object.keys(answers()).length} of ${QUESTIONS.length} answered`;
}
document.querySelectorAll("input[type=radio]").forEach(r => r.addEventListener("change", update));
document.getElementById("save").addEventListener("click", () => {
  const participant = document.getElementById("participant").value.trim();
  const given = answers();
  const status = document.getElementById("status");
  if (!participant) { status.textContent = "Please enter your name or participant id first."; return; }
  const missing = QUESTIONS.filter(id => !(id in given));
  if (missing.length) { status.textContent = `Please answer every question (${missing.length} left).`; return; }
  const blob = new Blob([JSON.stringify({survey_id: SURVEY_ID, participant, answers: given}, null, 1)],
                        {type: "application/json"});
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = `answers-${SURVEY_ID}-${participant.replace(/[^A-Za-z0-9_-]+/g, "_")}.json`;
  document.body.appendChild(link);
  link.click();
  link.remove();
  status.textContent = "Saved: send the downloaded file back.";
});
</script>
</html>
"""


def survey_html(key: dict, questions: list[dict], load) -> str:
    """The questionnaire page; `load(hash) -> PIL image`. It holds no method name."""
    env = Environment(autoescape=select_autoescape(default=True))
    shown = [{"id": q["id"], "a": _data_url(load(q["a_hash"])), "a_prime": _data_url(load(q["a_prime_hash"])),
              "b": _data_url(load(q["b_hash"])), "candidates": [_data_url(load(h)) for _, h in q["candidates"]]}
             for q in questions]
    return env.from_string(PAGE).render(questions=shown, survey_id=key["survey_id"],
                                        question_ids=[q["id"] for q in questions])


def read_answers(files: list[Path], key: dict, already: set[str] = frozenset()) -> list[dict]:
    """`survey_answers` rows from answer files, every file checked against `key` before any row is made.
    `already`: participants imported before for this survey."""
    questions = {q["id"]: q for q in key["questions"]}
    seen: dict[str, Path] = {}
    rows = []
    for path in files:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SurveyError(f"{path}: not an answer file ({exc})") from None
        theirs = data.get("survey_id") if isinstance(data, dict) else None
        if theirs != key["survey_id"]:
            raise SurveyError(f"{path}: answers to another survey ({theirs}, this key is {key['survey_id']})")
        participant = str(data.get("participant") or "").strip()
        if not participant:
            raise SurveyError(f"{path}: no participant")
        if participant in already or participant in seen:
            where = "imported before" if participant in already else f"also in {seen[participant]}"
            raise SurveyError(f"{path}: participant {participant!r} answered twice ({where})")
        seen[participant] = path
        given = data.get("answers")
        if not isinstance(given, dict):
            raise SurveyError(f"{path}: no answers")
        unknown = sorted(set(given) - set(questions))
        missing = sorted(set(questions) - set(given))
        if missing:
            raise SurveyError(f"{path}: missing answers to {', '.join(missing)}")
        if unknown:
            raise SurveyError(f"{path}: answers to questions this survey does not have: {', '.join(unknown)}")
        for qid, question in questions.items():
            slot, shown = given[qid], len(question["candidates"])
            if not isinstance(slot, int) or isinstance(slot, bool) or not 1 <= slot <= shown:
                raise SurveyError(f"{path}: answer {slot!r} to {qid} is not a candidate (1–{shown})")
            rows.append({"survey_id": key["survey_id"], "participant": participant, "question_id": qid,
                         "triplet_id": question["triplet_id"], "choice": slot,
                         "method": question["candidates"][slot - 1],
                         "candidates": json.dumps(question["candidates"]), "file": Path(path).name})
    return rows


RESULT_COLUMNS = ("dataset", "survey_id", "method", "votes", "answers", "share", "ci_low", "ci_high")


def survey_results(rows) -> list[dict]:
    """Each method's share of the votes per dataset × survey (every candidate method, 0 votes included)."""
    votes, answers, methods = defaultdict(int), defaultdict(int), defaultdict(set)
    for r in rows:
        group = (r["dataset"], r["survey_id"])
        answers[group] += 1
        votes[(*group, r["method"])] += 1
        methods[group] |= set(json.loads(r["candidates"]))
    out = []
    for group in sorted(answers):
        for method in sorted(methods[group]):
            count, total = votes[(*group, method)], answers[group]
            e = estimate([1.0] * count + [0.0] * (total - count), binary=True)
            out.append(dict(zip(RESULT_COLUMNS, (*group, method, count, total, e.mean, e.ci95_low, e.ci95_high))))
    return out
