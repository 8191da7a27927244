"""Pairwise judge backends beyond the toy one (evaluation.scoring.pairwise.JudgeBackend).

`LocalVLMJudge`: an image-text-to-text model through `transformers` (`AutoModelForImageTextToText`
with its processor and chat template; Qwen2.5-VL by default), loaded from the Hugging Face cache
(models.loaders.load_vlm). One user turn holds the five images and the protocol's prompt; the
answer is greedy-decoded.

`ChatEndpointJudge`: any OpenAI-compatible chat-completions endpoint (the paper's GPT-4o; vLLM or
TGI serving Qwen2-VL, …). The URL and the key come from the environment only:
`ANALOGY_JUDGE_BASE_URL` (else `OPENAI_BASE_URL`, else https://api.openai.com/v1) and
`ANALOGY_JUDGE_API_KEY` (else `OPENAI_API_KEY`). The five images go as PNG data URLs in one user
message with the protocol's prompt, at temperature 0; requests are spaced to at most
`requests_per_minute`. Every outcome is an answer text or one exception with a one-line reason
(which evaluation.scoring.pairwise.judge_pair records as a failed ask, redacting the key):

- each request has a total deadline (`request_deadline_s`: connecting, sending and the whole body,
  however slowly it trickles) and each ask one across its tries and waits (`ask_deadline_s`);
- 408, 409, 429 and 5xx answers, timeouts and dropped connections are retried up to `retries`
  times, after the `Retry-After` the endpoint asks for (seconds or an HTTP date) or else an
  exponential backoff; a `Retry-After` over `retry_after_cap_s` fails the ask at once;
- any body that is not a chat-completions answer with text (not JSON, no choices, `content: null`,
  no text parts, over `max_answer_bytes`) fails the ask; a content list's text parts are joined.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import threading
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from evaluation.ingestion.images import png_bytes
from evaluation.scoring.pairwise import Question
from models.profiles import VLM_ID as DEFAULT_VLM

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_CHAT_MODEL = "gpt-4o"  # the paper's API judge
DEFAULT_REQUESTS_PER_MINUTE = 60.0
DEFAULT_RETRIES = 5
DEFAULT_BACKOFF_S = 1.0  # the first retry's wait when the endpoint names none; doubled each retry
DEFAULT_REQUEST_DEADLINE_S = 120.0  # one request, all of it: a vision answer takes seconds, not minutes
DEFAULT_ASK_DEADLINE_S = 600.0  # one ask, every try and wait: a step never hangs on one question
DEFAULT_RETRY_AFTER_CAP_S = 60.0  # a longer Retry-After (a quota, not a blip) fails the ask instead of waiting
MAX_ANSWER_BYTES = 4 * 2**20  # a chat answer is kilobytes; more is a broken endpoint, not an answer
MAX_TOKENS = 300
SNIPPET_CHARS = 200  # how much of a bad body a recorded error quotes


class EndpointError(RuntimeError):
    """One failed ask, its reason in one line."""


def _image_part(image) -> dict:
    data = base64.b64encode(png_bytes(image.convert("RGB"))).decode()
    return {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}}


def _snippet(data: bytes | str) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
    return " ".join(text.split())[:SNIPPET_CHARS]


def _tries(n: int) -> str:
    return f"{n} try" if n == 1 else f"{n} tries"


def retryable(status: int) -> bool:
    return status in (408, 409, 429) or status >= 500


def retry_after_seconds(value: str | None) -> float | None:
    """The wait a `Retry-After` header asks for, in seconds (a number, or an HTTP date: the time
    until then, at least 0), or None where there is none or it cannot be read."""
    if not value or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an HTTP date is GMT
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def chat_text(data: bytes) -> str:
    """The answer text of a chat-completions body: `choices[0].message.content`, a string or a list
    of parts whose `text` parts are joined. Raises EndpointError for any other shape."""
    try:
        reply = json.loads(data)
    except (ValueError, RecursionError):
        raise EndpointError(f"the answer is not JSON: {_snippet(data)!r}") from None
    choices = reply.get("choices") if isinstance(reply, dict) else None
    if not isinstance(choices, list) or not choices:
        raise EndpointError(f"the answer has no choices: {_snippet(data)!r}")
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    if not isinstance(message, dict):
        raise EndpointError(f"the answer's first choice has no message: {_snippet(data)!r}")
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p["text"] for p in content if isinstance(p, dict) and p.get("type") == "text"
                 and isinstance(p.get("text"), str)]
        if texts:
            return "".join(texts)
        kinds = sorted({str(p.get("type")) if isinstance(p, dict) else type(p).__name__ for p in content})
        raise EndpointError(f"the answer's content has no text parts (parts: {', '.join(kinds) or 'none'})")
    if content is None and isinstance(message.get("refusal"), str):
        raise EndpointError(f"the model refused: {_snippet(message['refusal'])!r}")
    raise EndpointError(f"the answer's content is {'null' if content is None else type(content).__name__}, not text")


class ChatEndpointJudge:
    allow_tie = False

    def __init__(self, model: str, *, base_url: str | None = None, retries: int = DEFAULT_RETRIES,
                 requests_per_minute: float = DEFAULT_REQUESTS_PER_MINUTE,
                 request_deadline_s: float = DEFAULT_REQUEST_DEADLINE_S, ask_deadline_s: float = DEFAULT_ASK_DEADLINE_S,
                 retry_after_cap_s: float = DEFAULT_RETRY_AFTER_CAP_S, backoff_s: float = DEFAULT_BACKOFF_S,
                 max_answer_bytes: int = MAX_ANSWER_BYTES):
        self.model = model
        self.base_url = (base_url or os.environ.get("ANALOGY_JUDGE_BASE_URL") or os.environ.get("OPENAI_BASE_URL")
                         or DEFAULT_BASE_URL).rstrip("/")
        key = os.environ.get("ANALOGY_JUDGE_API_KEY") or os.environ.get("OPENAI_API_KEY")
        if not key:
            raise ValueError("the chat-endpoint judge needs its key in ANALOGY_JUDGE_API_KEY (or OPENAI_API_KEY)")
        self.judge_id = f"chat:{model}"
        self.secrets = (key,)  # judge_pair redacts these from every row
        self.retries, self.backoff_s, self.retry_after_cap_s = retries, backoff_s, retry_after_cap_s
        self.request_deadline_s, self.ask_deadline_s = request_deadline_s, ask_deadline_s
        self.max_answer_bytes = max_answer_bytes
        self.interval_s = 60.0 / requests_per_minute if requests_per_minute > 0 else 0.0
        self._next_at, self._lock = 0.0, threading.Lock()
        # one event loop on its own thread, so one client keeps its connections alive for every caller
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="chat-judge", daemon=True)
        self._thread.start()
        self._client = httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=request_deadline_s)

    def _wait_turn(self) -> None:
        """At most one request per `interval_s` (the rate limit), across threads."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_at)
            self._next_at = start + self.interval_s
        if start > now:
            time.sleep(start - now)

    def _run(self, coroutine):
        """The coroutine's result, run on the judge's loop (from any thread)."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result()
        finally:
            future.cancel()  # a caller that is interrupted leaves no request running

    async def _post(self, body: dict, deadline_s: float) -> tuple[int, httpx.Headers, bytes]:
        """(status, headers, body) of one request that must end, body and all, within `deadline_s`:
        httpx's timeouts bound each read, not a body that trickles, so asyncio bounds the whole."""
        async with asyncio.timeout(deadline_s):
            async with self._client.stream("POST", f"{self.base_url}/chat/completions", json=body,
                                           timeout=deadline_s) as response:
                data = bytearray()
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > self.max_answer_bytes:
                        raise EndpointError(f"HTTP {response.status_code}: the body is over "
                                            f"{self.max_answer_bytes} bytes")
                return response.status_code, response.headers, bytes(data)

    def answer(self, question: Question) -> str:
        images = [question.a, question.a_prime, question.b, question.first, question.second]
        body = {"model": self.model, "temperature": 0, "max_tokens": MAX_TOKENS,
                "messages": [{"role": "user", "content": [{"type": "text", "text": question.prompt},
                                                          *map(_image_part, images)]}]}
        try:
            return self._ask(body)
        except EndpointError as exc:
            raise EndpointError(f"{self.base_url}: {exc}") from None

    def _ask(self, body: dict) -> str:
        give_up_at = time.monotonic() + self.ask_deadline_s
        for attempt in range(self.retries + 1):
            self._wait_turn()
            deadline_s = min(self.request_deadline_s, give_up_at - time.monotonic())
            if deadline_s <= 0:
                raise EndpointError(f"no answer within the ask's {self.ask_deadline_s:g} s ({_tries(attempt)})")
            backoff = self.backoff_s * 2 ** attempt
            try:
                status, headers, data = self._run(self._post(body, deadline_s))
            except (TimeoutError, httpx.TimeoutException):
                failure, wait = f"no whole answer within {deadline_s:.3g} s", backoff
            except httpx.TransportError as exc:
                failure, wait = f"the connection failed or dropped ({type(exc).__name__})", backoff
            except httpx.HTTPError as exc:  # an undecodable body, a redirect loop: trying again changes nothing
                raise EndpointError(f"{type(exc).__name__}: {_snippet(str(exc))}") from None
            else:
                if status == 200:
                    return chat_text(data)
                failure = f"HTTP {status}: {_snippet(data)}"
                if not retryable(status):
                    raise EndpointError(failure)
                asked = retry_after_seconds(headers.get("retry-after"))
                if asked is not None and asked > self.retry_after_cap_s:
                    raise EndpointError(f"{failure} (Retry-After {asked:.0f} s is over the "
                                        f"{self.retry_after_cap_s:g} s cap)")
                wait = backoff if asked is None else asked
            if attempt == self.retries:
                raise EndpointError(f"{failure} (after {_tries(attempt + 1)})")
            if time.monotonic() + wait >= give_up_at:
                raise EndpointError(f"{failure} (a retry in {wait:g} s would pass the ask's "
                                    f"{self.ask_deadline_s:g} s deadline)")
            time.sleep(wait)
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Closes the connections and stops the judge's loop."""
        if self._loop.is_closed():
            return
        self._run(self._client.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


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
