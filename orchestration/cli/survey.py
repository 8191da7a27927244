"""`analogy survey export|import`: the 4-choice human study (evaluation.survey)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("survey", help="the 4-choice human study: export a questionnaire, import its answers")
    sub = p.add_subparsers(dest="survey_command", required=True, metavar="export|import")
    e = sub.add_parser("export", help="write survey.html (for participants) and answer_key.json (kept apart)")
    e.add_argument("--partition", required=True, help="a materialised dataset partition")
    e.add_argument("--methods", required=True, help="four comma-separated method labels of its generations")
    e.add_argument("--n", type=int, default=20, help="questions (triplets that every method generated)")
    e.add_argument("--seed", type=int, default=0, help="draws the triplets and each question's candidate order")
    e.add_argument("--out", required=True, type=Path, help="folder for survey.html and answer_key.json")
    e.add_argument("--home", help="ANALOGY_HOME (default: $ANALOGY_HOME or ./.analogy)")
    e.set_defaults(func=export)
    i = sub.add_parser("import", help="check answer files against the key, then add them to survey_answers")
    i.add_argument("files", nargs="+", type=Path, help="the answer files participants saved")
    i.add_argument("--key", required=True, type=Path, help="the survey's answer_key.json")
    i.add_argument("--home", help="ANALOGY_HOME (default: $ANALOGY_HOME or ./.analogy)")
    i.set_defaults(func=import_)


def export(args: argparse.Namespace) -> int:
    from evaluation.files import atomic_write
    from evaluation.survey import answer_key, survey_html, survey_questions
    from orchestration.storage import Store

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    store = Store(args.home)
    try:
        questions = survey_questions(store.read_table("triplets", args.partition),
                                     store.read_table("generations", args.partition), methods, args.n, args.seed)
    except (FileNotFoundError, ValueError) as exc:
        print(f"analogy survey export: {exc}", file=sys.stderr)
        return 2
    key = answer_key(args.partition, methods, args.seed, questions)
    atomic_write(args.out / "survey.html", survey_html(key, questions, store.get_png).encode())
    atomic_write(args.out / "answer_key.json", (json.dumps(key, indent=1) + "\n").encode())
    print(f"{args.out / 'survey.html'}: {len(questions)} questions (survey {key['survey_id']}); "
          f"keep {args.out / 'answer_key.json'} away from participants")
    return 0


def import_(args: argparse.Namespace) -> int:
    from evaluation.survey import SurveyError, read_answers
    from evaluation.views import build_database
    from orchestration.storage import Store

    try:
        key = json.loads(args.key.read_text(encoding="utf-8"))
        store = Store(args.home)
        previous = store.previous_rows("survey_answers", key["partition"])
        already = {r["participant"] for r in previous if r["survey_id"] == key["survey_id"]}
        rows = read_answers(args.files, key, already)
    except (OSError, KeyError, json.JSONDecodeError) as exc:
        print(f"analogy survey import: {args.key}: not an answer key ({exc})", file=sys.stderr)
        return 2
    except SurveyError as exc:  # nothing was imported
        print(f"analogy survey import: {exc}; nothing imported", file=sys.stderr)
        return 2
    store.write_table("survey_answers", key["partition"], previous + rows)
    build_database(store.duckdb_path, store.tables_root, store.tables_with_files())
    participants = len({r["participant"] for r in rows})
    print(f"imported {participants} participant(s), {len(rows)} answers (survey {key['survey_id']}); "
          "see: analogy sql \"SELECT * FROM survey_results\"")
    return 0
