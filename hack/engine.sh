#!/usr/bin/env bash
# The local container engines, from Debian's packages (make setup installs them):
#   dockerd     builds the images (images/*/Dockerfile); its data root is cached, so layers survive
#   containerd  the local node's CRI runtime (runc, CNI bridge); its image store is cached likewise
# Images go from one to the other as `docker save` streams (hack/images.sh).
# Both run as this machine's root with their sockets under /run/reasoning-operator.
#   hack/engine.sh up | down [dockerd|containerd] | status | kill CONTAINER-ID
# shellcheck disable=SC2034 # sourced by images.sh and cluster.sh, which use these names
LOG_PREFIX=${LOG_PREFIX:-engine}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ENGINE_RUN=/run/reasoning-operator
DOCKER_SOCK=$ENGINE_RUN/docker.sock
CONTAINERD_SOCK=$ENGINE_RUN/containerd/containerd.sock
CONTAINERD_ROOT=$CACHE_ROOT/containerd
ENGINE_LOGS=$CACHE_ROOT/engine-logs
CNI_BIN_DIR=/usr/lib/cni
CNI_CONF_DIR=$ENGINE_RUN/cni/net.d
CNI_IPAM_DIR=$ENGINE_RUN/cni/networks
CONTAINERD_STATE=$ENGINE_RUN/containerd/state
# the kubelet's cgroup root: every pod process of the node is below it, and nothing else is
NODE_CGROUP_ROOT=/reasoning-operator
# the node's pod network; its gateway is how pods reach this machine (API server, DNS)
POD_CIDR=10.88.0.0/16
POD_GATEWAY=10.88.0.1
POD_BRIDGE=reasoning0
SERVICE_CIDR=10.96.0.0/16
PAUSE_IMAGE=reasoning-operator/pause:3.10

docker_() { docker -H "unix://$DOCKER_SOCK" "$@"; }
ctr_() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

daemon_alive() { # NAME
  local pid
  pid=$(cat "$ENGINE_RUN/$1.pid" 2>/dev/null) || return 1
  [[ -n $pid && -d /proc/$pid ]] && [[ $(readlink "/proc/$pid/exe") == *"/$1" ]]
}

start_daemon() { # NAME COMMAND...: its own session, log in $ENGINE_LOGS, pid in $ENGINE_RUN
  local name=$1
  shift
  setsid "$@" >>"$ENGINE_LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$ENGINE_RUN/$name.pid"
  disown
}

wait_for_socket() { # NAME SOCKET CHECK-COMMAND...
  local name=$1 i
  shift
  for i in $(seq 1 150); do
    "$@" >/dev/null 2>&1 && return 0
    daemon_alive "$name" || { tail -n 20 "$ENGINE_LOGS/$name.log" >&2; die "$name exited (log: $ENGINE_LOGS/$name.log)"; }
    sleep 0.2
  done
  tail -n 20 "$ENGINE_LOGS/$name.log" >&2
  die "$name did not answer within 30 s (log: $ENGINE_LOGS/$name.log)"
}

check_engine_prerequisites() {
  [[ $(id -u) == 0 ]] || die "the local node's container engines need root (containers, cgroups, a bridge)"
  local c
  for c in dockerd containerd containerd-shim-runc-v2 runc ctr iptables; do
    require_command "$c" "Install Debian's docker.io, containerd, runc and iptables ('make setup' does)."
  done
  [[ -x $CNI_BIN_DIR/bridge ]] || die "CNI plugins missing in $CNI_BIN_DIR: install Debian's containernetworking-plugins ('make setup' does)."
}

write_containerd_config() {
  mkdir -p "$CNI_CONF_DIR"
  cat >"$ENGINE_RUN/containerd.toml" <<TOML
version = 2
root = "$CONTAINERD_ROOT/root"
state = "$CONTAINERD_STATE"
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # the kubelet asks for -998 for sandboxes; this machine's root may not lower its own score (no
  # CAP_SYS_RESOURCE), so keep every container's at or above containerd's
  restrict_oom_score_adj = true
  # pod network namespaces under our own state folder, not /run/netns, so clear_node_state finds them all
  netns_mounts_under_state_dir = true
  # images come from hack/images.sh load; the kubelet never needs to pull one
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$CNI_CONF_DIR"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
TOML
  # a bridge with host-local addresses; hairpin so a pod reaches itself through its own Service
  cat >"$CNI_CONF_DIR/10-reasoning.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "reasoning",
  "plugins": [
    {"type": "bridge", "bridge": "$POD_BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$CNI_IPAM_DIR", "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GATEWAY"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
JSON
}

pod_bridge_up() { # made here, not by the first pod: the API server and DNS listen on its address
  ip link show "$POD_BRIDGE" >/dev/null 2>&1 || ip link add "$POD_BRIDGE" type bridge
  local addresses
  addresses=$(ip -4 -o addr show dev "$POD_BRIDGE")
  [[ $addresses == *" $POD_GATEWAY/"* ]] || ip addr add "$POD_GATEWAY/16" dev "$POD_BRIDGE"
  ip link set "$POD_BRIDGE" up
  sysctl -qw net.ipv4.ip_forward=1
  # Service traffic between pods on one bridge must pass iptables for kube-proxy's NAT
  if [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]]; then sysctl -qw net.bridge.bridge-nf-call-iptables=1; fi
  # dockerd sets the FORWARD policy to DROP; pod traffic (bridged through iptables, above) must pass
  local direction
  for direction in -i -o; do
    iptables -C FORWARD "$direction" "$POD_BRIDGE" -j ACCEPT 2>/dev/null ||
      iptables -I FORWARD 1 "$direction" "$POD_BRIDGE" -j ACCEPT
  done
  # Inserted last, so it comes first: a packet for a Service that kube-proxy has not rewritten yet (the
  # Service is seconds old) would be routed out of the machine, where this network's egress answers any
  # address and the connection hangs; refused here, the client sees "connection refused" and retries.
  iptables -C FORWARD -d "$SERVICE_CIDR" -j REJECT 2>/dev/null || iptables -I FORWARD 1 -d "$SERVICE_CIDR" -j REJECT
}

engine_up() {
  check_engine_prerequisites
  mkdir -p "$ENGINE_RUN" "$ENGINE_LOGS" "$CONTAINERD_ROOT"
  if ! daemon_alive dockerd; then
    log "starting dockerd (data root $CACHE_ROOT/docker)"
    start_daemon dockerd dockerd --data-root "$CACHE_ROOT/docker" --exec-root "$ENGINE_RUN/docker" \
      --pidfile "$ENGINE_RUN/dockerd.self.pid" -H "unix://$DOCKER_SOCK"
  fi
  wait_for_socket dockerd docker_ version
  if ! daemon_alive containerd; then
    log "starting containerd (the node's runtime; images in $CONTAINERD_ROOT)"
    write_containerd_config
    start_daemon containerd containerd --config "$ENGINE_RUN/containerd.toml"
  fi
  wait_for_socket containerd ctr_ version
  pod_bridge_up
  pause_image_present
}

# The sandbox ("pause") image: a static C program that sleeps until signalled, built here (none pulled).
pause_image_present() {
  [[ $(ctr_ images check "name==docker.io/$PAUSE_IMAGE" 2>/dev/null) == *complete* ]] && return 0
  require_command gcc "Install it with 'apt-get install gcc libc6-dev'."
  local dir
  dir=$(mktemp -d)
  cp "$HACK_DIR/node/pause.c" "$HACK_DIR/node/pause.Dockerfile" "$dir/"
  gcc -Os -static -o "$dir/pause" "$dir/pause.c"
  docker_ build --quiet -f "$dir/pause.Dockerfile" -t "$PAUSE_IMAGE" "$dir" >/dev/null
  docker_ save "$PAUSE_IMAGE" | ctr_ images import - >/dev/null
  rm -rf "$dir"
  log "pause image $PAUSE_IMAGE built and loaded"
}

engine_down() { # [DAEMON...]: both by default
  local name pid names=("$@")
  # registry: what engines before the save streams ran beside them, stopped if one still runs
  [[ ${#names[@]} == 0 ]] && names=(containerd registry dockerd)
  for name in "${names[@]}"; do
    daemon_alive "$name" || continue
    pid=$(<"$ENGINE_RUN/$name.pid")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do [[ -d /proc/$pid ]] || break; sleep 0.2; done
    [[ -d /proc/$pid ]] && kill -KILL "$pid" 2>/dev/null
    rm -f "$ENGINE_RUN/$name.pid"
  done
  # containers the node ran outlive containerd in their shims: stop them too
  pkill -TERM -f "containerd-shim-runc-v2 -namespace k8s.io -address $CONTAINERD_SOCK" 2>/dev/null || true
}

unmount_under() { # DIR: every mount below it, deepest first; lazily, so a busy one goes once released
  findmnt -rn -o TARGET | { grep "^$1/" || true; } | sort -r | while read -r target; do umount -l "$target" || true; done
}

# What the node leaves behind when its processes die without cleaning up (a killed session): on this
# machine /run is on disk, so containers, their mounts and network namespaces outlive the daemons.
# Called with containerd stopped.
clear_node_state() {
  local procs
  # a container outlives its shim; the kubelet's cgroup root holds every container process
  for procs in $(find /sys/fs/cgroup -path "*$NODE_CGROUP_ROOT/*" -name cgroup.procs 2>/dev/null); do
    xargs -r kill -KILL <"$procs" 2>/dev/null || true
  done
  unmount_under "$CONTAINERD_STATE"
  rm -rf "$CONTAINERD_STATE" "$CNI_IPAM_DIR"
}

engine_status() {
  local name rc=0
  for name in dockerd containerd; do
    if daemon_alive "$name"; then printf '%-24s running (pid %s)\n' "$name" "$(<"$ENGINE_RUN/$name.pid")"
    else printf '%-24s not running\n' "$name"; rc=1; fi
  done
  return $rc
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  case "${1:-}" in
    up) engine_up ;;
    down) shift; engine_down "$@" ;;
    status) engine_status ;;
    kill) ctr_ tasks kill --signal SIGKILL "$2" ;; # a node container by its CRI id (tests kill stages with it)
    *) die "usage: hack/engine.sh up | down [dockerd|containerd] | status | kill CONTAINER-ID" ;;
  esac
fi
