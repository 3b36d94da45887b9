"""Checks of rendered Kubernetes manifests and docker-compose.yml (called by scripts/deploy-check.sh).

usage: deploy_check.py KUBE_VERSION COMPOSE_FILE RENDERED.yaml...
"""

from __future__ import annotations

import re
import sys

import yaml
from kubernetes_validate import validate

SECRET_NAMES = re.compile(r"(PASSWORD|TOKEN|SECRET|ROUTING_KEY)$")


def check_manifests(version: str, path: str) -> list[str]:
    problems = []
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    kinds = {d["kind"] for d in docs}
    for d in docs:
        try:
            validate(d, version, strict=True)
        except Exception as exc:
            problems.append(f"{path}: {d['kind']} {d['metadata']['name']}: {str(exc).splitlines()[0]}")
    if not {"Deployment", "Service", "PodDisruptionBudget"} <= kinds:
        problems.append(f"{path}: missing kinds, have {sorted(kinds)}")
    for dep in (d for d in docs if d["kind"] == "Deployment"):
        pod = dep["spec"]["template"]
        ann = pod["metadata"].get("annotations", {})
        if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/path") != "/metrics":
            problems.append(f"{path}: no Prometheus scrape annotations")
        [c] = pod["spec"]["containers"]
        if c["readinessProbe"]["httpGet"]["path"] != "/readyz" or c["livenessProbe"]["httpGet"]["path"] != "/healthz":
            problems.append(f"{path}: probes are not /readyz and /healthz")
        for e in c.get("env", []):
            if SECRET_NAMES.search(e["name"]) and "value" in e:
                problems.append(f"{path}: secret {e['name']} given as a plain value, not by reference")
        names = {e["name"] for e in c.get("env", [])}
        if "DETECTOR_ADVERTISED_URL" not in names:
            problems.append(f"{path}: workers do not advertise their URL")
    return problems


def check_compose(path: str) -> list[str]:
    services = yaml.safe_load(open(path))["services"]
    workers = {n: s for n, s in services.items() if "build" in s or s.get("image", "").startswith("exposure-detector")}
    urls = {s["environment"]["DETECTOR_ADVERTISED_URL"] for s in workers.values()}
    problems = []
    if len(workers) < 2 or len(urls) != len(workers):
        problems.append(f"{path}: want >= 2 workers with distinct advertised URLs, have {sorted(workers)}")
    lb = [n for n, s in services.items() if "6066:6066" in (s.get("ports") or [])]
    if len(lb) != 1 or lb[0] in workers:
        problems.append(f"{path}: want one address (a load balancer) on 6066, have {lb}")
    return problems


def main(argv: list[str]) -> int:
    version, compose, *rendered = argv
    problems = check_compose(compose)
    for path in rendered:
        problems += check_manifests(version, path)
    for p in problems:
        print(f"deploy-check: {p}", file=sys.stderr)
    if not problems:
        print(f"deploy-check: {len(rendered)} renderings valid against Kubernetes {version} (strict), compose ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
