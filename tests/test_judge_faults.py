"""The pairwise judge under faults: a scripted OpenAI-compatible server on 127.0.0.1 answers every bad
HTTP outcome and response shape in turn (each a recorded ask, never a step failure); Retry-After in
seconds and as an HTTP date, over the cap; total deadlines against a trickling body; a key echoed
back never stored; the strict answer format over a corpus of real-looking bad answers; a stopped
step keeps its paid asks; and the `judgements` asset with a chat judge against a misbehaving server."""

import json
import socket
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from PIL import Image

from evaluation.scoring.pairwise import (
    REDACTED,
    Candidate,
    Question,
    judge_pair,
    parse_answer,
    prompt_text,
    redact,
    win_rates,
)

KEY = "sk-faults-5f1e2d3c4b5a69788796a5b4"
CORPUS = json.loads((Path(__file__).parent / "data" / "judge_bad_answers.json").read_text())


def solid(value: int) -> Image.Image:
    return Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8))


def reply(content) -> dict:
    return {"choices": [{"message": {"role": "assistant", "content": content}}]}


class Script:
    """/v1/chat/completions answering request n with `steps[n]` (then `then`): ("json", status, payload,
    headers), ("bytes", status, body), ("drop",) (the connection closed, no answer), ("slow", seconds,
    payload) (silence, then the answer) or ("trickle", size, every) (a body of `size` bytes, one per
    `every` seconds)."""

    def __init__(self, steps, then=None):
        self.steps, self.times, self.bodies = list(steps), [], []
        self.then = then or ("json", 200, reply("Answer: 1"), {})
        script = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                script.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                script.times.append(time.monotonic())
                step = script.steps.pop(0) if script.steps else script.then
                try:
                    getattr(self, f"_{step[0]}")(*step[1:])
                except OSError:  # the judge gave up on this answer first
                    self.close_connection = True

            def _json(self, status, payload, headers=None):
                self._bytes(status, json.dumps(payload).encode(), headers)

            def _bytes(self, status, data, headers=None):
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", "Content-Length": str(len(data)),
                             **(headers or {})}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _drop(self):
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True

            def _slow(self, seconds, payload):
                time.sleep(seconds)
                self._json(200, payload)

            def _trickle(self, size, every):
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                for _ in range(size):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(every)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.times, self.times[1:])]


@pytest.fixture
def serve(monkeypatch):
    started = []

    def start(steps, **kwargs):
        script = Script(steps, **kwargs)
        started.append(script)
        monkeypatch.setenv("ANALOGY_JUDGE_BASE_URL", script.url)
        monkeypatch.setenv("ANALOGY_JUDGE_API_KEY", KEY)
        return script

    yield start
    for script in started:
        script.server.shutdown()
        script.server.server_close()


def chat_judge(**kwargs):
    from evaluation.scoring.judge_backends import ChatEndpointJudge

    return ChatEndpointJudge("gpt-4o", **{"backoff_s": 0, "requests_per_minute": 0, **kwargs})


def question() -> Question:
    return Question(solid(10), solid(20), solid(30), solid(220), solid(90), prompt_text(False))


def pairs(judge, n: int) -> list[dict]:
    x, y = Candidate("ours", "h1", solid(220)), Candidate("theirs", "h2", solid(90))
    return [r | {"dataset": "d"} for t in range(n) for r in judge_pair(judge, f"t{t}", solid(10), solid(20),
                                                                          solid(30), x, y, 0)]


SHAPES = [  # (what the server does, what the recorded ask says: an error fragment or "choice")
    (("json", 429, {"error": "slow down"}, {"Retry-After": "1"}), "HTTP 429"),
    (("json", 429, {"error": "slow down"}, {"Retry-After": formatdate(time.time() + 1, usegmt=True)}), "HTTP 429"),
    (("json", 500, {"error": "boom"}), "HTTP 500"),
    (("bytes", 200, b'{"choices": [{"message": '), "not JSON"),
    (("drop",), "connection failed or dropped"),
    (("slow", 1.5, reply("Answer: 1")), "no whole answer within 0.5 s"),
    (("trickle", 200, 0.02), "no whole answer within 0.5 s"),
    (("json", 200, {"choices": []}), "no choices"),
    (("json", 200, reply(None)), "content is null"),
    (("json", 200, reply([{"type": "text", "text": "Candidate 1 keeps B.\n"}, {"type": "text", "text": "Answer: 1"}])),
     "choice"),
    (("json", 200, [1, 2]), "no choices"),
    (("json", 200, {"choices": [{"index": 0}]}), "no message"),
    (("json", 200, reply([{"type": "image_url", "image_url": {"url": "data:,"}}])), "no text parts (parts: image_url)"),
    (("bytes", 200, b"x" * 50_000), "over 10000 bytes"),
    (("json", 401, {"error": f"bad key {KEY}; you sent Authorization: Bearer {KEY}"}), "HTTP 401"),
    (("json", 200, reply("Answer: 2")), "choice"),
    (("json", 200, {"choices": [{"message": {"content": None, "refusal": "I can't compare people."}}]}), "refused"),
    (("bytes", 502, b"<html>\n<body>Bad gateway</body>\n</html>"), "HTTP 502"),
    (("json", 200, reply("Neither candidate completes the analogy; I would answer two ways at once.")), "no choice"),
    (("json", 200, reply(42)), "content is int"),
]


def test_every_bad_outcome_and_shape_is_one_recorded_ask_and_never_an_exception(serve):
    script = serve([step for step, _ in SHAPES])
    judge = chat_judge(retries=0, request_deadline_s=0.5, retry_after_cap_s=5, max_answer_bytes=10_000)
    started = time.monotonic()
    rows = pairs(judge, len(SHAPES) // 2)
    assert time.monotonic() - started < 10
    assert len(rows) == len(SHAPES) == len(script.times)  # one request per ask: retries=0
    for row, (step, want) in zip(rows, SHAPES):
        if want == "choice":
            second = ({"ours", "theirs"} - {row["shown_first"]}).pop()
            assert row["error"] is None and row["choice"] == (row["shown_first"] if row["raw"][-1] == "1" else second)
        else:
            assert row["choice"] is None and want in row["error"], (step[:2], row["error"])
            assert "\n" not in row["error"]
    assert rows[9]["raw"] == "Candidate 1 keeps B.\nAnswer: 1"  # a content list's text parts, joined
    assert rows[18]["raw"].startswith("Neither candidate")  # an answer without a choice is kept as said
    assert KEY not in json.dumps(rows) and REDACTED in rows[14]["error"]
    assert sum(r["pairs"] - r["failed"] for r in win_rates(rows)) == 0  # no pair has two good asks


def test_retry_after_in_seconds_and_as_an_http_date_is_waited_and_over_the_cap_fails_at_once(serve):
    script = serve([("json", 429, {}, {"Retry-After": "1"})])
    assert chat_judge(retries=2).answer(question()) == "Answer: 1"
    assert len(script.times) == 2 and 0.95 <= script.gaps()[0] < 1.6
    date = formatdate(time.time() + 2, usegmt=True)  # whole seconds: 1 to 2 s from now
    script = serve([("json", 503, {}, {"Retry-After": date})])
    assert chat_judge(retries=2).answer(question()) == "Answer: 1"
    assert len(script.times) == 2 and 0.9 <= script.gaps()[0] < 2.6
    for wait in ("86400", formatdate(time.time() + 86400, usegmt=True)):
        script = serve([("json", 429, {"error": "quota"}, {"Retry-After": wait})])
        started = time.monotonic()
        (row, _) = pairs(chat_judge(retries=5, retry_after_cap_s=5), 1)
        assert time.monotonic() - started < 1 and len(script.times) == 2  # each ask one request, no sleep
        assert "HTTP 429" in row["error"] and "over the 5 s cap" in row["error"]


def test_no_retry_after_means_exponential_backoff_and_the_ask_deadline_bounds_all_tries(serve):
    script = serve([("json", 503, {})] * 3)
    assert chat_judge(retries=3, backoff_s=0.2).answer(question()) == "Answer: 1"
    first, second, third = script.gaps()
    assert 0.18 <= first < 0.5 and 0.38 <= second < 0.7 and 0.78 <= third < 1.2
    script = serve([("json", 500, {})] * 10)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="HTTP 500.*would pass the ask's 1 s deadline"):
        chat_judge(retries=9, backoff_s=0.4, ask_deadline_s=1).answer(question())
    assert time.monotonic() - started < 0.8 and len(script.times) == 2  # waits 0.4, then 0.8 would pass 1 s


def test_a_body_that_trickles_past_the_deadline_fails_within_the_deadline(serve):
    serve([("trickle", 1000, 0.01)])  # 10 s of body, a byte at a time: every read is quick
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="no whole answer within 0.8 s"):
        chat_judge(retries=0, request_deadline_s=0.8).answer(question())
    assert 0.8 <= time.monotonic() - started < 1.6
    script = serve([("trickle", 1000, 0.01)] * 5)  # retried, but the ask's own deadline ends it
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="no whole answer within 0.2 s|the ask's 1 s"):
        chat_judge(retries=5, request_deadline_s=0.4, ask_deadline_s=1).answer(question())
    assert 1 <= time.monotonic() - started < 1.7 and len(script.times) == 3  # 0.4 s, 0.4 s, then the 0.2 s left


def test_a_key_an_endpoint_echoes_is_never_stored(serve):
    serve([("json", 401, {"error": f"Incorrect API key provided: {KEY}", "header": f"Bearer {KEY}"})],
          then=("json", 200, reply(f"You sent {KEY}.\nAnswer: 1"), {}))
    rows = pairs(chat_judge(), 1)
    assert "HTTP 401" in rows[0]["error"] and rows[1]["raw"].endswith("Answer: 1")
    assert KEY not in json.dumps(rows) and KEY[:12] not in json.dumps(rows)


@pytest.mark.parametrize("text, kept", [
    ("Authorization: Bearer abcdefghijklmnopqrstu", "Authorization: "),
    ('{"authorization": "Basic dXNlcjpwYXNzd29yZA=="}', '{"authorization": "'),
    ("token was bearer eyJhbGciOiJIUzI1NiJ9.e30.abc", "token was bearer "),
    ("key sk-proj-AbCdEf0123456789xyz is invalid", "key "),
    ("id AKIAIOSFODNN7EXAMPLE denied", "id "),
    ("GET /v1/models?api_key=s3cr3tvalue&x=1", "GET /v1/models?api_key="),
    ("see https://x.test/v1?key=AIzaSyD-abc123", "see https://x.test/v1?key="),
    ('{"api_key": "abc123xyz"}', '{"api_key": "'),
    ("http://user:hunter2@judge.local/v1", "http://"),
])
def test_redact_removes_common_credential_shapes(text, kept):
    out = redact(text)
    assert out.startswith(kept + REDACTED) and not any(s in out for s in (
        "abcdefghijklmnop", "dXNlcjpw", "eyJhbGci", "AbCdEf01", "AKIAIOSF", "s3cr3t", "AIzaSy", "abc123xyz",
        "hunter2"))


def test_redact_removes_the_exact_secret_and_leaves_answers_alone():
    assert redact("the key my-own-key-42 failed", ["my-own-key-42"]) == f"the key {REDACTED} failed"
    answer = "Candidate 1 keeps the basic background of B; the bearer of the edit is 2.\nAnswer: 2"
    assert redact(answer, [KEY]) == answer and redact(None, [KEY]) is None


def test_retry_after_values():
    from evaluation.scoring.judge_backends import retry_after_seconds

    assert retry_after_seconds("5") == 5 and retry_after_seconds(" 1.5 ") == 1.5
    assert 58 < retry_after_seconds(formatdate(time.time() + 60, usegmt=True)) <= 60
    assert retry_after_seconds(formatdate(time.time() - 60, usegmt=True)) == 0  # a date passed: at once
    assert [retry_after_seconds(v) for v in (None, "", "soon", "-1", "inf", "nan")] == [None] * 6


def test_no_bad_answer_of_the_corpus_is_a_vote_and_every_good_one_is():
    assert len(CORPUS["bad"]) >= 30
    for raw in CORPUS["bad"]:
        for allow_tie in (True, False):
            with pytest.raises(ValueError, match="no choice in the answer"):
                parse_answer(raw, allow_tie)
    for raw in CORPUS["bad_without_tie"]:
        assert parse_answer(raw, allow_tie=True) == "tie"
        with pytest.raises(ValueError, match="not offered"):
            parse_answer(raw, allow_tie=False)
    for raw, want in CORPUS["good"]:
        assert parse_answer(raw, allow_tie=False) == want, raw

    class Says:
        judge_id, allow_tie = "says", False

        def __init__(self):
            self.answers = iter(CORPUS["bad"] + CORPUS["bad_without_tie"])

        def answer(self, q):
            return next(self.answers)

    n = len(CORPUS["bad"]) + len(CORPUS["bad_without_tie"])
    rows = pairs(Says(), (n + 1) // 2)
    assert not [r for r in rows if r["choice"] is not None]
    assert all(r["error"] for r in rows[:n])


# --- a stopped step keeps its paid asks; the asset with a misbehaving endpoint ---------------------

def write_partition(home: Path, partition: str, triplets: int, methods: list[str]):
    """Triplets and generations tables of `partition` under `home`, with solid images as blobs."""
    from orchestration.storage import Store

    store = Store(str(home))
    a, a2, b = (store.put_png(solid(v)) for v in (10, 20, 30))
    rows = [{"triplet_id": f"t{i}", "source": "toy", "a_hash": a, "a_prime_hash": a2, "b_hash": b,
             "category": "colour"} for i in range(triplets)]
    made = [{"triplet_id": t["triplet_id"], "method": m, "config_hash": f"h{j}", "config": "{}", "seed": 0,
             "profile": "toy", "models": "{}", "inputs_key": "k", "b_prime_hash": store.put_png(solid(100 + 50 * j))}
            for t in rows for j, m in enumerate(methods)]
    store.write_table("triplets", partition, rows)
    store.write_table("generations", partition, made)
    return store, store.read_table("triplets", partition), store.read_table("generations", partition)


@pytest.mark.parametrize("stop", [KeyboardInterrupt, dg.DagsterExecutionInterruptedError])
def test_a_stopped_judging_loop_writes_the_asks_it_made_and_a_rerun_reuses_them(tmp_path, stop):
    from orchestration.judge_assets import judge_partition

    store, triplets, made = write_partition(tmp_path, "toy", 3, ["a", "b"])

    class StopsAtAsk5:
        judge_id, allow_tie = "stops", False

        def __init__(self, stop_at=5):
            self.asked, self.stop_at = 0, stop_at

        def answer(self, q):
            self.asked += 1
            if self.asked == self.stop_at:
                raise stop()
            return "Answer: 1"

    with pytest.raises(stop):
        judge_partition(store, triplets, made, StopsAtAsk5(), [("a", "b")], 0, [], partition="toy")
    saved = store.read_table("judgements", "toy")
    assert len(saved) == 4 and {r["triplet_id"] for r in saved} == {"t0", "t1"} and not any(r["error"] for r in saved)
    again = StopsAtAsk5(stop_at=0)
    rows, counts = judge_partition(store, triplets, made, again, [("a", "b")], 0, saved, partition="toy")
    assert counts == {"asked": 1, "reused": 2, "kept": 0} and again.asked == 2 and len(rows) == 6


def test_a_rerun_asks_again_what_a_looser_parser_counted_and_rewrites_no_stored_key(tmp_path):
    from orchestration.judge_assets import judge_partition

    store, triplets, made = write_partition(tmp_path, "toy", 1, ["a", "b", "c"])

    class Says1:
        judge_id, allow_tie, secrets = "says-1", False, (KEY,)
        asked = 0

        def answer(self, q):
            self.asked += 1
            return "Answer: 1"

    judge = Says1()
    first, _ = judge_partition(store, triplets, made, judge, [("a", "b"), ("a", "c")], 0)
    older = [r | ({"raw": "Neither candidate completes the analogy; I would answer two ways at once."}
                  if r["opponent"] == "b" else {"error": f"HTTP 401: bad key {KEY}", "choice": None})
             for r in first]  # what an older parser counted as a vote, and a key an older version stored
    rows, counts = judge_partition(store, triplets, made, judge, [("a", "b")], 0, older)
    assert counts == {"asked": 1, "reused": 0, "kept": 1} and judge.asked == 6
    assert [r["raw"] for r in rows if r["opponent"] == "b"] == ["Answer: 1"] * 2
    assert KEY not in json.dumps(rows) and all(REDACTED in r["error"] for r in rows if r["opponent"] == "c")


def test_the_judgements_asset_with_a_chat_judge_records_every_bad_answer_and_succeeds(tmp_path, serve):
    from orchestration.judge_assets import judgements
    from orchestration.resources import AnalogyStorage, MethodsResource, ModelsResource
    from orchestration.storage import Store

    write_partition(tmp_path, "toy", 2, ["a", "b", "c"])  # 2 triplets × 3 method pairs × 2 asks
    bad = [("json", 429, {"error": f"key {KEY} over quota"}, {"Retry-After": "0"}),  # retried: not an ask
           ("json", 200, {"choices": []}), ("json", 200, reply(None)), ("bytes", 200, b"<html>oops"),
           ("json", 401, {"error": f"bad key {KEY}"}), ("json", 200, [1]),
           ("json", 200, reply("I cannot answer one way or the other: neither candidate completes the analogy.")),
           ("json", 200, reply([{"type": "text", "text": "Answer: 2"}])), ("json", 200, reply("Answer: tie"))]
    script = serve(bad)
    result = dg.materialize([judgements], partition_key="toy", resources={
        "storage": AnalogyStorage(home=str(tmp_path)), "models": ModelsResource(), "methods": MethodsResource()},
        run_config={"ops": {"judgements": {"config": {"judge": "chat", "requests_per_minute": 0}}}})
    assert result.success
    rows = Store(str(tmp_path)).read_table("judgements", "toy")
    assert len(rows) == 12 and len(script.times) == 13  # one row per ask; the 429 was retried
    assert sum(1 for r in rows if r["error"]) == 7 and sum(1 for r in rows if r["choice"]) == 5
    assert KEY not in json.dumps(rows)
    (materialization,) = result.asset_materializations_for_node("judgements")
    assert materialization.metadata["failed_asks"].value == 7
