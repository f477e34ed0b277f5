#!/usr/bin/env bash
# Builds CoreDNS, the cluster DNS of kubeadm clusters, from the Go module proxy
# with only the plugins the test cluster uses (bind, ready, log, errors,
# kubernetes), and caches it outside the repository, keyed by version.
# Prints the binary's path.
#
# A custom CoreDNS is a main package that sets dnsserver.Directives and calls
# coremain.Run; importing plugins one by one keeps the cloud back ends (AWS,
# Azure, GCP) and their hundreds of modules out of the build.
#
#   KINJECT_COREDNS_VERSION  default v1.15.0
#   KINJECT_COREDNS_CACHE    default ~/.cache/kinject/coredns
set -euo pipefail

version=${KINJECT_COREDNS_VERSION:-v1.15.0}
cache=${KINJECT_COREDNS_CACHE:-$HOME/.cache/kinject/coredns}
bin=$cache/$version/coredns
# The plugin list: a change rebuilds.
plugins="bind ready log errors kubernetes"
if [[ -x $bin && $(cat "$cache/$version/PLUGINS" 2>/dev/null) == "$plugins" ]]; then
  echo "$bin"
  exit 0
fi
log() { echo "coredns-build: $*" >&2; }

go=/usr/local/go/bin/go
[[ -x $go ]] || go=$(command -v go)
work=$(mktemp -d)
export GOPATH=$work/gopath GOMODCACHE=$work/gopath/pkg/mod GOCACHE=$work/gocache
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=auto GOPROXY=${GOPROXY:-https://proxy.golang.org}
# The module cache is read-only; make it removable before removing it.
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

mkdir -p "$work/src" "$cache/$version"
cd "$work/src"
cat >go.mod <<MOD
module kinject.local/corednsbuild

go 1.26

require github.com/coredns/coredns $version
MOD
cat >main.go <<'GO'
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

// The order plugins run in, as CoreDNS's plugin.cfg orders them.
func init() {
	dnsserver.Directives = []string{"bind", "ready", "log", "errors", "kubernetes"}
}

func main() { coremain.Run() }
GO
log "building CoreDNS $version with $($go version) (a few minutes, once)"
$go mod tidy >&2
$go build -trimpath -ldflags "-s -w" -o "$bin" . >&2
"$bin" -version >&2
echo "$plugins" >"$cache/$version/PLUGINS"
echo "$bin"
