"""A small OpenAI-compatible HTTP server for driving the real ``openai`` client in tests.

Why a fake server rather than mocks: the instrumentations under test wrap the real client, and what
they put on spans depends on the real response objects (usage details, streaming chunks, error
bodies). Serving real HTTP on 127.0.0.1 exercises exactly the code paths production traffic does.

Usage numbers are a pure function of the request, so a test can state them exactly:

* chat ``prompt_tokens`` = total characters of all message ``content`` strings;
  ``completion_tokens`` = ``max_completion_tokens`` or ``max_tokens`` if given, else 8;
  ``prompt_tokens_details.cached_tokens`` = ``prompt_tokens // 4``;
  ``completion_tokens_details.reasoning_tokens`` = ``completion_tokens // 2``.
* embeddings ``prompt_tokens`` = ``total_tokens`` = total characters of the input strings.
* the response model is the request model with ``RESPONSE_MODEL_SUFFIX`` appended (as OpenAI answers
  ``gpt-4o-mini`` with ``gpt-4o-mini-2024-07-18``), unless the request model already carries it.
* model ``fail-400`` answers HTTP 400 and ``fail-500`` HTTP 500, each with an OpenAI error body.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web

RESPONSE_MODEL_SUFFIX = "-2024-07-18"
DEFAULT_COMPLETION_TOKENS = 8
EMBEDDING_DIMENSIONS = 4
ERROR_MODELS: Mapping[str, tuple[int, str, str]] = {
    "fail-400": (400, "invalid_request_error", "model_not_found"),
    "fail-500": (500, "server_error", "internal_error"),
}


@dataclass(frozen=True, slots=True)
class ChatUsage:
    """The usage the fake reports for one chat request (OpenAI's own field names and containment)."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_json(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": self.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }


def chat_usage(request: Mapping[str, Any]) -> ChatUsage:
    """The deterministic usage of a chat request (see the module docstring)."""
    prompt = 0
    for message in request.get("messages", ()):
        content = message.get("content")
        if isinstance(content, str):
            prompt += len(content)
        elif isinstance(content, list):
            prompt += sum(len(part.get("text", "")) for part in content if isinstance(part, dict))
    completion = request.get("max_completion_tokens") or request.get("max_tokens") or DEFAULT_COMPLETION_TOKENS
    return ChatUsage(prompt, int(completion), prompt // 4, int(completion) // 2)


def embedding_tokens(request: Mapping[str, Any]) -> int:
    """The deterministic token count of an embeddings request: characters of its inputs."""
    value = request.get("input", "")
    if isinstance(value, str):
        return len(value)
    return sum(len(item) for item in value if isinstance(item, str))


def response_model(model: str) -> str:
    return model if model.endswith(RESPONSE_MODEL_SUFFIX) else model + RESPONSE_MODEL_SUFFIX


@dataclass
class FakeOpenAI:
    """``async with FakeOpenAI() as fake:`` serves on 127.0.0.1 (a free port) at ``fake.base_url``.

    ``requests`` records every decoded JSON body received, in order, for assertions.
    ``first_chunk_delay`` (seconds) is waited before the first streamed chunk, so a time to first
    token is measurable.
    """

    first_chunk_delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/v1"

    async def __aenter__(self) -> FakeOpenAI:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _body(self, request: web.Request) -> dict[str, Any]:
        body: dict[str, Any] = orjson.loads(await request.read())
        self.requests.append(body)
        return body

    @staticmethod
    def _error(model: str) -> web.Response | None:
        spec = ERROR_MODELS.get(model)
        if spec is None:
            return None
        status, kind, code = spec
        body = {"error": {"message": f"fake failure for model {model}", "type": kind, "param": None, "code": code}}
        return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        model = str(body.get("model", ""))
        if (error := self._error(model)) is not None:
            return error
        usage = chat_usage(body)
        created = int(time.time())
        ident = f"chatcmpl-fake{len(self.requests)}"
        words = ["tok"] * usage.completion_tokens
        if not body.get("stream"):
            message = {"role": "assistant", "content": " ".join(words), "refusal": None}
            payload = {
                "id": ident,
                "object": "chat.completion",
                "created": created,
                "model": response_model(model),
                "system_fingerprint": "fp_fake",
                "service_tier": "default",
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
                "usage": usage.as_json(),
            }
            return web.Response(body=orjson.dumps(payload), content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        async for chunk in self._chunks(ident, created, response_model(model), words, usage, include_usage):
            await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _chunks(
        self,
        ident: str,
        created: int,
        model: str,
        words: list[str],
        usage: ChatUsage,
        include_usage: bool,
    ) -> AsyncIterator[dict[str, Any]]:
        def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
            out: dict[str, Any] = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "service_tier": "default",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            if include_usage:
                out["usage"] = None
            return out

        if self.first_chunk_delay:
            await asyncio.sleep(self.first_chunk_delay)
        yield chunk({"role": "assistant", "content": "", "refusal": None}, None)
        for index, word in enumerate(words):
            yield chunk({"content": word if index == 0 else " " + word}, None)
        yield chunk({}, "stop")
        if include_usage:
            final = chunk({}, None)
            final["choices"] = []
            final["usage"] = usage.as_json()
            yield final

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        model = str(body.get("model", ""))
        if (error := self._error(model)) is not None:
            return error
        value = body.get("input", "")
        inputs = [value] if isinstance(value, str) else list(value)
        tokens = embedding_tokens(body)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for i in range(len(inputs)):
            vector = [0.25 * (i + 1)] * EMBEDDING_DIMENSIONS
            encoded: Any = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode() if as_base64 else vector
            data.append({"object": "embedding", "index": i, "embedding": encoded})
        payload = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return web.Response(body=orjson.dumps(payload), content_type="application/json")
