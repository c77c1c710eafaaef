#!/usr/bin/env bash
# Builds the local cluster's Go programs from the Go module proxy (no release downloads are reachable)
# into ~/.cache/reasoning-operator/<tool>-<version>/bin. A tool whose cached binary answers is skipped.
# Each tool gets a throwaway wrapper module under $CACHE_ROOT/src so versions stay pinned in versions.env.
LOG_PREFIX=build-go-tools
source "$(dirname "$0")/lib.sh"

require_command go "Install Go >= 1.26 (https://go.dev/doc/install, or Debian's golang-go if recent enough)."
# Two cores and 24 GiB: one package compiled at a time per core, stripped binaries.
export GOFLAGS="-p=${GO_BUILD_PARALLELISM:-2} -mod=mod -buildvcs=false"
export CGO_ENABLED=0
# Go's build and module caches (about 10 GB after the cluster's programs) only serve this script's builds:
# kept for its run, gone after it, so the disk is left to the images and the kubelet never sees pressure
GO_SCRATCH="$CACHE_ROOT/src/go-scratch"
export GOCACHE="$GO_SCRATCH/build" GOMODCACHE="$GO_SCRATCH/mod"
trap 'go clean -modcache >/dev/null 2>&1; rm -rf "$GO_SCRATCH"' EXIT

answers() { # BINARY VERSION-FLAG
  local flag=$2
  [[ $(basename "$1") == kubectl ]] && flag="version --client" # kubectl has no --version
  # shellcheck disable=SC2086 # the flag may be two words
  [[ -x "$1" ]] && "$1" $flag >/dev/null 2>&1
}

# build_tool NAME VERSION VERSION-FLAG LDFLAGS BINARY=PACKAGE... ; go.mod replace lines come from $REPLACES
build_tool() {
  local name=$1 version=$2 version_flag=$3 ldflags=$4
  shift 4
  local out src pair missing=0
  out=$(tool_dir "$name" "$version")
  for pair in "$@"; do answers "$out/bin/${pair%%=*}" "$version_flag" || missing=1; done
  if [[ $missing == 0 ]]; then log "$name $version: cached in $out"; return; fi

  log "$name $version: building ${*#*=} (minutes on a cold machine)"
  src="$CACHE_ROOT/src/$name-$version"
  rm -rf "$src" && mkdir -p "$src"
  printf 'module reasoning-operator.local/tools/%s\n\ngo 1.26\n%s\n' "$name" "${REPLACES:-}" > "$src/go.mod"
  rm -rf "$out.partial" && mkdir -p "$out.partial/bin"
  (
    cd "$src"
    # an explicit version on every package: a bare `go get -tool` would upgrade to the newest release
    for pair in "$@"; do go get -tool "${pair#*=}@$version"; done
    for pair in "$@"; do go build -trimpath -ldflags "-s -w $ldflags" -o "$out.partial/bin/${pair%%=*}" "${pair#*=}"; done
  )
  rm -rf "$out" && mv "$out.partial" "$out"
  log "$name $version: built into $out"
}

kubernetes_replaces() { # the staging modules k8s.io/kubernetes replaces with ./staging, pinned to v0.<minor>.<patch>
  local gomod staging_version="v0.${KUBERNETES_VERSION#v1.}"
  gomod=$(cd "$CACHE_ROOT" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [[ -f "$gomod" ]] || die "could not fetch k8s.io/kubernetes@$KUBERNETES_VERSION from the Go module proxy"
  printf 'replace (\n'
  sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$staging_version"'#p' "$gomod"
  printf ')\n'
}

kubernetes_version_ldflags() { # what `--version` prints: a module build has no git state of its own
  local minor=${KUBERNETES_VERSION#v1.} var
  minor=${minor%%.*}
  for var in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    printf ' -X %s.gitVersion=%s -X %s.gitMajor=1 -X %s.gitMinor=%s -X %s.gitTreeState=clean' \
      "$var" "$KUBERNETES_VERSION" "$var" "$var" "$minor" "$var"
  done
}

build_kubernetes() {
  REPLACES="$(kubernetes_replaces)" build_tool kubernetes "$KUBERNETES_VERSION" --version "$(kubernetes_version_ldflags)" \
    kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager \
    kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler kubectl=k8s.io/kubernetes/cmd/kubectl
}

# The real node's programs: a separate tool folder so adding them does not rebuild the control plane.
build_kubernetes_node() {
  REPLACES="$(kubernetes_replaces)" build_tool kubernetes-node "$KUBERNETES_VERSION" --version "$(kubernetes_version_ldflags)" \
    kubelet=k8s.io/kubernetes/cmd/kubelet kube-proxy=k8s.io/kubernetes/cmd/kube-proxy
}

build_coredns() {
  build_tool coredns "$COREDNS_VERSION" -version "" coredns=github.com/coredns/coredns
}

build_etcd() {
  build_tool etcd "$ETCD_VERSION" --version "" etcd=go.etcd.io/etcd/server/v3
}

build_kwok() {
  build_tool kwok "$KWOK_VERSION" --version "-X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}" kwok=sigs.k8s.io/kwok/cmd/kwok
}

build_helm() {
  build_tool helm "$HELM_VERSION" version "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" helm=helm.sh/helm/v3/cmd/helm
}

build_training_operator() {
  # No --version flag: -help exits 0 once the binary links and parses its flags.
  build_tool training-operator "$TRAINING_OPERATOR_VERSION" -help "" \
    training-operator=github.com/kubeflow/training-operator/cmd/training-operator.v1
}

build_kueue() {
  # No --version flag (-help exits 0 once it links); the version it logs at start is stamped in here, as
  # its Makefile does: a module build has no git state of its own.
  build_tool kueue "$KUEUE_VERSION" -help "-X sigs.k8s.io/kueue/pkg/version.GitVersion=$KUEUE_VERSION" \
    kueue=sigs.k8s.io/kueue/cmd/kueue
}

mkdir -p "$CACHE_ROOT"
targets=("$@")
[[ ${#targets[@]} == 0 ]] && targets=(kubernetes kubernetes_node etcd kwok helm training_operator kueue coredns)
for t in "${targets[@]}"; do "build_${t//-/_}"; done
