#!/usr/bin/env bash
# Builds today's Kubernetes (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kube-proxy) and an etcd it supports, from the Go
# module proxy, and caches them outside the repository, keyed by version.
# Prints the directory holding the binaries.
#
# k8s.io/kubernetes is not meant to be imported: its go.mod replaces every
# k8s.io staging module with ./staging/..., which a module download does not
# contain. So a throwaway module requires it and replaces each staging module
# with its published v0.<minor>.<patch> twin.
#
#   KINJECT_K8S_VERSION   default 1.37.2
#   KINJECT_ETCD_VERSION  default 3.6.16
#   KINJECT_K8S_CACHE     default ~/.cache/kinject
set -euo pipefail

version=${KINJECT_K8S_VERSION:-1.37.2}
etcd_version=${KINJECT_ETCD_VERSION:-3.6.16}
root=${KINJECT_K8S_CACHE:-$HOME/.cache/kinject}
bin=$root/k8s-$version/bin
stamp="$version+etcd-$etcd_version"
cmds=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
have_all() {
  for c in "${cmds[@]}" etcd; do [[ -x $bin/$c ]] || return 1; done
  [[ $(cat "$bin/STAMP" 2>/dev/null) == "$stamp" ]]
}
if have_all; then
  echo "$bin"
  exit 0
fi
log() { echo "k8s-build-modern: $*" >&2; }

go=/usr/local/go/bin/go
[[ -x $go ]] || go=$(command -v go)
export GOPATH=$root/go GOMODCACHE=$root/go/pkg/mod GOCACHE=$root/go/cache
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=auto GOPROXY=${GOPROXY:-https://proxy.golang.org}
mkdir -p "$bin"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

log "resolving k8s.io/kubernetes v$version with $($go version)"
modfile=$($go mod download -json "k8s.io/kubernetes@v$version" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
minor_patch=${version#1.}
mkdir -p "$work/k8s"
{
  echo "module kinject.local/k8sbuild"
  echo
  sed -n 's/^go \(.*\)/go \1/p' "$modfile" | head -n1
  echo
  echo "require k8s.io/kubernetes v$version"
  echo
  # Every staging module, pinned to the same release.
  sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$modfile" |
    while read -r m; do echo "replace $m => $m v0.$minor_patch"; done
} >"$work/k8s/go.mod"
cat >"$work/k8s/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
(
  cd "$work/k8s"
  log "resolving dependencies (the first time downloads a few hundred modules)"
  $go mod tidy -e >&2 2>"$work/tidy.log" || { cat "$work/tidy.log" >&2; exit 1; }
  for c in "${cmds[@]}"; do
    log "building $c (the first build takes several minutes per binary on 2 cores)"
    $go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v$version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor_patch%%.*}" \
      -o "$bin/$c" "k8s.io/kubernetes/cmd/$c" >&2
  done
)
mkdir -p "$work/etcd"
(
  cd "$work/etcd"
  cat >go.mod <<MOD
module kinject.local/etcdbuild

go 1.24

require go.etcd.io/etcd/server/v3 v$etcd_version
MOD
  cat >tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  log "building etcd v$etcd_version"
  $go mod tidy -e >&2
  $go build -trimpath -o "$bin/etcd" go.etcd.io/etcd/server/v3 >&2
)
echo "$stamp" >"$bin/STAMP"
# Only the binaries are kept: the module and build caches (about 5 GB) are
# needed for nothing else, and CI's disk is shared by everything it builds.
log "pruning the Go module and build caches"
$go clean -modcache >&2
rm -rf "$root/go"
echo "$bin"
