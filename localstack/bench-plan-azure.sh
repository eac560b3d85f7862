#!/usr/bin/env bash
# Measures plan and apply over many NSGs against the local ARM API (local-cloud): N owned NSGs
# (default 10) of one policy, each with the policy's ~25 rules, all sharing the nodes' ASG.
#   bash localstack/bench-plan-azure.sh [N]
# Prints API calls (counted by perimeter and by the emulator) and wall times.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-10}"
export LOCAL_CLOUD_PORT="${LOCAL_CLOUD_PORT:-5063}"
started=""
cleanup() { if [ -n "$started" ]; then localstack/local-cloud.sh stop; fi; rm -rf "${work:-}"; }
trap cleanup EXIT
cargo build -q -p perimeter-cli -p perimeter-local-cloud
if ! localstack/local-cloud.sh status; then started=yes; fi
url="$(localstack/local-cloud.sh start)"
curl -fsS -X POST "$url/_emulator/reset" >/dev/null
sub=00000000-0000-0000-0000-0000000000b5
curl -fsS -X PUT -H "Authorization: Bearer x" \
  "$url/subscriptions/$sub/resourceGroups/rg-bench/providers/Microsoft.Network/applicationSecurityGroups/bench-nodes?api-version=2024-05-01" \
  -d '{"location": "westeurope"}' >/dev/null
export PERIMETER_AZURE_ENDPOINT="$url" PERIMETER_AZURE_TOKEN=bench-token
work="$(mktemp -d)"
{
  echo "apiVersion: perimeter/v1"
  echo "kind: NodePerimeter"
  echo "name: bench"
  echo "metadata: allow"
  echo "ingress:"
  for i in $(seq 0 11); do echo "  - {name: in$i, from: 10.$((i+100)).0.0/16, services: [tcp/$((8000+i))]}"; done
  echo "  - {name: nodes, from: self, services: [kubelet]}"
  echo "egress:"
  for i in $(seq 0 11); do echo "  - {name: out$i, to: 10.$((i+150)).0.0/16, services: [tcp/$((9000+i))]}"; done
  echo "targets:"
  echo "  azure:"
  for i in $(seq -w 0 $((n-1))); do
    echo "    - {subscription: $sub, resource_group: rg-bench, nsg: nsg-$i, location: westeurope, application_security_group: bench-nodes}"
  done
} > "$work/bench.yaml"
p=target/debug/perimeter
calls() { curl -fsS "$url/_emulator/calls" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["total"], json.dumps(d["by_route"], sort_keys=True))'; }

curl -fsS -X DELETE "$url/_emulator/calls" >/dev/null
start=$(date +%s.%N)
$p apply "$work/bench.yaml" --auto-approve 2>&1 | tail -2
end=$(date +%s.%N)
echo "initial apply of $n NSGs: wall time $(echo "$end - $start" | bc) s; emulator saw: $(calls)"

curl -fsS -X DELETE "$url/_emulator/calls" >/dev/null
start=$(date +%s.%N)
$p plan "$work/bench.yaml" --detailed-exitcode > "$work/plan.txt" && rc=0 || rc=$?
end=$(date +%s.%N)
tail -2 "$work/plan.txt"
echo "plan over $n owned NSGs: exit $rc, wall time $(echo "$end - $start" | bc) s; emulator saw: $(calls)"
