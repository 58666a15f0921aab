#!/usr/bin/env python3
"""Checks of the Helm chart and the kustomize tree, driven by integration/tests/chart.rs.

Runs in the virtualenv integration/scripts/setup.sh makes (PyPI helm-python-sdk, which
embeds Helm v4's library, and kubernetes-validate). Every subcommand exits non-zero with
a message naming what is wrong.

  render PLATFORM MODE [VALUES_JSON]   print the rendered objects (CRDs first) as JSON
  lint                                 helm lint --strict of the chart, with every matrix value set
  validate                             every object of every matrix render against the
                                       Kubernetes OpenAPI schemas
  compare-kustomize                    `kubectl kustomize` of each overlay equals the chart
                                       for that platform, object by object
  generate-kustomize                   (re)write deploy/kustomize from the chart
  example-pods                         pods (JSON) carrying each network annotation of the
                                       app-template and Flux examples, to resolve with plexusd
  render-matrix                        print every matrix render as JSON
                                       [{platform, mode, variant, values, objects}]
"""

import json
import os
import subprocess
import sys

import kubernetes_validate
import yaml
from helm_python.chart import Chart, lint

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART = os.path.join(ROOT, "deploy", "helm", "plexus")
KUSTOMIZE = os.path.join(ROOT, "deploy", "kustomize")
RELEASE = "plexus"
NAMESPACE = "kube-system"
KUBE_VERSION = "1.32"
PLATFORMS = ["generic", "k3s", "talos", "rke2", "kind"]
MODES = ["nri", "shim", "auto"]
# Kinds without an offline schema (CRD-defined by other projects).
NO_SCHEMA = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}

# Value sets beyond the defaults that switch templates' branches on.
VARIANTS = {
    "defaults": {},
    "directory-source": {"plexusd": {"nadSource": {"type": "directory"}}},
    "metrics": {
        "metrics": {
            "enabled": True,
            "service": {"enabled": True},
            "serviceMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Networking"}},
        },
        "plexusd": {"otlpEndpoint": "http://otel-collector.monitoring:4317"},
    },
    "privileged-kubeconfig": {
        "securityContext": {"privileged": True},
        "plexusd": {
            "nadSource": {"kubeconfig": "/etc/plexus/kubeconfig", "namespaces": ["home", "iot"]},
            "namespaceIsolation": True,
            "defaultNetworks": ["kube-system/iot"],
        },
    },
}


def die(message):
    print(message, file=sys.stderr)
    sys.exit(1)


def matrix():
    return [
        {"platform": p, "mode": m, "variant": name, "values": dict(values, platform=p, mode=m)}
        for p in PLATFORMS
        for m in MODES
        for name, values in VARIANTS.items()
    ]


def render(values):
    """The chart's objects for `values`: the CRDs, then the templates in file order."""
    with Chart.load(CHART) as chart:
        objects = [yaml.safe_load(c["data"]) for c in chart.crds]
        rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    for path in sorted(rendered):
        if not path.endswith((".yaml", ".yml")):
            continue  # NOTES.txt
        for doc in yaml.safe_load_all(rendered[path]):
            if doc:
                objects.append(doc)
    return objects


def key(obj):
    meta = obj.get("metadata", {})
    return (obj.get("apiVersion"), obj.get("kind"), meta.get("namespace", ""), meta.get("name"))


def cmd_render(args):
    if len(args) not in (2, 3):
        die("usage: render PLATFORM MODE [VALUES_JSON]")
    values = json.loads(args[2]) if len(args) == 3 else {}
    values.update(platform=args[0], mode=args[1])
    print(json.dumps(render(values)))


def cmd_lint(_args):
    failures = []
    for entry in matrix():
        report = lint(CHART, entry["values"], strict=True, namespace=NAMESPACE)
        problems = [m for m in report["messages"] if m["severity"] >= 2] + [
            {"error": e} for e in report.get("errors") or []
        ]
        if problems:
            failures.append(f"{entry['platform']}/{entry['mode']}/{entry['variant']}: {problems}")
    if failures:
        die("helm lint found problems:\n" + "\n".join(failures))
    print(f"lint: {len(matrix())} value sets clean")


def cmd_validate(_args):
    failures, checked, kinds = [], 0, set()
    for entry in matrix():
        for obj in render(entry["values"]):
            kinds.add(obj["kind"])
            if (obj.get("apiVersion"), obj.get("kind")) in NO_SCHEMA:
                continue
            try:
                kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
                checked += 1
            except Exception as err:  # ValidationError, SchemaNotFoundError, ...
                failures.append(f"{entry['platform']}/{entry['mode']}/{entry['variant']} {key(obj)}: {err}")
    if failures:
        die("objects failing the Kubernetes " + KUBE_VERSION + " schemas:\n" + "\n".join(failures))
    print(json.dumps({"validated": checked, "kinds": sorted(kinds)}))


def kustomize(overlay):
    kubectl = os.environ.get("PLEXUS_KUBECTL", "kubectl")
    out = subprocess.run(
        [kubectl, "kustomize", os.path.join(KUSTOMIZE, "overlays", overlay)],
        capture_output=True, text=True,
    )
    if out.returncode != 0:
        die(f"kubectl kustomize overlays/{overlay} failed: {out.stderr.strip()}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def first_difference(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{path}/{k}: only in {'kustomize' if k in a else 'chart'}"
            d = first_difference(a[k], b[k], f"{path}/{k}")
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, f"{path}/{i}")
            if d:
                return d
        return None
    return None if a == b else f"{path}: kustomize {a!r} != chart {b!r}"


def cmd_compare_kustomize(_args):
    failures, compared = [], 0
    for platform in PLATFORMS:
        got = {key(o): o for o in kustomize(platform)}
        want = {key(o): o for o in render({"platform": platform, "mode": "nri"})}
        for k in sorted(set(got) | set(want), key=str):
            if k not in got:
                failures.append(f"overlays/{platform}: {k} missing (the chart renders it)")
            elif k not in want:
                failures.append(f"overlays/{platform}: {k} is not in the chart")
            else:
                d = first_difference(got[k], want[k])
                if d:
                    failures.append(f"overlays/{platform}: {k} differs at {d}")
                compared += 1
    if failures:
        die("kustomize and chart disagree (regenerate: chart_check.py generate-kustomize):\n"
            + "\n".join(failures))
    print(json.dumps({"compared": compared, "overlays": PLATFORMS}))


def pointer(parts):
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def json_patch(a, b, parts=()):
    """RFC 6902 operations turning `a` into `b` (lists of equal length element-wise)."""
    if isinstance(a, dict) and isinstance(b, dict):
        ops = [{"op": "remove", "path": pointer(parts + (k,))} for k in a if k not in b]
        for k in b:
            if k not in a:
                ops.append({"op": "add", "path": pointer(parts + (k,)), "value": b[k]})
            else:
                ops += json_patch(a[k], b[k], parts + (k,))
        return ops
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [op for i, (x, y) in enumerate(zip(a, b)) for op in json_patch(x, y, parts + (i,))]
    return [] if a == b else [{"op": "replace", "path": pointer(parts), "value": b}]


HEADER = "# Generated from deploy/helm/plexus by integration/scripts/chart_check.py generate-kustomize;\n" \
         "# integration/tests/chart.rs checks it renders exactly what the chart renders.\n"


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the plexusd config) as literal blocks, readable in review."""


_Dumper.add_representer(
    str,
    lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None),
)


def dump(path, docs):
    with open(path, "w") as f:
        f.write(HEADER)
        f.write(yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, width=100))


def cmd_generate_kustomize(_args):
    base = render({"platform": "generic", "mode": "nri"})
    os.makedirs(os.path.join(KUSTOMIZE, "base"), exist_ok=True)
    crds = [o for o in base if o["kind"] == "CustomResourceDefinition"]
    rest = [o for o in base if o["kind"] != "CustomResourceDefinition"]
    dump(os.path.join(KUSTOMIZE, "base", "crds.yaml"), crds)
    dump(os.path.join(KUSTOMIZE, "base", "plexus.yaml"), rest)
    dump(os.path.join(KUSTOMIZE, "base", "kustomization.yaml"), [{
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["crds.yaml", "plexus.yaml"],
    }])
    by_key = {key(o): o for o in base}
    for platform in PLATFORMS:
        target = render({"platform": platform, "mode": "nri"})
        if {key(o) for o in target} != set(by_key):
            die(f"platform {platform} renders other objects than generic; extend the generator")
        directory = os.path.join(KUSTOMIZE, "overlays", platform)
        os.makedirs(directory, exist_ok=True)
        for name in os.listdir(directory):
            os.remove(os.path.join(directory, name))
        patches = []
        for obj in target:
            ops = json_patch(by_key[key(obj)], obj)
            if ops:
                file = f"{obj['kind'].lower()}-patch.yaml"
                with open(os.path.join(directory, file), "w") as f:
                    f.write(HEADER)
                    f.write(yaml.dump(ops, Dumper=_Dumper, sort_keys=False, width=100))
                patches.append({
                    "path": file,
                    "target": {"kind": obj["kind"], "name": obj["metadata"]["name"]},
                })
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": ["../../base"],
        }
        if patches:
            kustomization["patches"] = patches
        dump(os.path.join(directory, "kustomization.yaml"), [kustomization])
    print(f"wrote {KUSTOMIZE}")


def cmd_example_pods(_args):
    examples = os.path.join(ROOT, "deploy", "examples")
    sources = []
    with open(os.path.join(examples, "app-template", "values.yaml")) as f:
        values = yaml.safe_load(f)
    sources.append(("app-template defaultPodOptions", values["defaultPodOptions"]["annotations"]))
    for name, c in values["controllers"].items():
        sources.append((f"app-template controllers.{name}.pod", c["pod"]["annotations"]))
    with open(os.path.join(examples, "flux", "apps", "home-assistant", "helmrelease.yaml")) as f:
        for doc in yaml.safe_load_all(f):
            if doc and doc["kind"] == "HelmRelease":
                for name, c in doc["spec"]["values"]["controllers"].items():
                    sources.append((f"flux HelmRelease controllers.{name}.pod", c["pod"]["annotations"]))
    pods = [{
        "source": source,
        "pod": {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "home-assistant", "namespace": "home", "annotations": annotations},
            "spec": {"containers": [{"name": "app", "image": "ghcr.io/home-assistant/home-assistant"}]},
        },
    } for source, annotations in sources]
    print(json.dumps(pods))


def cmd_render_matrix(_args):
    print(json.dumps([dict(entry, objects=render(entry["values"])) for entry in matrix()]))


COMMANDS = {
    "render": cmd_render,
    "lint": cmd_lint,
    "validate": cmd_validate,
    "compare-kustomize": cmd_compare_kustomize,
    "generate-kustomize": cmd_generate_kustomize,
    "render-matrix": cmd_render_matrix,
    "example-pods": cmd_example_pods,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        die(f"usage: {sys.argv[0]} {{{'|'.join(COMMANDS)}}} ...")
    COMMANDS[sys.argv[1]](sys.argv[2:])
