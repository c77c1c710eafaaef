#!/usr/bin/env bash
# `make setup`: checks what the machine must already have, then builds or installs everything else into
# ~/.cache/reasoning-operator (Go programs from the Go module proxy, uv from PyPI) and syncs the venv.
LOG_PREFIX=setup
source "$(dirname "$0")/lib.sh"

check_prerequisites() {
  require_command go "Install Go >= 1.26 (Debian: 'apt-get install golang-go' if recent enough, else go.dev/dl)."
  local go_minor
  go_minor=$(go env GOVERSION | sed -n 's/^go1\.\([0-9]*\).*/\1/p')
  ((go_minor >= 26)) || die "Go $(go env GOVERSION) is too old: the pinned etcd and kwok need Go >= 1.26."
  require_command "python$PYTHON_VERSION" "Install Python $PYTHON_VERSION (Debian: 'apt-get install python$PYTHON_VERSION python$PYTHON_VERSION-venv', or pyenv)."
  "python$PYTHON_VERSION" -c 'import venv, ensurepip' 2>/dev/null ||
    die "python$PYTHON_VERSION lacks venv/ensurepip: 'apt-get install python$PYTHON_VERSION-venv'."
  require_command git "Install it with 'apt-get install git'."
  require_command openssl "Install it with 'apt-get install openssl'."
  require_command curl "Install it with 'apt-get install curl'."
  require_command ss "Install it with 'apt-get install iproute2'."
  require_command setsid "Install it with 'apt-get install util-linux'."
}

# The local node and the image builds run Debian's container engines; apt installs them once. Without
# root (or with REASONING_LOCAL_NODE=0) the cluster runs its kwok pools only, as before. gcc and g++: C
# sources among the locked packages, and DeepSpeed's CPU ops, which this machine's venv builds just in time.
NODE_PACKAGES=(docker.io containerd runc iptables conntrack containernetworking-plugins debootstrap gcc g++ libc6-dev)
install_node_packages() {
  [[ ${REASONING_LOCAL_NODE:-1} != 0 ]] || return 0
  local missing=() p
  for p in "${NODE_PACKAGES[@]}"; do dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
  [[ ${#missing[@]} == 0 ]] && { log "node packages: installed"; return; }
  [[ $(id -u) == 0 ]] || die "the local node needs Debian packages ${missing[*]} (as root: apt-get install ${missing[*]}), or set REASONING_LOCAL_NODE=0"
  log "node packages: apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
}

install_uv() {
  local dir uv
  dir=$(tool_dir uv "$UV_VERSION")
  uv=$(bin_uv)
  if [[ -x $uv ]] && "$uv" --version >/dev/null 2>&1; then log "uv $UV_VERSION: cached in $dir"; return; fi
  log "uv $UV_VERSION: installing from PyPI into $dir"
  rm -rf "$dir" && "python$PYTHON_VERSION" -m venv "$dir/venv"
  "$dir/venv/bin/pip" install --quiet --disable-pip-version-check "uv==$UV_VERSION"
  mkdir -p "$dir/bin" && ln -sf "$dir/venv/bin/uv" "$uv"
}

export UV_SYSTEM_CERTS=1 # see the Makefile: trust the system CA store, as pip and go do
check_prerequisites
mkdir -p "$CACHE_ROOT"
install_uv
install_node_packages
"$HACK_DIR/build-go-tools.sh"
log "syncing the Python workspace into $REPO_ROOT/.venv"
# --locked: uv.lock is committed and must match the pyproject files, so every machine gets the same set
(cd "$REPO_ROOT" && UV_PYTHON_DOWNLOADS=never "$(bin_uv)" sync --python "python$PYTHON_VERSION" --all-packages --all-extras --locked)
# the model server of CPU pools, for the stage tests and `reasoning-pipeline run` (the vllm image has the same)
"$HACK_DIR/vllm.sh" venv >/dev/null
log "done: tools in $CACHE_ROOT ($(du -sh "$CACHE_ROOT" | cut -f1))"
