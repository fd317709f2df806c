"""Embeddings, models and legacy completions through the official SDK."""

from __future__ import annotations

import json

import openai
import pytest


def mock_embedding(index: int, dimensions: int = 8) -> list[float]:
    """The mock's deterministic vector: value j of input i = ((i*31 + j*7) % 100) / 100."""
    return [((index * 31 + j * 7) % 100) / 100 for j in range(dimensions)]


def assert_vectors(response, count: int, dimensions: int = 8) -> None:
    assert [d.index for d in response.data] == list(range(count))
    for i, item in enumerate(response.data):
        assert len(item.embedding) == dimensions
        # base64 carries float32; compare at float32 precision.
        assert item.embedding == pytest.approx(mock_embedding(i, dimensions), abs=1e-6)


# --- Embeddings ---------------------------------------------------------------------------


def test_embeddings_default_base64(client, mock):
    """The SDK asks for base64 by default and decodes it; the gateway must pass the
    encoding through so the vectors decode to the mock's values."""
    response = client.embeddings.create(model="text-embedding-3-small", input=["a b", "c"])
    assert_vectors(response, 2)
    assert response.usage.prompt_tokens == 3
    assert isinstance(response.model, str) and response.model
    [recorded] = mock.requests()
    assert json.loads(recorded["body"]).get("encoding_format") == "base64"


def test_embeddings_float(client):
    """encoding_format="float": plain JSON numbers, same values."""
    response = client.embeddings.create(model="text-embedding-3-small", input=["a b", "c"], encoding_format="float")
    assert_vectors(response, 2)
    assert response.usage.prompt_tokens == 3


def test_embeddings_single_input_with_dimensions(client):
    """A single string is one vector; `dimensions` reaches the upstream."""
    response = client.embeddings.create(model="text-embedding-3-small", input="hello embedding world", dimensions=4)
    assert_vectors(response, 1, dimensions=4)
    assert response.usage.prompt_tokens == 3


async def test_embeddings_async(async_client):
    """Embeddings through AsyncOpenAI."""
    response = await async_client.embeddings.create(model="text-embedding-3-small", input=["a b", "c"])
    assert_vectors(response, 2)


# --- Models -------------------------------------------------------------------------------


def test_models_list_full_access(client, configured_models):
    """A key without model restrictions lists every configured model."""
    models = list(client.models.list())
    assert sorted(m.id for m in models) == sorted(configured_models)
    assert all(m.object == "model" and isinstance(m.owned_by, str) for m in models)


def test_models_list_restricted(restricted_client):
    """A key of the restricted team lists only what it may use."""
    assert [m.id for m in restricted_client.models.list()] == ["gpt-4o-mini"]


def test_models_retrieve(client):
    """GET /v1/models/{id} returns that model."""
    model = client.models.retrieve("gpt-4o-mini")
    assert model.id == "gpt-4o-mini"
    assert model.object == "model"


def test_models_retrieve_unknown_or_forbidden_is_not_found(client, restricted_client):
    """Unknown models, and models the key may not use, are reported as missing."""
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-9-ultra")
    with pytest.raises(openai.NotFoundError):
        restricted_client.models.retrieve("gpt-4o")


# --- Legacy completions -------------------------------------------------------------------


def test_legacy_completion(client):
    """/v1/completions: text, finish reason and usage like chat."""
    response = client.completions.create(model="gpt-4o-mini", prompt="Say hi please", max_tokens=5)
    assert response.choices[0].text == "w0 w1 w2 w3 w4"
    assert response.choices[0].finish_reason == "length"
    assert response.usage.prompt_tokens == 3
    assert response.usage.completion_tokens == 5


def test_legacy_completion_stream(client):
    """Streamed /v1/completions: the pieces add up; no usage chunk unless asked for."""
    with client.completions.create(model="gpt-4o-mini", prompt="Say hi", stream=True) as stream:
        chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "w0 w1 w2 w3 w4 w5 w6 w7"
    assert [c for c in chunks if not c.choices] == []
