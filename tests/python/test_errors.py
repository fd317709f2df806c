"""Errors as the SDK surfaces them: each gateway refusal must map to the SDK's own
exception class (chosen by HTTP status) with OpenAI's `code` / `param`, carry an
`x-request-id`, and refusals the gateway makes itself must not reach the upstream.
"""

from __future__ import annotations

import openai
import pytest

MESSAGES = [{"role": "user", "content": "Say hello"}]


def code_of(error: openai.APIStatusError) -> str | None:
    body = error.body if isinstance(error.body, dict) else {}
    return error.code or body.get("code")


def assert_request_id(error: openai.APIStatusError) -> None:
    assert error.response.headers.get("x-request-id"), "error response without x-request-id"


# --- Authentication ----------------------------------------------------------------------


@pytest.mark.parametrize("api_key", ["tg_nope_nope", "sk-not-a-tollgate-key"])
def test_unknown_key_is_authentication_error(make_client, mock, api_key):
    """A key the gateway does not know → 401 AuthenticationError, code invalid_api_key,
    and nothing is forwarded."""
    with pytest.raises(openai.AuthenticationError) as caught:
        make_client(api_key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert caught.value.status_code == 401
    assert code_of(caught.value) == "invalid_api_key"
    assert_request_id(caught.value)
    assert mock.requests() == []


def test_revoked_key_is_authentication_error(revoked_client, mock):
    """A key whose config entry says status = "revoked" → 401 AuthenticationError."""
    with pytest.raises(openai.AuthenticationError) as caught:
        revoked_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert caught.value.status_code == 401
    assert code_of(caught.value) == "invalid_api_key"
    assert mock.requests() == []


def test_models_endpoint_needs_a_valid_key(make_client, revoked_client):
    """/v1/models authenticates too: unknown and revoked keys list nothing."""
    for c in (make_client("tg_nope_nope"), revoked_client):
        with pytest.raises(openai.AuthenticationError):
            c.models.list()


# --- Authorization -----------------------------------------------------------------------


def test_unknown_model_is_not_found(client, mock):
    """A model that is not configured → 404 NotFoundError, code model_not_found."""
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-9-ultra", messages=MESSAGES)
    assert caught.value.status_code == 404
    assert code_of(caught.value) == "model_not_found"
    assert_request_id(caught.value)
    assert mock.requests() == []


def test_model_outside_team_allow_list_is_permission_denied(restricted_client, mock):
    """The restricted team may only use gpt-4o-mini: gpt-4o → 403 PermissionDeniedError,
    code model_not_allowed; gpt-4o-mini still works for the same key."""
    with pytest.raises(openai.PermissionDeniedError) as caught:
        restricted_client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert caught.value.status_code == 403
    assert code_of(caught.value) == "model_not_allowed"
    assert mock.requests() == []

    allowed = restricted_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert allowed.choices[0].message.content


# --- Request validation ------------------------------------------------------------------


def test_malformed_request_is_bad_request(client, mock):
    """An empty `messages` array is refused by the gateway itself: 400 BadRequestError
    naming the parameter, and the upstream is never called."""
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=[])
    assert caught.value.status_code == 400
    assert caught.value.body["param"] == "messages"
    assert_request_id(caught.value)
    assert mock.requests() == []


# --- Budgets -----------------------------------------------------------------------------


def test_exhausted_budget_is_insufficient_quota(broke_client, mock):
    """The broke team's budget (10 micro-USD) cannot cover a call → 429 RateLimitError
    with code insufficient_quota (what OpenAI sends when a quota is used up)."""
    with pytest.raises(openai.RateLimitError) as caught:
        broke_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert caught.value.status_code == 429
    assert code_of(caught.value) == "insufficient_quota"
    assert mock.requests() == []


# --- Upstream failures -------------------------------------------------------------------


def test_failing_upstream_is_bad_gateway_after_retries(client, mock):
    """An upstream that always answers 503 is retried (routing.max_attempts = 2), then
    the client gets 502 → InternalServerError."""
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="always-503", messages=MESSAGES)
    assert caught.value.status_code == 502
    assert_request_id(caught.value)
    assert len(mock.requests()) == 2, "expected exactly max_attempts = 2 upstream attempts"


def test_upstream_bad_request_passes_through(client, mock):
    """An upstream 400 is the request's fault: passed through as BadRequestError, not
    retried."""
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="bad-request-upstream", messages=MESSAGES)
    assert caught.value.status_code == 400
    assert len(mock.requests()) == 1


def test_upstream_bad_request_on_a_stream_raises_before_iterating(client):
    """A stream the upstream refuses fails at create(), as an HTTP error, like OpenAI."""
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="bad-request-upstream", messages=MESSAGES, stream=True)


# --- Headers -----------------------------------------------------------------------------


def test_success_headers(client):
    """Every answer carries an x-request-id and names the deployment that served it."""
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raw.status_code == 200
    assert raw.headers.get("x-request-id")
    assert raw.headers.get("x-tollgate-deployment") == "mock-mini"
    assert raw.parse().choices[0].message.content


def test_request_ids_are_unique(client):
    """Without a client-supplied id, each call gets its own."""
    ids = {
        client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES).headers["x-request-id"]
        for _ in range(3)
    }
    assert len(ids) == 3
