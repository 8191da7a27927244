"""Pairwise judge backends beyond the toy one (evaluation.pairwise.JudgeBackend).

`LocalVLMJudge`: an image-text-to-text model through `transformers` (`AutoModelForImageTextToText`
with its processor and chat template; Qwen2.5-VL by default), loaded from the Hugging Face cache
(models.loaders.load_vlm). One user turn holds the five images and the protocol's prompt; the
answer is greedy-decoded.

`ChatEndpointJudge`: any OpenAI-compatible chat-completions endpoint (the paper's GPT-4o; vLLM or
TGI serving Qwen2-VL, …). The URL and the key come from the environment only:
`ANALOGY_JUDGE_BASE_URL` (else `OPENAI_BASE_URL`, else https://api.openai.com/v1) and
`ANALOGY_JUDGE_API_KEY` (else `OPENAI_API_KEY`). The five images go as PNG data URLs in one user
message with the protocol's prompt, at temperature 0. A 429 or 5xx answer, a timeout or a
dropped connection is retried with exponential backoff (honouring `Retry-After`) up to `retries`
times; requests are spaced to at most `requests_per_minute`. The key is never logged or stored:
a judgement row holds the answer text only.
"""

from __future__ import annotations

import base64
import os
import threading
import time

import httpx

from evaluation.images import png_bytes
from evaluation.pairwise import Question
from models.profiles import VLM_ID as DEFAULT_VLM

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_CHAT_MODEL = "gpt-4o"  # the paper's API judge
DEFAULT_REQUESTS_PER_MINUTE = 60.0
RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


def _image_part(image) -> dict:
    data = base64.b64encode(png_bytes(image.convert("RGB"))).decode()
    return {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}}


class ChatEndpointJudge:
    allow_tie = False

    def __init__(self, model: str, *, base_url: str | None = None, retries: int = 5,
                 requests_per_minute: float = DEFAULT_REQUESTS_PER_MINUTE,
                 timeout_s: float = 120, backoff_s: float = 1.0):
        self.model = model
        self.base_url = (base_url or os.environ.get("ANALOGY_JUDGE_BASE_URL") or os.environ.get("OPENAI_BASE_URL")
                         or DEFAULT_BASE_URL).rstrip("/")
        key = os.environ.get("ANALOGY_JUDGE_API_KEY") or os.environ.get("OPENAI_API_KEY")
        if not key:
            raise ValueError("the chat-endpoint judge needs its key in ANALOGY_JUDGE_API_KEY (or OPENAI_API_KEY)")
        self.judge_id = f"chat:{model}"
        self.retries, self.backoff_s = retries, backoff_s
        self.interval_s = 60.0 / requests_per_minute if requests_per_minute > 0 else 0.0
        self._next_at, self._lock = 0.0, threading.Lock()
        self._client = httpx.Client(timeout=timeout_s, headers={"Authorization": f"Bearer {key}"})

    def _wait_turn(self) -> None:
        """At most one request per `interval_s` (the rate limit), across threads."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_at)
            self._next_at = start + self.interval_s
        if start > now:
            time.sleep(start - now)

    def answer(self, question: Question) -> str:
        images = [question.a, question.a_prime, question.b, question.first, question.second]
        body = {"model": self.model, "temperature": 0, "max_tokens": 300,
                "messages": [{"role": "user", "content": [{"type": "text", "text": question.prompt},
                                                          *map(_image_part, images)]}]}
        for attempt in range(self.retries + 1):
            self._wait_turn()
            try:
                response = self._client.post(f"{self.base_url}/chat/completions", json=body)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                if attempt == self.retries:
                    raise RuntimeError(f"{self.base_url}: {type(exc).__name__} after {attempt + 1} tries") from None
                time.sleep(self.backoff_s * 2 ** attempt)
                continue
            if response.status_code in RETRY_STATUS and attempt < self.retries:
                wait = response.headers.get("retry-after", "")
                seconds = float(wait) if wait.replace(".", "", 1).isdigit() else self.backoff_s * 2 ** attempt
                time.sleep(seconds)
                continue
            if response.status_code != 200:
                raise RuntimeError(f"{self.base_url}: HTTP {response.status_code}: {response.text[:200]}")
            try:
                return response.json()["choices"][0]["message"]["content"]
            except (ValueError, KeyError, IndexError, TypeError):
                raise RuntimeError(f"{self.base_url}: not a chat-completions answer: {response.text[:200]}") from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._client.close()


class LocalVLMJudge:
    allow_tie = False

    def __init__(self, model_id: str = DEFAULT_VLM, device: str | None = None, max_new_tokens: int = 64):
        from models.loaders import load_vlm

        self.vlm = load_vlm(model_id, device, "the judge VLM")
        self.judge_id = f"vlm:{model_id}"
        self.max_new_tokens = max_new_tokens

    def answer(self, question: Question) -> str:
        images = [question.a, question.a_prime, question.b, question.first, question.second]
        return self.vlm.ask(images, question.prompt, self.max_new_tokens)
