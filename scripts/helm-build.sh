#!/usr/bin/env bash
# Builds the real `helm` (v4) from the Go module proxy with /usr/local/go and
# caches it outside the repository, keyed by version. Prints the binary's path.
#
#   KINJECT_HELM_VERSION  default v4.3.1
#   KINJECT_HELM_CACHE    default ~/.cache/kinject/helm
set -euo pipefail

version=${KINJECT_HELM_VERSION:-v4.3.1}
cache=${KINJECT_HELM_CACHE:-$HOME/.cache/kinject/helm}
bin=$cache/$version/helm
if [[ -x $bin ]]; then
  echo "$bin"
  exit 0
fi

# Today's Go, not Debian's 1.19 (which builds the 1.20.2 Kubernetes tree).
go=""
for g in /usr/local/go/bin/go "$(command -v go || true)"; do
  if [[ -n $g && -x $g ]] && "$g" version | grep -Eq 'go1\.(2[4-9]|[3-9][0-9])'; then
    go=$g
    break
  fi
done
[[ -n $go ]] || { echo "helm-build: no Go >= 1.24 found (expected /usr/local/go)" >&2; exit 1; }

echo "helm-build: building helm $version with $("$go" version) (a few minutes, once)" >&2
mkdir -p "$cache/$version"
GOBIN="$cache/$version" GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0 \
  GOPATH="$cache/gopath" GOCACHE="$cache/gocache" \
  "$go" install "helm.sh/helm/v4/cmd/helm@$version" >&2
"$bin" version >&2
# Only the binary is kept: its module and build caches are about 2 GB.
GOPATH="$cache/gopath" GOMODCACHE="$cache/gopath/pkg/mod" "$go" clean -modcache >&2
rm -rf "$cache/gopath" "$cache/gocache"
echo "$bin"
