"""A local stand-in for the rewrite API: an OpenAI-protocol server that reformats traces by rule, not by a
language model. It lets the tiny recipe and `make demo` run the rewrite stage with no paid API; pointing
`rewrite.baseUrl` at a real endpoint (and `rewrite.apiKeySecret` at a real key) is the production switch.

The rule: the whole raw trace becomes the thought; the solution is the trace's last code block (code) or
its last line holding a \\boxed{} answer (math), else its last non-empty line.

  reasoning-pipeline rewrite-stand-in [--host 127.0.0.1] [--port 8000]

With REASONING_STAND_IN_API_KEY set (the demo sets it from the same Secret the rewrite Job reads), it
checks `Authorization: Bearer <key>` as the real API does and refuses other requests with 401; GET /stats
counts both, so a test can tell the key reached the stage.
"""

from __future__ import annotations

import hmac
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from reasoning_pipeline.rewrite import MARKERS

RESPONSE_HEADER = "Response to reformat:\n"
CODE_BLOCK = re.compile(r"```[^\n]*\n.*?```", re.S)
STAND_IN_MODEL = "rule-based-rewrite-stand-in"
API_KEY_VARIABLE = "REASONING_STAND_IN_API_KEY"
KEY_CHECKED_PATHS = ("/v1/",)
COUNTS = web.AppKey("counts", dict[str, int])


def reformat(trace: str) -> str:
    blocks = CODE_BLOCK.findall(trace)
    if blocks:
        solution = blocks[-1]
    else:
        lines = [line for line in trace.splitlines() if line.strip()]
        boxed = [line for line in lines if "\\boxed" in line]
        solution = (boxed or lines or [""])[-1].strip()
    begin_thought, end_thought, begin_solution, end_solution = MARKERS
    return (
        f"{begin_thought}\n\n{trace.strip()}\n\n{end_thought}\n\n"
        f"{begin_solution}\n\n{solution}\n\n{end_solution}"
    )


def _words(text: str) -> int:
    return len(text.split())


async def chat_completions(request: web.Request) -> web.Response:
    body: dict[str, Any] = await request.json()
    messages = body.get("messages") or []
    if not messages or not isinstance(messages[-1].get("content"), str):
        return web.json_response({"error": {"message": "messages must end with a text message"}}, status=400)
    prompt = messages[-1]["content"]
    trace = prompt.split(RESPONSE_HEADER, 1)[1] if RESPONSE_HEADER in prompt else prompt
    content = reformat(trace)
    return web.json_response(
        {
            "id": f"chatcmpl-stand-in-{time.monotonic_ns()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": STAND_IN_MODEL,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            ],
            # words, not tokens: there is no tokenizer here, and nobody pays for these
            "usage": {
                "prompt_tokens": sum(_words(str(m.get("content", ""))) for m in messages),
                "completion_tokens": _words(content),
                "total_tokens": 0,
            },
        }
    )


async def models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": STAND_IN_MODEL, "object": "model"}]})


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def _key_check(api_key: str) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def check(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not request.path.startswith(KEY_CHECKED_PATHS):
            return await handler(request)
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        counts = request.app[COUNTS]
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            counts["refused"] += 1
            error = {"message": "Incorrect API key provided.", "type": "invalid_request_error"}
            return web.json_response({"error": error}, status=401)
        counts["authorized"] += 1
        return await handler(request)

    return check


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[COUNTS])


def application(api_key: str | None = None) -> web.Application:
    app = web.Application(middlewares=[_key_check(api_key)] if api_key else [])
    app[COUNTS] = {"authorized": 0, "refused": 0, "key_required": int(bool(api_key))}
    app.router.add_get("/stats", stats)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/healthz", health)
    return app


def serve(host: str, port: int) -> int:
    api_key = os.environ.get(API_KEY_VARIABLE) or None
    checks = "checks the API key from the environment" if api_key else "accepts any key"
    where = f"http://{host}:{port}/v1"
    print(f"rewrite stand-in (rule-based, not a language model) on {where}; {checks}", flush=True)
    web.run_app(application(api_key), host=host, port=port, print=None)
    return 0
