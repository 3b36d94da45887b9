#!/usr/bin/env bash
# Validate the deployment files that can be validated without Docker or a cluster:
#   - the Helm chart: `helm lint` and `helm template` with the default values and every file in
#     deploy/helm/examples/, then every rendered manifest against the Kubernetes JSON schemas
#     (strict: unknown fields fail) and the chart's own promises (probes, scrape annotations,
#     secrets by reference, a PodDisruptionBudget);
#   - docker-compose.yml: two workers, each advertising its own URL, behind one address.
# Helm is built from its Go module (the Go proxy) into $TOOLS the first time; the schemas come
# with the `kubernetes-validate` package (the `deploy` extra).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"; root="$(cd "$here/.." && pwd)"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
KUBE_VERSION="${KUBE_VERSION:-1.30.0}"
TOOLS="${TOOLS:-$HOME/.cache/exposure-detector/tools}"
PY="${PYTHON:-$root/.venv/bin/python}"
chart="$root/deploy/helm/exposure-detector"

helm="$(command -v helm || true)"
if [ -z "$helm" ]; then
  helm="$TOOLS/helm-$HELM_VERSION"
  if [ ! -x "$helm" ]; then
    command -v go >/dev/null || { echo "deploy-check: needs helm or Go (to build helm $HELM_VERSION)" >&2; exit 1; }
    echo "deploy-check: building helm $HELM_VERSION from its Go module (once)" >&2
    mkdir -p "$TOOLS"
    GOBIN="$TOOLS/gobin" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    mv "$TOOLS/gobin/helm" "$helm"
  fi
fi
"$PY" -c "import kubernetes_validate" 2>/dev/null || "$root/.venv/bin/pip" install -q -e "$root[deploy]"

out="$(mktemp -d)"; trap 'rm -rf "$out"' EXIT
"$helm" lint --strict "$chart" --kube-version "$KUBE_VERSION" >/dev/null
"$helm" template detector "$chart" --kube-version "$KUBE_VERSION" > "$out/default.yaml"
for values in "$root"/deploy/helm/examples/*.yaml; do
  name="$(basename "$values" .yaml)"
  "$helm" lint --strict "$chart" --kube-version "$KUBE_VERSION" -f "$values" >/dev/null
  "$helm" template detector "$chart" --kube-version "$KUBE_VERSION" -f "$values" > "$out/$name.yaml"
done
# A misconfiguration must fail the render, not produce a broken Deployment.
if "$helm" template detector "$chart" --kube-version "$KUBE_VERSION" --set kafka.securityProtocol=SASL_SSL \
     >/dev/null 2>&1; then
  echo "deploy-check: SASL_SSL without credentials rendered" >&2; exit 1
fi
"$PY" "$here/deploy_check.py" "$KUBE_VERSION" "$root/docker-compose.yml" "$out"/*.yaml
