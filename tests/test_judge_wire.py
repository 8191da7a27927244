"""The chat judge against raw HTTP a server library would not send: an event stream, a redirect, a
broken gzip body, a chunked body cut short, headers with no body, NaN JSON, and answers that only
look like choices. Each is one recorded ask, never an exception, and only a strict final line votes."""

import json
import socket
import threading

import numpy as np
import pytest
from PIL import Image

from evaluation.scoring.pairwise import Candidate, judge_pair

KEY = "sk-wire-77aa88bb99cc"


def response(status: int, body: bytes, headers=(), reason: str = "OK") -> bytes:
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    return head.encode() + b"\r\n" + body


def sized(status: int, body: bytes, *headers, reason: str = "OK") -> bytes:
    return response(status, body, [*headers, ("Content-Length", len(body)), ("Connection", "close")], reason)


def said(text) -> bytes:
    return sized(200, json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode())


EVENTS = b'data: {"choices":[{"delta":{"content":"Answer: 1"}}]}\n\ndata: [DONE]\n\n'
WIRE = [  # (name, the bytes the server sends, the vote it may give: "1", "2" or None)
    ("event stream", sized(200, EVENTS, ("Content-Type", "text/event-stream")), None),
    ("redirect", sized(301, b"", ("Location", "/elsewhere"), reason="Moved"), None),
    ("broken gzip", sized(200, b"\x1f\x8b\x08\x00not-gzip", ("Content-Encoding", "gzip")), None),
    ("chunked body cut short", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n{\"choices\": [", None),
    ("headers, then no body", b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n", None),
    ("NaN for choices", sized(200, b'{"choices": NaN}'), None),
    ("empty body", sized(200, b""), None),
    ("an HTML page", sized(200, b"<html>ok</html>", ("Content-Type", "text/html")), None),
    ("content as an object", said({"text": "Answer: 1"}), None),
    ("a keycap emoji", said("Answer: 1\ufe0f\u20e3"), None),
    ("a full-width digit", said("Answer: \uff12"), None),
    ("a hedge after the answer", said("Answer: 1\n\n(I am not sure.)"), None),
    ("tie, not offered", said("Answer: tie"), None),
    ("JSON in the text", said('{"answer": 1}'), None),
    ("both", said("Both are equally good.\nAnswer: 1 and 2"), None),
    ("three, with the key echoed", said(f"Your key {KEY} works.\nAnswer: 3"), None),
    ("a negative Retry-After", sized(503, b"{}", ("Retry-After", "-5")), None),
    ("a Retry-After in the past", sized(429, b"{}", ("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT")), None),
    ("two answer lines: the last counts", said("Answer: 1\nAnswer: 2"), "2"),
    ("a reasoned answer", said("Candidate 1 keeps B.\nAnswer: 1"), "1"),
]


@pytest.fixture
def wire(monkeypatch):
    replies = [sent for _, sent, _ in WIRE]
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        while replies:
            conn, _ = server.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, body = data.split(b"\r\n\r\n", 1)
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length"))
                while len(body) < length:
                    body += conn.recv(65536)
                conn.sendall(replies.pop(0))

    threading.Thread(target=serve, daemon=True).start()
    monkeypatch.setenv("ANALOGY_JUDGE_BASE_URL", f"http://127.0.0.1:{server.getsockname()[1]}/v1")
    monkeypatch.setenv("ANALOGY_JUDGE_API_KEY", KEY)
    yield
    server.close()


def solid(value: int) -> Image.Image:
    return Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8))


def test_raw_wire_answers_are_recorded_asks_and_only_strict_lines_vote(wire):
    from evaluation.scoring.judge_backends import ChatEndpointJudge

    judge = ChatEndpointJudge("gpt-4o", retries=0, backoff_s=0, requests_per_minute=0, request_deadline_s=5)
    x, y = Candidate("ours", "h1", solid(200)), Candidate("theirs", "h2", solid(90))
    try:
        rows = [r for t in range(len(WIRE) // 2)
                for r in judge_pair(judge, f"t{t}", solid(10), solid(20), solid(30), x, y, seed=0)]
    finally:
        judge.close()
    assert len(rows) == len(WIRE)
    for (name, _, vote), row in zip(WIRE, rows, strict=True):
        position = None if row["choice"] is None else "1" if row["choice"] == row["shown_first"] else "2"
        assert position == vote, (name, row)
        assert (row["error"] is None) == (vote is not None), (name, row["error"])
        assert all(KEY not in str(row[k] or "") for k in ("raw", "error")), name
        assert "\n" not in (row["error"] or ""), name
