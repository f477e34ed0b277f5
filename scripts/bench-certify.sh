#!/usr/bin/env bash
# `Identity/Certify` under load against the loopback Kubernetes 1.20 test
# cluster (real TokenReviews): single-call p50/p99 and N distinct
# ServiceAccounts certified from scratch. Never part of CI.
#
#   scripts/bench-certify.sh [N]        over TLS, as proxies connect (default)
#   PLAINTEXT=1 scripts/bench-certify.sh [N]
#
# Over TLS the client connects as linkerd2-proxy does (TLS 1.3, no ALPN, the
# injected LINKERD2_PROXY_IDENTITY_SVC_NAME, verified against the trust root)
# to this machine's first non-loopback address when it has one (where the
# kernel does not shortcut like loopback). CONCURRENCY=32 by default.
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
if [[ -n ${PLAINTEXT:-} ]]; then
  host=127.0.0.1
  tls=(--grpc-plaintext)
else
  host=$(ip -4 -o addr show scope global | awk '{split($4, a, "/"); print a[1]; exit}')
  host=${host:-127.0.0.1}
  tls=()
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("'"$host"'",0)); print(s.getsockname()[1])')
./target/release/kinject identity -l linkerd --admin-addr 127.0.0.1:0 \
  --grpc-addr "$host:$port" "${tls[@]}" --log-level warn 2>"$work/identity.log" &
id_pid=$!
until python3 -c "import socket; socket.create_connection(('$host',$port),1)" 2>/dev/null; do sleep 0.2; done
if [[ -z ${PLAINTEXT:-} ]]; then
  kubectl -n linkerd get secret linkerd-identity-issuer -o jsonpath='{.data.ca\.crt}' | base64 -d >"$work/anchors.pem"
  export TRUST_ANCHORS=$work/anchors.pem
  echo "over TLS to $host:$port"
fi
./target/release/examples/certify_load "$host:$port" "$n"
echo "identity RSS: $(awk '/VmRSS/{print $2/1024 " MiB"}' /proc/$id_pid/status)"
