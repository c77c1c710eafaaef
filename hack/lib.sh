# Shared by the hack/ scripts: where things are cached and how to fail clearly.
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HACK_DIR/.." && pwd)"
# shellcheck source=versions.env
source "$HACK_DIR/versions.env"

CACHE_ROOT="${REASONING_CACHE_DIR:-$HOME/.cache/reasoning-operator}"
CLUSTER_DIR="${REASONING_CLUSTER_DIR:-$CACHE_ROOT/cluster}"

log() { printf '\033[1m[%s]\033[0m %s\n' "${LOG_PREFIX:-hack}" "$*" >&2; }
die() { printf '\033[31m[%s] error:\033[0m %s\n' "${LOG_PREFIX:-hack}" "$*" >&2; exit 1; }

# tool_dir NAME VERSION -> the cache folder for one pinned tool build
tool_dir() { printf '%s/%s-%s' "$CACHE_ROOT" "$1" "$2"; }

bin_kubernetes() { printf '%s/bin/%s' "$(tool_dir kubernetes "$KUBERNETES_VERSION")" "$1"; }
bin_kubernetes_node() { printf '%s/bin/%s' "$(tool_dir kubernetes-node "$KUBERNETES_VERSION")" "$1"; }
bin_coredns() { printf '%s/bin/coredns' "$(tool_dir coredns "$COREDNS_VERSION")"; }
bin_etcd() { printf '%s/bin/etcd' "$(tool_dir etcd "$ETCD_VERSION")"; }
bin_kwok() { printf '%s/bin/kwok' "$(tool_dir kwok "$KWOK_VERSION")"; }
bin_helm() { printf '%s/bin/helm' "$(tool_dir helm "$HELM_VERSION")"; }
bin_training_operator() { printf '%s/bin/training-operator' "$(tool_dir training-operator "$TRAINING_OPERATOR_VERSION")"; }
bin_kueue() { printf '%s/bin/kueue' "$(tool_dir kueue "$KUEUE_VERSION")"; }
bin_uv() { printf '%s/bin/uv' "$(tool_dir uv "$UV_VERSION")"; }

require_command() { # NAME HOW-TO-GET
  command -v "$1" >/dev/null 2>&1 || die "'$1' is not installed. $2"
}
# The host's vLLM (hack/vllm.sh venv), keyed by its lock: a re-pin makes a new one.
vllm_venv_dir() { printf '%s/vllm-%s' "$CACHE_ROOT" "$(sha256sum "$REPO_ROOT/images/vllm/requirements.txt" | cut -c1-12)"; }
bin_vllm_python() { printf '%s/bin/python' "$(vllm_venv_dir)"; }
