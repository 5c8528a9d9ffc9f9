#!/usr/bin/env bash
# make demo: the main job end to end on a local control plane with the SendGrid emulator.
#
# Starts (in .demo/): a local Kubernetes control plane with its node agent, the SendGrid
# emulator on 127.0.0.1:8025, a file server for the demo's data on 127.0.0.1:8026, and the
# operator installed with helm. Then applies the examples, runs two exports on demand and
# shows their live progress, final status, events and metrics. Everything keeps running
# afterwards so you can explore; `make demo-down` stops it all.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEMO=$ROOT/.demo
PY=$ROOT/.venv/bin/python
SGOP=$ROOT/.venv/bin/sendgrid-operator
EMULATOR_PORT=8025
DATA_PORT=8026
OPERATOR_PORT=18080
KEY=SG.example-api-key
PROFILES=${DEMO_PROFILES:-100000}

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
port_free() { ! (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }
wait_http() { # url seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "timed out waiting for $1" >&2; return 1
}

if [ -f "$DEMO/cluster/pid" ] && kill -0 "$(cat "$DEMO/cluster/pid")" 2>/dev/null; then
  echo "A demo is already running (make demo-down stops it)." >&2
  exit 1
fi
for p in $EMULATOR_PORT $DATA_PORT $OPERATOR_PORT; do
  port_free "$p" || { echo "port $p is in use; stop what uses it (or make demo-down)" >&2; exit 1; }
done
rm -rf "$DEMO" && mkdir -p "$DEMO/data" "$DEMO/logs"

say "Local control plane (kube-apiserver, kube-controller-manager, etcd, node agent)"
"$PY" -m sendgrid_operator.devcluster up --dir "$DEMO/cluster" --background
# shellcheck disable=SC1091
source "$DEMO/cluster/env"
export PATH="$(dirname "$SGOP_KUBECTL"):$PATH"
kubectl version 2>/dev/null | sed 's/^/  /'

say "SendGrid emulator on 127.0.0.1:$EMULATOR_PORT (state in .demo/emulator.sqlite)"
nohup "$SGOP" emulator --port $EMULATOR_PORT --api-key "$KEY" --state "$DEMO/emulator.sqlite" \
  --apply-delay 0.5 >"$DEMO/logs/emulator.log" 2>&1 &
echo $! >"$DEMO/emulator.pid"
wait_http "http://127.0.0.1:$EMULATOR_PORT/_emulator/summary" 20
for pair in newsletter:3f1e9a52-7c4b-4d2e-9a61-0b8f5c7d2e14 vip-customers:5b7c9d1e-2f4a-4b6c-8d0e-1a2b3c4d5e6f \
  spring-campaign:c4e6a8b0-3d5f-4e7a-9b1c-2d3e4f5a6b7c customers:0d9c7e1a-6b2f-4c3d-9e8f-7a6b5c4d3e2f; do
  curl -fsS -o /dev/null -X POST "http://127.0.0.1:$EMULATOR_PORT/_emulator/lists" \
    -H 'Content-Type: application/json' -d "{\"name\": \"${pair%%:*}\", \"id\": \"${pair#*:}\"}"
done
echo "  lists created: newsletter, vip-customers, spring-campaign, customers"

say "Demo data: $PROFILES customer profiles as Parquet, served on 127.0.0.1:$DATA_PORT"
"$PY" hack/demo/make_data.py "$DEMO/data/customers.parquet" "$PROFILES"
nohup "$PY" -m http.server $DATA_PORT --bind 127.0.0.1 --directory "$DEMO/data" >"$DEMO/logs/data.log" 2>&1 &
echo $! >"$DEMO/data.pid"
wait_http "http://127.0.0.1:$DATA_PORT/customers.parquet" 20

say "helm install sendgrid-operator (CRDs, RBAC, Deployment: the operator runs as the chart's ServiceAccount)"
kubectl create namespace sendgrid-operator >/dev/null
cat >"$DEMO/values.yaml" <<VALUES
image: {repository: sendgrid-operator, tag: dev}
operator:
  httpPort: $OPERATOR_PORT
  reportURL: http://127.0.0.1:$OPERATOR_PORT   # no cluster DNS here: Jobs are local processes
extraEnv:
  - {name: SGOP_HTTP_HOST, value: 127.0.0.1}
  - {name: SGOP_SCHEDULE_TICK_SECONDS, value: "1"}
VALUES
helm install sendgrid-operator charts/sendgrid-operator -n sendgrid-operator -f "$DEMO/values.yaml" | sed -n '1,6p'
wait_http "http://127.0.0.1:$OPERATOR_PORT/readyz" 90
kubectl get pods -n sendgrid-operator

say "kubectl apply the examples"
kubectl create namespace demo >/dev/null
kubectl apply -n demo -f examples/minimal-file-export.yaml -f examples/mirror-export.yaml -f hack/demo/customers-export.yaml
kubectl apply -f examples/shared-connection.yaml
kubectl wait -n demo --for=condition=Ready sendgridconnection/sendgrid --timeout=60s
kubectl get sendgrid -A   # the "sendgrid" category: connections and exports

say "Run on demand: annotate the exports (Flux's requestedAt pattern)"
token=$(date +%s)
for e in newsletter customers; do
  kubectl annotate -n demo "segmentexport/$e" "sendgrid-operator.io/run-requested-at=$token" --overwrite
done

say "Live progress (status.progress, every second)"
COLUMNS='NAME:.metadata.name,PHASE:.status.progress.phase,READ:.status.progress.read,SENT:.status.progress.sent,APPLIED:.status.progress.applied,PERCENT:.status.progress.percent,RESULT:.status.lastRun.result,CONTACTS:.status.contactsExported'
row() { awk -v t="$1" '{ for (i = 1; i <= NF; i++) if ($i == "<none>") $i = "-";
  printf "%-9s %-11s %-10s %8s %8s %8s %8s %-10s %9s\n", t, $1, $2, $3, $4, $5, $6, $7, $8 }'; }
echo "NAME PHASE READ SENT APPLIED PERCENT RESULT CONTACTS" | row TIME
finished() {
  local e=$1
  [ "$(kubectl get -n demo "segmentexport/$e" -o jsonpath='{.status.lastHandledRunRequest}')" = "$token" ] &&
    [ -z "$(kubectl get -n demo "segmentexport/$e" -o jsonpath='{.status.active.runId}')" ] &&
    [ -n "$(kubectl get -n demo "segmentexport/$e" -o jsonpath='{.status.lastRun.runId}')" ]
}
for ((i = 0; i < 300; i++)); do
  kubectl get -n demo segmentexport/newsletter segmentexport/customers -o custom-columns="$COLUMNS" --no-headers |
    row "$(date +%T)"
  if finished newsletter && finished customers; then break; fi
  sleep 1
done

say "Final status"
kubectl get -n demo segmentexports
for e in newsletter customers; do
  echo; echo "segmentexport/$e  status.lastRun:"
  kubectl get -n demo "segmentexport/$e" -o jsonpath='{.status.lastRun}' |
    "$PY" -c 'import json,sys; r=json.load(sys.stdin); print("  result:", r["result"], "-", r["message"]); print("  counts:", json.dumps(r["counts"])); print("  duration: %ss, SendGrid jobs: %s" % (r.get("durationSeconds"), ", ".join(r.get("sendgridJobIds", []))))'
done
echo; echo "In the emulator (what SendGrid holds):"
for pair in newsletter:3f1e9a52-7c4b-4d2e-9a61-0b8f5c7d2e14 customers:0d9c7e1a-6b2f-4c3d-9e8f-7a6b5c4d3e2f; do
  n=$(curl -fsS "http://127.0.0.1:$EMULATOR_PORT/_emulator/lists/${pair#*:}/members" | "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)["emails"]))')
  echo "  list ${pair%%:*}: $n members"
done

say "Events"
kubectl get events -n demo --field-selector involvedObject.kind=SegmentExport | tail -6

say "Metrics (excerpt of http://127.0.0.1:$OPERATOR_PORT/metrics)"
curl -fsS "http://127.0.0.1:$OPERATOR_PORT/metrics" |
  grep -E '^sendgrid_operator_(export_runs_total|contacts_total|profiles_total|sendgrid_requests_total|connection_ready)' | head -20

cat <<DONE

Everything is still running, so you can explore:
  source .demo/cluster/env && export PATH="\$(dirname \$SGOP_KUBECTL):\$PATH"
  kubectl get sendgrid -A
  kubectl explain segmentexport.spec
  kubectl annotate -n demo segmentexport/customers sendgrid-operator.io/run-requested-at=\$(date +%s) --overwrite
  curl http://127.0.0.1:$EMULATOR_PORT/_emulator/summary
Clean up with:  make demo-down
DONE
