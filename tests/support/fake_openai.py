"""A real HTTP server on loopback speaking the OpenAI chat-completions protocol, standing in for a paid API.

It answers from the request itself (so a test can tell which prompt an answer belongs to) and can be told
to misbehave: rate-limit with Retry-After, refuse a wrong key, fail some prompts for good, be slow.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Answer = Callable[[list[dict[str, str]]], str]


def echo_answer(messages: list[dict[str, str]]) -> str:
    return f"Working on: {messages[-1]['content']}\nSo the answer is \\boxed{{42}}."


@dataclass
class Behaviour:
    answer: Answer = echo_answer
    api_key: str | None = None
    """When set, requests without `Authorization: Bearer <api_key>` get 401."""
    rate_limit_first: int = 0
    """The first this many requests get 429 with `Retry-After: retry_after`."""
    retry_after: str = "0.2"
    refuse_containing: str | None = None
    """A user message containing this gets 400 (a permanent failure)."""
    truncate_containing: str | None = None
    """A user message containing this gets half its answer with finish_reason `length`, as vLLM answers
    when the sample reaches max_tokens."""
    server_error_every: int = 0
    """Every n-th request gets 500."""
    no_content_containing: str | None = None
    """A user message containing this gets `content: null` with a refusal, as OpenAI answers a request it
    declines (finish_reason `stop`)."""
    not_json_containing: str | None = None
    """A user message containing this gets 200 with an HTML page, as a proxy in the way answers."""
    delay_seconds: float = 0.0


@dataclass
class Traffic:
    requests: int = 0
    rate_limited: int = 0
    authorizations: list[str] = field(default_factory=list)
    answered: Counter[str] = field(default_factory=Counter)
    retry_gaps: list[float] = field(default_factory=list)
    """Seconds between a 429 and the next request of the same prompt."""
    _limited_at: dict[str, float] = field(default_factory=dict)


class FakeOpenAI:
    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.traffic = Traffic()
        self.base_url = ""

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

    async def chat(self, request: web.Request) -> web.Response:
        behaviour, traffic = self.behaviour, self.traffic
        traffic.requests += 1
        number = traffic.requests
        authorization = request.headers.get("Authorization", "")
        traffic.authorizations.append(authorization)
        if behaviour.api_key is not None and authorization != f"Bearer {behaviour.api_key}":
            return web.json_response({"error": {"message": "Incorrect API key provided"}}, status=401)
        body: dict[str, Any] = await request.json()
        messages = body["messages"]
        prompt = messages[-1]["content"]
        if prompt in traffic._limited_at:
            traffic.retry_gaps.append(time.monotonic() - traffic._limited_at.pop(prompt))
        if number <= behaviour.rate_limit_first:
            traffic.rate_limited += 1
            traffic._limited_at[prompt] = time.monotonic()
            return web.json_response(
                {"error": {"message": "Rate limit reached"}},
                status=429,
                headers={"Retry-After": behaviour.retry_after},
            )
        if behaviour.server_error_every and number % behaviour.server_error_every == 0:
            return web.json_response({"error": {"message": "internal error"}}, status=500)
        if behaviour.refuse_containing and behaviour.refuse_containing in prompt:
            return web.json_response({"error": {"message": "maximum context length exceeded"}}, status=400)
        if behaviour.not_json_containing and behaviour.not_json_containing in prompt:
            return web.Response(text="<html><body>Gateway login</body></html>", content_type="text/html")
        if behaviour.delay_seconds:
            await asyncio.sleep(behaviour.delay_seconds)
        content: str | None
        content, finish_reason = behaviour.answer(messages), "stop"
        refusal = None
        if behaviour.no_content_containing and behaviour.no_content_containing in prompt:
            content, refusal = None, "I can't help with that."
        if behaviour.truncate_containing and behaviour.truncate_containing in prompt and content:
            content, finish_reason = content[: len(content) // 2], "length"
        traffic.answered[prompt] += 1
        return web.json_response(
            {
                "id": f"chatcmpl-{number}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "fake-model"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content, "refusal": refusal},
                        "finish_reason": finish_reason,
                    }
                ],
                "usage": {
                    "prompt_tokens": sum(len(m["content"].split()) for m in messages),
                    "completion_tokens": len((content or "").split()),
                    "total_tokens": 0,
                },
            }
        )


@contextmanager
def serve_fake_openai(behaviour: Behaviour | None = None) -> Iterator[FakeOpenAI]:
    """Runs the server on 127.0.0.1 on a free port in a background thread; `.base_url` ends in /v1."""
    fake = FakeOpenAI(behaviour or Behaviour())
    app = web.Application()
    app.router.add_get("/v1/models", fake.models)
    app.router.add_post("/v1/chat/completions", fake.chat)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        fake.base_url = f"http://127.0.0.1:{port}/v1"
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("the fake OpenAI server did not start")
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
