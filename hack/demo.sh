#!/usr/bin/env bash
# `make demo`: the tiny recipe, for real, on the local cluster's real node:
#   1. the tiny world (built once, cached) and the images (cached layers; a code change rebuilds in seconds)
#   2. the cluster (kwok pools + the real node) and the chart: the operator runs in-cluster
#   3. python -m reasoning_operator.demo: namespace, volume, Secret, OpenAI stand-in, examples/tiny.yaml,
#      then the run followed stage by stage and its results printed
# Idempotent: a second run reuses every cache and reports the finished run (delete it to run it again:
#   kubectl -n reasoning-demo delete rr tiny).
LOG_PREFIX=demo
source "$(dirname "$0")/lib.sh"

started=$SECONDS
UV=$(bin_uv)
RUN=("$UV" run --project "$REPO_ROOT" --locked --no-sync)
DEMO_DIR="$CACHE_ROOT/demo"
mkdir -p "$DEMO_DIR"

log "1/3 the tiny world and the images"
"${RUN[@]}" reasoning-pipeline tiny-world --link "$DEMO_DIR/tiny-world" >&2
if [[ -n ${REASONING_DEMO_KUBECONFIG:-} ]]; then # a cluster of your own (make kind-up), images loaded there
  KUBECONFIG_PATH=$REASONING_DEMO_KUBECONFIG
  log "2/3 the operator (helm) on the cluster of $KUBECONFIG_PATH"
else
  "$HACK_DIR/images.sh" all
  log "2/3 the cluster and the operator (helm)"
  "$HACK_DIR/cluster.sh" up >/dev/null
  KUBECONFIG_PATH="$CLUSTER_DIR/kubeconfig"
fi
# the namespace first: the chart's Role for the watched namespace goes there
"$(bin_kubernetes kubectl)" --kubeconfig "$KUBECONFIG_PATH" apply --server-side -f - >/dev/null <<'YAML'
apiVersion: v1
kind: Namespace
metadata:
  name: reasoning-demo
  labels: {pod-security.kubernetes.io/enforce: restricted}
YAML
# Helm installs a chart's CRDs once and never upgrades them: apply the current one first
"$(bin_kubernetes kubectl)" --kubeconfig "$KUBECONFIG_PATH" apply --server-side --force-conflicts \
  -f "$REPO_ROOT/crds/" >/dev/null
# the image's ID as a pod annotation: a rebuilt operator (same tag) rolls out on the next `make demo`
operator_image_id=$(source "$HACK_DIR/engine.sh" && docker_ image inspect -f '{{.Id}}' "ghcr.io/reasoning-operator/operator:$IMAGE_TAG" 2>/dev/null || true)
"$(bin_helm)" upgrade --install reasoning-operator "$REPO_ROOT/charts/reasoning-operator" \
  --kubeconfig "$KUBECONFIG_PATH" --namespace reasoning-system --create-namespace \
  --values "$HACK_DIR/demo-values.yaml" --set-string "podAnnotations.reasoning\.dev/image-id=${operator_image_id#sha256:}" \
  --wait --timeout 5m >/dev/null
log "operator running in-cluster: kubectl -n reasoning-system get deploy reasoning-operator"

log "3/3 the run"
KUBECONFIG="$KUBECONFIG_PATH" "${RUN[@]}" python -m reasoning_operator.demo \
  --storage "$DEMO_DIR/storage" --tiny-world "$(readlink -f "$DEMO_DIR/tiny-world")" "$@"
log "done in $((SECONDS - started)) s; export KUBECONFIG=$KUBECONFIG_PATH to look around"
