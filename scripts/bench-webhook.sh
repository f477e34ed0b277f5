#!/usr/bin/env bash
# Load benchmark of `kinject proxy-injector` (release build, against the real
# loopback test cluster) and, in the same run, of a null webhook on the same TLS
# stack. wrk drives each over keep-alive HTTPS at concurrency 1, 8 and 64 with
# a typical pod (the same body every time, as a ReplicaSet scale-up sends:
# answer-cache hits), a typical pod made unique per request (cache misses: the
# engine runs every time) and a ~80 KB AdmissionReview. Prints a Markdown table (requests/s,
# p50, p99, peak RSS) for docs/BENCHMARKS.md. Never part of CI.
#
# This shared 2-core VM is noisy (the null webhook alone varies by ±15 %
# between runs), so: both servers are pinned to CPU 0 and wrk to CPU 1 (the
# load generator does not steal the servers' core; one wrk thread), every row is measured in
# ROUNDS (default 3) alternating rounds, and the table gives each server's
# median requests/s (with the kinject/null ratio of the medians), the median
# p50 and p99, and the highest peak RSS of all rounds.
#
#   scripts/bench-webhook.sh [DURATION_SECONDS]
#
# BODIES="typical 100kb" and CONNS="64" narrow a run (default: everything).
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-10}

command -v wrk >/dev/null || { apt-get install -y -qq wrk >/dev/null 2>&1 || sudo apt-get install -y -qq wrk; }
cargo build --release -q -p kinject
cargo build --release -q -p kinject-webhook --example null_webhook

work=$(mktemp -d)
cleanup() {
  kill "${inj_pid:-}" "${null_pid:-}" "${sampler_pid:-}" 2>/dev/null || true
  scripts/k8s-env.sh stop "$work/k8s" || true
  rm -rf "$work"
}
trap cleanup EXIT

scripts/k8s-env.sh start "$work/k8s" >/dev/null
export KUBECONFIG=$work/k8s/kubeconfig
kubectl create namespace apps >/dev/null
# The ReplicaSet the benchmark's pods name as their controller (scaled to 0:
# the pods are only ever sent to the webhooks by wrk).
kubectl apply -f - >/dev/null <<'YAML'
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: nginx-5d9c8b7f6, namespace: apps}
spec:
  replicas: 0
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec: {containers: [{name: nginx, image: nginx}]}
YAML

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/ca.key" \
  -out "$work/ca.crt" -subj /CN=bench-ca -days 1 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/tls.key" \
  -out "$work/tls.csr" -subj /CN=bench 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$work/ext"
openssl x509 -req -in "$work/tls.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial \
  -out "$work/tls.crt" -days 1 -extfile "$work/ext" 2>/dev/null

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
inj_port=$(port); adm_port=$(port); null_port=$(port)

pin_server=() pin_load=()
if [[ $(nproc) -ge 2 ]]; then pin_server=(taskset -c 0) pin_load=(taskset -c 1); fi
"${pin_server[@]}" target/release/kinject proxy-injector --addr "127.0.0.1:$inj_port" --admin-addr "127.0.0.1:$adm_port" \
  --tls-cert "$work/tls.crt" --tls-key "$work/tls.key" --ca-bundle "$work/ca.crt" \
  --webhook-url "https://127.0.0.1:$inj_port/inject" --trust-anchors examples/trust-anchors.pem \
  --log-level warn 2>"$work/injector.log" &
inj_pid=$!
"${pin_server[@]}" target/release/examples/null_webhook "127.0.0.1:$null_port" "$work/tls.crt" "$work/tls.key" &
null_pid=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$adm_port/ready" >/dev/null && break
  sleep 0.2
done

# Request bodies: a typical pod, and one padded to ~100 KB with env vars.
python3 - "$work" "${GZIP:-1}" <<'PY'
import json, sys
work = sys.argv[1]
# The request headers kube-apiserver's webhook client sends (Go's transport
# adds Accept-Encoding: gzip; it decompresses the answer transparently).
# GZIP=0 leaves Accept-Encoding out, as a client with compression disabled.
HEADERS = {"Content-Type": "application/json", "Accept": "application/json, */*",
           "User-Agent": "kube-apiserver-admission"}
if sys.argv[2] != "0":
    HEADERS["Accept-Encoding"] = "gzip"
def review(pod):
    # The API server's layout: compact, kind first, uid first in request.
    return {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
            "request": {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                        "resource": {"group": "", "version": "v1", "resource": "pods"},
                        "namespace": "apps", "operation": "CREATE", "object": pod}}
def with_managed_fields(pod):
    # As the API server sets it on a pod the ReplicaSet controller creates.
    def fields(obj):
        return {f"f:{k}": {} for k in obj}
    containers = {}
    for c in pod["spec"]["containers"]:
        f = fields(c)
        if "env" in c:
            f["f:env"] = {".": {}, **{'k:{"name":"%s"}' % v["name"]: {".": {}, "f:name": {}, "f:value": {}}
                                      for v in c["env"]}}
        containers['k:{"name":"%s"}' % c["name"]] = f
    pod["metadata"]["managedFields"] = [{
        "manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
        "time": "2026-11-25T03:15:10Z", "fieldsType": "FieldsV1",
        "fieldsV1": {"f:metadata": fields(pod["metadata"]),
                     "f:spec": {"f:containers": containers, "f:dnsPolicy": {},
                                "f:restartPolicy": {}, "f:schedulerName": {}}}}]
    return pod
typical = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"generateName": "nginx-5d9c8b7f6-", "namespace": "apps",
                        "labels": {"app": "nginx", "pod-template-hash": "5d9c8b7f6"},
                        "annotations": {"linkerd.io/inject": "enabled"},
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                             "name": "nginx-5d9c8b7f6", "uid": "0a5c",
                                             "controller": True, "blockOwnerDeletion": True}]},
           "spec": {"containers": [{"name": "nginx", "image": "nginx",
                                    "ports": [{"name": "http", "containerPort": 80}],
                                    "readinessProbe": {"httpGet": {"path": "/", "port": 80}}}]}}
big = json.loads(json.dumps(typical))
big["spec"]["containers"] = [
    {"name": f"app-{i}", "image": f"example/app-{i}:1",
     "env": [{"name": f"VAR_{j}", "value": "x" * 40} for j in range(12)],
     "ports": [{"containerPort": 8000 + i}]} for i in range(50)]
with_managed_fields(typical)
with_managed_fields(big)
for name, body in [("typical", review(typical)), ("100kb", review(big))]:
    text = json.dumps(body, separators=(",", ":"))
    open(f"{work}/{name}.json", "w").write(text)
    with open(f"{work}/{name}.lua", "w") as f:
        f.write('wrk.method = "POST"\n')
        for k, v in HEADERS.items():
            f.write(f'wrk.headers["{k}"] = "{v}"\n')
        f.write("wrk.body = [==[" + text + "]==]\n")
    print(f"{name}: {len(text)} bytes", file=sys.stderr)
# Every request a different pod (a unique annotation): no answer-cache hits.
unique = json.loads(json.dumps(typical))
unique["metadata"]["annotations"]["bench/n"] = "__N__"
text = json.dumps(review(unique), separators=(",", ":"))
with open(f"{work}/unique.lua", "w") as f:
    f.write('local id = 0\nlocal n = 0\nlocal counter = 1\n')
    f.write('function setup(thread) thread:set("id", counter); counter = counter + 1 end\n')
    f.write('function init(args) id = wrk.thread:get("id") end\n')
    f.write('local template = [==[' + text + ']==]\n')
    f.write('function request()\n  n = n + 1\n')
    f.write('  local body = template:gsub("__N__", id .. "-" .. n)\n')
    headers = ", ".join(f'["{k}"] = "{v}"' for k, v in HEADERS.items())
    f.write('  return wrk.format("POST", nil, {' + headers + '}, body)\nend\n')
PY

rss() { awk '/VmRSS/ {print int($2/1024)}' "/proc/$1/status"; }
hwm_reset() { echo 5 >"/proc/$1/clear_refs" 2>/dev/null || true; }
hwm() { awk '/VmHWM/ {print int($2/1024)}' "/proc/$1/status"; }

echo
echo "idle RSS: kinject $(rss $inj_pid) MiB, null $(rss $null_pid) MiB"
echo
rounds=${ROUNDS:-3}
median() { sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
# wrk prints latencies with units; normalise to milliseconds.
ms() { awk '{v = $1; if (v ~ /us$/) {sub(/us$/, "", v); v /= 1000} else if (v ~ /ms$/) {sub(/ms$/, "", v)} else if (v ~ /s$/) {sub(/s$/, "", v); v *= 1000}; printf "%.2f\n", v}'; }
echo "| body | conns | null req/s | kinject req/s | kinject/null | p50 null / kinject (ms) | p99 null / kinject (ms) | peak RSS null / kinject (MiB) |"
echo "|---|---|---|---|---|---|---|---|"
for body in ${BODIES:-typical unique 100kb}; do
  for c in ${CONNS:-1 8 64}; do
    # Two wrk threads on one pinned core would measure their own time-slicing
    # in the tail latencies: one thread when pinned.
    t=$((c < 2 || ${#pin_load[@]} > 0 ? 1 : 2))
    declare -A rps=() p50=() p99=() peak=()
    for _ in $(seq 1 "$rounds"); do
      for server in null kinject; do
        if [[ $server == null ]]; then p=$null_port; pid=$null_pid; else p=$inj_port; pid=$inj_pid; fi
        hwm_reset "$pid"
        out=$("${pin_load[@]}" wrk -t"$t" -c"$c" -d"${dur}s" --latency -s "$work/$body.lua" "https://127.0.0.1:$p/inject" 2>&1)
        non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
        [[ -z $non2xx ]] || echo "WARNING: $server $body c=$c had $non2xx non-2xx responses" >&2
        rps[$server]+="$(awk '/Requests\/sec/ {print $2}' <<<"$out") "
        p50[$server]+="$(awk '$1=="50%" {print $2}' <<<"$out" | ms) "
        p99[$server]+="$(awk '$1=="99%" {print $2}' <<<"$out" | ms) "
        h=$(hwm "$pid")
        (( h > ${peak[$server]:-0} )) && peak[$server]=$h
      done
    done
    m() { tr ' ' '\n' <<<"$1" | grep . | median; }
    rn=$(m "${rps[null]}") rk=$(m "${rps[kinject]}")
    ratio=$(awk -v a="$rk" -v b="$rn" 'BEGIN {printf "%d %%", 100 * a / b}')
    printf '| %s | %s | %.0f | %.0f | %s | %s / %s | %s / %s | %s / %s |\n' "$body" "$c" "$rn" "$rk" "$ratio" \
      "$(m "${p50[null]}")" "$(m "${p50[kinject]}")" "$(m "${p99[null]}")" "$(m "${p99[kinject]}")" \
      "${peak[null]}" "${peak[kinject]}"
    unset rps p50 p99 peak
  done
done
echo
echo "RSS right after load: kinject $(rss $inj_pid) MiB"
# Idle: the injector lets its allocator purge once a second.
sleep 3
echo "idle RSS 3 s after load: kinject $(rss $inj_pid) MiB"
