#!/usr/bin/env bash
# A real, loopback-only Kubernetes control plane for kinject's integration tests:
# etcd, kube-apiserver and kube-controller-manager (no kubelet: pods stay Pending).
#
#   scripts/k8s-env.sh start DIR   start everything, state and logs under DIR;
#                                  writes DIR/kubeconfig and DIR/env (sourceable)
#   scripts/k8s-env.sh stop DIR    stop what `start` started
#
# Binaries come from scripts/k8s-build.sh (built once, cached).
set -euo pipefail

cmd=${1:?usage: k8s-env.sh start|stop DIR}
dir=${2:?usage: k8s-env.sh start|stop DIR}
here=$(cd "$(dirname "$0")" && pwd)

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

stop() {
  for p in kcm apiserver etcd; do
    if [[ -f $dir/$p.pid ]]; then
      kill "$(cat "$dir/$p.pid")" 2>/dev/null || true
      rm -f "$dir/$p.pid"
    fi
  done
}

case $cmd in
stop)
  stop
  exit 0
  ;;
start) ;;
*)
  echo "unknown command $cmd" >&2
  exit 2
  ;;
esac

bin=$("$here/k8s-build.sh")
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
pki=$dir/pki
mkdir -p "$pki"

# Certificates: a CA, the API server's serving cert (127.0.0.1), a service-account key.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$pki/ca.key" -out "$pki/ca.crt" \
  -subj "/CN=kinject-test-ca" -days 2 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" \
  -subj "/CN=kube-apiserver" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n' >"$pki/ext.cnf"
openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
  -CAcreateserial -out "$pki/apiserver.crt" -days 2 -extfile "$pki/ext.cnf" 2>/dev/null
openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null

token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$token,admin,admin,system:masters" >"$pki/tokens.csv"

etcd_port=$(free_port)
etcd_peer=$(free_port)
api_port=$(free_port)

etcd --data-dir "$dir/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
  --initial-cluster "default=http://127.0.0.1:$etcd_peer" \
  >"$dir/etcd.log" 2>&1 &
echo $! >"$dir/etcd.pid"

trap 'stop' ERR

"$bin/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$etcd_port" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" --token-auth-file "$pki/tokens.csv" \
  --authorization-mode RBAC \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --service-account-issuer https://kubernetes.default.svc \
  --service-cluster-ip-range 10.96.0.0/16 \
  --enable-admission-plugins MutatingAdmissionWebhook,ValidatingAdmissionWebhook \
  >"$dir/apiserver.log" 2>&1 &
echo $! >"$dir/apiserver.pid"

cat >"$dir/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $pki/ca.crt
users:
- name: admin
  user:
    token: $token
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
KC

for _ in $(seq 1 120); do
  if KUBECONFIG=$dir/kubeconfig kubectl get --raw /readyz >/dev/null 2>&1; then
    break
  fi
  sleep 0.5
done
KUBECONFIG=$dir/kubeconfig kubectl get --raw /readyz >/dev/null

"$bin/kube-controller-manager" \
  --kubeconfig "$dir/kubeconfig" --leader-elect=false \
  --bind-address 127.0.0.1 --secure-port 0 --port 0 \
  --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
  --controllers '*' --use-service-account-credentials=false \
  >"$dir/kcm.log" 2>&1 &
echo $! >"$dir/kcm.pid"

cat >"$dir/env" <<ENV
export KUBECONFIG=$dir/kubeconfig
export KINJECT_K8S_DIR=$dir
ENV
echo "$dir"
