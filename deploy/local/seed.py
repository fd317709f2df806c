"""Seeds the control plane `deploy/local/up` runs, through the admin API only, and prints
the ids up needs as shell assignments (ORG=..., TEAM=..., PROJECT=...).

    seed.py <control plane URL> <admin token> <mock upstream port>

Idempotent, also after a run that died half-way: every object is looked up by its name
(or slug, or scope) first and created only when missing, so a second run changes nothing
and a half-made catalog is completed. The mock's port may differ from the last run's:
the two mock providers are then pointed at the new one (PATCH). Standard library only.
"""

import json
import sys
import urllib.error
import urllib.request

BASE, TOKEN, MOCK_PORT = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
MOCK = f"http://127.0.0.1:{MOCK_PORT}/v1"


def call(method, path, body=None):
    request = urllib.request.Request(
        f"{BASE}/api/v1{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        sys.exit(f"up: seeding: {method} {path} answered {e.code}: {e.read().decode()}")


def items(path):
    """Every item of a list endpoint, following its cursor."""
    out, cursor = [], None
    while True:
        page = call("GET", path + (f"?cursor={cursor}" if cursor else ""))
        if isinstance(page, list):  # the lists that are never long have no pages
            return page
        out += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            return out


def ensure(path, match, body, what):
    """The item of `path` whose fields equal `match`, created with `body` when missing."""
    for item in items(path):
        if all(item.get(k) == v for k, v in match.items()):
            return item
    print(f"up: creating {what}", file=sys.stderr)
    return call("POST", path, body)


def main():
    ensure("/regions", {"id": "local"}, {"id": "local", "name": "This machine"}, "region local")
    providers = {}
    for kind in ("openai", "anthropic"):
        name = f"mock-{kind}"
        provider = ensure(
            "/providers", {"name": name}, {"kind": kind, "name": name, "base_url": MOCK}, f"provider {name}"
        )
        if provider.get("base_url") != MOCK:
            provider = call("PATCH", f"/providers/{provider['id']}", {"base_url": MOCK})
        providers[kind] = provider["id"]
    for name, owner, max_out in (
        ("gpt-4o-mini", "openai", 1024),
        ("claude-sonnet-4-5", "anthropic", 1024),
        ("text-embedding-3-small", "openai", 4096),
    ):
        model = ensure(
            "/models",
            {"name": name},
            {"name": name, "owned_by": owner, "default_max_output_tokens": max_out},
            f"model {name}",
        )
        deployment = {"model_id": model["id"], "region_id": "local", "provider_id": providers[owner]}
        ensure("/deployments", deployment, dict(deployment, upstream_model=name), f"deployment of {name}")

    org = ensure("/orgs", {"slug": "local-demo"}, {"slug": "local-demo", "name": "Local demo"}, "org local-demo")
    org = org["id"]
    team = ensure(f"/orgs/{org}/teams", {"slug": "search"}, {"slug": "search", "name": "Search"}, "team search")
    team = team["id"]
    project = ensure(
        f"/orgs/{org}/projects",
        {"slug": "ranker"},
        {"team_id": team, "slug": "ranker", "name": "Ranker"},
        "project ranker",
    )["id"]
    scope = {"scope_kind": "team", "scope_id": team}
    ensure(
        f"/orgs/{org}/budgets",
        dict(scope, period="month"),
        dict(scope, amount_micros=25_000_000, period="month"),
        "the team's monthly budget",
    )
    ensure(f"/orgs/{org}/rate-limits", scope, dict(scope, rpm=600), "the team's rate limit")
    # The development IdP's demo member is in this group: a member of team search.
    ensure(
        f"/orgs/{org}/group-mappings",
        {"value": "local-demo-search"},
        {"value": "local-demo-search", "role": "member", "team_id": team},
        "group mapping local-demo-search → member of team search",
    )
    print(f"ORG={org}\nTEAM={team}\nPROJECT={project}")


main()
