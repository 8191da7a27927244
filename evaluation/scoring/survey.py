"""The 4-choice human study: a self-contained questionnaire, its answer key kept apart, and the import
of the answers it saves.

`export_survey` writes `survey.html` (one static page, every image inside it as a data URL, no server:
per question A, A′, B and four candidates in a seeded shuffled order, the methods' names hidden, a
progress line and a button that saves the answers as a JSON file) and `answer_key.json` (which method
stands behind each candidate), to be kept away from participants. `read_answers` checks answer files
against the key: a file of another survey, a participant seen twice, a missing or impossible answer is
a `SurveyError` naming the file, and nothing is imported. `survey_results` = each method's share of
the votes with its 95 % Wilson interval (evaluation.scoring.stats).

Files come from outside, so `read_key` and `read_answers` read only regular files of bounded size
(a FIFO or a device is refused before it is opened), check every field of the key that reaches a
table or a path, and compare participants by `participant_identity` (NFC, case-folded, invisible
characters dropped, whitespace collapsed): `Alice`, `alice` and `ali\u200bce` are one participant.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import re
import stat
import unicodedata
from collections import defaultdict
from pathlib import Path

from jinja2 import Environment, select_autoescape

from evaluation.ingestion.datasets import PARTITION_PATTERN
from evaluation.ingestion.images import png_bytes
from evaluation.scoring.stats import estimate

CHOICES = 4
MAX_ANSWER_BYTES = 1_000_000  # a 20-question answer file is about 1 KB
MAX_KEY_BYTES = 10_000_000  # a key is about 300 bytes per question
MAX_PARTICIPANT_CHARS = 100  # after participant_identity
ECHO_CHARS = 40  # of a value from a file, in a message
SURVEY_ID_PATTERN = re.compile(r"^[0-9a-f]{16}$")  # as answer_key makes it


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


def echo(value, limit: int = ECHO_CHARS) -> str:
    """`value` as a message shows it: its repr (one line, invisible characters escaped), cut to `limit`
    characters with "…", so a hostile file's 50 MB field is never printed whole."""
    text = repr(value)
    return text[:limit] + ("…" if len(text) > limit else "")


def plain(text: str, limit: int = 4 * ECHO_CHARS) -> str:
    """Text from a file as a message shows it without quotes: escaped to one line, cut to `limit` characters."""
    text = repr(text)[1:-1]
    return text[:limit] + ("…" if len(text) > limit else "")


def read_limited(path: Path, limit: int, what: str) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; else SurveyError. Checked with `os.stat`
    before opening (a FIFO would block, /dev/zero never ends) and with `fstat` on the opened file,
    which O_NONBLOCK keeps from blocking should it have been swapped for a FIFO in between."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise SurveyError(f"{path}: not {what} (not a regular file)")
        if info.st_size > limit:
            raise SurveyError(f"{path}: not {what} ({info.st_size} bytes, more than {limit})")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise SurveyError(f"{path}: not {what} (not a regular file)")
            chunks, size = [], 0
            while size <= limit:  # the file may have grown since stat
                chunk = os.read(fd, limit + 1 - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        finally:
            os.close(fd)
    except OSError as exc:
        raise SurveyError(f"{path}: not {what} ({exc.strerror or exc})") from None
    if size > limit:
        raise SurveyError(f"{path}: not {what} (more than {limit} bytes)")
    return b"".join(chunks)


def _json(path: Path, limit: int, what: str):
    data = read_limited(path, limit, what)
    try:
        return json.loads(data.decode("utf-8"))
    except ValueError as exc:  # not UTF-8, not JSON, or an integer past Python's 4300 digits
        raise SurveyError(f"{path}: not {what} ({plain(str(exc))})") from None
    except RecursionError:  # nesting deeper than the parser's stack
        raise SurveyError(f"{path}: not {what} (nested too deeply)") from None


def read_key(path: Path) -> dict:
    """An answer key from `answer_key`, every field that reaches a path or a table checked: survey_id
    16 hex digits, partition a partition key (evaluation.ingestion.datasets.PARTITION_PATTERN), CHOICES different
    method names, each question a unique id and a triplet id with its candidates a permutation of the
    methods. SurveyError otherwise."""
    key = _json(path, MAX_KEY_BYTES, "an answer key")

    def bad(why: str):
        return SurveyError(f"{path}: not an answer key ({why})")

    if not isinstance(key, dict):
        raise bad("not a JSON object")
    survey_id, partition = key.get("survey_id"), key.get("partition")
    if not isinstance(survey_id, str) or not SURVEY_ID_PATTERN.match(survey_id):
        raise bad(f"survey_id {echo(survey_id)} is not 16 hex digits")
    if not isinstance(partition, str) or not PARTITION_PATTERN.match(partition):
        raise bad(f"partition {echo(partition)} is not a partition key (a dataset name such as 'toy', or "
                  "'name.000')")
    methods = key.get("methods")
    if not isinstance(methods, list) or not all(isinstance(m, str) and m for m in methods) \
            or len(set(methods)) != CHOICES:
        raise bad(f"methods are not {CHOICES} different names")
    questions = key.get("questions")
    if not isinstance(questions, list) or not questions:
        raise bad("no questions")
    ids = set()
    for q in questions:
        if not isinstance(q, dict) or not isinstance(q.get("id"), str) or not q["id"] or q["id"] in ids \
                or not isinstance(q.get("triplet_id"), str) or not isinstance(q.get("candidates"), list) \
                or not all(isinstance(c, str) for c in q["candidates"]) or sorted(q["candidates"]) != sorted(methods):
            raise bad(f"question {echo(q.get('id') if isinstance(q, dict) else q)} is not an id, a triplet id "
                      "and the methods in the order shown")
        ids.add(q["id"])
    return key


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def participant_identity(name: str) -> str:
    """Who a participant name stands for: format characters (Unicode Cf: zero-width space and joiner,
    BOM, soft hyphen) dropped, NFC, case-folded, whitespace collapsed. Two names with one identity are
    one participant."""
    visible = "".join(c for c in name if unicodedata.category(c) != "Cf")
    folded = _nfc(_nfc(visible).casefold())  # casefold may leave a composable sequence
    return " ".join(folded.split())


def read_answers(files: list[Path], key: dict, already: set[str] = frozenset()) -> list[dict]:
    """`survey_answers` rows from answer files, every file checked against `key` before any row is made.
    `already`: participants imported before for this survey (compared by `participant_identity`); the
    `participant` column keeps the name as given, stripped."""
    questions = {q["id"]: q for q in key["questions"]}
    known = {participant_identity(p): p for p in already}
    seen: dict[str, Path] = {}
    rows = []
    for path in files:
        data = _json(Path(path), MAX_ANSWER_BYTES, "an answer file")
        theirs = data.get("survey_id") if isinstance(data, dict) else None
        if theirs != key["survey_id"]:
            raise SurveyError(f"{path}: answers to another survey ({echo(theirs)}, this key is {key['survey_id']})")
        given_name = data.get("participant")
        if given_name is not None and not isinstance(given_name, str):
            raise SurveyError(f"{path}: participant {echo(given_name)} is not a name")
        participant = (given_name or "").strip()
        identity = participant_identity(participant)
        if not identity:
            raise SurveyError(f"{path}: no participant")
        # the raw name may be longer than its identity by decomposed accents and invisible characters
        if len(identity) > MAX_PARTICIPANT_CHARS or len(participant) > 4 * MAX_PARTICIPANT_CHARS:
            raise SurveyError(f"{path}: participant {echo(participant)} is a name of more than "
                              f"{MAX_PARTICIPANT_CHARS} characters")
        if identity in known or identity in seen:
            earlier = known.get(identity)
            where = f"also in {seen[identity]}" if earlier is None else "imported before" + \
                ("" if _nfc(earlier) == _nfc(participant) else f", as {echo(earlier)}")
            raise SurveyError(f"{path}: participant {echo(participant)} answered twice ({where})")
        seen[identity] = path
        given = data.get("answers")
        if not isinstance(given, dict):
            raise SurveyError(f"{path}: no answers")
        unknown = sorted(set(given) - set(questions))
        missing = sorted(set(questions) - set(given))
        if missing:
            raise SurveyError(f"{path}: missing answers to {plain(', '.join(missing))}")
        if unknown:
            raise SurveyError(f"{path}: answers to questions this survey does not have: "
                              f"{plain(', '.join(unknown))}")
        for qid, question in questions.items():
            slot, shown = given[qid], len(question["candidates"])
            if not isinstance(slot, int) or isinstance(slot, bool) or not 1 <= slot <= shown:
                raise SurveyError(f"{path}: answer {echo(slot)} to {qid} is not a candidate (1–{shown})")
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
