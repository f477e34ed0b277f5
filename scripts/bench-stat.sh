#!/usr/bin/env bash
# Benchmark of `kinject stat` without Prometheus and of `kinject explain`, as
# an operator runs them: the release CLI against a 1.37 test cluster whose
# pods run (scripts/cluster.sh), PODS meshed pods (the proxy stand-in, which
# serves the real proxy's metrics) under light traffic. Prints a Markdown
# table for docs/BENCHMARKS.md. Never part of CI.
#
#   scripts/bench-stat.sh [PODS]      default 100 (the kubelet's limit is 110)
#
# stat's time is the window (-t 1s) plus its overhead: listing the rows and
# pods, two rounds of scrapes through the API server's pod proxy (32 at a
# time), the arithmetic and the table.
set -euo pipefail
cd "$(dirname "$0")/.."
pods=${1:-100}
rounds=${ROUNDS:-5}
log() { echo "bench-stat: $*" >&2; }

cargo build --release -q -p kinject
images=$(scripts/test-images.sh)
scripts/image.sh "$images" >/dev/null
work=$(mktemp -d)
cleanup() {
  kill "${load_pid:-}" 2>/dev/null || true
  scripts/cluster.sh down "$work/cluster" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
KINJECT_IMAGE_DIR=$images scripts/cluster.sh up "$work/cluster" 1.37 >&2
export KUBECONFIG=$work/cluster/kubeconfig
kinject=target/release/kinject
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
$kinject install --image "localhost/kinject:$version" | kubectl apply -f - >/dev/null
$kinject check >/dev/null
kubectl create namespace bench >/dev/null
kubectl apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: bench}
spec:
  replicas: $pods
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations: {config.linkerd.io/proxy-image: localhost/proxy-standin, config.linkerd.io/proxy-version: kinject}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: localhost/app:kinject
        imagePullPolicy: IfNotPresent
        ports: [{name: http, containerPort: 8080}]
YAML
log "waiting for $pods meshed pods"
started=$(date +%s)
kubectl wait -n bench --for=condition=Available deployment/web --timeout=900s >/dev/null
log "$pods pods Available in $(($(date +%s) - started)) s"
# Light traffic to every pod's stand-in, so there is something to count.
ips=$(kubectl get pods -n bench -o jsonpath='{.items[*].status.podIP}')
(while true; do for ip in $ips; do wget -q -O /dev/null "http://$ip:4143/" 2>/dev/null || true; done; done) &
load_pid=$!

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
time_ms() {
  local s e
  s=$(date +%s%N)
  "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; return 1; }
  e=$(date +%s%N)
  echo $(((e - s) / 1000000))
}
stat_deploy=$(for _ in $(seq "$rounds"); do time_ms $kinject stat deploy -n bench -t 1s -o json; done | median)
stat_pods=$(for _ in $(seq "$rounds"); do time_ms $kinject stat po -n bench -t 1s; done | median)
one=$(kubectl get pods -n bench -o jsonpath='{.items[0].metadata.name}')
explain=$(for _ in $(seq "$rounds"); do time_ms $kinject explain "pod/$one" -n bench; done | median)
rows=$($kinject stat po -n bench -t 1s 2>/dev/null | tail -n +2 | grep -c 'rps' || true)

echo "| what (${pods} meshed pods, 1.37, release CLI, median of $rounds) | wall time | of which the window |"
echo "|---|---|---|"
echo "| \`kinject stat deploy -n bench -t 1s -o json\` (1 row, $pods pods scraped twice) | ${stat_deploy} ms | 1000 ms |"
echo "| \`kinject stat po -n bench -t 1s\` ($pods rows; $rows with traffic) | ${stat_pods} ms | 1000 ms |"
echo "| \`kinject explain pod/NAME -n bench\` | ${explain} ms | - |"
