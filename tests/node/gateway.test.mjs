// The gateway through the official `openai` Node SDK, used as users use it, against
// the mock upstream (see harness.mjs). The mock answers deterministically: the content
// is "w0 w1 ... w7" (one token per piece), prompt tokens = whitespace-separated words of
// the request's text fields, with tools it calls the chosen tool with {"ok":true}, and
// embedding value j of input i = ((i*31 + j*7) % 100) / 100.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import OpenAI from 'openai';

import { useStack } from './harness.mjs';

const stack = useStack();

const FULL_TEXT = 'w0 w1 w2 w3 w4 w5 w6 w7';
const MESSAGES = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Say hello to the gateway' },
];
const PROMPT_TOKENS = 8; // 3 words of system prompt + 5 of user message
const COMPLETION_TOKENS = 8;

const TOOLS = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'Current weather for a city',
      parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
    },
  },
  {
    type: 'function',
    function: {
      name: 'get_time',
      description: 'Current time in a timezone',
      parameters: { type: 'object', properties: { tz: { type: 'string' } } },
    },
  },
];
const TOOL_MESSAGES = [{ role: 'user', content: 'Weather in Paris?' }];

// --- Helpers -----------------------------------------------------------------------------

async function collect(stream) {
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

const streamedText = (chunks) =>
  chunks
    .filter((c) => c.choices.length > 0)
    .map((c) => c.choices[0].delta.content ?? '')
    .join('');

const finishReasons = (chunks) =>
  chunks.filter((c) => c.choices.length > 0 && c.choices[0].finish_reason).map((c) => c.choices[0].finish_reason);

function assertFullAnswer(completion) {
  const [choice] = completion.choices;
  assert.equal(choice.message.role, 'assistant');
  assert.equal(choice.message.content, FULL_TEXT);
  assert.equal(choice.finish_reason, 'stop');
  assert.equal(completion.object, 'chat.completion');
  assert.ok(typeof completion.model === 'string' && completion.model, 'model missing');
  assert.deepEqual(
    {
      prompt: completion.usage?.prompt_tokens,
      completion: completion.usage?.completion_tokens,
      total: completion.usage?.total_tokens,
    },
    { prompt: PROMPT_TOKENS, completion: COMPLETION_TOKENS, total: PROMPT_TOKENS + COMPLETION_TOKENS },
  );
}

// The error a call rejects with; fails the test when the call succeeds.
async function rejection(promise) {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  assert.fail('the call succeeded, an error was expected');
}

// Checks the SDK chose `Class` (it does so by HTTP status) and read OpenAI's error body.
function assertApiError(error, Class, { status, code }) {
  assert.ok(error instanceof Class, `expected ${Class.name}, got ${error?.constructor?.name}: ${error}`);
  assert.equal(error.status, status);
  if (code !== undefined) assert.equal(error.code, code);
  assert.ok(error.headers.get('x-request-id'), 'error response without x-request-id');
}

function mockEmbedding(index, dimensions = 8) {
  return Array.from({ length: dimensions }, (_, j) => ((index * 31 + j * 7) % 100) / 100);
}

// --- OpenAI-backed model (gpt-4o-mini) -------------------------------------------------------

describe('chat completions', () => {
  test('plain call returns the mock text and exact usage', async () => {
    const completion = await stack.client().chat.completions.create({ model: 'gpt-4o-mini', messages: MESSAGES });
    assertFullAnswer(completion);
  });

  test('stream with include_usage ends with a usage-only chunk', async () => {
    const stream = await stack.client().chat.completions.create({
      model: 'gpt-4o-mini',
      messages: MESSAGES,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = await collect(stream);
    assert.equal(streamedText(chunks), FULL_TEXT);
    assert.deepEqual(finishReasons(chunks), ['stop']);
    const last = chunks.at(-1);
    assert.deepEqual(last.choices, []);
    assert.equal(last.usage?.completion_tokens, COMPLETION_TOKENS);
    assert.equal(last.usage?.prompt_tokens, PROMPT_TOKENS);
    assert.deepEqual(
      chunks.slice(0, -1).filter((c) => c.usage),
      [],
      'usage before the last chunk',
    );
  });

  test('stream without include_usage has no usage chunk', async () => {
    // The gateway asks the upstream for usage (for metering) but must not pass the
    // usage chunk on to a client that did not ask for it.
    const stream = await stack.client().chat.completions.create({
      model: 'gpt-4o-mini',
      messages: MESSAGES,
      stream: true,
    });
    const chunks = await collect(stream);
    assert.equal(streamedText(chunks), FULL_TEXT);
    assert.deepEqual(finishReasons(chunks), ['stop']);
    assert.deepEqual(
      chunks.filter((c) => c.choices.length === 0 || c.usage),
      [],
      'usage chunk sent although stream_options.include_usage was not set',
    );
    assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk'));
  });

  test('tool call comes back with its name and JSON arguments', async () => {
    const completion = await stack.client().chat.completions.create({
      model: 'gpt-4o-mini',
      messages: TOOL_MESSAGES,
      tools: TOOLS,
    });
    const [choice] = completion.choices;
    assert.equal(choice.finish_reason, 'tool_calls');
    assert.equal(choice.message.tool_calls?.length, 1);
    const [call] = choice.message.tool_calls;
    assert.equal(call.type, 'function');
    assert.ok(call.id, 'tool call without id');
    assert.equal(call.function.name, 'get_weather');
    assert.deepEqual(JSON.parse(call.function.arguments), { ok: true });
  });

  test('withResponse() shows the request id and the deployment', async () => {
    const { data, response } = await stack
      .client()
      .chat.completions.create({ model: 'gpt-4o-mini', messages: MESSAGES })
      .withResponse();
    assert.equal(response.status, 200);
    assert.ok(response.headers.get('x-request-id'), 'no x-request-id');
    assert.equal(response.headers.get('x-tollgate-deployment'), 'mock-mini');
    assert.equal(data.choices[0].message.content, FULL_TEXT);
  });

  test('a client-supplied x-request-id is echoed and forwarded, the key is not', async () => {
    const { response } = await stack
      .client()
      .chat.completions.create(
        { model: 'gpt-4o-mini', messages: MESSAGES },
        { headers: { 'x-request-id': 'node-sdk-req-0001' } },
      )
      .withResponse();
    assert.equal(response.headers.get('x-request-id'), 'node-sdk-req-0001');
    const recorded = await stack.mock.requests();
    assert.equal(recorded.length, 1);
    const headers = Object.fromEntries(recorded[0].headers);
    assert.equal(headers['x-request-id'], 'node-sdk-req-0001');
    assert.ok(!JSON.stringify(recorded[0]).includes(stack.keys.search), 'the virtual key was forwarded upstream');
  });
});

// --- Anthropic-backed model (claude-sonnet-4-5) ----------------------------------------------
// The client speaks OpenAI; the gateway translates to Anthropic's Messages API and back.

describe('Anthropic-backed model', () => {
  const MODEL = 'claude-sonnet-4-5';

  test('chat returns the text and usage in OpenAI shape', async () => {
    const completion = await stack.client().chat.completions.create({ model: MODEL, messages: MESSAGES });
    assertFullAnswer(completion);
    const recorded = await stack.mock.requests();
    assert.deepEqual(
      recorded.map((r) => r.path),
      ['/v1/messages'],
      'not sent to the Messages API',
    );
  });

  test('stream becomes OpenAI chunks', async () => {
    const stream = await stack.client().chat.completions.create({
      model: MODEL,
      messages: MESSAGES,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = await collect(stream);
    assert.equal(streamedText(chunks), FULL_TEXT);
    assert.deepEqual(finishReasons(chunks), ['stop']);
    const last = chunks.at(-1);
    assert.deepEqual(last.choices, []);
    assert.equal(last.usage?.prompt_tokens, PROMPT_TOKENS);
    assert.equal(last.usage?.completion_tokens, COMPLETION_TOKENS);
  });

  test('tool_use becomes an OpenAI tool call', async () => {
    const completion = await stack.client().chat.completions.create({
      model: MODEL,
      messages: TOOL_MESSAGES,
      tools: TOOLS,
    });
    const [choice] = completion.choices;
    assert.equal(choice.finish_reason, 'tool_calls');
    assert.equal(choice.message.tool_calls?.length, 1);
    assert.equal(choice.message.tool_calls[0].function.name, 'get_weather');
    assert.deepEqual(JSON.parse(choice.message.tool_calls[0].function.arguments), { ok: true });
  });
});

// --- Embeddings --------------------------------------------------------------------------------

describe('embeddings', () => {
  test('default (base64) encoding decodes to the mock vectors', async () => {
    // The SDK asks for base64 unless told otherwise and decodes it itself; the gateway
    // must pass the encoding through untouched.
    const response = await stack.client().embeddings.create({ model: 'text-embedding-3-small', input: ['a b', 'c'] });
    assert.deepEqual(
      response.data.map((d) => d.index),
      [0, 1],
    );
    response.data.forEach((item, i) => {
      assert.equal(item.embedding.length, 8, `vector ${i} length`);
      // base64 carries float32; compare at float32 precision.
      mockEmbedding(i).forEach((want, j) => {
        assert.ok(Math.abs(item.embedding[j] - want) < 1e-6, `vector ${i}[${j}] = ${item.embedding[j]}, want ${want}`);
      });
    });
    assert.equal(response.usage.prompt_tokens, 3);
    const [recorded] = await stack.mock.requests();
    assert.equal(JSON.parse(recorded.body).encoding_format, 'base64');
  });
});

// --- Errors as the SDK's own classes -------------------------------------------------------------

describe('errors', () => {
  const MESSAGES_SHORT = [{ role: 'user', content: 'Say hello' }];

  test('unknown or revoked key → AuthenticationError invalid_api_key', async () => {
    for (const apiKey of ['tg_nope_nope', 'sk-not-a-tollgate-key', stack.keys.revoked]) {
      const error = await rejection(
        stack.client(apiKey).chat.completions.create({ model: 'gpt-4o-mini', messages: MESSAGES_SHORT }),
      );
      assertApiError(error, OpenAI.AuthenticationError, { status: 401, code: 'invalid_api_key' });
    }
    assert.deepEqual(await stack.mock.requests(), [], 'refused calls reached the upstream');
  });

  test('unknown model → NotFoundError model_not_found', async () => {
    const error = await rejection(
      stack.client().chat.completions.create({ model: 'gpt-9-ultra', messages: MESSAGES_SHORT }),
    );
    assertApiError(error, OpenAI.NotFoundError, { status: 404, code: 'model_not_found' });
    assert.deepEqual(await stack.mock.requests(), []);
  });

  test('model outside the team allow-list → PermissionDeniedError model_not_allowed', async () => {
    const restricted = stack.client(stack.keys.restricted);
    const error = await rejection(restricted.chat.completions.create({ model: 'gpt-4o', messages: MESSAGES_SHORT }));
    assertApiError(error, OpenAI.PermissionDeniedError, { status: 403, code: 'model_not_allowed' });
    assert.deepEqual(await stack.mock.requests(), []);
    // The same key still works for the model it is allowed.
    const allowed = await restricted.chat.completions.create({ model: 'gpt-4o-mini', messages: MESSAGES_SHORT });
    assert.equal(allowed.choices[0].message.content, FULL_TEXT);
  });

  test('empty messages → BadRequestError naming the parameter', async () => {
    const error = await rejection(stack.client().chat.completions.create({ model: 'gpt-4o-mini', messages: [] }));
    assertApiError(error, OpenAI.BadRequestError, { status: 400 });
    assert.equal(error.param, 'messages');
    assert.deepEqual(await stack.mock.requests(), []);
  });

  test('exhausted team budget → RateLimitError insufficient_quota', async () => {
    const error = await rejection(
      stack.client(stack.keys.broke).chat.completions.create({ model: 'gpt-4o-mini', messages: MESSAGES_SHORT }),
    );
    assertApiError(error, OpenAI.RateLimitError, { status: 429, code: 'insufficient_quota' });
    assert.deepEqual(await stack.mock.requests(), []);
  });

  test('upstream always 503 → InternalServerError 502 after max_attempts', async () => {
    const error = await rejection(
      stack.client().chat.completions.create({ model: 'always-503', messages: MESSAGES_SHORT }),
    );
    assertApiError(error, OpenAI.InternalServerError, { status: 502 });
    // routing.max_attempts = 2; the client itself does not retry (maxRetries: 0).
    assert.equal((await stack.mock.requests()).length, 2, 'expected exactly 2 upstream attempts');
  });
});
