#!/usr/bin/env bash
# The embedded local cluster: a real control plane run as local processes, with kwok node pools.
#   hack/cluster.sh up       start it (idempotent; a stale state directory is cleaned and restarted)
#   hack/cluster.sh down     stop every process it started, by PID, and remove its state
#   hack/cluster.sh status   exit 0 when every component is running and healthy
# State, logs and the admin kubeconfig live in $REASONING_CLUSTER_DIR (default
# ~/.cache/reasoning-operator/cluster). Ports are REASONING_CLUSTER_PORT_BASE (default 16400) + 1..14.
# Besides the kwok pools, a real node (hack/node.sh) runs containers, unless REASONING_LOCAL_NODE=0.
LOG_PREFIX=cluster
source "$(dirname "$0")/lib.sh"
source "$HACK_DIR/node.sh"

PORT_BASE=${REASONING_CLUSTER_PORT_BASE:-16400}
CPU_NODES=${REASONING_CPU_NODES:-3}
H100_NODES=${REASONING_H100_NODES:-2}
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok training-operator)
# Kueue's webhooks need an address the API server can reach that is not loopback: the pod bridge's
if local_node_enabled; then COMPONENTS+=("${NODE_COMPONENTS[@]}" kueue); fi

PKI="$CLUSTER_DIR/pki"
PIDS="$CLUSTER_DIR/pids"
LOGS="$CLUSTER_DIR/logs"
KUBECONFIG_PATH="$CLUSTER_DIR/kubeconfig"

port_of() {
  case $1 in
    etcd) echo $((PORT_BASE + 1)) ;;
    etcd-peer) echo $((PORT_BASE + 2)) ;;
    kube-apiserver) echo $((PORT_BASE + 3)) ;;
    kube-controller-manager) echo $((PORT_BASE + 4)) ;;
    kube-scheduler) echo $((PORT_BASE + 5)) ;;
    kwok) echo $((PORT_BASE + 6)) ;;
    training-operator) echo $((PORT_BASE + 7)) ;;       # health probes
    training-operator-metrics) echo $((PORT_BASE + 8)) ;;
    training-operator-webhook) echo $((PORT_BASE + 9)) ;;
    kubelet) echo $((PORT_BASE + 10)) ;;
    kubelet-healthz) echo $((PORT_BASE + 11)) ;;
    kube-proxy) echo $((PORT_BASE + 12)) ;;                # health
    kube-proxy-metrics) echo $((PORT_BASE + 13)) ;;
    coredns) echo $((PORT_BASE + 14)) ;;                   # health; DNS itself is on the pod gateway's :53
    kueue) echo $((PORT_BASE + 15)) ;;                     # health probes
    kueue-webhook) echo $((PORT_BASE + 16)) ;;             # on the pod gateway
  esac
}
ALL_PORTS=(etcd etcd-peer kube-apiserver kube-controller-manager kube-scheduler kwok
  training-operator training-operator-metrics training-operator-webhook)
if local_node_enabled; then ALL_PORTS+=(kubelet kubelet-healthz kube-proxy kube-proxy-metrics coredns kueue kueue-webhook); fi

kubectl_() { "$(bin_kubernetes kubectl)" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

# ---------------------------------------------------------------------------------------------- checks
check_binaries() {
  local b
  for b in "$(bin_kubernetes kube-apiserver)" "$(bin_kubernetes kube-controller-manager)" \
    "$(bin_kubernetes kube-scheduler)" "$(bin_kubernetes kubectl)" "$(bin_etcd)" "$(bin_kwok)" \
    "$(bin_training_operator)" "$(bin_kueue)"; do
    [[ -x $b ]] || die "$b is missing: run 'make setup' first (it builds the cluster's programs)."
  done
  require_command openssl "Install it with 'apt-get install openssl'."
  require_command curl "Install it with 'apt-get install curl'."
  require_command setsid "Install it with 'apt-get install util-linux'."
  require_command ss "Install it with 'apt-get install iproute2'."
  if local_node_enabled; then check_node_binaries; fi
}

check_ports_free() {
  local name port holder
  for name in "${ALL_PORTS[@]}"; do
    port=$(port_of "$name")
    holder=$(ss -Hltnp "sport = :$port" 2>/dev/null || true)
    [[ -z $holder ]] || die "port $port (for $name) is already in use: ${holder//$'\n'/ }
Stop whatever holds it, or choose other ports with REASONING_CLUSTER_PORT_BASE=<n> (uses n+1..n+16)."
  done
}

# -------------------------------------------------------------------------------------------- processes
pid_alive() { # NAME -> 0 when the recorded PID is alive and still runs our binary
  local file="$PIDS/$1.pid" pid
  [[ -f $file ]] || return 1
  pid=$(<"$file")
  [[ -n $pid && -d /proc/$pid ]] || return 1
  # a recycled PID belongs to some other program: never signal it. (No `tr | grep -q` pipeline: under
  # pipefail, grep quitting early can fail the pipe with SIGPIPE and call a live process dead.)
  local cmdline
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *"$CLUSTER_DIR"* ]] || return 1
}

start_process() { # NAME COMMAND... (every command names a file under $CLUSTER_DIR, which pid_alive checks)
  local name=$1
  shift
  # setsid: its own process group, so `down` can stop it and anything it forked in one signal
  setsid "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  local pid=$! i
  disown "$pid"
  echo "$pid" >"$PIDS/$name.pid"
  # until the forked shell has exec'd, its command line is this script's, which pid_alive would disown.
  # Under heavy I/O (images being built or moved) the fork and two execs have taken over a second.
  for i in $(seq 1 1500); do
    [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == "$1" ]] && break
    [[ -d /proc/$pid ]] || break
    sleep 0.02
  done
}

stop_processes() { # NAME...: SIGTERM to all at once, a short grace, then SIGKILL
  local name pid i pids=()
  for name in "$@"; do
    if pid_alive "$name"; then
      pid=$(<"$PIDS/$name.pid")
      pids+=("$pid")
      # the negative PID signals its whole process group (setsid made it the leader)
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDS/$name.pid"
  done
  # The state is thrown away with the cluster, so a graceful drain (the API server's takes a while)
  # buys nothing: three seconds, then SIGKILL.
  for i in $(seq 1 15); do
    for pid in "${pids[@]}"; do [[ -d /proc/$pid ]] && break; done
    [[ -d /proc/${pid:-0} ]] || break
    sleep 0.2
  done
  for pid in "${pids[@]}"; do
    if [[ -d /proc/$pid ]]; then
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  done
}

wait_until() { # NAME TIMEOUT-SECONDS COMMAND...: poll COMMAND; on timeout show NAME's log and fail
  local name=$1 timeout=$2 deadline
  shift 2
  deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    # only a gone process has exited: pid_alive's command-line check (for signalling) can lag behind a
    # slow fork and exec, and calling a starting process dead here stops the whole cluster
    if [[ ! -d /proc/$(cat "$PIDS/$name.pid" 2>/dev/null || echo 0) ]]; then
      tail -n 30 "$LOGS/$name.log" >&2 || true
      die "$name exited during start-up (log above, all of it in $LOGS/$name.log)"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 30 "$LOGS/$name.log" >&2 || true
      die "$name did not become healthy within ${timeout}s (log above, all of it in $LOGS/$name.log)"
    fi
    sleep 0.3
  done
}

https_ok() { # PORT PATH: an authenticated GET that must answer 200 "ok"
  curl -sf --max-time 2 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$1$2" | grep -qx ok
}
https_insecure_ok() { curl -sfk --max-time 2 "https://127.0.0.1:$1$2" | grep -qx ok; }
http_ok() { curl -sf --max-time 2 "http://127.0.0.1:$1$2" >/dev/null; }
etcd_ok() { curl -sf --max-time 2 --cacert "$PKI/etcd-ca.crt" --cert "$PKI/apiserver-etcd-client.crt" \
  --key "$PKI/apiserver-etcd-client.key" "https://127.0.0.1:$1$2" >/dev/null; }

healthy() { # NAME
  pid_alive "$1" || return 1
  case $1 in
    etcd) etcd_ok "$(port_of etcd)" /health ;;
    kube-apiserver) https_ok "$(port_of kube-apiserver)" /readyz ;;
    kube-controller-manager | kube-scheduler) https_insecure_ok "$(port_of "$1")" /healthz ;;
    kwok) http_ok "$(port_of kwok)" /healthz ;;
    training-operator | kueue) http_ok "$(port_of "$1")" /readyz ;;
    kubelet) http_ok "$(port_of kubelet-healthz)" /healthz ;;
    kube-proxy) http_ok "$(port_of kube-proxy)" /healthz ;;
    coredns) http_ok "$(port_of coredns)" /health ;;
  esac
}

# --------------------------------------------------------------------------------------------------- pki
issue_cert() { # NAME SUBJECT EXTENSIONS [CA]: an ECDSA key and a certificate signed by CA (the cluster's)
  local name=$1 subject=$2 extensions=$3 ca=${4:-ca}
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$name.key" 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subject" -out "$PKI/$name.csr" 2>/dev/null
  printf '%s\n' "$extensions" >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -CAcreateserial \
    -days 365 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

write_kubeconfig() { # FILE CERT-NAME
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: reasoning-local
  cluster:
    server: https://127.0.0.1:$(port_of kube-apiserver)
    certificate-authority: $PKI/ca.crt
users:
- name: $2
  user:
    client-certificate: $PKI/$2.crt
    client-key: $PKI/$2.key
contexts:
- name: reasoning-local
  context: {cluster: reasoning-local, user: $2}
current-context: reasoning-local
EOF
}

make_pki() {
  mkdir -p "$PKI"
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=reasoning-local-ca" -days 365 -sha256 \
    -out "$PKI/ca.crt" 2>/dev/null
  local client="extendedKeyUsage=clientAuth
keyUsage=critical,digitalSignature,keyEncipherment"
  issue_cert apiserver "/CN=kube-apiserver" "extendedKeyUsage=serverAuth
keyUsage=critical,digitalSignature,keyEncipherment
subjectAltName=IP:127.0.0.1,IP:10.96.0.1,IP:$POD_GATEWAY,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  # etcd: TLS with client certificates, like the API server (over plain loopback HTTP any local process
  # could read and write every object, Secrets included), from a CA of its own as kubeadm does, so that
  # only the API server's etcd certificate opens it: not the admin's, not the kubelet's
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/etcd-ca.key" 2>/dev/null
  openssl req -x509 -new -key "$PKI/etcd-ca.key" -subj "/CN=reasoning-local-etcd-ca" -days 365 -sha256 \
    -out "$PKI/etcd-ca.crt" 2>/dev/null
  issue_cert etcd-server "/CN=reasoning-local-etcd" "extendedKeyUsage=serverAuth,clientAuth
keyUsage=critical,digitalSignature,keyEncipherment
subjectAltName=IP:127.0.0.1,DNS:localhost" etcd-ca
  issue_cert apiserver-etcd-client "/CN=kube-apiserver-etcd-client" "$client" etcd-ca
  issue_cert admin "/O=system:masters/CN=reasoning-local-admin" "$client"
  issue_cert controller-manager "/CN=system:kube-controller-manager" "$client"
  issue_cert scheduler "/CN=system:kube-scheduler" "$client"
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/service-accounts.key" 2>/dev/null
  openssl ec -in "$PKI/service-accounts.key" -pubout -out "$PKI/service-accounts.pub" 2>/dev/null
  write_kubeconfig "$KUBECONFIG_PATH" admin
  write_kubeconfig "$PKI/controller-manager.kubeconfig" controller-manager
  write_kubeconfig "$PKI/scheduler.kubeconfig" scheduler
  if local_node_enabled; then make_node_pki; fi
}

# ---------------------------------------------------------------------------------------------- starting
start_etcd() {
  # the one member's certificate serves clients and its peer port alike; both ask for a client certificate
  local tls=(--cert-file "$PKI/etcd-server.crt" --key-file "$PKI/etcd-server.key" --client-cert-auth
    --trusted-ca-file "$PKI/etcd-ca.crt" --peer-cert-file "$PKI/etcd-server.crt" --peer-key-file "$PKI/etcd-server.key"
    --peer-client-cert-auth --peer-trusted-ca-file "$PKI/etcd-ca.crt")
  start_process etcd "$(bin_etcd)" --name reasoning-local --data-dir "$CLUSTER_DIR/etcd" "${tls[@]}" \
    --listen-client-urls "https://127.0.0.1:$(port_of etcd)" \
    --advertise-client-urls "https://127.0.0.1:$(port_of etcd)" \
    --listen-peer-urls "https://127.0.0.1:$(port_of etcd-peer)" \
    --initial-advertise-peer-urls "https://127.0.0.1:$(port_of etcd-peer)" \
    --initial-cluster "reasoning-local=https://127.0.0.1:$(port_of etcd-peer)" \
    --unsafe-no-fsync --quota-backend-bytes 2147483648 --log-level warn
  wait_until etcd 30 healthy etcd
}

start_apiserver() {
  # Without the real node: loopback only, and --endpoint-reconciler-type=none, since the `kubernetes`
  # Service cannot point at a loopback address. With it: pods reach the API server on the pod bridge's
  # gateway, which the `kubernetes` Service then points at.
  # --allow-privileged: privileged pods are refused by Pod Security admission per namespace, as on
  # a real cluster, not by a global switch.
  # --enable-aggregator-routing: webhooks and conversions named by Service are called at the Service's
  # endpoint, as kube-proxy would route them (Kueue's is a local process on the pod gateway).
  local network=(--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --endpoint-reconciler-type none)
  if local_node_enabled; then
    network=(--bind-address 0.0.0.0 --advertise-address "$POD_GATEWAY" --endpoint-reconciler-type lease
      --enable-aggregator-routing=true
      --kubelet-preferred-address-types InternalIP --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt"
      --kubelet-client-key "$PKI/apiserver-kubelet-client.key")
  fi
  start_process kube-apiserver "$(bin_kubernetes kube-apiserver)" \
    --etcd-servers "https://127.0.0.1:$(port_of etcd)" --etcd-cafile "$PKI/etcd-ca.crt" \
    --etcd-certfile "$PKI/apiserver-etcd-client.crt" --etcd-keyfile "$PKI/apiserver-etcd-client.key" \
    --secure-port "$(port_of kube-apiserver)" "${network[@]}" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/service-accounts.pub" \
    --service-account-signing-key-file "$PKI/service-accounts.key" \
    --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction,PodSecurity \
    --allow-privileged=true \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --profiling=false --v 1
  wait_until kube-apiserver 60 healthy kube-apiserver
}

start_controller_manager() {
  local kc="$PKI/controller-manager.kubeconfig"
  start_process kube-controller-manager "$(bin_kubernetes kube-controller-manager)" \
    --kubeconfig "$kc" --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
    --bind-address 127.0.0.1 --secure-port "$(port_of kube-controller-manager)" \
    --leader-elect=false --use-service-account-credentials \
    --service-account-private-key-file "$PKI/service-accounts.key" --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --cluster-name reasoning-local --v 1
  wait_until kube-controller-manager 60 healthy kube-controller-manager
}

start_scheduler() {
  local kc="$PKI/scheduler.kubeconfig"
  start_process kube-scheduler "$(bin_kubernetes kube-scheduler)" \
    --kubeconfig "$kc" --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
    --bind-address 127.0.0.1 --secure-port "$(port_of kube-scheduler)" --leader-elect=false --v 1
  wait_until kube-scheduler 60 healthy kube-scheduler
}

start_kwok() {
  start_process kwok "$(bin_kwok)" --kubeconfig "$KUBECONFIG_PATH" \
    --config "$CLUSTER_DIR/kwok-stages.yaml" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --node-lease-duration-seconds 40 \
    --server-address "127.0.0.1:$(port_of kwok)"
  wait_until kwok 30 healthy kwok
}

start_training_operator() {
  kubectl_ apply -f "$HACK_DIR/cluster/training-operator.yaml" >/dev/null
  # The CRDs come from the same module as the controller, so their schema matches what it reconciles.
  local crds
  crds=$(cd "$CACHE_ROOT" && go mod download -json \
    "github.com/kubeflow/training-operator@$TRAINING_OPERATOR_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [[ -d $crds/manifests/base/crds ]] || die "training operator manifests not found in the Go module cache"
  kubectl_ apply --server-side -f "$crds/manifests/base/crds/kubeflow.org_pytorchjobs.yaml" >/dev/null
  wait_until kube-apiserver 30 condition_true crd/pytorchjobs.kubeflow.org Established
  MY_POD_NAMESPACE=kubeflow KUBECONFIG="$KUBECONFIG_PATH" start_process training-operator \
    "$(bin_training_operator)" --kubeconfig "$KUBECONFIG_PATH" --enable-scheme pytorchjob \
    --metrics-bind-address "127.0.0.1:$(port_of training-operator-metrics)" \
    --health-probe-bind-address "127.0.0.1:$(port_of training-operator)" \
    --webhook-server-port "$(port_of training-operator-webhook)" \
    --zap-log-level info
  wait_until training-operator 60 webhook_certs_mounted kubeflow training-operator-webhook-cert "$TRAINING_OPERATOR_CERT_DIR"
  wait_until training-operator 60 healthy training-operator
}

# In a pod the kubelet mounts a controller's webhook Secret at its cert dir and the controller waits for
# it before it starts; here we play the kubelet and copy the Secret out once its rotator has filled it.
TRAINING_OPERATOR_CERT_DIR=/tmp/k8s-webhook-server/serving-certs
webhook_certs_mounted() { # NAMESPACE SECRET DIR
  local key value
  mkdir -p "$3"
  for key in ca.crt tls.crt tls.key; do
    value=$(kubectl_ -n "$1" get secret "$2" -o "jsonpath={.data.${key//./\\.}}")
    [[ -n $value ]] || return 1
    base64 -d <<<"$value" >"$3/$key.partial"
  done
  for key in ca.crt tls.crt tls.key; do mv "$3/$key.partial" "$3/$key"; done
}

# Kueue from its Go module: its CRDs, webhook configurations and certificate Secret rendered by its own
# chart (same module, so they match what it serves), the process itself as the chart's Deployment would
# run it (hack/cluster/kueue-config.yaml), then the cluster's queues (hack/cluster/kueue-queues.yaml).
kueue_rendered() { # FILE: hack/cluster's FILE with the ${...} this cluster fills in
  sed -e "s|\${KUEUE_HEALTH_PORT}|$(port_of kueue)|g" -e "s|\${KUEUE_WEBHOOK_PORT}|$(port_of kueue-webhook)|g" \
    -e "s|\${KUEUE_WEBHOOK_HOST}|$POD_GATEWAY|g" -e "s|\${KUEUE_CERT_DIR}|$CLUSTER_DIR/kueue-certs|g" \
    "$HACK_DIR/cluster/$1"
}

start_kueue() {
  local module chart
  module=$(cd "$CACHE_ROOT" && go mod download -json "sigs.k8s.io/kueue@$KUEUE_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  chart="$module/charts/kueue"
  [[ -d $chart ]] || die "Kueue's chart not found in the Go module cache"
  kueue_rendered kueue.yaml | kubectl_ apply -f - >/dev/null
  kueue_rendered kueue-config.yaml >"$CLUSTER_DIR/kueue-config.yaml"
  local templates=(--show-only templates/webhook/manifests.yaml --show-only templates/internalcert/secret.yaml)
  local crd
  for crd in "$chart"/templates/crd/*.yaml; do templates+=(--show-only "templates/crd/$(basename "$crd")"); done
  "$(bin_helm)" template kueue "$chart" --namespace kueue-system \
    --set-file managerConfig.controllerManagerConfigYaml="$HACK_DIR/cluster/kueue-config.yaml" "${templates[@]}" |
    kubectl_ apply --server-side -f - >/dev/null
  wait_until kube-apiserver 30 condition_true crd/workloads.kueue.x-k8s.io Established
  KUBECONFIG="$KUBECONFIG_PATH" start_process kueue "$(bin_kueue)" --config "$CLUSTER_DIR/kueue-config.yaml" \
    --zap-log-level info
  wait_until kueue 120 webhook_certs_mounted kueue-system kueue-webhook-server-cert "$CLUSTER_DIR/kueue-certs"
  wait_until kueue 120 healthy kueue
  # the queues go through Kueue's own webhooks: applied, they prove the API server reaches it
  wait_until kueue 60 kubectl_ apply -f "$HACK_DIR/cluster/kueue-queues.yaml"
}

node_manifest() { # NAME POOL CPU MEMORY GPUS
  local gpu_labels="" gpu_capacity="" taints=""
  if [[ $5 != 0 ]]; then
    gpu_labels="
    nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3
    nvidia.com/gpu.count: \"$5\"
    nvidia.com/gpu.memory: \"81559\""
    gpu_capacity="
    nvidia.com/gpu: \"$5\""
    taints="
  taints:
  - {key: nvidia.com/gpu, value: present, effect: NoSchedule}"
  fi
  cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: $1
  annotations:
    kwok.x-k8s.io/node: fake
  labels:
    kubernetes.io/hostname: $1
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
    reasoning.dev/pool: $2$gpu_labels
spec:$taints
  providerID: kwok://$1
status:
  capacity:
    cpu: "$3"
    memory: $4
    ephemeral-storage: 1Ti
    pods: "110"$gpu_capacity
EOF
}

add_nodes() {
  local i
  {
    for ((i = 0; i < CPU_NODES; i++)); do node_manifest "cpu-$i" cpu 32 128Gi 0; done
    # an 8-GPU H100 node as clouds sell it (p5.48xlarge, a3-highgpu-8g): 192 vCPUs, 2 TiB
    for ((i = 0; i < H100_NODES; i++)); do node_manifest "h100-$i" h100 192 2Ti 8; done
  } | kubectl_ apply -f - >/dev/null
  wait_until kwok 60 nodes_ready
}

# `kubectl wait --for condition=…` errors out, rather than waits, while an object has no conditions yet
condition_true() { # KIND/NAME TYPE
  [[ $(kubectl_ get "$1" -o "jsonpath={.status.conditions[?(@.type==\"$2\")].status}") == True ]]
}

nodes_ready() {
  local ready
  ready=$(kubectl_ get nodes -l type=kwok -o 'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}')
  [[ $(grep -cx True <<<"$ready") == $((CPU_NODES + H100_NODES)) ]]
}

# ---------------------------------------------------------------------------------------------- commands
all_healthy() {
  local c
  for c in "${COMPONENTS[@]}"; do healthy "$c" || return 1; done
}

cmd_status() {
  local c state rc=0
  for c in "${COMPONENTS[@]}"; do
    if healthy "$c"; then state="healthy (pid $(<"$PIDS/$c.pid"))"
    elif pid_alive "$c"; then state="running but not healthy"; rc=1
    else state="not running"; rc=1; fi
    printf '%-24s %s\n' "$c" "$state"
  done
  return $rc
}

cmd_down() {
  [[ -d $PIDS ]] && stop_processes "${COMPONENTS[@]}"
  # the node's runtime goes with the cluster; dockerd, the image builder, stays (hack/engine.sh down)
  if local_node_enabled; then stop_node_leftovers; engine_down containerd; clear_node_state; fi
  # the kubelet's mounts (service-account tokens, emptyDirs, its own root) stay when it was killed
  unmount_under "$CLUSTER_DIR"
  rm -rf "$CLUSTER_DIR"
  log "stopped; removed $CLUSTER_DIR"
}

print_usage_hint() {
  cat <<EOF
Cluster is up ($(kubectl_ get nodes --no-headers | wc -l) nodes: $CPU_NODES cpu, $H100_NODES h100 with 8 nvidia.com/gpu each (kwok)$(local_node_enabled && echo ", $NODE_NAME (real, $NODE_POOL_LABEL)")).
  export KUBECONFIG=$KUBECONFIG_PATH
  $(bin_kubernetes kubectl) get nodes
Logs: $LOGS   Stop: make cluster-down
EOF
}

cmd_up() {
  check_binaries
  if all_healthy; then
    log "already running"
    print_usage_hint
    return 0
  fi
  if [[ -d $CLUSTER_DIR ]]; then
    log "found a stale or half-started cluster in $CLUSTER_DIR: stopping what is left and starting afresh"
    cmd_down
  fi
  check_ports_free
  mkdir -p "$PIDS" "$LOGS"
  # stop whatever did start if any later step fails; the logs stay for a look
  trap 'rc=$?; if ((rc != 0)); then log "start-up failed: stopping what was started; logs in $LOGS"; stop_processes "${COMPONENTS[@]}"; fi' EXIT
  local started=$SECONDS
  make_pki
  cp "$HACK_DIR/cluster/kwok-stages.yaml" "$CLUSTER_DIR/kwok-stages.yaml"
  start_etcd
  start_apiserver
  start_controller_manager
  start_scheduler
  start_kwok
  add_nodes
  start_training_operator
  if local_node_enabled; then start_node; start_kueue; fi
  trap - EXIT
  log "started in $((SECONDS - started)) s"
  print_usage_hint
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) die "usage: $0 up|down|status" ;;
esac
