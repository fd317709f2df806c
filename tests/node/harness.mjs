// The processes under test, as tests/python/conftest.py starts them: the mock upstream
// and a standalone tollgate-gateway in front of it, plus `openai` SDK clients configured
// the way users configure them (only `baseURL` and `apiKey` differ from OpenAI itself).
//
// `useStack()` registers `before`/`after` hooks in the calling test file, so each file
// gets its own mock and gateway. The binaries come from
// ${TOLLGATE_BIN_DIR:-${CARGO_TARGET_DIR:-target}/debug}; they are not built here.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, before, beforeEach } from 'node:test';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

import OpenAI from 'openai';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const PEPPER = 'node-tests-pepper-0123456789';
const STARTUP_TIMEOUT_MS = 30_000;
const CLIENT_TIMEOUT_MS = 30_000;

const MOCK_READY = /^mock-openai listening on (http:\/\/\S+)$/m;
const GATEWAY_READY = /^tollgate-gateway listening on (http:\/\/\S+)$/m;
const MINTED_KEY = /^\s+(tg_[A-Za-z0-9]+_[A-Za-z0-9]+)$/m;

// Every model in the config below, as the search team's key should see them.
export const CONFIGURED_MODELS = [
  'gpt-4o-mini',
  'gpt-4o',
  'text-embedding-3-small',
  'claude-sonnet-4-5',
  'always-503',
  'bad-request-upstream',
];

// The same config as the Python suite's, so both suites exercise the same gateway.
const configTemplate = ({ pepper, mock }) => `\
[server]
listen = "127.0.0.1:0"

[auth]
key_pepper = "${pepper}"

[routing]
max_attempts = 2
backoff_base_ms = 1

[[orgs]]
id = "acme"

[[teams]]
id = "search"
org = "acme"

[[teams]]
id = "restricted"
org = "acme"
allowed_models = ["gpt-4o-mini"]

[[teams]]
id = "broke"
org = "acme"

[[models]]
name = "gpt-4o-mini"
default_max_output_tokens = 256

[[models]]
name = "gpt-4o"

[[models]]
name = "text-embedding-3-small"

[[models]]
name = "claude-sonnet-4-5"
default_max_output_tokens = 256

[[models]]
name = "always-503"

[[models]]
name = "bad-request-upstream"

[[deployments]]
id = "mock-mini"
model = "gpt-4o-mini"
provider = "openai"
base_url = "${mock}/v1"
upstream_model = "gpt-4o-mini"

[[deployments]]
id = "mock-4o"
model = "gpt-4o"
provider = "azure"
base_url = "${mock}"
upstream_model = "gpt-4o"
api_version = "2024-10-21"

[[deployments]]
id = "mock-embed"
model = "text-embedding-3-small"
provider = "openai"
base_url = "${mock}/v1"

[[deployments]]
id = "mock-claude"
model = "claude-sonnet-4-5"
provider = "anthropic"
base_url = "${mock}/v1"

[[deployments]]
id = "mock-503"
model = "always-503"
provider = "openai"
base_url = "${mock}/v1"
upstream_model = "x+status=503"
prices = { input = 1000000, output = 1000000 }

[[deployments]]
id = "mock-400"
model = "bad-request-upstream"
provider = "openai"
base_url = "${mock}/v1"
upstream_model = "x+status=400"
prices = { input = 1000000, output = 1000000 }

[[budgets]]
scope = "team:broke"
amount_usd = "0.000010"
period = "month"
`;

function binDir() {
  if (process.env.TOLLGATE_BIN_DIR) return process.env.TOLLGATE_BIN_DIR;
  // A relative CARGO_TARGET_DIR is relative to the workspace, as cargo reads it there.
  return path.join(path.resolve(REPO_ROOT, process.env.CARGO_TARGET_DIR || 'target'), 'debug');
}

function binary(name) {
  const file = path.join(binDir(), name);
  try {
    fs.accessSync(file, fs.constants.X_OK);
    if (fs.statSync(file).isFile()) return file;
  } catch {
    // reported below
  }
  throw new Error(
    `${file} is missing. Build the binaries first:\n` +
      `  cargo build --workspace --bins\n` +
      `(with the same CARGO_TARGET_DIR; or set TOLLGATE_BIN_DIR to their directory)`,
  );
}

// The environment for the binaries: none of the caller's TOLLGATE_* settings leak in
// (they would override the config), the pepper is set, logs stay quiet and uncoloured.
function childEnv() {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TOLLGATE_')));
  env.TOLLGATE_AUTH__KEY_PEPPER = PEPPER;
  env.RUST_LOG = 'warn';
  env.NO_COLOR = '1'; // plain logs in the files shown on failure
  return env;
}

// Children still running when this process exits (an uncaught error, Ctrl-C, the test
// runner's SIGTERM) are killed too, so no gateway outlives its test file, and the tmp
// dirs go with them. Signals would end Node without an 'exit' event, so they are turned
// into process.exit().
const running = new Set();
const tmpDirs = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
  for (const dir of tmpDirs) fs.rmSync(dir, { recursive: true, force: true });
});
for (const [signal, number] of [['SIGINT', 2], ['SIGTERM', 15], ['SIGHUP', 1]]) {
  process.once(signal, () => process.exit(128 + number));
}

// A started binary whose stdout and stderr go to files in the run's tmp dir (files, not
// pipes: nothing has to keep draining them, and they can be shown after a failure).
class Process {
  constructor(name, args, tmp) {
    this.name = name;
    this.stdout = path.join(tmp, `${name}.stdout`);
    this.stderr = path.join(tmp, `${name}.stderr`);
    const out = fs.openSync(this.stdout, 'w');
    const err = fs.openSync(this.stderr, 'w');
    try {
      this.child = spawn(args[0], args.slice(1), { cwd: tmp, env: childEnv(), stdio: ['ignore', out, err] });
    } finally {
      fs.closeSync(out);
      fs.closeSync(err);
    }
    this.exitCode = null; // set once it has exited: its code, or the signal's name
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exitCode = code ?? signal;
        running.delete(this.child);
        resolve();
      });
      // A failed spawn emits 'error' and never 'exit'.
      this.child.once('error', (e) => {
        this.exitCode = `spawn error: ${e.message}`;
        running.delete(this.child);
        resolve();
      });
    });
    running.add(this.child);
  }

  get alive() {
    return this.exitCode === null;
  }

  output() {
    return [
      ['stdout', this.stdout],
      ['stderr', this.stderr],
    ]
      .map(([label, file]) => {
        const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
        return `--- ${this.name} ${label} (${file}) ---\n${text.trimEnd()}`;
      })
      .join('\n');
  }

  // Waits for `pattern` on stdout and returns its first group.
  async waitFor(pattern) {
    const deadline = Date.now() + STARTUP_TIMEOUT_MS;
    for (;;) {
      const found = pattern.exec(fs.readFileSync(this.stdout, 'utf8'));
      if (found) return found[1];
      if (!this.alive) throw new Error(`${this.name} exited with ${this.exitCode} before it was ready\n${this.output()}`);
      if (Date.now() > deadline) {
        throw new Error(`${this.name} was not ready after ${STARTUP_TIMEOUT_MS / 1000}s\n${this.output()}`);
      }
      await sleep(20);
    }
  }

  // SIGTERM, then SIGKILL if it is still there after 10 s.
  async stop() {
    if (!this.alive) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(timer);
  }
}

// Runs `tollgate-gateway keys new`; returns [full key, its [[keys]] TOML block].
function mintKey(gateway, minimalConfig, team) {
  const args = ['keys', 'new', '--team', team, '--config', minimalConfig];
  const done = spawnSync(gateway, args, { encoding: 'utf8', env: childEnv(), timeout: 60_000 });
  const command = `\`${[gateway, ...args].join(' ')}\``;
  if (done.error) throw new Error(`${command} failed: ${done.error.message}`);
  if (done.status !== 0) throw new Error(`${command} failed (${done.status}):\n${done.stdout}\n${done.stderr}`);
  // The key goes to stderr (shown once), the entry alone to stdout (appendable TOML).
  const key = MINTED_KEY.exec(done.stderr);
  if (!key || !done.stdout.startsWith('[[keys]]')) {
    throw new Error(`\`keys new\` printed no key on stderr or no bare [[keys]] entry on stdout:\n${done.stdout}\n${done.stderr}`);
  }
  return [key[1], done.stdout.trimEnd() + '\n'];
}

// What the mock upstream received, over its control endpoints.
export class MockUpstream {
  constructor(url) {
    this.url = url;
  }

  async clear() {
    const response = await fetch(`${this.url}/_mock/requests`, { method: 'DELETE' });
    if (!response.ok) throw new Error(`DELETE /_mock/requests: ${response.status}`);
  }

  // Recorded requests, oldest first: {method, path, query, headers, body}.
  async requests() {
    const response = await fetch(`${this.url}/_mock/requests`);
    if (!response.ok) throw new Error(`GET /_mock/requests: ${response.status}`);
    return response.json();
  }
}

// Registers the hooks that start the stack before the file's first test and stop it
// after its last. The returned object is filled in by `before`:
//   gatewayURL  http://127.0.0.1:PORT/v1, what the SDK takes as baseURL
//   mock        the mock upstream (MockUpstream), its record cleared before each test
//   keys        minted keys by role: search, restricted, revoked, broke
//   client(key) a new OpenAI client for `key` (default: the search team's)
export function useStack() {
  const stack = {};
  const processes = [];
  let tmp;
  let failed = false;

  before(async () => {
    const mockBin = binary('mock-openai');
    const gatewayBin = binary('tollgate-gateway');
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-node-tests-'));
    tmpDirs.add(tmp);

    const mock = new Process('mock-openai', [mockBin, '--listen', '127.0.0.1:0'], tmp);
    processes.push(mock);
    const mockURL = await mock.waitFor(MOCK_READY);

    const minimal = path.join(tmp, 'keys.toml');
    fs.writeFileSync(minimal, `[auth]\nkey_pepper = "${PEPPER}"\n`);
    const keys = {};
    const blocks = [];
    for (const [name, team, extra] of [
      ['search', 'search', ''],
      ['restricted', 'restricted', ''],
      ['revoked', 'search', 'status = "revoked"\n'],
      ['broke', 'broke', ''],
    ]) {
      const [key, block] = mintKey(gatewayBin, minimal, team);
      keys[name] = key;
      blocks.push(block + extra);
    }

    const config = path.join(tmp, 'gateway.toml');
    fs.writeFileSync(config, configTemplate({ pepper: PEPPER, mock: mockURL }) + '\n' + blocks.join('\n'));
    const gateway = new Process('tollgate-gateway', [gatewayBin, '--config', config], tmp);
    processes.push(gateway);
    let gatewayRoot;
    try {
      gatewayRoot = await gateway.waitFor(GATEWAY_READY);
    } catch (e) {
      throw new Error(`${e.message}\n--- config (${config}) ---\n${fs.readFileSync(config, 'utf8')}`);
    }

    Object.assign(stack, {
      gatewayURL: `${gatewayRoot}/v1`,
      mock: new MockUpstream(mockURL),
      keys,
      client: (apiKey = keys.search) =>
        new OpenAI({ baseURL: stack.gatewayURL, apiKey, maxRetries: 0, timeout: CLIENT_TIMEOUT_MS }),
    });
  });

  // Each test sees only its own requests in the mock's record.
  beforeEach(async () => {
    if (stack.mock) await stack.mock.clear();
  });

  afterEach((t) => {
    if (t.passed === false) failed = true;
  });

  // Stops both processes, also when `before` failed half-way; shows their logs when a
  // test failed or one of them died during the tests (the tmp dir is removed after).
  after(async () => {
    // A failed `before` already carries the output of the process that did not start.
    const started = Boolean(stack.gatewayURL);
    for (const proc of [...processes].reverse()) {
      if (started && !proc.alive) {
        console.error(`${proc.name} exited with ${proc.exitCode} during the tests\n${proc.output()}`);
      } else if (started && failed) {
        console.error(proc.output());
      }
      await proc.stop();
    }
    if (tmp) {
      fs.rmSync(tmp, { recursive: true, force: true });
      tmpDirs.delete(tmp);
    }
  });

  return stack;
}
