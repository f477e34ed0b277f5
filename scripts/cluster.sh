#!/usr/bin/env bash
# A whole test cluster whose pods really run, on this machine only:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd,
# one kubelet registered as a Node, kube-proxy (iptables), CoreDNS as the
# cluster DNS (1.37), and a CNI bridge on a pod network that exists only here. Nothing listens on or routes to the
# machine's outside interface.
#
#   scripts/cluster.sh up DIR [1.37|1.20]   start (default 1.37); writes DIR/kubeconfig, DIR/env
#   scripts/cluster.sh down DIR             stop and undo everything `up` changed
#
# `up` is idempotent: on a DIR whose cluster answers it does nothing; on a
# half-started one it cleans up first. Binaries: scripts/k8s-build.sh (1.20.2,
# Debian's source) or scripts/k8s-build-modern.sh (1.37, the Go module proxy),
# and scripts/coredns-build.sh. Images (pause, app, the proxy stand-in,
# kinject, and a real proxy named by KINJECT_PROXY_IMAGE) are imported from scripts/test-images.sh and
# scripts/image.sh archives; nothing is pulled.
set -euo pipefail

cmd=${1:?usage: cluster.sh up|down DIR [1.37|1.20]}
dir=${2:?usage: cluster.sh up|down DIR [1.37|1.20]}
version=${3:-${KINJECT_K8S:-1.37}}
here=$(cd "$(dirname "$0")" && pwd)
log() { echo "cluster: $*" >&2; }

# The addresses: the API server on the bridge (pods reach it through the
# kubernetes Service), pods in 10.88.0.0/16, Services in 10.96.0.0/16.
bridge=cni0
gw=10.88.0.1
pods_cidr=10.88.0.0/16
svc_cidr=10.96.0.0/16
node=kinject-node
outside=$(ip route show default 2>/dev/null | awk '{for (i=1;i<NF;i++) if ($i=="dev") print $(i+1); exit}')
outside=${outside:-eth0}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

# Rules added on the host, each removed by `down` (-D for -A/-I).
contain_rules=(
  "filter INPUT -i $outside -d $gw -j DROP"
  "filter INPUT -i $bridge -d $gw -p tcp --dport 11250 -j DROP"
  "mangle POSTROUTING -o $outside -s $pods_cidr -j DROP"
  "mangle POSTROUTING -o $outside -d $pods_cidr -j DROP"
  "mangle POSTROUTING -o $outside -s $svc_cidr -j DROP"
  "mangle POSTROUTING -o $outside -d $svc_cidr -j DROP"
  "filter FORWARD -s $pods_cidr -o $outside -j DROP"
  "filter FORWARD -d $pods_cidr -i $outside -j DROP"
)
sysctls=(net.ipv4.ip_forward net.ipv4.conf.all.route_localnet vm.overcommit_memory kernel.panic kernel.panic_on_oops net.bridge.bridge-nf-call-iptables)

# One cluster per machine: the bridge, the address ranges and the iptables
# chains are machine-wide. The lock names the DIR that holds them.
lock=${KINJECT_CLUSTER_LOCK:-/run/kinject-cluster.lock}
other_cluster() {
  local other
  other=$(cat "$lock" 2>/dev/null) || return 1
  [[ -n $other && $other != "$dir" ]] || return 1
  [[ -f $other/kube-apiserver.pid ]] && kill -0 "$(cat "$other/kube-apiserver.pid")" 2>/dev/null
}

stop_pid() {
  local f=$dir/$1.pid
  [[ -f $f ]] || return 0
  local pid
  pid=$(cat "$f")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

# Best effort: every step runs even if an earlier one finds nothing to undo.
down() {
  set +e
  stop_pid kube-proxy
  stop_pid kubelet
  stop_pid coredns
  # Containers first, then containerd, so no shim outlives its pods.
  if [[ -S $dir/containerd/containerd.sock ]]; then
    local c=(ctr --address "$dir/containerd/containerd.sock" -n k8s.io)
    for t in $("${c[@]}" tasks ls -q 2>/dev/null); do "${c[@]}" tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
    sleep 0.5
    for t in $("${c[@]}" tasks ls -q 2>/dev/null); do "${c[@]}" tasks delete -f "$t" >/dev/null 2>&1 || true; done
  fi
  stop_pid containerd
  pkill -f "containerd-shim-runc-v2 -namespace k8s.io -address $dir/containerd/containerd.sock" 2>/dev/null || true
  stop_pid kube-scheduler
  stop_pid kube-controller-manager
  stop_pid kube-apiserver
  stop_pid etcd
  # Network namespaces of pods (CNI ran DEL for stopped sandboxes; these are leftovers).
  for ns in $(ip netns list 2>/dev/null | awk '/^cni-/{print $1}'); do ip netns del "$ns" 2>/dev/null || true; done
  # kube-proxy's and the CNI plugins' chains, then ours.
  if [[ -x $dir/bin/kube-proxy ]]; then "$dir/bin/kube-proxy" --cleanup >/dev/null 2>&1 || true; fi
  for table in nat filter mangle; do
    iptables-save -t "$table" 2>/dev/null | sed -n 's/^:\(\(KUBE\|CNI\)-[^ ]*\) .*/\1/p' | while read -r chain; do
      iptables -t "$table" -S 2>/dev/null | grep -e "-j $chain\b" | sed 's/^-A/-D/' | while read -r rule; do
        eval "iptables -t $table $rule" 2>/dev/null || true
      done
    done
    iptables-save -t "$table" 2>/dev/null | sed -n 's/^:\(\(KUBE\|CNI\)-[^ ]*\) .*/\1/p' | while read -r chain; do
      iptables -t "$table" -F "$chain" 2>/dev/null || true
    done
    iptables-save -t "$table" 2>/dev/null | sed -n 's/^:\(\(KUBE\|CNI\)-[^ ]*\) .*/\1/p' | while read -r chain; do
      iptables -t "$table" -X "$chain" 2>/dev/null || true
    done
  done
  for r in "${contain_rules[@]}"; do
    read -r table chain rest <<<"$r"
    while iptables -t "$table" -D "$chain" $rest 2>/dev/null; do :; done
  done
  # The kubelet's mounts (volumes of pods, its own root) and cgroups.
  # (Anything under DIR: pod volumes, sandbox /dev/shm, the kubelet's root.)
  grep " $dir/" /proc/mounts | awk '{print $2}' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  for cg in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [[ -d $cg ]] || continue
    find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  ip link del "$bridge" 2>/dev/null || true
  if [[ -f $dir/sysctl.orig ]]; then
    while read -r k v; do sysctl -qw "$k=$v" 2>/dev/null || true; done <"$dir/sysctl.orig"
    rm -f "$dir/sysctl.orig"
  fi
  rm -rf "$dir/containerd" "$dir/kubelet" "$dir/etcd"
  [[ $(cat "$lock" 2>/dev/null) == "$dir" ]] && rm -f "$lock"
  set -e
}

if other_cluster; then
  echo "cluster: another test cluster holds this machine's bridge and iptables chains ($(cat "$lock")); stop it first: scripts/cluster.sh down $(cat "$lock")" >&2
  exit 1
fi

case $cmd in
down)
  down
  log "down"
  exit 0
  ;;
up) ;;
*)
  echo "unknown command $cmd (up or down)" >&2
  exit 2
  ;;
esac

case $version in
1.20) ;;
1.37) ;;
*)
  echo "cluster: version $version: use 1.37 or 1.20" >&2
  exit 2
  ;;
esac

if [[ -f $dir/kubeconfig && -f $dir/version && $(cat "$dir/version") == "$version" ]] &&
  KUBECONFIG=$dir/kubeconfig kubectl get --raw /readyz >/dev/null 2>&1 &&
  [[ $(KUBECONFIG=$dir/kubeconfig kubectl get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]; then
  log "already up ($version)"
  echo "$dir"
  exit 0
fi
down 2>/dev/null || true
echo "$dir" >"$lock"
started=$(date +%s.%N)

need=()
for p in containerd runc containernetworking-plugins iptables conntrack ipset umoci busybox-static openssl curl; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if ((${#need[@]})); then
  log "installing ${need[*]}"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
fi

if [[ $version == 1.20 ]]; then
  bin=$("$here/k8s-build.sh")
  etcd_bin=$(command -v etcd)
else
  bin=$("$here/k8s-build-modern.sh")
  etcd_bin=$bin/etcd
fi
images=$("$here/test-images.sh")
mkdir -p "$dir/bin"
for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
  [[ -x $bin/$b ]] || { log "$bin/$b is missing"; exit 1; }
  ln -sfn "$bin/$b" "$dir/bin/$b"
done
echo "$version" >"$dir/version"

trap 'log "failed; cleaning up"; down' ERR

for k in "${sysctls[@]}"; do
  v=$(sysctl -n "$k" 2>/dev/null) && echo "$k $v"
done >"$dir/sysctl.orig"

# The bridge exists before the API server binds to it (CNI's bridge plugin
# adopts it).
ip link add "$bridge" type bridge
ip addr add "$gw/16" dev "$bridge"
ip link set "$bridge" up
for r in "${contain_rules[@]}"; do
  read -r table chain rest <<<"$r"
  iptables -t "$table" -I "$chain" 1 $rest
done

# PKI: a CA; the API server (bridge, Service and loopback addresses); the
# node and kube-proxy as clients; the ServiceAccount signing key.
pki=$dir/pki
mkdir -p "$pki"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$pki/ca.key" -out "$pki/ca.crt" -subj "/CN=kinject-test-ca" -days 2 2>/dev/null
printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >"$pki/client.ext"
# X.509 v3 (an extension file), which rustls requires of every certificate.
client_cert() {
  openssl req -newkey rsa:2048 -nodes -keyout "$pki/$1.key" -out "$pki/$1.csr" -subj "$2" 2>/dev/null
  openssl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -out "$pki/$1.crt" -days 2 -extfile "${3:-$pki/client.ext}" 2>/dev/null
}
printf 'subjectAltName=IP:%s,IP:10.96.0.1,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n' "$gw" >"$pki/apiserver.ext"
client_cert apiserver "/CN=kube-apiserver" "$pki/apiserver.ext"
client_cert node "/O=system:nodes/CN=system:node:$node"
client_cert kube-proxy "/CN=system:kube-proxy"
client_cert admin "/O=system:masters/CN=admin"
openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
etcd_port=$(free_port)
etcd_peer=$(free_port)
api_port=$(free_port)
server=https://$gw:$api_port

kubeconfig() {
  cat >"$dir/$1.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: "$server", certificate-authority: "$pki/ca.crt"}
users:
- name: $1
  user: {client-certificate: "$pki/$1.crt", client-key: "$pki/$1.key"}
contexts:
- name: test
  context: {cluster: test, user: $1}
current-context: test
KC
}
for u in admin node kube-proxy; do kubeconfig "$u"; done
cp "$dir/admin.kubeconfig" "$dir/kubeconfig"

"$etcd_bin" --data-dir "$dir/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
  --initial-cluster "default=http://127.0.0.1:$etcd_peer" >"$dir/etcd.log" 2>&1 &
echo $! >"$dir/etcd.pid"

api_flags=(
  --etcd-servers "http://127.0.0.1:$etcd_port"
  --bind-address "$gw" --advertise-address "$gw" --secure-port "$api_port"
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key"
  --client-ca-file "$pki/ca.crt"
  --authorization-mode Node,RBAC
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key"
  --service-account-issuer https://kubernetes.default.svc
  --service-cluster-ip-range "$svc_cidr"
  --allow-privileged=true
  --kubelet-preferred-address-types InternalIP
  --enable-admission-plugins MutatingAdmissionWebhook,ValidatingAdmissionWebhook
)
"$dir/bin/kube-apiserver" "${api_flags[@]}" >"$dir/kube-apiserver.log" 2>&1 &
echo $! >"$dir/kube-apiserver.pid"
export KUBECONFIG=$dir/kubeconfig
for _ in $(seq 1 240); do
  kubectl get --raw /readyz >/dev/null 2>&1 && break
  sleep 0.25
done
kubectl get --raw /readyz >/dev/null

insecure_off=()
[[ $version == 1.20 ]] && insecure_off=(--port 0)
"$dir/bin/kube-controller-manager" \
  --kubeconfig "$dir/admin.kubeconfig" --leader-elect=false \
  --bind-address 127.0.0.1 --secure-port 0 "${insecure_off[@]}" \
  --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
  --controllers '*' --use-service-account-credentials=false \
  >"$dir/kube-controller-manager.log" 2>&1 &
echo $! >"$dir/kube-controller-manager.pid"
"$dir/bin/kube-scheduler" --kubeconfig "$dir/admin.kubeconfig" --leader-elect=false \
  --bind-address 127.0.0.1 --secure-port 0 "${insecure_off[@]}" \
  >"$dir/kube-scheduler.log" 2>&1 &
echo $! >"$dir/kube-scheduler.pid"

# Cluster DNS (1.37): CoreDNS with its kubernetes plugin, as kubeadm runs it,
# but as a process on the bridge address, which the pods' resolv.conf names.
# It answers cluster.local and reverse lookups only; any other name is
# REFUSED, so no query leaves the machine. (CoreDNS 1.15 reads EndpointSlices
# v1, which a 1.20 API server does not serve: there pods have no cluster DNS.)
cluster_dns=""
if [[ $version != 1.20 ]]; then
  coredns=$("$here/coredns-build.sh")
  dns_ready=127.0.0.1:$(free_port)
  cat >"$dir/Corefile" <<CF
cluster.local:53 in-addr.arpa:53 {
  bind $gw
  errors
  ready $dns_ready
  kubernetes cluster.local in-addr.arpa {
    kubeconfig $dir/admin.kubeconfig test
    pods insecure
  }
}
CF
  "$coredns" -conf "$dir/Corefile" >"$dir/coredns.log" 2>&1 &
  echo $! >"$dir/coredns.pid"
  cluster_dns="clusterDNS: [$gw]"
  # Ready once the kubernetes plugin has synced Services and EndpointSlices.
  for _ in $(seq 1 100); do
    curl -fs "http://$dns_ready/ready" >/dev/null 2>&1 && break
    kill -0 "$(cat "$dir/coredns.pid")" 2>/dev/null || break
    sleep 0.1
  done
  curl -fs "http://$dns_ready/ready" >/dev/null 2>&1 || {
    log "CoreDNS is not ready; its log:"
    tail -20 "$dir/coredns.log" >&2
    false
  }
fi

# containerd: state under DIR; the three changes the machine needs.
mkdir -p "$dir/containerd/net.d"
cat >"$dir/containerd/net.d/10-kinject.conflist" <<CNI
{"cniVersion": "0.4.0", "name": "kinject", "plugins": [
  {"type": "bridge", "bridge": "$bridge", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$pods_cidr", "gateway": "$gw"}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$dir/containerd/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}
]}
CNI
containerd config default |
  sed -e 's|^root = .*|root = "'"$dir"'/containerd/root"|' \
    -e 's|^state = .*|state = "'"$dir"'/containerd/state"|' \
    -e 's|^\(\s*\)address = "/run/containerd/containerd.sock"|\1address = "'"$dir"'/containerd/containerd.sock"|' \
    -e 's|restrict_oom_score_adj = false|restrict_oom_score_adj = true|' \
    -e 's|sandbox_image = .*|sandbox_image = "localhost/pause:kinject"|' \
    -e 's|bin_dir = "/opt/cni/bin"|bin_dir = "/usr/lib/cni"|' \
    -e 's|conf_dir = "/etc/cni/net.d"|conf_dir = "'"$dir"'/containerd/net.d"|' \
    -e 's|^\(\s*\)config_path = ""|\1config_path = "'"$dir"'/containerd/certs.d"|' \
    >"$dir/containerd/config.toml"
# Its metrics and debug sockets would otherwise collide with a system containerd.
sed -i -e '/^\[debug\]/,/^\[/ s|^\(\s*\)address = .*|\1address = "'"$dir"'/containerd/debug.sock"|' "$dir/containerd/config.toml"
# No pull may leave the machine, not even a DNS lookup: every registry a
# test could name resolves to a closed local port (`server` replaces the
# upstream host; it is not a mirror tried first).
for reg in _default docker.io cr.l5d.io ghcr.io registry.k8s.io quay.io gcr.io; do
  mkdir -p "$dir/containerd/certs.d/$reg"
  printf 'server = "http://127.0.0.1:9"\n\n[host."http://127.0.0.1:9"]\n  capabilities = ["pull", "resolve"]\n' >"$dir/containerd/certs.d/$reg/hosts.toml"
done
containerd --config "$dir/containerd/config.toml" >"$dir/containerd.log" 2>&1 &
echo $! >"$dir/containerd.pid"
sock=$dir/containerd/containerd.sock
for _ in $(seq 1 100); do [[ -S $sock ]] && ctr --address "$sock" version >/dev/null 2>&1 && break; sleep 0.1; done
for img in "$images"/pause.oci.tar "$images"/app.oci.tar "$images"/proxy-standin.oci.tar "$images"/kinject-*.oci.tar; do
  [[ -f $img ]] || continue
  name=$(basename "$img" .oci.tar)
  name=${name%%-[0-9]*}
  ctr --address "$sock" -n k8s.io images import --base-name "localhost/$name" "$img" >/dev/null
done
# A real linkerd2-proxy image built on this machine (no registry has one):
# KINJECT_PROXY_IMAGE names it (localhost/NAME:TAG), KINJECT_PROXY_IMAGE_ARCHIVE
# is its OCI archive, whose index tags it TAG.
if [[ -n ${KINJECT_PROXY_IMAGE_ARCHIVE:-} ]]; then
  [[ -f $KINJECT_PROXY_IMAGE_ARCHIVE && ${KINJECT_PROXY_IMAGE:-} == */*:* ]] || {
    log "KINJECT_PROXY_IMAGE_ARCHIVE needs an OCI archive, and KINJECT_PROXY_IMAGE its name (localhost/NAME:TAG)"
    false
  }
  ctr --address "$sock" -n k8s.io images import --base-name "${KINJECT_PROXY_IMAGE%:*}" "$KINJECT_PROXY_IMAGE_ARCHIVE" >/dev/null
  log "imported $KINJECT_PROXY_IMAGE"
fi

# kubelet: anonymous and AlwaysAllow, so it listens on the bridge address
# only, which the outside interface and the pods are kept from (above). The
# API server dials it there (the node's InternalIP; loopback is refused).
mkdir -p "$dir/kubelet"
cat >"$dir/kubelet.yaml" <<KCFG
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $gw
port: 11250
readOnlyPort: 0
healthzPort: 0
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
failSwapOn: false
failCgroupV1: false
clusterDomain: cluster.local
$cluster_dns
resolvConf: /etc/resolv.conf
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%"}
serializeImagePulls: false
KCFG
kubelet_flags=(
  --config "$dir/kubelet.yaml" --kubeconfig "$dir/node.kubeconfig"
  --root-dir "$dir/kubelet" --hostname-override "$node" --node-ip "$gw"
  --container-runtime-endpoint "unix://$sock"
  --oom-score-adj=0
)
if [[ $version == 1.20 ]]; then
  sed -i '/^failCgroupV1/d' "$dir/kubelet.yaml"
  kubelet_flags+=(--container-runtime=remote --pod-infra-container-image localhost/pause:kinject)
fi
"$dir/bin/kubelet" "${kubelet_flags[@]}" >"$dir/kubelet.log" 2>&1 &
echo $! >"$dir/kubelet.pid"

cat >"$dir/kube-proxy.yaml" <<KP
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$dir/kube-proxy.kubeconfig"}
mode: iptables
hostnameOverride: $node
clusterCIDR: $pods_cidr
nodePortAddresses: ["127.0.0.0/8"]
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:$(free_port)
metricsBindAddress: 127.0.0.1:$(free_port)
KP
"$dir/bin/kube-proxy" --config "$dir/kube-proxy.yaml" >"$dir/kube-proxy.log" 2>&1 &
echo $! >"$dir/kube-proxy.pid"

for _ in $(seq 1 240); do
  ready=$(kubectl get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)
  [[ $ready == True ]] && break
  sleep 0.25
done
if [[ $ready != True ]]; then
  log "the node did not become Ready; kubelet log tail:"
  tail -20 "$dir/kubelet.log" >&2
  false
fi
cat >"$dir/env" <<ENV
export KUBECONFIG=$dir/kubeconfig
export KINJECT_K8S_DIR=$dir
export KINJECT_K8S_VERSION=$version
ENV
trap - ERR
log "up: Kubernetes $version, node $node Ready in $(python3 -c "print(round($(date +%s.%N) - $started, 1))") s"
echo "$dir"
