"""Renders the Tollgate chart and checks what comes out (run by deploy/helm/check).

For the default values and every file in tollgate/ci/: strict lint, offline render,
then each rendered object validated against the Kubernetes schemas in strict mode
(unknown fields fail) for every Kubernetes version named in --kube, and custom
resources against the schemas kept in schemas/. Then what the chart promises is
asserted on the objects themselves: a restrictive securityContext and resource
requests on every container, secrets only by reference, one gateway fleet per region.
"""

import argparse
import json
import pathlib
import sys
import tomllib

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

HERE = pathlib.Path(__file__).resolve().parent
CHART = HERE / "tollgate"
CUSTOM = {("monitoring.coreos.com/v1", "ServiceMonitor"): HERE / "schemas" / "servicemonitor.json"}


def fail(message):
    print(f"helm/check: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def lint(values, label):
    report = helm.lint(str(CHART), values, strict=True, namespace="tollgate")
    problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    problems += [{"error": e} for e in report.get("errors") or []]
    if problems:
        fail(f"lint ({label}): " + "; ".join(str(p.get("path", "")) + " " + str(p["error"]) for p in problems))


def render(values):
    chart = helm.Chart.load(str(CHART))
    manifests = chart.render(values, name="tollgate", namespace="tollgate", revision=1, is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append((path, doc))
    return objects


def validate(objects, versions, label):
    for path, obj in objects:
        name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')} ({path}, {label})"
        custom = CUSTOM.get((obj.get("apiVersion"), obj.get("kind")))
        if custom:
            jsonschema.validate(obj, json.loads(custom.read_text()))
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                fail(f"{name} against Kubernetes {version}: {e.message} at {'.'.join(map(str, e.path))}")
            except kubernetes_validate.SchemaNotFoundError:
                fail(f"{name}: no schema for {obj.get('apiVersion')} {obj.get('kind')} in Kubernetes {version}")


def pod_specs(objects):
    for _, obj in objects:
        spec = obj.get("spec", {})
        if obj["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield obj, spec["template"]["spec"]


def check_promises(objects, values, label):
    for obj, pod in pod_specs(objects):
        name = f"{obj['kind']}/{obj['metadata']['name']} ({label})"
        if not pod.get("securityContext", {}).get("runAsNonRoot"):
            fail(f"{name}: pod may run as root")
        if pod.get("automountServiceAccountToken") is not False:
            fail(f"{name}: mounts a service account token it does not need")
        for c in pod["containers"]:
            sc = c.get("securityContext", {})
            if not (sc.get("readOnlyRootFilesystem") and sc.get("allowPrivilegeEscalation") is False
                    and sc.get("capabilities", {}).get("drop") == ["ALL"]):
                fail(f"{name}/{c['name']}: securityContext is not restrictive: {sc}")
            if not c.get("resources", {}).get("requests"):
                fail(f"{name}/{c['name']}: no resource requests")
            for env in c.get("env", []):
                if env["name"] in SECRET_ENV and "value" in env:
                    fail(f"{name}/{c['name']}: {env['name']} is a literal value, not a Secret reference")
            if obj["kind"] != "Job" and not (c.get("readinessProbe") and c.get("livenessProbe")):
                fail(f"{name}/{c['name']}: missing probes")
    if any(obj["kind"] == "Secret" for _, obj in objects):
        fail(f"{label}: the chart renders a Secret; every secret must be referenced")
    regions = [r["name"] for r in values.get("regions") or yaml.safe_load((CHART / "values.yaml").read_text())["regions"]]
    fleets = sorted(obj["metadata"]["name"] for _, obj in objects if obj["kind"] == "StatefulSet")
    want = sorted(f"tollgate-gateway-{r}" for r in regions)
    if fleets != want:
        fail(f"{label}: gateway StatefulSets {fleets}, expected {want}")
    kinds = {obj["kind"] for _, obj in objects}
    for kind in ("Deployment", "Service", "Ingress", "PodDisruptionBudget", "Job", "ConfigMap", "StatefulSet"):
        if kind not in kinds:
            fail(f"{label}: no {kind} rendered")
    for _, obj in objects:
        if obj["kind"] == "ConfigMap" and "gateway.toml" in obj.get("data", {}):
            try:
                settings = tomllib.loads(obj["data"]["gateway.toml"])
            except tomllib.TOMLDecodeError as e:
                fail(f"{label}: ConfigMap/{obj['metadata']['name']}: gateway.toml is not TOML: {e}")
            if settings["control"]["trusted_keys"] != (values.get("gateway") or {}).get("trustedKeys", {}):
                fail(f"{label}: ConfigMap/{obj['metadata']['name']}: trusted_keys differ from gateway.trustedKeys")
    jobs = [obj for _, obj in objects if obj["kind"] == "Job"]
    if not all("pre-install" in j["metadata"]["annotations"]["helm.sh/hook"] for j in jobs):
        fail(f"{label}: the migration Job is not a pre-install/pre-upgrade hook")


SECRET_ENV = {
    "TOLLGATE_AUTH__KEY_PEPPER", "TOLLGATE_DATABASE__URL", "TOLLGATE_REDIS__URL",
    "TOLLGATE_TELEMETRY__WEBHOOK_KEY", "TOLLGATE_CONTROL__ENROLLMENT_TOKEN", "TOLLGATE_OIDC__CLIENT_SECRET",
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kube", action="append", help="Kubernetes versions to validate against")
    args = parser.parse_args()
    versions = args.kube or ["1.29.0", "1.37.0"]
    sets = [("default values", {})]
    for path in sorted((CHART / "ci").glob("*.yaml")):
        sets.append((f"ci/{path.name}", yaml.safe_load(path.read_text())))
    for label, values in sets:
        lint(values, label)
        objects = render(values)
        validate(objects, versions, label)
        check_promises(objects, values, label)
        kinds = sorted({o["kind"] for _, o in objects})
        print(f"helm/check: {label}: lint clean, {len(objects)} objects valid against Kubernetes "
              f"{', '.join(versions)} (strict): {', '.join(kinds)}", file=sys.stderr)

    # Bad values must be refused by values.schema.json, not rendered into broken objects.
    for bad in ({"regions": [{"name": "EU_West", "enrollmentToken": {"existingSecret": "x", "key": "t"}}]},
                {"secrets": {"pepper": {"existingSecret": "", "key": "p"}}},
                {"gateway": {"unknownSetting": 1}}):
        try:
            helm.Chart.load(str(CHART)).render(bad, name="tollgate", namespace="tollgate")
        except helm.HelmError:
            continue
        fail(f"values.schema.json accepted bad values {bad}")
    print("helm/check: values.schema.json refuses bad values", file=sys.stderr)


if __name__ == "__main__":
    main()
