#!/usr/bin/env bash
# `kinject inject` on a 10,000-document manifest (Deployments), timed with
# hyperfine. Never part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || { apt-get install -y -qq hyperfine >/dev/null 2>&1 || sudo apt-get install -y -qq hyperfine; }
cargo build --release -q -p kinject
manifest=$(mktemp --suffix .yaml)
trap 'rm -f "$manifest"' EXIT
python3 - "$manifest" <<'PY'
import sys
docs = []
for i in range(10000):
    docs.append(f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{i}
  namespace: ns-{i % 50}
  labels:
    app: app-{i}
spec:
  replicas: 2
  selector:
    matchLabels:
      app: app-{i}
  template:
    metadata:
      labels:
        app: app-{i}
    spec:
      containers:
      - name: app
        image: example/app:{i}
        ports:
        - containerPort: 8080
          name: http
        env:
        - name: MODE
          value: production
""")
open(sys.argv[1], "w").write("---\n".join(docs))
PY
# With Linkerd's complete chart values.yaml too (from ../shared/conformance or
# $KINJECT_CONFORMANCE_DIR): loading and merging a full values file must not
# show on this run.
values=""
for d in "${KINJECT_CONFORMANCE_DIR:-}" ../shared/conformance /work/shared/conformance; do
  if [[ -n $d && -f $d/linkerd-edge-26.8.3/values.yaml ]]; then
    values=$d/linkerd-edge-26.8.3/values.yaml
    break
  fi
done
cmd="./target/release/kinject inject --trust-anchors examples/trust-anchors.pem"
if [[ -n $values ]]; then
  hyperfine --warmup 1 --runs "${RUNS:-5}" \
    -n defaults "$cmd $manifest > /dev/null 2>&1" \
    -n "full values.yaml" "$cmd --values $values $manifest > /dev/null 2>&1"
  echo "values file alone (no manifest):"
  hyperfine --warmup 3 --runs 30 -N \
    -n "values defaults" "./target/release/kinject values" \
    -n "values values.yaml" "./target/release/kinject values --values $values"
else
  echo "Linkerd's values.yaml not found: timing the defaults only" >&2
  hyperfine --warmup 1 --runs "${RUNS:-5}" "$cmd $manifest > /dev/null 2>&1"
fi
