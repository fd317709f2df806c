"""The Anthropic Messages lane with the official `anthropic` SDK, unchanged: only its
`base_url` and `api_key` point at the gateway. Over an Anthropic deployment the answer
is the provider's byte for byte (compared with what the mock sent); over an OpenAI one
(gpt-4o-mini) it is translated both ways.

The mock's rules: the text is "w0 w1 ... w7", prompt tokens = words of the text fields,
and with tools it calls the chosen tool with input {"ok": true}.
"""

from __future__ import annotations

import base64
import json
import math

import anthropic
import pytest

FULL_TEXT = "w0 w1 w2 w3 w4 w5 w6 w7"
SYSTEM = "You are terse."
MESSAGES = [{"role": "user", "content": "Say hello to the gateway"}]
PROMPT_WORDS = 8  # 3 words of system prompt + 5 of the user's
ANTHROPIC_MODEL = "claude-sonnet-4-5"
OPENAI_MODEL = "gpt-4o-mini"
BOTH = [ANTHROPIC_MODEL, OPENAI_MODEL]

TOOLS = [
    {
        "name": "get_weather",
        "description": "Current weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]

# A 1×1 PNG.
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
    )
).decode()


def last_response(mock, path: str = "/v1/messages") -> dict:
    answered = [r for r in mock.responses() if r["path"] == path]
    assert answered, "the mock answered nothing on " + path
    return answered[-1]


def test_create_passes_through_byte_for_byte(anthropic_client, mock):
    raw = anthropic_client.messages.with_raw_response.create(
        model=ANTHROPIC_MODEL,
        max_tokens=100,
        system=SYSTEM,
        messages=MESSAGES,
        extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"},
    )
    assert raw.http_response.text == last_response(mock)["body"]
    message = raw.parse()
    assert isinstance(message, anthropic.types.Message)
    assert message.content[0].text == FULL_TEXT
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == PROMPT_WORDS
    assert message.usage.output_tokens == 8
    assert raw.headers["x-tollgate-deployment"] == "mock-claude"
    sent = mock.requests()[-1]
    assert sent["path"] == "/v1/messages"
    headers = dict(sent["headers"])
    # The SDK's own version header and the beta it asked for went on upstream.
    assert headers["anthropic-version"] == raw.http_request.headers["anthropic-version"]
    assert headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert anthropic_client.api_key not in json.dumps(headers), "the Tollgate key stays at the gateway"
    assert json.loads(sent["body"])["max_tokens"] == 100


def test_create_translated_to_an_openai_deployment(anthropic_client, mock):
    message = anthropic_client.messages.create(model=OPENAI_MODEL, max_tokens=100, system=SYSTEM, messages=MESSAGES)
    assert message.content[0].text == FULL_TEXT
    assert message.model == OPENAI_MODEL
    assert message.usage.input_tokens == PROMPT_WORDS
    sent = mock.requests()[-1]
    assert sent["path"] == "/v1/chat/completions"
    assert json.loads(sent["body"])["messages"][0] == {"role": "system", "content": SYSTEM}


def test_the_raw_stream_passes_through_byte_for_byte(anthropic_client, mock):
    with anthropic_client.messages.with_streaming_response.create(
        model=ANTHROPIC_MODEL, max_tokens=100, messages=MESSAGES, stream=True
    ) as response:
        received = b"".join(response.iter_bytes()).decode()
    assert received == last_response(mock)["body"]
    assert "event: message_stop" in received


@pytest.mark.parametrize("model", BOTH)
def test_messages_stream_helper(anthropic_client, model):
    with anthropic_client.messages.stream(model=model, max_tokens=100, system=SYSTEM, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == FULL_TEXT
    assert final.content[0].text == FULL_TEXT
    assert final.usage.output_tokens == 8
    assert final.usage.input_tokens == PROMPT_WORDS


@pytest.mark.parametrize("model", BOTH)
@pytest.mark.parametrize("stream", [False, True])
def test_tools_round_trip(anthropic_client, mock, model, stream):
    ask = [{"role": "user", "content": "Weather in Oslo?"}]
    choice = {"type": "tool", "name": "get_weather"}
    if stream:
        with anthropic_client.messages.stream(
            model=model, max_tokens=100, messages=ask, tools=TOOLS, tool_choice=choice
        ) as s:
            first = s.get_final_message()
    else:
        first = anthropic_client.messages.create(
            model=model, max_tokens=100, messages=ask, tools=TOOLS, tool_choice=choice
        )
    assert first.stop_reason == "tool_use"
    call = next(b for b in first.content if b.type == "tool_use")
    assert call.name == "get_weather"
    assert call.input == {"ok": True}
    follow_up = ask + [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]},
    ]
    second = anthropic_client.messages.create(model=model, max_tokens=100, messages=follow_up, tools=TOOLS)
    assert second.type == "message"
    sent = json.loads(mock.requests()[-1]["body"])
    if model == OPENAI_MODEL:
        assert {"role": "tool", "tool_call_id": call.id, "content": "sunny"} in sent["messages"]
    else:
        assert sent["messages"][-1]["content"][0]["tool_use_id"] == call.id


@pytest.mark.parametrize("model", BOTH)
def test_images(anthropic_client, mock, model):
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    message = anthropic_client.messages.create(
        model=model,
        max_tokens=100,
        messages=[{"role": "user", "content": [image, {"type": "text", "text": "What is this?"}]}],
    )
    assert message.content[0].text == FULL_TEXT
    sent = json.loads(mock.requests()[-1]["body"])
    part = sent["messages"][0]["content"][0]
    if model == OPENAI_MODEL:
        assert part == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    else:
        assert part == image


def test_count_tokens(anthropic_client, mock, usage_log):
    raw = anthropic_client.messages.with_raw_response.count_tokens(
        model=ANTHROPIC_MODEL, system=SYSTEM, messages=MESSAGES
    )
    counted = raw.parse()
    # The gateway's own estimate: an upper bound of the provider's count.
    assert counted.input_tokens >= PROMPT_WORDS
    assert mock.requests() == [], "counting calls no model"
    event = usage_log.wait_for(raw.headers["x-request-id"])
    assert event["endpoint"] == "/v1/messages/count_tokens"
    assert event["cost_micros"] == 0


def test_prompt_caching_is_priced_per_kind(anthropic_client, mock, usage_log):
    system = [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]
    raw = anthropic_client.messages.with_raw_response.create(
        model="claude-cached", max_tokens=100, system=system, messages=MESSAGES
    )
    message = raw.parse()
    assert message.usage.cache_read_input_tokens == 10
    assert message.usage.cache_creation_input_tokens == 4
    assert json.loads(mock.requests()[-1]["body"])["system"][0]["cache_control"] == {"type": "ephemeral"}
    event = usage_log.wait_for(raw.headers["x-request-id"])
    assert event["endpoint"] == "/v1/messages"
    assert event["cache_read_tokens"] == 10
    assert event["cache_write_tokens"] == 4
    # The deployment's price table (micro-USD per million tokens), each kind its own price.
    u = message.usage
    expected = (u.input_tokens * 3_000_000 + u.output_tokens * 15_000_000 + 10 * 300_000 + 4 * 3_750_000) / 1_000_000
    assert event["cost_micros"] == math.ceil(expected)


def test_errors_raise_the_sdks_exception_classes(
    anthropic_client, make_anthropic_client, keys
):
    def create(client, model=ANTHROPIC_MODEL):
        return client.messages.create(model=model, max_tokens=100, messages=MESSAGES)

    with pytest.raises(anthropic.AuthenticationError) as e:
        create(make_anthropic_client("tg_not_a_key"))
    assert e.value.body["error"]["type"] == "authentication_error"

    with pytest.raises(anthropic.NotFoundError) as e:
        create(anthropic_client, "no-such-model")
    assert "(tollgate: model_not_found)" in e.value.message

    with pytest.raises(anthropic.PermissionDeniedError) as e:
        create(make_anthropic_client(keys["restricted"]))
    assert "(tollgate: model_not_allowed)" in e.value.message

    with pytest.raises(anthropic.RateLimitError) as e:
        create(make_anthropic_client(keys["broke"]))
    assert "(tollgate: insufficient_quota)" in e.value.message

    with pytest.raises(anthropic.BadRequestError) as e:
        anthropic_client.messages.create(
            model=ANTHROPIC_MODEL, max_tokens=100, messages=[{"role": "system", "content": "x"}]
        )
    assert e.value.body["error"]["type"] == "invalid_request_error"

    with pytest.raises(anthropic.InternalServerError):
        create(anthropic_client, "always-503")
