#!/usr/bin/env bash
# `kinject destination` against the loopback Kubernetes 1.20 test cluster:
# its resident memory with PODS meshed pods and SERVICES Services (each with
# an EndpointSlice naming three of the pods), idle and with 1,000 Get streams
# open, and how long it takes to sync. Then the in-process fan-out: one
# endpoint change reaching 1,000 streams. Never part of CI.
#
# With POLICY objects of each kind (Server, MeshTLSAuthentication,
# AuthorizationPolicy, HTTPRoute; kinject's CRDs applied first), the same
# with Linkerd's policy resources, 1,000 WatchPort streams held as well, and
# the in-process policy fan-out.
#
#   scripts/bench-destination.sh [PODS] [SERVICES] [POLICY]   defaults 1000, 300, 0
set -euo pipefail
cd "$(dirname "$0")/.."
pods=${1:-1000}
services=${2:-300}
policy=${3:-0}
cargo build --release -q -p kinject
cargo build --release -q -p kinject-destination --example fanout --example policy_fanout
work=$(mktemp -d)
cleanup() {
  kill "${dst_pid:-}" "${id_pid:-}" 2>/dev/null || true
  scripts/k8s-env.sh stop "$work/k8s" || true
  rm -rf "$work"
}
trap cleanup EXIT
scripts/k8s-env.sh start "$work/k8s" >/dev/null
export KUBECONFIG=$work/k8s/kubeconfig
./target/release/kinject install | kubectl apply -f - >/dev/null 2>&1 || true
./target/release/kinject install | kubectl apply -f - >/dev/null
kubectl create namespace apps >/dev/null
kubectl -n apps create serviceaccount web >/dev/null
if [[ $policy -gt 0 ]]; then
  ./target/release/kinject install --crds | kubectl apply -f - >/dev/null
fi
python3 - "$pods" "$services" "$policy" >"$work/objects.json" <<'PY'
import json, sys
pods, services, policy = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
items = []
for s in range(policy):
    name = f"web-{s}"
    svc = lambda i: f"web-{i % max(services, 1)}"
    items.append({"apiVersion": "policy.linkerd.io/v1beta3", "kind": "Server",
        "metadata": {"name": name, "namespace": "apps"},
        "spec": {"podSelector": {"matchLabels": {"app": name}}, "port": "http", "proxyProtocol": "HTTP/1"}})
    items.append({"apiVersion": "policy.linkerd.io/v1alpha1", "kind": "MeshTLSAuthentication",
        "metadata": {"name": name, "namespace": "apps"},
        "spec": {"identityRefs": [{"kind": "ServiceAccount", "name": "web"}]}})
    items.append({"apiVersion": "policy.linkerd.io/v1alpha1", "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": "apps"},
        "spec": {"targetRef": {"group": "policy.linkerd.io", "kind": "Server", "name": name},
                 "requiredAuthenticationRefs": [{"group": "policy.linkerd.io", "kind": "MeshTLSAuthentication", "name": name}]}})
    items.append({"apiVersion": "policy.linkerd.io/v1beta3", "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "apps"},
        "spec": {"parentRefs": [{"group": "core", "kind": "Service", "name": svc(s), "port": 80}],
                 "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
                            "backendRefs": [{"name": svc(s), "port": 80, "weight": 90},
                                            {"name": svc(s + 1), "port": 80, "weight": 10}],
                            "timeouts": {"request": "2s"}}]}})
for i in range(pods):
    items.append({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"web-{i}", "namespace": "apps",
            "labels": {"linkerd.io/control-plane-ns": "linkerd", "app": f"web-{i % services}"},
            "annotations": {"linkerd.io/proxy-version": "edge-26.8.3",
                            "config.linkerd.io/opaque-ports": "5432"}},
        "spec": {"serviceAccountName": "web", "containers": [{"name": "app", "image": "app",
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}}}]}})
for s in range(services):
    items.append({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": f"web-{s}", "namespace": "apps",
                     "annotations": {"config.linkerd.io/opaque-ports": "5432"}},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    eps = [{"addresses": [f"10.{1 + p // 62500}.{p // 250 % 250}.{p % 250 + 1}"],
            "conditions": {"ready": True},
            "targetRef": {"kind": "Pod", "name": f"web-{p}", "namespace": "apps"}}
           for p in range(s, pods, services)][:3]
    items.append({"apiVersion": "discovery.k8s.io/v1beta1", "kind": "EndpointSlice",
        "metadata": {"name": f"web-{s}-1", "namespace": "apps",
                     "labels": {"kubernetes.io/service-name": f"web-{s}"}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": eps})
print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
PY
started=$(date +%s.%N)
kubectl apply -f "$work/objects.json" >/dev/null
echo "created $pods pods, $services Services and EndpointSlices, $policy each of Servers, MeshTLSAuthentications, AuthorizationPolicies and HTTPRoutes in $(python3 -c "print(round($(date +%s.%N) - $started, 1))") s"
grpc=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
admin=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
started=$(date +%s.%N)
./target/release/kinject destination -l linkerd --values-from-cluster --plaintext \
  --grpc-addr "127.0.0.1:$grpc" --admin-addr "127.0.0.1:$admin" --log-level warn 2>"$work/destination.log" &
dst_pid=$!
until curl -fs "127.0.0.1:$admin/ready" >/dev/null 2>&1; do sleep 0.05; done
echo "synced (ready) $(python3 -c "print(round($(date +%s.%N) - $started, 2))") s after start"
sleep 3
echo "destination RSS, idle: $(awk '/VmRSS/{printf "%.1f MiB", $2/1024}' /proc/$dst_pid/status)"
# identity beside it (the other half of the control plane the proxy talks
# to): it watches the same meshed pods and writes their workload Secrets.
./target/release/kinject identity -l linkerd --admin-addr "127.0.0.1:0" \
  --grpc-addr "127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')" \
  --grpc-plaintext --log-level warn 2>"$work/identity.log" &
id_pid=$!
sleep 15
echo "identity RSS, idle after its first pass: $(awk '/VmRSS/{printf "%.1f MiB", $2/1024}' /proc/$id_pid/status)"
./target/release/examples/fanout --remote "127.0.0.1:$grpc" "$services" 1000 &
load_pid=$!
sleep 8
echo "destination RSS, 1000 Get streams open over $services Services: $(awk '/VmRSS/{printf "%.1f MiB", $2/1024}' /proc/$dst_pid/status)"
if [[ $policy -gt 0 ]]; then
  ./target/release/examples/policy_fanout --remote "127.0.0.1:$grpc" "$pods" 1000 &
  policy_pid=$!
  sleep 8
  echo "destination RSS, and 1000 WatchPort streams: $(awk '/VmRSS/{printf "%.1f MiB", $2/1024}' /proc/$dst_pid/status)"
  kill $policy_pid 2>/dev/null || true
  wait $policy_pid 2>/dev/null || true
fi
kill $load_pid 2>/dev/null || true
wait $load_pid 2>/dev/null || true
echo "peak (VmHWM): $(awk '/VmHWM/{printf "%.1f MiB", $2/1024}' /proc/$dst_pid/status)"
echo "identity + destination now: $(awk '/VmRSS/{s+=$2} END {printf "%.1f MiB", s/1024}' /proc/$id_pid/status /proc/$dst_pid/status)"
if grep -q "WARN\|ERROR" "$work/destination.log"; then
  echo "destination logged:"; cat "$work/destination.log"
fi
echo "--- in-process fan-out ---"
./target/release/examples/fanout 1000 20 | tail -1
if [[ $policy -gt 0 ]]; then
  echo "--- in-process policy fan-out ---"
  ./target/release/examples/policy_fanout 1000 20 | tail -1
fi
