#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and
# kube-proxy 1.20.2 offline from Debian's
# `kubernetes` source package (its vendor/ tree is complete) and caches them
# outside the repository. Prints the directory holding the binaries.
#
#   KINJECT_K8S_CACHE  cache directory (default ~/.cache/kinject/k8s)
set -euo pipefail

cache=${KINJECT_K8S_CACHE:-$HOME/.cache/kinject/k8s}
bin=$cache/bin
# Bump when the build changes, so stale cached binaries are rebuilt.
stamp="1.20.2+reflect2-1.0.2+nodes"
cmds=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
have_all() {
  for c in "${cmds[@]}"; do [[ -x $bin/$c ]] || return 1; done
  [[ $(cat "$bin/STAMP" 2>/dev/null) == "$stamp" ]]
}
if have_all; then
  echo "$bin"
  exit 0
fi

log() { echo "k8s-build: $*" >&2; }
sudo_() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

need_pkgs=()
for p in etcd-server golang-1.19-go rsync jq make dpkg-dev golang-github-modern-go-reflect2-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
# apt-get source needs a deb-src twin of the Debian entry.
if ! grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  log "adding a deb-src entry for bookworm"
  sudo_ tee /etc/apt/sources.list.d/kinject-deb-src.sources >/dev/null <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  need_update=1
fi
if ((${#need_pkgs[@]})) || [[ -n ${need_update:-} ]]; then
  sudo_ apt-get update -qq >&2
fi
if ((${#need_pkgs[@]})); then
  log "installing ${need_pkgs[*]}"
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >&2
fi

src=$cache/src
mkdir -p "$src" "$bin"
if ! compgen -G "$src/kubernetes-*/Makefile" >/dev/null; then
  log "fetching the kubernetes source package"
  (cd "$src" && apt-get source -qq kubernetes >&2)
fi
tree=$(dirname "$(compgen -G "$src/kubernetes-*/Makefile" | head -n1)")
# The vendored modern-go/reflect2 v1.0.1 crashes under Go >= 1.18 ("fatal
# error: fault" in map iteration) whenever the API server JSON-encodes a
# webhook's patch for its audit annotation. v1.0.2 (Debian's package) fixes it.
rsync -a --delete /usr/share/gocode/src/github.com/modern-go/reflect2/ "$tree/vendor/github.com/modern-go/reflect2/"

gopath=$cache/gopath
mkdir -p "$gopath/src/k8s.io"
ln -sfn "$tree" "$gopath/src/k8s.io/kubernetes"

# The 1.20.2 tree builds with Debian's Go 1.19 only. Machines may put a newer Go
# (e.g. /usr/local/go 1.26) first on PATH, so select 1.19 explicitly.
go119=/usr/lib/go-1.19/bin
if [[ ! -x $go119/go ]]; then
  echo "k8s-build: $go119/go not found; install Debian's golang-1.19-go" >&2
  exit 1
fi

log "building ${cmds[*]} with $("$go119/go" version) (about 20 minutes the first time)"
(
  export PATH=$go119:$PATH GOROOT=/usr/lib/go-1.19 GOTOOLCHAIN=local
  cd "$gopath/src/k8s.io/kubernetes"
  export GOPATH=$gopath GO111MODULE=off GOFLAGS=-mod=vendor CGO_ENABLED=0 GOCACHE=$cache/gocache
  make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler cmd/kubelet cmd/kube-proxy" >&2
)
out=$gopath/src/k8s.io/kubernetes/_output/bin
for c in "${cmds[@]}"; do cp "$out/$c" "$bin/"; done
echo "$stamp" >"$bin/STAMP"
# The binaries are all that is kept: the source tree with its build output and
# the Go build cache are about 5 GB that CI's disk needs for other things. A
# later rebuild (a new stamp) fetches the source again.
log "pruning the source tree and build cache"
rm -rf "$src" "$gopath" "$cache/gocache"
echo "$bin"
