"""The chat-endpoint judge against a small OpenAI-compatible server this test starts on 127.0.0.1:
retries, the rate limit, the images and prompt it sends, a parse failure, and no key anywhere."""

import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from evaluation.scoring.pairwise import Candidate, judge_pair, win_rates

KEY = "sk-test-0d9a7c"


def solid(value: int) -> Image.Image:
    return Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8))


class Endpoint:
    """/v1/chat/completions: 401 without the key; the first `fail_first` requests get 429 (Retry-After 0);
    then it answers for the brighter candidate (or `reply`, when set)."""

    def __init__(self, fail_first=1, reply=None, status=None):
        self.fail_first, self.reply, self.status = fail_first, reply, status
        self.requests, self.times = [], []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                endpoint.times.append(time.monotonic())
                if self.headers.get("Authorization") != f"Bearer {KEY}" or self.path != "/v1/chat/completions":
                    return self._send(401, {"error": "unauthorised"})
                endpoint.requests.append(body)
                if len(endpoint.requests) <= endpoint.fail_first:
                    return self._send(429, {"error": "slow down"}, {"Retry-After": "0"})
                if endpoint.status:
                    return self._send(endpoint.status, {"error": "down"})
                parts = body["messages"][0]["content"]
                images = [Image.open(io.BytesIO(base64.b64decode(p["image_url"]["url"].split(",", 1)[1])))
                          for p in parts if p["type"] == "image_url"]
                first, second = (np.asarray(i).mean() for i in images[3:])
                text = endpoint.reply or f"Answer: {1 if first > second else 2}"
                self._send(200, {"choices": [{"message": {"role": "assistant", "content": text}}]})

            def _send(self, status, payload, headers=None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", "Content-Length": str(len(data)),
                             **(headers or {})}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def endpoint_env(monkeypatch):
    made = []

    def start(**kwargs):
        endpoint = Endpoint(**kwargs)
        made.append(endpoint)
        monkeypatch.setenv("ANALOGY_JUDGE_BASE_URL", endpoint.url)
        monkeypatch.setenv("ANALOGY_JUDGE_API_KEY", KEY)
        return endpoint

    yield start
    for endpoint in made:
        endpoint.close()


def ask(judge, seed=0):
    x, y = Candidate("ours", "h1", solid(220)), Candidate("theirs", "h2", solid(90))
    return [r | {"dataset": "d"} for r in judge_pair(judge, "t0", solid(10), solid(20), solid(30), x, y, seed)]


def test_the_endpoint_judge_retries_sends_five_images_and_the_prompt_and_keeps_the_key_out(endpoint_env):
    from evaluation.scoring.judge_backends import ChatEndpointJudge

    endpoint = endpoint_env(fail_first=1)
    rows = ask(ChatEndpointJudge("gpt-4o", backoff_s=0, requests_per_minute=0))
    assert [r["choice"] for r in rows] == ["ours", "ours"] and all(r["consistent"] for r in rows)
    assert len(endpoint.requests) == 3  # one 429, retried, then both asks
    message = endpoint.requests[-1]["messages"][0]["content"]
    assert [p["type"] for p in message] == ["text"] + ["image_url"] * 5
    assert "Answer: 1" in message[0]["text"] and endpoint.requests[-1]["model"] == "gpt-4o"
    assert KEY not in json.dumps(rows)
    assert win_rates(rows)[0]["wins"] == 1


def test_an_endpoint_answer_that_cannot_be_parsed_or_an_endpoint_that_stays_down_is_a_recorded_failure(
        endpoint_env):
    from evaluation.scoring.judge_backends import ChatEndpointJudge

    endpoint_env(fail_first=0, reply="The second one, I think, or maybe the first.")
    rows = ask(ChatEndpointJudge("gpt-4o", backoff_s=0, requests_per_minute=0))
    assert all(r["choice"] is None and "no choice" in r["error"] for r in rows)
    assert rows[0]["raw"].startswith("The second one")
    endpoint_env(fail_first=0, status=503)
    rows = ask(ChatEndpointJudge("gpt-4o", backoff_s=0, retries=2, requests_per_minute=0))
    assert all("HTTP 503" in r["error"] for r in rows) and win_rates(rows)[0]["failed"] == 1


def test_the_rate_limit_spaces_requests_and_a_missing_key_fails_at_once(endpoint_env, monkeypatch):
    from evaluation.scoring.judge_backends import ChatEndpointJudge

    endpoint = endpoint_env(fail_first=0)
    ask(ChatEndpointJudge("gpt-4o", requests_per_minute=300))  # one request per 0.2 s
    assert len(endpoint.times) == 2 and endpoint.times[1] - endpoint.times[0] >= 0.19
    monkeypatch.delenv("ANALOGY_JUDGE_API_KEY")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="ANALOGY_JUDGE_API_KEY"):
        ChatEndpointJudge("gpt-4o")
