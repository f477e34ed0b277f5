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
hyperfine --warmup 1 --runs 5 \
  "./target/release/kinject inject --trust-anchors examples/trust-anchors.pem $manifest > /dev/null 2>&1"
