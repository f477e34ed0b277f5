#!/usr/bin/env bash
# Debian's Prometheus, for the `kinject stat --prometheus-url` tests (the
# in-cluster tests run it on this machine, scraping the test cluster's pods
# with the configuration `kinject stat --prometheus-config` prints).
# Installed once from the Debian archive; prints the binary's path.
set -euo pipefail
log() { echo "prometheus: $*" >&2; }
sudo_() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
if ! command -v prometheus >/dev/null 2>&1; then
  log "installing Debian's prometheus"
  sudo_ apt-get update -qq >&2
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >&2
  # The package enables a system service; the tests run their own.
  if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    sudo_ systemctl disable --now prometheus >&2 || true
  fi
fi
command -v prometheus
