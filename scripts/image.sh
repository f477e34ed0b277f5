#!/usr/bin/env bash
# Builds kinject's OCI image offline with umoci, from the release binary:
# the binary, exactly the shared libraries it links, CA certificates and a
# passwd entry for uid 65532. No shell, no package manager, no registry.
# Writes an archive that `ctr -n k8s.io images import` loads, then checks it.
#
#   scripts/image.sh [OUT_DIR]      default OUT_DIR: ~/.cache/kinject/image
#
#   KINJECT_BIN      use this binary instead of building target/release/kinject
#   KINJECT_IMAGE    image name inside the archive (default localhost/kinject)
#
# Prints the archive's path. The image is tagged with kinject's version;
# `ctr -n k8s.io images import --base-name localhost/kinject FILE` names it
# localhost/kinject:<version>, which `kinject install --registry localhost`
# refers to.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "image: $*" >&2; }
sudo_() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

need=()
for p in umoci ca-certificates; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if ((${#need[@]})); then
  log "installing ${need[*]}"
  sudo_ apt-get update -qq >&2
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
fi

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
[[ -n $version ]] || { log "cannot read the version from Cargo.toml"; exit 1; }
out=${1:-${KINJECT_IMAGE_DIR:-$HOME/.cache/kinject/image}}
name=${KINJECT_IMAGE:-localhost/kinject}
mkdir -p "$out"

bin=${KINJECT_BIN:-}
if [[ -z $bin ]]; then
  log "building the release binary"
  cargo build --release -q -p kinject >&2
  bin=target/release/kinject
fi
[[ -x $bin ]] || { log "$bin is not an executable"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
layout=$work/layout
bundle=$work/bundle

umoci init --layout "$layout" >&2
umoci new --image "$layout:build" >&2
umoci unpack --image "$layout:build" "$bundle" >&2
root=$bundle/rootfs

# The binary and exactly the libraries the dynamic loader resolves for it.
install -D -m 0755 "$bin" "$root/usr/local/bin/kinject"
interp=$(readelf -l "$bin" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
libs=$(ldd "$bin" | awk '/=> \//{print $3} /^\t\/[^ ]+ \(/{print $1}')
for f in $interp $libs; do
  real=$(readlink -f "$f")
  install -D -m 0755 "$real" "$root$f"
done
# CA certificates (kube-rs and rustls read the system store for nothing here,
# but operators' tools expect them) and the non-root user.
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
install -d -m 0755 "$root/etc"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
install -d -m 0755 -o 65532 -g 65532 "$root/home/nonroot"
install -d -m 1777 "$root/tmp"

umoci repack --image "$layout:build" "$bundle" >&2
umoci config --image "$layout:build" --tag "$version" \
  --config.entrypoint /usr/local/bin/kinject \
  --config.user 65532:65532 \
  --config.workingdir / \
  --config.env PATH=/usr/local/bin \
  --config.label org.opencontainers.image.title=kinject \
  --config.label org.opencontainers.image.version="$version" \
  --config.label org.opencontainers.image.source=https://github.com/kinject/kinject \
  --history.created_by "scripts/image.sh" >&2
umoci rm --image "$layout:build" >&2
umoci gc --layout "$layout" >&2

archive=$out/kinject-$version.oci.tar
# Stable archive bytes for the same inputs: sorted names, fixed owner and time.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 \
  -C "$layout" -cf "$archive.tmp" oci-layout index.json blobs
mv "$archive.tmp" "$archive"

# Check what was built: the layout the image promises, and its size.
list=$work/files
for layer in "$layout"/blobs/sha256/*; do
  if gzip -t "$layer" 2>/dev/null; then
    tar -tzf "$layer" >>"$list" 2>/dev/null || true
  fi
done
fail() { log "CHECK FAILED: $*"; exit 1; }
grep -qx 'usr/local/bin/kinject' "$list" || fail "the binary is missing"
grep -qx 'etc/ssl/certs/ca-certificates.crt' "$list" || fail "CA certificates are missing"
grep -q '^nonroot:x:65532:65532:' "$root/etc/passwd" || fail "no passwd entry for 65532"
for forbidden in bin/sh usr/bin/sh bin/bash usr/bin/apt usr/bin/dpkg bin/busybox; do
  ! grep -qx "$forbidden" "$list" || fail "$forbidden is in the image"
done
# The binary starts with nothing but the image's files (as root: chroot).
if [[ $(id -u) -eq 0 ]]; then
  got=$(chroot --userspec=65532:65532 "$root" /usr/local/bin/kinject --version) || fail "the binary does not start inside the image"
  [[ $got == "kinject $version" ]] || fail "the binary in the image says $got"
fi
size=$(stat -c %s "$archive")
((size <= 30 * 1024 * 1024)) || fail "the archive is $size bytes, over 30 MB"
grep -q "\"org.opencontainers.image.ref.name\":\"$version\"" "$layout/index.json" || fail "not tagged $version"
log "$(basename "$archive"): $((size / 1024)) KiB, $(wc -l <"$list") files, tag $version; load with: ctr -n k8s.io images import --base-name $name $archive"
echo "$archive"
