# The local cluster's real node, sourced by hack/cluster.sh: a kubelet and kube-proxy built from the
# same Kubernetes module as the control plane, containerd + runc + CNI bridge from Debian (engine.sh),
# and CoreDNS on the pod bridge's gateway. The node is tainted and labelled `reasoning.dev/pool=local`:
# only pods that ask for it (examples/tiny.yaml, the demo's operator) run real containers; everything
# else keeps landing on the kwok pools. REASONING_LOCAL_NODE=0 leaves it out (no root needed then).
# shellcheck shell=bash disable=SC2034
source "$HACK_DIR/engine.sh"

NODE_NAME=reasoning-node
NODE_POOL_LABEL=reasoning.dev/pool=local
NODE_COMPONENTS=(kubelet kube-proxy coredns)
CLUSTER_DNS=$POD_GATEWAY

local_node_enabled() { [[ ${REASONING_LOCAL_NODE:-1} != 0 ]]; }

check_node_binaries() {
  local b
  for b in "$(bin_kubernetes_node kubelet)" "$(bin_kubernetes_node kube-proxy)" "$(bin_coredns)"; do
    [[ -x $b ]] || die "$b is missing: run 'make setup' first (it builds the node's programs)."
  done
  check_engine_prerequisites
}

make_node_pki() {
  local client="extendedKeyUsage=clientAuth
keyUsage=critical,digitalSignature,keyEncipherment"
  issue_cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" "$client"
  issue_cert kube-proxy "/CN=system:kube-proxy" "$client"
  issue_cert coredns "/CN=system:coredns" "$client"
  issue_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client"
  write_kubeconfig "$PKI/kubelet.kubeconfig" kubelet
  write_kubeconfig "$PKI/kube-proxy.kubeconfig" kube-proxy
  write_kubeconfig "$PKI/coredns.kubeconfig" coredns
}

# The kubelet refuses a cgroup root that does not exist; a new cpuset starts with no CPUs or memory nodes.
make_node_cgroup_root() {
  local hierarchy name
  if [[ -e /sys/fs/cgroup/cgroup.controllers ]]; then mkdir -p "/sys/fs/cgroup$NODE_CGROUP_ROOT"; return 0; fi
  for hierarchy in /sys/fs/cgroup/*/; do
    [[ -e ${hierarchy}cgroup.procs ]] && mkdir -p "${hierarchy%/}$NODE_CGROUP_ROOT"
  done
  for name in cpus mems; do
    local own="/sys/fs/cgroup/cpuset$NODE_CGROUP_ROOT/cpuset.$name"
    [[ -e $own && -z $(<"$own") ]] && cat "/sys/fs/cgroup/cpuset/cpuset.$name" >"$own"
  done
  return 0
}

# Localhost seccomp profiles are files below the kubelet's root; the sandbox container of filter and
# evaluate pods asks for this one (spec.sandbox.seccompProfile's default).
install_seccomp_profiles() {
  local dir=$1/seccomp/reasoning-operator
  mkdir -p "$dir"
  install -m 0644 "$HACK_DIR/seccomp/sandbox.json" "$dir/sandbox.json"
}

start_kubelet() {
  local dir="$CLUSTER_DIR/kubelet"
  mkdir -p "$dir"
  make_node_cgroup_root
  install_seccomp_profiles "$dir"
  cat >"$CLUSTER_DIR/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# these machines boot cgroup v1, which kubelets from 1.35 refuse unless told otherwise
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: $NODE_CGROUP_ROOT
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
address: 0.0.0.0
port: $(port_of kubelet)
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $(port_of kubelet-healthz)
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
clusterDNS: [$CLUSTER_DNS]
failSwapOn: false
# images cannot be pulled again here: never collect them, and leave disk pressure to the operator of the
# machine. Under a disk-pressure threshold the kubelet deletes every image no running pod uses, the pause
# image included (a CI run lost the operator's image that way: 2 % of this disk is 5 GB, and loading the
# images brings the free space near it), so the thresholds are absolute and small: a disk that full fails
# anyway, and says so.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 200Mi, nodefs.available: 256Mi, imagefs.available: 256Mi}
serializeImagePulls: false
YAML
  start_process kubelet "$(bin_kubernetes_node kubelet)" --config "$CLUSTER_DIR/kubelet.yaml" \
    --kubeconfig "$PKI/kubelet.kubeconfig" --root-dir "$dir" --cert-dir "$dir/pki" \
    --hostname-override "$NODE_NAME" --node-ip "$POD_GATEWAY" --node-labels "$NODE_POOL_LABEL,reasoning.dev/real-node=true" \
    --register-with-taints "$NODE_POOL_LABEL:NoSchedule" --v 1
  wait_until kubelet 90 healthy kubelet
}

start_kube_proxy() {
  cat >"$CLUSTER_DIR/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $PKI/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:$(port_of kube-proxy)
metricsBindAddress: 127.0.0.1:$(port_of kube-proxy-metrics)
# keep the machine's conntrack settings as they are
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML
  start_process kube-proxy "$(bin_kubernetes_node kube-proxy)" --config "$CLUSTER_DIR/kube-proxy.yaml" --v 1
  wait_until kube-proxy 60 healthy kube-proxy
}

start_coredns() {
  kubectl_ apply -f "$HACK_DIR/cluster/coredns-rbac.yaml" >/dev/null
  cat >"$CLUSTER_DIR/Corefile" <<COREFILE
.:53 {
    bind $CLUSTER_DNS
    errors
    health 127.0.0.1:$(port_of coredns)
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $PKI/coredns.kubeconfig reasoning-local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    forward . /etc/resolv.conf
    cache 30
}
COREFILE
  start_process coredns "$(bin_coredns)" -conf "$CLUSTER_DIR/Corefile"
  wait_until coredns 60 healthy coredns
}

node_ready() {
  [[ $(kubectl_ get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}') == True ]]
}

start_node() {
  engine_up
  start_kubelet
  start_kube_proxy
  start_coredns
  wait_until kubelet 120 node_ready
}

# After the kubelet is gone its containers still run in containerd: kill them while containerd can.
stop_node_leftovers() {
  daemon_alive containerd || return 0
  local task
  for task in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s KILL "$task" >/dev/null 2>&1 || true; done
  for task in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$task" >/dev/null 2>&1 || true; done
}
