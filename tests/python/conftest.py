"""Session fixtures: the mock upstream and a standalone tollgate-gateway in front of it,
plus `openai` SDK clients configured the way users configure them (only `base_url` and
`api_key` differ from talking to OpenAI itself).

The binaries come from ``${CARGO_TARGET_DIR:-target}/debug`` (``TOLLGATE_BIN_DIR``
overrides); they are not built here.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
import pytest
import pytest_asyncio

REPO_ROOT = Path(__file__).resolve().parents[2]
PEPPER = "python-tests-pepper-0123456789"
STARTUP_TIMEOUT_S = 30.0
CLIENT_TIMEOUT_S = 30.0

MOCK_READY = re.compile(r"^mock-openai listening on (http://\S+)$", re.MULTILINE)
GATEWAY_READY = re.compile(r"^tollgate-gateway listening on (http://\S+)$", re.MULTILINE)
MINTED_KEY = re.compile(r"^\s+(tg_[A-Za-z0-9]+_[A-Za-z0-9]+)$", re.MULTILINE)

# Every model in the config below, as the search team's key should see them.
CONFIGURED_MODELS = [
    "gpt-4o-mini",
    "gpt-4o",
    "text-embedding-3-small",
    "claude-sonnet-4-5",
    "always-503",
    "bad-request-upstream",
]

CONFIG_TEMPLATE = """\
[server]
listen = "127.0.0.1:0"

[auth]
key_pepper = "{pepper}"

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
base_url = "{mock}/v1"
upstream_model = "gpt-4o-mini"

[[deployments]]
id = "mock-4o"
model = "gpt-4o"
provider = "azure"
base_url = "{mock}"
upstream_model = "gpt-4o"
api_version = "2024-10-21"

[[deployments]]
id = "mock-embed"
model = "text-embedding-3-small"
provider = "openai"
base_url = "{mock}/v1"

[[deployments]]
id = "mock-claude"
model = "claude-sonnet-4-5"
provider = "anthropic"
base_url = "{mock}/v1"

[[deployments]]
id = "mock-503"
model = "always-503"
provider = "openai"
base_url = "{mock}/v1"
upstream_model = "x+status=503"
prices = {{ input = 1000000, output = 1000000 }}

[[deployments]]
id = "mock-400"
model = "bad-request-upstream"
provider = "openai"
base_url = "{mock}/v1"
upstream_model = "x+status=400"
prices = {{ input = 1000000, output = 1000000 }}

[[budgets]]
scope = "team:broke"
amount_usd = "0.000010"
period = "month"
"""


def bin_dir() -> Path:
    explicit = os.environ.get("TOLLGATE_BIN_DIR")
    if explicit:
        return Path(explicit)
    target = Path(os.environ.get("CARGO_TARGET_DIR") or "target")
    if not target.is_absolute():
        target = REPO_ROOT / target
    return target / "debug"


def binary(name: str) -> Path:
    path = bin_dir() / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.exit(
            f"{path} is missing. Build the binaries first:\n"
            f"  cargo build --workspace --bins\n"
            f"(with the same CARGO_TARGET_DIR; or set TOLLGATE_BIN_DIR to their directory)",
            returncode=2,
        )
    return path


def child_env() -> dict[str, str]:
    """The environment for the binaries: none of the caller's TOLLGATE_* settings leak
    in (they would override the config), the pepper is set, logs stay quiet and uncoloured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    env["TOLLGATE_AUTH__KEY_PEPPER"] = PEPPER
    env["RUST_LOG"] = "warn"
    env["NO_COLOR"] = "1"  # plain logs in the files shown on failure
    return env


@dataclass
class Process:
    """A started binary whose stdout and stderr go to files in the session's tmp dir."""

    name: str
    popen: subprocess.Popen
    stdout: Path
    stderr: Path

    def output(self) -> str:
        parts = []
        for label, path in (("stdout", self.stdout), ("stderr", self.stderr)):
            text = path.read_text(errors="replace") if path.exists() else ""
            parts.append(f"--- {self.name} {label} ({path}) ---\n{text.rstrip()}")
        return "\n".join(parts)

    def wait_for(self, pattern: re.Pattern[str]) -> str:
        """Waits for `pattern` on stdout and returns its first group."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            found = pattern.search(self.stdout.read_text(errors="replace"))
            if found:
                return found.group(1)
            code = self.popen.poll()
            if code is not None:
                raise RuntimeError(f"{self.name} exited with {code} before it was ready\n{self.output()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} was not ready after {STARTUP_TIMEOUT_S:.0f}s\n{self.output()}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def start(name: str, args: list[str], tmp: Path) -> Process:
    stdout, stderr = tmp / f"{name}.stdout", tmp / f"{name}.stderr"
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        popen = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=child_env(), cwd=tmp)
    return Process(name, popen, stdout, stderr)


def mint_key(gateway: Path, minimal_config: Path, team: str) -> tuple[str, str]:
    """Runs `tollgate-gateway keys new`; returns (full key, its [[keys]] TOML block)."""
    args = [str(gateway), "keys", "new", "--team", team, "--config", str(minimal_config)]
    done = subprocess.run(args, capture_output=True, text=True, env=child_env(), timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(args)}` failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    # The key goes to stderr (shown once), the entry alone to stdout (appendable TOML).
    key = MINTED_KEY.search(done.stderr)
    if key is None or not done.stdout.startswith("[[keys]]"):
        raise RuntimeError(f"`keys new` printed no key on stderr or no bare [[keys]] entry on stdout:\n{done.stdout}\n{done.stderr}")
    return key.group(1), done.stdout.rstrip() + "\n"


@dataclass
class Stack:
    """The running mock and gateway, and the keys minted for this session."""

    mock_url: str  # http://127.0.0.1:PORT
    gateway_url: str  # http://127.0.0.1:PORT/v1, what the SDK takes as base_url
    keys: dict[str, str] = field(default_factory=dict)
    config: Path | None = None


# The binaries' logs, kept for the terminal summary when a test failed (their tmp dir is
# gone by then).
_LOGS_AFTER_FAILURE: list[str] = []


def pytest_terminal_summary(terminalreporter) -> None:
    for text in _LOGS_AFTER_FAILURE:
        terminalreporter.write_sep("-", "logs of the processes under test")
        terminalreporter.write_line(text)


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """Starts the mock, mints the keys, writes the config and starts the gateway; both
    processes are stopped at the end of the session, also when anything fails."""
    mock_bin, gateway_bin = binary("mock-openai"), binary("tollgate-gateway")
    with contextlib.ExitStack() as cleanup:
        tmp = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="tollgate-python-tests-")))
        try:
            mock, gateway, running = start_stack(mock_bin, gateway_bin, tmp, cleanup)
        except RuntimeError as e:
            # One clear message instead of the same setup error for every test.
            pytest.exit(f"the processes under test did not start:\n{e}", returncode=3)

        yield running

        for process in (gateway, mock):
            code = process.popen.poll()
            if code is not None:
                _LOGS_AFTER_FAILURE.append(f"{process.name} exited with {code} during the tests\n{process.output()}")
            elif request.session.testsfailed:
                _LOGS_AFTER_FAILURE.append(process.output())


def start_stack(
    mock_bin: Path, gateway_bin: Path, tmp: Path, cleanup: contextlib.ExitStack
) -> tuple[Process, Process, Stack]:
    mock = start("mock-openai", [str(mock_bin), "--listen", "127.0.0.1:0"], tmp)
    cleanup.callback(mock.stop)
    mock_url = mock.wait_for(MOCK_READY)

    minimal = tmp / "keys.toml"
    minimal.write_text(f'[auth]\nkey_pepper = "{PEPPER}"\n')
    keys, blocks = {}, []
    for name, team, extra in [
        ("search", "search", ""),
        ("restricted", "restricted", ""),
        ("revoked", "search", 'status = "revoked"\n'),
        ("broke", "broke", ""),
    ]:
        keys[name], block = mint_key(gateway_bin, minimal, team)
        blocks.append(block + extra)

    config = tmp / "gateway.toml"
    config.write_text(CONFIG_TEMPLATE.format(pepper=PEPPER, mock=mock_url) + "\n" + "\n".join(blocks))
    gateway = start("tollgate-gateway", [str(gateway_bin), "--config", str(config)], tmp)
    cleanup.callback(gateway.stop)
    try:
        gateway_root = gateway.wait_for(GATEWAY_READY)
    except RuntimeError as e:
        raise RuntimeError(f"{e}\n--- config ({config}) ---\n{config.read_text()}") from None
    return mock, gateway, Stack(mock_url=mock_url, gateway_url=f"{gateway_root}/v1", keys=keys, config=config)


@pytest.fixture(scope="session")
def gateway_url(stack: Stack) -> str:
    """The gateway's OpenAI base URL, `http://127.0.0.1:PORT/v1`."""
    return stack.gateway_url


@pytest.fixture(scope="session")
def mock_url(stack: Stack) -> str:
    """The mock upstream's root, `http://127.0.0.1:PORT` (see `/_mock/requests`)."""
    return stack.mock_url


@pytest.fixture(scope="session")
def configured_models() -> list[str]:
    """Every model name in the gateway's config."""
    return list(CONFIGURED_MODELS)


@pytest.fixture(scope="session")
def keys(stack: Stack) -> dict[str, str]:
    """Minted keys by role: search, restricted, revoked, broke."""
    return stack.keys


class MockUpstream:
    """What the mock upstream received, over its control endpoints."""

    def __init__(self, url: str) -> None:
        self.url = url

    def clear(self) -> None:
        httpx.delete(f"{self.url}/_mock/requests", timeout=10).raise_for_status()

    def requests(self) -> list[dict]:
        """Recorded requests, oldest first: {method, path, query, headers, body}."""
        response = httpx.get(f"{self.url}/_mock/requests", timeout=10)
        response.raise_for_status()
        return response.json()


@pytest.fixture
def mock(mock_url: str) -> MockUpstream:
    """The mock upstream, its record cleared for this test."""
    upstream = MockUpstream(mock_url)
    upstream.clear()
    return upstream


def sync_client(stack: Stack, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.gateway_url, api_key=api_key, max_retries=0, timeout=CLIENT_TIMEOUT_S)


@pytest.fixture(scope="session")
def make_client(stack: Stack) -> Iterator:
    """Builds a sync client with any api_key (closed at the end of the session)."""
    made: list[openai.OpenAI] = []

    def make(api_key: str) -> openai.OpenAI:
        made.append(sync_client(stack, api_key))
        return made[-1]

    yield make
    for c in made:
        c.close()


@pytest.fixture(scope="session")
def client(make_client, keys) -> openai.OpenAI:
    """Sync client with the search team's key (every model allowed, no budget)."""
    return make_client(keys["search"])


@pytest.fixture(scope="session")
def restricted_client(make_client, keys) -> openai.OpenAI:
    """Sync client whose team may only use gpt-4o-mini."""
    return make_client(keys["restricted"])


@pytest.fixture(scope="session")
def revoked_client(make_client, keys) -> openai.OpenAI:
    """Sync client with a key marked `status = "revoked"` in the config."""
    return make_client(keys["revoked"])


@pytest.fixture(scope="session")
def broke_client(make_client, keys) -> openai.OpenAI:
    """Sync client whose team's monthly budget (10 micro-USD) covers no call."""
    return make_client(keys["broke"])


@pytest_asyncio.fixture
async def async_client(stack: Stack, keys):
    """Async client with the search team's key, on the test's own event loop."""
    async with openai.AsyncOpenAI(
        base_url=stack.gateway_url, api_key=keys["search"], max_retries=0, timeout=CLIENT_TIMEOUT_S
    ) as c:
        yield c
