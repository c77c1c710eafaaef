#!/usr/bin/env bash
# `make kind-up`: the same layout on kind, for users with internet (kind pulls its node image, and the
# Kubeflow training operator comes from its release manifests). The project's images are loaded into the
# node from the Docker that built them. Then REASONING_DEMO_KUBECONFIG=~/.cache/reasoning-operator/kind.kubeconfig
# make demo runs the demo there, and REASONING_TEST_KUBECONFIG=<that file> make integration the suites.
LOG_PREFIX=kind
source "$(dirname "$0")/lib.sh"
source "$HACK_DIR/engine.sh"

KIND_VERSION=${KIND_VERSION:-v0.33.0}
KIND=$(tool_dir kind "$KIND_VERSION")/bin/kind
DEMO_DIR="$CACHE_ROOT/demo"
KIND_KUBECONFIG="$CACHE_ROOT/kind.kubeconfig"

if [[ ! -x $KIND ]]; then
  log "building kind $KIND_VERSION from the Go module proxy"
  GOBIN=$(dirname "$KIND") go install "sigs.k8s.io/kind@$KIND_VERSION"
fi
mkdir -p "$DEMO_DIR"
sed -e "s#DEMO_DIR#$DEMO_DIR#g" -e "s#HACK_DIR#$HACK_DIR#g" "$HACK_DIR/kind.yaml" >"$CACHE_ROOT/kind.yaml"
export DOCKER_HOST=${DOCKER_HOST:-unix://$DOCKER_SOCK}
"$KIND" get clusters 2>/dev/null | grep -qx reasoning ||
  "$KIND" create cluster --config "$CACHE_ROOT/kind.yaml" --kubeconfig "$KIND_KUBECONFIG"
"$HACK_DIR/images.sh" build
for image in operator pipeline trainer; do
  "$KIND" load docker-image --name reasoning "ghcr.io/reasoning-operator/$image:$IMAGE_TAG"
done
"$(bin_kubernetes kubectl)" --kubeconfig "$KIND_KUBECONFIG" apply --server-side \
  -k "github.com/kubeflow/training-operator.git/manifests/overlays/standalone?ref=$TRAINING_OPERATOR_VERSION"
log "kind cluster 'reasoning' is up: export KUBECONFIG=$KIND_KUBECONFIG; REASONING_DEMO_KUBECONFIG=$KIND_KUBECONFIG make demo"
