#!/usr/bin/env bash
# `Identity/Certify` under load against the loopback Kubernetes 1.20 test
# cluster (real TokenReviews): single-call p50/p99 and N distinct
# ServiceAccounts certified from scratch. Never part of CI.
#
#   scripts/bench-certify.sh [N]      CONCURRENCY=32 by default
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
cargo build --release -q -p kinject
cargo build --release -q -p kinject-identity --example certify_load
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
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
./target/release/kinject identity -l linkerd --admin-addr 127.0.0.1:0 \
  --grpc-addr "127.0.0.1:$port" --grpc-plaintext --log-level warn 2>"$work/identity.log" &
id_pid=$!
until python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null; do sleep 0.2; done
./target/release/examples/certify_load "127.0.0.1:$port" "$n"
echo "identity RSS: $(awk '/VmRSS/{print $2/1024 " MiB"}' /proc/$id_pid/status)"
