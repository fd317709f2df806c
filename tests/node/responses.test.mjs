// The Responses API through the official `openai` Node SDK: passed through to an
// OpenAI deployment (gpt-4o-mini) and an Azure one (gpt-4o), with previous_response_id
// chaining and retrieve/delete; translated to an Anthropic one (claude-sonnet-4-5), where
// stored state is refused naming the field. The mock's text is "w0 w1 ... w7".

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import OpenAI from 'openai';

import { useStack } from './harness.mjs';

const stack = useStack();

const FULL_TEXT = 'w0 w1 w2 w3 w4 w5 w6 w7';
const TOOLS = [
  {
    type: 'function',
    name: 'get_weather',
    description: 'Current weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
];

for (const [label, model, path] of [
  ['OpenAI', 'gpt-4o-mini', '/v1/responses'],
  ['Azure', 'gpt-4o', '/openai/v1/responses'],
]) {
  describe(`responses over an ${label} deployment (passed through)`, () => {
    test('create', async () => {
      const response = await stack.client().responses.create({ model, instructions: 'Be terse.', input: 'Say hello' });
      assert.equal(response.object, 'response');
      assert.equal(response.output_text, FULL_TEXT);
      assert.equal(response.usage.output_tokens, 8);
      const [sent] = await stack.mock.requests();
      assert.equal(sent.path, path);
    });

    test('stream', async () => {
      const stream = await stack.client().responses.create({ model, input: 'Say hello', stream: true });
      let text = '';
      let completed;
      for await (const event of stream) {
        if (event.type === 'response.output_text.delta') text += event.delta;
        if (event.type === 'response.completed') completed = event.response;
      }
      assert.equal(text, FULL_TEXT);
      assert.equal(completed.usage.output_tokens, 8);
    });

    test('function tools', async () => {
      const response = await stack.client().responses.create({ model, input: 'Weather in Oslo?', tools: TOOLS });
      const call = response.output.find((item) => item.type === 'function_call');
      assert.equal(call.name, 'get_weather');
      assert.deepEqual(JSON.parse(call.arguments), { ok: true });
    });
  });
}

describe('stored responses over an OpenAI deployment', () => {
  test('previous_response_id chaining, retrieve and delete', async () => {
    const client = stack.client();
    const first = await client.responses.create({ model: 'gpt-4o-mini', input: 'Remember this', store: true });
    const second = await client.responses.create({
      model: 'gpt-4o-mini',
      input: 'And now?',
      previous_response_id: first.id,
    });
    assert.equal(second.output_text, FULL_TEXT);
    const sent = await stack.mock.requests();
    assert.equal(JSON.parse(sent[1].body).previous_response_id, first.id);

    const retrieved = await client.responses.retrieve(first.id);
    assert.equal(retrieved.id, first.id);
    const items = await client.responses.inputItems.list(first.id);
    assert.equal(items.data[0].content[0].text, 'Remember this');
    await client.responses.delete(first.id);
    await assert.rejects(client.responses.retrieve(first.id), OpenAI.NotFoundError);
    await assert.rejects(client.responses.retrieve('resp_never_seen'), OpenAI.NotFoundError);
  });
});

describe('responses translated to an Anthropic deployment', () => {
  const model = 'claude-sonnet-4-5';

  test('create', async () => {
    const response = await stack.client().responses.create({ model, instructions: 'Be terse.', input: 'Say hello' });
    assert.equal(response.output_text, FULL_TEXT);
    assert.equal(response.usage.input_tokens, 4); // 'Be terse.' + 'Say hello'
    const [sent] = await stack.mock.requests();
    assert.equal(sent.path, '/v1/messages');
    assert.equal(JSON.parse(sent.body).system, 'Be terse.');
  });

  test('stream', async () => {
    const stream = await stack.client().responses.create({ model, input: 'Say hello', stream: true });
    let text = '';
    let completed;
    for await (const event of stream) {
      if (event.type === 'response.output_text.delta') text += event.delta;
      if (event.type === 'response.completed') completed = event.response;
    }
    assert.equal(text, FULL_TEXT);
    assert.equal(completed.usage.output_tokens, 8);
  });

  test('function tools', async () => {
    const response = await stack.client().responses.create({ model, input: 'Weather in Oslo?', tools: TOOLS });
    const call = response.output.find((item) => item.type === 'function_call');
    assert.equal(call.name, 'get_weather');
    assert.deepEqual(JSON.parse(call.arguments), { ok: true });
    const followUp = await stack.client().responses.create({
      model,
      tools: TOOLS,
      input: [
        { role: 'user', content: 'Weather in Oslo?' },
        { type: 'function_call', call_id: call.call_id, name: call.name, arguments: call.arguments },
        { type: 'function_call_output', call_id: call.call_id, output: 'sunny' },
      ],
    });
    assert.equal(followUp.object, 'response');
  });

  test('stored state is refused naming the field', async () => {
    for (const [extra, param] of [
      [{ previous_response_id: 'resp_1' }, 'previous_response_id'],
      [{ store: true }, 'store'],
      [{ tools: [{ type: 'web_search' }] }, 'tools'],
    ]) {
      await assert.rejects(
        stack.client().responses.create({ model, input: 'hi', ...extra }),
        (e) => e instanceof OpenAI.BadRequestError && e.param === param,
      );
    }
    assert.deepEqual(await stack.mock.requests(), []);
  });
});
