"""Seeds a control plane with one real object of every kind the admin API has, and
prints a schemathesis.toml that makes every generated request name them.

    api-seed.py <base url> <admin token>  > schemathesis.toml

Generated ids never exist, so without this every operation on `/orgs/{org_id}/...`,
`/models/{model_id}` and the like only ever answers 404 and its handler is never
exercised. With it, path and query ids are the seeded ones; DELETE operations get
objects of their own (a spare org, team, project, ...), so deleting them does not take
the objects the other operations use away. Standard library only (run with any python3).
"""

import json
import sys
import urllib.error
import urllib.request

BASE, TOKEN = sys.argv[1].rstrip("/"), sys.argv[2]


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
        sys.exit(f"api-seed: {method} {path} answered {e.code}: {e.read().decode()}")


def post(path, body):
    return call("POST", path, body)


def main():
    ids, spare = {}, {}
    ids["region_id"] = post("/regions", {"id": "api", "name": "API tests"})["id"]
    ids["provider_id"] = post(
        "/providers",
        {"kind": "openai_compatible", "name": "mock", "base_url": "https://upstream.example.com/v1"},
    )["id"]
    ids["model_id"] = post("/models", {"name": "api-model", "aliases": ["api-alias"]})["id"]
    deployment = {
        "model_id": ids["model_id"],
        "region_id": ids["region_id"],
        "provider_id": ids["provider_id"],
        "upstream_model": "gpt-4o-mini",
        "input_price": 150_000,
        "output_price": 600_000,
    }
    ids["deployment_id"] = post("/deployments", deployment)["id"]
    token = f"/regions/{ids['region_id']}/enrollment-tokens"
    ids["token_id"] = post(token, {"name": "api"})["enrollment_token"]["id"]
    org = ids["org_id"] = post("/orgs", {"slug": "api", "name": "API tests"})["id"]
    ids["team_id"] = post(f"/orgs/{org}/teams", {"slug": "team", "name": "Team"})["id"]
    ids["project_id"] = post(
        f"/orgs/{org}/projects", {"team_id": ids["team_id"], "slug": "project", "name": "Project"}
    )["id"]
    ids["key_id"] = post(
        f"/orgs/{org}/keys", {"team_id": ids["team_id"], "project_id": ids["project_id"], "name": "api"}
    )["id"]
    budget = {"scope_kind": "team", "scope_id": ids["team_id"], "amount_micros": 10_000_000, "period": "month"}
    ids["budget_id"] = post(f"/orgs/{org}/budgets", budget)["id"]
    limit = {"scope_kind": "team", "scope_id": ids["team_id"], "rpm": 600}
    ids["rate_limit_id"] = post(f"/orgs/{org}/rate-limits", limit)["id"]
    webhook = {"url": "https://hooks.example.com/tollgate", "description": "api"}
    ids["webhook_id"] = post(f"/orgs/{org}/webhooks", webhook)["id"]
    freeze = {"scope_kind": "project", "scope_id": ids["project_id"], "reason": "api tests"}
    ids["freeze_id"] = post(f"/orgs/{org}/freezes", freeze)["id"]

    # What the DELETE operations remove: objects of their own, each deletable alone (a
    # provider or region still in use is a 409: an answer, but not the success path).
    spare["org_id"] = post("/orgs", {"slug": "api-spare", "name": "Spare"})["id"]
    spare["team_id"] = post(f"/orgs/{org}/teams", {"slug": "spare", "name": "Spare"})["id"]
    spare["project_id"] = post(
        f"/orgs/{org}/projects", {"team_id": ids["team_id"], "slug": "spare", "name": "Spare"}
    )["id"]
    spare["budget_id"] = post(f"/orgs/{org}/budgets", dict(budget, period="day"))["id"]
    spare["rate_limit_id"] = post(
        f"/orgs/{org}/rate-limits", dict(limit, scope_kind="project", scope_id=ids["project_id"])
    )["id"]
    spare["webhook_id"] = post(f"/orgs/{org}/webhooks", webhook)["id"]
    spare["deployment_id"] = post("/deployments", dict(deployment, upstream_model="spare"))["id"]
    spare["model_id"] = post("/models", {"name": "api-spare"})["id"]
    spare["provider_id"] = post(
        "/providers",
        {"kind": "openai_compatible", "name": "spare", "base_url": "https://spare.example.com/v1"},
    )["id"]
    spare["region_id"] = post("/regions", {"id": "api-spare", "name": "Spare"})["id"]
    spare["token_id"] = post(token, {"name": "spare"})["enrollment_token"]["id"]

    lines = ["# Written by deploy/local/api-seed.py: ids of seeded objects.", "[parameters]"]
    lines += [f"{name} = {json.dumps(value)}" for name, value in sorted(ids.items())]
    deletes = {
        "/api/v1/orgs/{org_id}": {"org_id": spare["org_id"]},
        "/api/v1/orgs/{org_id}/teams/{team_id}": {"team_id": spare["team_id"]},
        "/api/v1/orgs/{org_id}/projects/{project_id}": {"project_id": spare["project_id"]},
        "/api/v1/orgs/{org_id}/budgets/{budget_id}": {"budget_id": spare["budget_id"]},
        "/api/v1/orgs/{org_id}/rate-limits/{rate_limit_id}": {"rate_limit_id": spare["rate_limit_id"]},
        "/api/v1/orgs/{org_id}/webhooks/{webhook_id}": {"webhook_id": spare["webhook_id"]},
        "/api/v1/deployments/{deployment_id}": {"deployment_id": spare["deployment_id"]},
        "/api/v1/models/{model_id}": {"model_id": spare["model_id"]},
        "/api/v1/providers/{provider_id}": {"provider_id": spare["provider_id"]},
        "/api/v1/regions/{region_id}": {"region_id": spare["region_id"]},
        "/api/v1/regions/{region_id}/enrollment-tokens/{token_id}": {"token_id": spare["token_id"]},
    }
    for path, params in deletes.items():
        # The operation's own table replaces the global one: repeat the other ids.
        merged = dict(ids, **params)
        names = [n for n in merged if "{" + n + "}" in path]
        lines += ["", "[[operations]]", f"include-name = {json.dumps('DELETE ' + path)}"]
        lines.append("parameters = { " + ", ".join(f"{n} = {json.dumps(merged[n])}" for n in names) + " }")
    print("\n".join(lines))


main()
