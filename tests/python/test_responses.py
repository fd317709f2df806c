"""The Responses API with the official `openai` Python SDK: passed through to an OpenAI
deployment (gpt-4o-mini) with previous_response_id chaining and retrieve/delete, and
translated to an Anthropic one (claude-sonnet-4-5), where stored state is refused naming
the field. The mock's text is "w0 w1 ... w7"; with tools it calls the first one.
"""

from __future__ import annotations

import json

import openai
import pytest

FULL_TEXT = "w0 w1 w2 w3 w4 w5 w6 w7"
TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]
BOTH = ["gpt-4o-mini", "claude-sonnet-4-5"]


@pytest.mark.parametrize("model", BOTH)
def test_create(client, mock, usage_log, model):
    raw = client.responses.with_raw_response.create(model=model, instructions="Be terse.", input="Say hello")
    response = raw.parse()
    assert response.output_text == FULL_TEXT
    assert response.usage.output_tokens == 8
    path = mock.requests()[-1]["path"]
    assert path == ("/v1/responses" if model.startswith("gpt") else "/v1/messages")
    event = usage_log.wait_for(raw.headers["x-request-id"])
    assert event["endpoint"] == "/v1/responses"
    assert event["completion_tokens"] == 8


@pytest.mark.parametrize("model", BOTH)
def test_stream(client, model):
    text, completed = "", None
    with client.responses.stream(model=model, input="Say hello") as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                text += event.delta
        completed = stream.get_final_response()
    assert text == FULL_TEXT
    assert completed.output_text == FULL_TEXT
    assert completed.usage.output_tokens == 8


@pytest.mark.parametrize("model", BOTH)
def test_function_tools(client, model):
    response = client.responses.create(model=model, input="Weather in Oslo?", tools=TOOLS)
    call = next(item for item in response.output if item.type == "function_call")
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"ok": True}
    follow_up = client.responses.create(
        model=model,
        tools=TOOLS,
        input=[
            {"role": "user", "content": "Weather in Oslo?"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
        ],
    )
    assert follow_up.object == "response"


def test_chaining_retrieve_and_delete_over_openai(client, mock):
    first = client.responses.create(model="gpt-4o-mini", input="Remember this", store=True)
    second = client.responses.create(model="gpt-4o-mini", input="And now?", previous_response_id=first.id)
    assert second.output_text == FULL_TEXT
    assert json.loads(mock.requests()[-1]["body"])["previous_response_id"] == first.id
    assert client.responses.retrieve(first.id).id == first.id
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"store": True}, "store"),
        ({"tools": [{"type": "web_search"}]}, "tools"),
    ],
)
def test_stored_state_is_refused_on_a_translated_deployment(client, mock, extra, param):
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="claude-sonnet-4-5", input="hi", **extra)
    assert e.value.param == param
    assert mock.requests() == []


def test_background_is_refused(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="gpt-4o-mini", input="hi", background=True)
    assert e.value.param == "background"
