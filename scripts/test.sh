#!/usr/bin/env bash
# The whole test suite: formatting, lints (which also type-check the benches),
# unit, conformance, property, CLI and webhook tests, then the real-cluster
# tests (etcd + kube-apiserver + kube-controller-manager on loopback), then
# the in-cluster tests on clusters whose pods run (containerd, kubelet,
# kube-proxy; Kubernetes 1.37 and 1.20).
# CI (.ci/run) runs exactly this.
# Benchmarks are never run here: timings do not gate CI.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# Linkerd's conformance fixtures live beside the repository (../shared). A
# checkout without them still runs everything else, and says so loudly.
if [[ -z ${KINJECT_CONFORMANCE_DIR:-} ]]; then
  for d in ../shared/conformance ../../shared/conformance /work/shared/conformance; do
    if [[ -d $d ]]; then
      export KINJECT_CONFORMANCE_DIR
      KINJECT_CONFORMANCE_DIR=$(cd "$d" && pwd)
      break
    fi
  done
fi
if [[ -z ${KINJECT_CONFORMANCE_DIR:-} ]]; then
  echo "!!! Linkerd conformance fixtures NOT FOUND: conformance tests will not run !!!" >&2
  export KINJECT_CONFORMANCE_OPTIONAL=1
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test --workspace (unit, conformance, properties, CLI, webhook)"
cargo test --workspace

step "kinject's OCI image: release binary, umoci, contents and size checked (scripts/image.sh)"
scripts/image.sh "${KINJECT_IMAGE_DIR:-$HOME/.cache/kinject/image}" >/dev/null

step "helm v4 from the Go module proxy (built once, cached), then the chart: helm lint, and the same objects as kinject install"
KINJECT_HELM=$(scripts/helm-build.sh)
KINJECT_HELM=$KINJECT_HELM KINJECT_E2E=1 cargo test -p kinject --test chart

step "Kubernetes 1.20 control plane for the real-cluster tests (built once, cached)"
scripts/k8s-build.sh

step "real-cluster tests (1.20): proxy-injector, identity and destination against kube-apiserver + kube-controller-manager"
KINJECT_E2E=1 cargo test -p kinject --test cluster -- --test-threads=1

step "real-cluster tests (1.20): Linkerd's policy resources (kinject install --crds) through destination's policy APIs"
KINJECT_E2E=1 cargo test -p kinject --test policy -- --test-threads=1 --nocapture

step "real-cluster tests (1.20): the operator's PKI through install, cert-manager renewals and a trust-anchor rotation under continuous Certify calls"
KINJECT_E2E=1 cargo test -p kinject --test pki -- --test-threads=1 --nocapture

step "Kubernetes 1.37 and CoreDNS from the Go module proxy, and the test images (built once, cached; the proxy stand-in is crates/proxy-standin)"
scripts/k8s-build-modern.sh
scripts/coredns-build.sh
scripts/test-images.sh
step "Debian's Prometheus, for kinject stat --prometheus-url (installed once)"
KINJECT_PROMETHEUS=$(scripts/prometheus.sh)
export KINJECT_PROMETHEUS

# --nocapture: the tests' timings, and their NOT RUN line for the real proxy,
# belong in CI's log.
for v in 1.37 1.20; do
  step "in-cluster tests on Kubernetes $v: kinject installed as pods, pods scheduled and started (scripts/cluster.sh)"
  KINJECT_NODES=1 KINJECT_K8S=$v cargo test -p kinject --test nodes -- --test-threads=1 --nocapture
done
if [[ -z ${KINJECT_PROXY_IMAGE:-} ]]; then
  echo
  echo "!!! NOT RUN: meshed pods with the real linkerd2-proxy (no registry carries its image;"
  echo "!!! the in-cluster tests used kinject's proxy stand-in). docs/REAL-PROXY.md records a run"
  echo "!!! with a locally built image: KINJECT_PROXY_IMAGE and KINJECT_PROXY_IMAGE_ARCHIVE."
fi

echo
echo "all tests passed"
