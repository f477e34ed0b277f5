#!/usr/bin/env bash
# The whole test suite: formatting, lints (which also type-check the benches),
# unit, conformance, property and CLI tests. CI (.ci/run) runs exactly this.
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

step "cargo test --workspace (unit, conformance, properties, CLI)"
cargo test --workspace

echo
echo "all tests passed"
