#!/usr/bin/env bash
# The images the node tests run, built locally with umoci (nothing is ever
# pulled): `localhost/pause:kinject` (a static C program that waits for a
# signal) and `localhost/app:kinject` (busybox httpd). Archives are cached
# outside the repository. Prints the directory holding them.
#
# `localhost/proxy-standin:kinject` stands in for Linkerd's proxy image, which
# no registry here carries, so that an injected pod's lifecycle and its
# metrics can be tested in CI: its `linkerd2-proxy-init` programs nothing and
# exits 0, and its entrypoint is crates/proxy-standin (the admin endpoints,
# an inbound listener that proxies to the app, and `/metrics` counting those
# requests in the real proxy's format) until SIGTERM. It is named a stand-in
# wherever a test uses it; the real proxy is used instead when
# KINJECT_PROXY_IMAGE names one (crates/cli/tests/nodes.rs).
#
#   KINJECT_IMAGE_DIR  default ~/.cache/kinject/image
set -euo pipefail
cd "$(dirname "$0")/.."

out=${KINJECT_IMAGE_DIR:-$HOME/.cache/kinject/image}
log() { echo "test-images: $*" >&2; }
sudo_() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
# The stand-in's binary is part of the image's identity: a changed stand-in
# rebuilds the images.
cargo build -q -p kinject-proxy-standin >&2
standin=target/debug/proxy-standin
stamp="6 $(sha256sum "$standin" | cut -c1-16)"
if [[ -f $out/pause.oci.tar && -f $out/app.oci.tar && -f $out/proxy-standin.oci.tar && $(cat "$out/test-images.stamp" 2>/dev/null) == "$stamp" ]]; then
  echo "$out"
  exit 0
fi
need=()
for p in umoci busybox-static gcc libc6-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if ((${#need[@]})); then
  log "installing ${need[*]}"
  sudo_ apt-get update -qq >&2
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
fi
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# image NAME ROOTFS-FILLER ENTRYPOINT...
image() {
  local name=$1 fill=$2
  shift 2
  local layout=$work/$name-layout bundle=$work/$name-bundle
  umoci init --layout "$layout" >&2
  umoci new --image "$layout:build" >&2
  umoci unpack --image "$layout:build" "$bundle" >&2
  "$fill" "$bundle/rootfs"
  umoci repack --image "$layout:build" "$bundle" >&2
  local args=()
  for a in "$@"; do args+=(--config.entrypoint "$a"); done
  umoci config --image "$layout:build" --tag kinject "${args[@]}" \
    --history.created_by "scripts/test-images.sh" >&2
  umoci rm --image "$layout:build" >&2
  umoci gc --layout "$layout" >&2
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 \
    -C "$layout" -cf "$out/$name.oci.tar.tmp" oci-layout index.json blobs
  mv "$out/$name.oci.tar.tmp" "$out/$name.oci.tar"
}

pause_rootfs() {
  cat >"$work/pause.c" <<'C'
#include <signal.h>
#include <unistd.h>
static void stop(int sig) { (void)sig; _exit(0); }
int main(void) {
  signal(SIGINT, stop);
  signal(SIGTERM, stop);
  for (;;) pause();
}
C
  gcc -static -O2 -o "$1/pause" "$work/pause.c"
}

app_rootfs() {
  install -D -m 0755 /bin/busybox "$1/bin/busybox"
  for a in sh httpd wget nc cat echo ls sleep id hostname nslookup; do ln -s busybox "$1/bin/$a"; done
  install -d "$1/www" "$1/tmp"
  echo "hello from kinject's test app" >"$1/www/index.html"
  # A slow answer (2 s), for route timeouts: busybox httpd runs CGI scripts.
  install -d "$1/www/cgi-bin"
  printf '#!/bin/sh\nsleep 2\nprintf "Content-Type: text/plain\\r\\n\\r\\nslow\\n"\n' >"$1/www/cgi-bin/slow"
  chmod 0755 "$1/www/cgi-bin/slow"
  # An answer that fails on web-v2's pods only (500) and succeeds elsewhere,
  # for circuit breaking: a whole status line, which httpd passes through.
  cat >"$1/www/cgi-bin/flaky" <<'SH'
#!/bin/sh
case "$(hostname)" in
web-v2-*) printf 'HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\nflaky\n' ;;
*) printf 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nsteady\n' ;;
esac
SH
  chmod 0755 "$1/www/cgi-bin/flaky"
}

# Runs as any user (the injector sets 2102, and 65534 for init) on a
# read-only root filesystem. sh is PID 1 and traps TERM, which a PID 1 with
# no handler would ignore, so the sidecar stops at once when the kubelet asks.
proxy_standin_rootfs() {
  install -D -m 0755 /bin/busybox "$1/bin/busybox"
  for a in sh wget sleep; do ln -s busybox "$1/bin/$a"; done
  install -D -m 0755 "$standin" "$1/usr/lib/linkerd/proxy-standin"
  # Exactly the shared libraries the dynamic loader resolves for it.
  local interp libs f
  interp=$(readelf -l "$standin" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
  libs=$(ldd "$standin" | awk '/=> \//{print $3} /^\t\/[^ ]+ \(/{print $1}')
  for f in $interp $libs; do install -D -m 0755 "$(readlink -f "$f")" "$1$f"; done
  cat >"$1/usr/lib/linkerd/linkerd2-proxy-init" <<'SH'
#!/bin/sh
echo "kinject proxy stand-in: linkerd2-proxy-init programs no iptables rules"
SH
  # The classic sidecar's postStart hook: wait until the admin port is ready.
  cat >"$1/usr/lib/linkerd/linkerd-await" <<'SH'
#!/bin/sh
port=4191
for a in "$@"; do case $a in --port=*) port=${a#--port=} ;; esac; done
i=0
while [ $i -lt 120 ]; do
  wget -q -O /dev/null "http://127.0.0.1:$port/ready" && exit 0
  sleep 1
  i=$((i + 1))
done
exit 1
SH
  chmod 0755 "$1"/usr/lib/linkerd/*
}

image pause pause_rootfs /pause
image app app_rootfs /bin/busybox httpd -f -p 8080 -h /www
image proxy-standin proxy_standin_rootfs /usr/lib/linkerd/proxy-standin
echo "$stamp" >"$out/test-images.stamp"
log "built $(ls "$out"/*.oci.tar | xargs -n1 basename | tr '\n' ' ')"
echo "$out"
