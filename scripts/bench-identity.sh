#!/usr/bin/env bash
# `kinject identity` reconciling N meshed workloads from scratch against the
# loopback Kubernetes 1.20 test cluster: N Deployments (0 replicas) and N
# Pods labelled as the injector labels meshed pods. Prints the time from the
# controller's start until N workload Secrets were issued. Never part of CI.
#
#   scripts/bench-identity.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
cargo build --release -q -p kinject
work=$(mktemp -d)
cleanup() {
  kill "${id_pid:-}" 2>/dev/null || true
  scripts/k8s-env.sh stop "$work/k8s" || true
  rm -rf "$work"
}
trap cleanup EXIT
scripts/k8s-env.sh start "$work/k8s" >/dev/null
export KUBECONFIG=$work/k8s/kubeconfig
kubectl create namespace linkerd >/dev/null
kubectl create namespace apps >/dev/null
python3 - "$n" "$work/objects.yaml" <<'PY'
import sys
n, out = int(sys.argv[1]), sys.argv[2]
docs = []
for i in range(n):
    docs.append(f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: d{i}, namespace: apps}}
spec:
  replicas: 0
  selector: {{matchLabels: {{app: d{i}}}}}
  template:
    metadata: {{labels: {{app: d{i}}}}}
    spec: {{containers: [{{name: app, image: nginx}}]}}
---
apiVersion: v1
kind: Pod
metadata:
  name: p{i}
  namespace: apps
  labels: {{linkerd.io/control-plane-ns: linkerd, linkerd.io/proxy-deployment: d{i}}}
spec: {{containers: [{{name: app, image: nginx}}]}}
""")
open(out, "w").write("---\n".join(docs))
PY
until kubectl get serviceaccount default -n apps >/dev/null 2>&1 && kubectl get secret -n apps -o name | grep -q default-token; do sleep 0.5; done
kubectl create -f "$work/objects.yaml" >/dev/null
admin=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start=$(date +%s.%N)
target/release/kinject identity -l linkerd --admin-addr "127.0.0.1:$admin" --log-level warn 2>"$work/identity.log" &
id_pid=$!
while :; do
  issued=$(curl -s "http://127.0.0.1:$admin/metrics" | awk '/^kinject_identity_certificates_issued_total/ {print $2}')
  [[ ${issued:-0} -ge $n ]] && break
  sleep 0.1
done
end=$(date +%s.%N)
echo "$n workloads reconciled from scratch in $(python3 -c "print(round($end - $start, 2))") s (including start-up and cache sync)"
echo "secrets: $(kubectl get secrets -n apps -l kinject.io/workload-identity=true -o name | wc -l)"
