"""`analogy survey export|import`: the 4-choice human study (evaluation.scoring.survey)."""

from __future__ import annotations

import argparse
import hashlib
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
    from evaluation.ingestion.files import atomic_write
    from evaluation.scoring.survey import answer_key, survey_html, survey_questions
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


LOCK_TIMEOUT_S = 60  # another import of the same home holding the lock longer than this has hung
LOCK_NAME = ".survey-import.lock"


def import_lock(store) -> Path:
    """The lock file that serialises imports into one home: in the home itself for a local home; for an
    object-store home (s3://…) a local file under the default local home (./.analogy/locks), which
    serialises imports from this machine only: imports into one bucket from several machines at once
    can still lose each other's participants."""
    from evaluation.ingestion.files import location
    from orchestration.storage import DEFAULT_HOME

    if not store.remote:
        return store.home / LOCK_NAME
    digest = hashlib.sha256(str(store.home).encode()).hexdigest()[:16]  # one lock per bucket/prefix
    return location(DEFAULT_HOME) / "locks" / f"{digest}{LOCK_NAME}"


def import_(args: argparse.Namespace) -> int:
    """Checks the key, then under the home's lock re-reads the answers imported before, checks the files
    against both, and writes everything together: two imports at once keep both's participants."""
    import duckdb
    from filelock import FileLock, Timeout
    from pyarrow import ArrowException

    from evaluation.presentation.views import build_database
    from evaluation.scoring.survey import SurveyError, read_answers, read_key
    from orchestration.storage import Store

    def refuse(message: str, code: int = 2) -> int:
        print(f"analogy survey import: {message}; nothing imported", file=sys.stderr)
        return code

    try:
        key = read_key(args.key)
        store = Store(args.home)
        table = store.table_path("survey_answers", key["partition"])  # refuses what climbs out of tables/
        read_answers(args.files, key)  # a bad file is refused before the lock file is made; read again inside
    except (SurveyError, ValueError) as exc:
        return refuse(str(exc))
    lock_path = import_lock(store)
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(lock_path, timeout=LOCK_TIMEOUT_S):
            previous = store.previous_rows("survey_answers", key["partition"])
            if not previous and table.exists() and parquet_rows(table):  # older columns: keep, never overwrite
                return refuse(f"{table} holds answers written with other columns; move it aside to import")
            already = {r["participant"] for r in previous if r["survey_id"] == key["survey_id"]}
            rows = read_answers(args.files, key, already)
            store.write_table("survey_answers", key["partition"], previous + rows)
            try:  # inside the lock: a slower import's database never replaces a newer one
                build_database(store.duckdb_path, store.tables_root, store.tables_with_files())
            except (OSError, ArrowException, duckdb.Error) as exc:
                print(f"analogy survey import: answers imported, but {store.duckdb_path} was not rebuilt "
                      f"({first_line(exc)}); `analogy sql` reads them all the same", file=sys.stderr)
                return 1
    except Timeout:
        return refuse(f"another import into {store.home} has held {lock_path} for over {LOCK_TIMEOUT_S} s; "
                      "try again when it ends", code=1)
    except SurveyError as exc:
        return refuse(str(exc))
    except (OSError, ArrowException) as exc:  # an unreadable home or survey_answers file
        return refuse(f"{store.home}: {first_line(exc)}")
    participants = len({r["participant"] for r in rows})
    print(f"imported {participants} participant(s), {len(rows)} answers (survey {key['survey_id']}); "
          "see: analogy sql \"SELECT * FROM survey_results\"")
    return 0


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def parquet_rows(path) -> int:
    from evaluation.ingestion.files import parquet_metadata

    return parquet_metadata(path).num_rows
