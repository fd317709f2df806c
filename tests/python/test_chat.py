"""Chat completions through the gateway with the official SDK: plain, streamed, with
tools, against OpenAI-, Azure- and Anthropic-backed deployments of the mock upstream.

The mock answers deterministically: the content is "w0 w1 ... w7" (one token per piece,
capped by max_tokens), prompt tokens = whitespace-separated words of the request's text
fields, and with tools it calls the chosen tool with arguments {"ok":true}.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import pytest

FULL_TEXT = "w0 w1 w2 w3 w4 w5 w6 w7"
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello to the gateway"},
]
PROMPT_TOKENS = 8  # 3 words of system prompt + 5 of user message
COMPLETION_TOKENS = 8

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Current time in a timezone",
            "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}},
        },
    },
]
TOOL_MESSAGES = [{"role": "user", "content": "Weather in Paris?"}]


def streamed_text(chunks) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def assemble_tool_calls(chunks) -> list[dict]:
    """Rebuilds tool calls from streamed deltas the way SDK users do (by index)."""
    calls: dict[int, dict] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
                if delta.id:
                    call["id"] = delta.id
                if delta.function and delta.function.name:
                    call["name"] += delta.function.name
                if delta.function and delta.function.arguments:
                    call["arguments"] += delta.function.arguments
    return [calls[i] for i in sorted(calls)]


def finish_reasons(chunks) -> list[str]:
    return [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]


def assert_full_answer(response, prompt_tokens: int = PROMPT_TOKENS) -> None:
    choice = response.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == FULL_TEXT
    assert choice.finish_reason == "stop"
    assert isinstance(response.model, str) and response.model
    assert response.object == "chat.completion"
    assert response.usage is not None
    assert response.usage.prompt_tokens == prompt_tokens
    assert response.usage.completion_tokens == COMPLETION_TOKENS
    assert response.usage.total_tokens == prompt_tokens + COMPLETION_TOKENS


# --- OpenAI-backed model (gpt-4o-mini) ---------------------------------------------------


def test_chat_completion(client):
    """A plain chat call returns the mock's text, finish_reason "stop" and exact usage."""
    response = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert_full_answer(response)


async def test_chat_completion_async(async_client):
    """The same through AsyncOpenAI."""
    response = await async_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert_full_answer(response)


@pytest.mark.parametrize("limit", ["max_tokens", "max_completion_tokens"])
def test_output_limit_truncates(client, limit):
    """max_tokens / max_completion_tokens reach the upstream: 3 tokens, finish "length"."""
    response = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, **{limit: 3})
    assert response.choices[0].message.content == "w0 w1 w2"
    assert response.choices[0].finish_reason == "length"
    assert response.usage.completion_tokens == 3


def test_stream_without_usage_option(client):
    """Streamed deltas add up to the full text; the gateway asks the upstream for usage
    but must not pass the usage chunk (empty choices) to a client that did not ask."""
    with client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True) as stream:
        chunks = list(stream)
    assert streamed_text(chunks) == FULL_TEXT
    assert finish_reasons(chunks) == ["stop"]
    usage_only = [c for c in chunks if not c.choices and c.usage is not None]
    assert usage_only == [], "usage chunk sent although stream_options.include_usage was not set"
    assert all(c.usage is None for c in chunks), [c.usage for c in chunks]
    assert all(c.object == "chat.completion.chunk" for c in chunks)


def test_stream_with_usage_option(client):
    """With stream_options.include_usage the last chunk has no choices and the usage."""
    with client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    ) as stream:
        chunks = list(stream)
    assert streamed_text(chunks) == FULL_TEXT
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == COMPLETION_TOKENS
    assert last.usage.prompt_tokens == PROMPT_TOKENS
    assert [c for c in chunks[:-1] if c.usage is not None] == [], "usage before the last chunk"


async def test_stream_async(async_client):
    """Streaming through AsyncOpenAI, with the usage chunk asked for."""
    stream = await async_client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert streamed_text(chunks) == FULL_TEXT
    assert finish_reasons(chunks) == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == COMPLETION_TOKENS


def test_stream_helper_final_completion(client):
    """The SDK's `chat.completions.stream()` helper assembles the final completion."""
    with client.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES) as stream:
        deltas = "".join(event.delta for event in stream if event.type == "content.delta")
        final = stream.get_final_completion()
    assert deltas == FULL_TEXT
    assert final.choices[0].message.content == FULL_TEXT
    assert final.choices[0].finish_reason == "stop"


def test_tool_call(client):
    """With tools offered, the tool call comes back parsed: name, JSON arguments,
    finish_reason "tool_calls"."""
    response = client.chat.completions.create(model="gpt-4o-mini", messages=TOOL_MESSAGES, tools=TOOLS)
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.id
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"ok": True}


def test_tool_call_streamed(client):
    """Streamed tool-call deltas reassemble into one complete call."""
    with client.chat.completions.create(
        model="gpt-4o-mini", messages=TOOL_MESSAGES, tools=TOOLS, stream=True
    ) as stream:
        chunks = list(stream)
    [call] = assemble_tool_calls(chunks)
    assert call["id"] and call["name"] == "get_weather"
    assert json.loads(call["arguments"]) == {"ok": True}
    assert finish_reasons(chunks) == ["tool_calls"]


def test_unicode_prompt_round_trips(client, mock):
    """Emoji, CJK and accents reach the upstream unchanged (the recorded body decodes to
    the exact text) and are counted as words like any other text."""
    text = "Grüße 👋🏽 from 東京 — café naïve 🚀 日本語のテキスト"
    response = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}])
    assert response.choices[0].message.content == FULL_TEXT
    assert response.usage.prompt_tokens == len(text.split()) == 9
    [recorded] = mock.requests()
    assert json.loads(recorded["body"])["messages"][0]["content"] == text


# --- What the upstream sees ------------------------------------------------------------


def test_upstream_gets_request_id_but_not_the_virtual_key(client, keys, mock):
    """The call reaches the provider with the gateway's request id, the deployment's
    upstream model, and never the client's Tollgate key."""
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-request-id": "py-sdk-req-0001"}
    )
    assert raw.headers["x-request-id"] == "py-sdk-req-0001"
    [recorded] = mock.requests()
    assert recorded["path"] == "/v1/chat/completions"
    headers = dict(recorded["headers"])
    assert headers.get("x-request-id") == "py-sdk-req-0001"
    assert keys["search"] not in json.dumps(recorded), "the virtual key was forwarded upstream"
    assert json.loads(recorded["body"])["model"] == "gpt-4o-mini"


# --- Azure-backed model (gpt-4o) -------------------------------------------------------


def test_azure_backed_chat(client, mock):
    """gpt-4o is served by an Azure deployment: same answer for the client; upstream the
    call goes to /openai/deployments/<name>/chat/completions?api-version=..."""
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
    assert raw.headers["x-tollgate-deployment"] == "mock-4o"
    assert_full_answer(raw.parse())
    [recorded] = mock.requests()
    assert recorded["method"] == "POST"
    assert recorded["path"] == "/openai/deployments/gpt-4o/chat/completions"
    assert parse_qs(recorded["query"] or "") == {"api-version": ["2024-10-21"]}


def test_azure_backed_stream(client):
    """Streaming from the Azure deployment."""
    with client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    ) as stream:
        chunks = list(stream)
    assert streamed_text(chunks) == FULL_TEXT
    assert chunks[-1].usage.completion_tokens == COMPLETION_TOKENS


# --- Anthropic-backed model (claude-sonnet-4-5) ----------------------------------------
# The client speaks OpenAI; the gateway translates to Anthropic's Messages API and back.


@pytest.mark.anthropic
class TestAnthropicBackedModel:
    """claude-sonnet-4-5 through the same OpenAI client, translated by the gateway."""

    MODEL = "claude-sonnet-4-5"

    def test_chat(self, client, mock):
        """Text and usage come back in OpenAI's shape; upstream it is a Messages call
        with the system prompt separated out and the max_tokens Anthropic requires
        filled in (the client sent none)."""
        response = client.chat.completions.create(model=self.MODEL, messages=MESSAGES)
        assert_full_answer(response)
        [recorded] = mock.requests()
        assert recorded["path"] == "/v1/messages"
        body = json.loads(recorded["body"])
        assert isinstance(body.get("max_tokens"), int) and body["max_tokens"] > 0
        assert "You are terse." in json.dumps(body.get("system"))
        assert all(m["role"] != "system" for m in body["messages"])
        assert any(name == "anthropic-version" for name, _ in recorded["headers"])

    async def test_chat_async(self, async_client):
        """The same through AsyncOpenAI."""
        response = await async_client.chat.completions.create(model=self.MODEL, messages=MESSAGES)
        assert_full_answer(response)

    def test_max_tokens_truncates(self, client):
        """Anthropic's stop_reason "max_tokens" becomes finish_reason "length"."""
        response = client.chat.completions.create(model=self.MODEL, messages=MESSAGES, max_tokens=3)
        assert response.choices[0].message.content == "w0 w1 w2"
        assert response.choices[0].finish_reason == "length"
        assert response.usage.completion_tokens == 3

    def test_stream(self, client):
        """Anthropic's event stream becomes OpenAI chunks: the text, finish "stop", no
        usage chunk unless asked for."""
        with client.chat.completions.create(model=self.MODEL, messages=MESSAGES, stream=True) as stream:
            chunks = list(stream)
        assert streamed_text(chunks) == FULL_TEXT
        assert finish_reasons(chunks) == ["stop"]
        assert [c for c in chunks if not c.choices and c.usage is not None] == []

    def test_stream_with_usage(self, client):
        """With include_usage, the last chunk carries the totals (Anthropic's are cumulative)."""
        with client.chat.completions.create(
            model=self.MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        ) as stream:
            chunks = list(stream)
        assert streamed_text(chunks) == FULL_TEXT
        last = chunks[-1]
        assert last.choices == []
        assert last.usage.prompt_tokens == PROMPT_TOKENS
        assert last.usage.completion_tokens == COMPLETION_TOKENS

    async def test_stream_async(self, async_client):
        """Streaming through AsyncOpenAI."""
        stream = await async_client.chat.completions.create(model=self.MODEL, messages=MESSAGES, stream=True)
        chunks = [chunk async for chunk in stream]
        assert streamed_text(chunks) == FULL_TEXT

    def test_tool_call(self, client):
        """A tool_use block becomes an OpenAI tool call with JSON-string arguments."""
        response = client.chat.completions.create(model=self.MODEL, messages=TOOL_MESSAGES, tools=TOOLS)
        choice = response.choices[0]
        assert choice.finish_reason == "tool_calls"
        [call] = choice.message.tool_calls
        assert call.type == "function" and call.id
        assert call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == {"ok": True}

    def test_named_tool_choice(self, client):
        """tool_choice naming a function is translated, so that tool is the one called."""
        response = client.chat.completions.create(
            model=self.MODEL,
            messages=TOOL_MESSAGES,
            tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "get_time"}},
        )
        [call] = response.choices[0].message.tool_calls
        assert call.function.name == "get_time"

    def test_tool_call_streamed(self, client):
        """Streamed input_json_delta events reassemble into the call's arguments."""
        with client.chat.completions.create(
            model=self.MODEL, messages=TOOL_MESSAGES, tools=TOOLS, stream=True
        ) as stream:
            chunks = list(stream)
        [call] = assemble_tool_calls(chunks)
        assert call["id"] and call["name"] == "get_weather"
        assert json.loads(call["arguments"]) == {"ok": True}
        assert finish_reasons(chunks) == ["tool_calls"]

    def test_tool_result_turn(self, client, mock):
        """A conversation carrying a tool call and its result is accepted; upstream the
        result is a tool_result block answering the same tool_use id."""
        messages = [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "Sunny and warm"},
        ]
        response = client.chat.completions.create(model=self.MODEL, messages=messages, tools=TOOLS, tool_choice="none")
        assert response.choices[0].message.content == FULL_TEXT
        [recorded] = mock.requests()
        blocks = [
            block
            for message in json.loads(recorded["body"])["messages"]
            if isinstance(message["content"], list)
            for block in message["content"]
        ]
        uses = [b for b in blocks if b.get("type") == "tool_use"]
        results = [b for b in blocks if b.get("type") == "tool_result"]
        assert [u["id"] for u in uses] == ["call_1"] and uses[0]["input"] == {"city": "Paris"}
        assert [r["tool_use_id"] for r in results] == ["call_1"]
        assert "Sunny and warm" in json.dumps(results[0])
