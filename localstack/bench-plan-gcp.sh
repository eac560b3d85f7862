#!/usr/bin/env bash
# Measures plan and apply over many firewall rules against the local Compute API
# (local-cloud): one GKE-style network with N owned rules (default 500) and 200 foreign ones.
#   bash localstack/bench-plan-gcp.sh [N]
# Prints API calls (counted by perimeter and by the emulator) and wall times.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-500}"
export LOCAL_CLOUD_PORT="${LOCAL_CLOUD_PORT:-5062}"
started=""
cleanup() { if [ -n "$started" ]; then localstack/local-cloud.sh stop; fi; rm -rf "${work:-}"; }
trap cleanup EXIT
cargo build -q -p perimeter-cli -p perimeter-local-cloud
if ! localstack/local-cloud.sh status; then started=yes; fi
url="$(localstack/local-cloud.sh start)"
curl -fsS -X POST "$url/_emulator/reset" >/dev/null
curl -fsS -X POST "$url/_emulator/gcp/projects/bench-project/quota" -d "{\"FIREWALLS\": $((n + 1000))}" >/dev/null
curl -fsS -X POST "$url/compute/v1/projects/bench-project/global/networks" -d '{"name": "vpc"}' >/dev/null
# Rules other teams (and GKE) keep in the same network, for other instances.
for i in $(seq 0 199); do
  curl -fsS -X POST "$url/compute/v1/projects/bench-project/global/firewalls" -d "{\"name\": \"other-$i\", \"network\": \"global/networks/vpc\",
    \"targetTags\": [\"team-$i\"], \"sourceRanges\": [\"10.200.$i.0/24\"], \"allowed\": [{\"IPProtocol\": \"tcp\", \"ports\": [\"443\"]}]}" >/dev/null
done
export PERIMETER_GCP_ENDPOINT="$url" PERIMETER_GCP_CREDENTIALS=anonymous
work="$(mktemp -d)"
{
  echo "apiVersion: perimeter/v1"
  echo "kind: NodePerimeter"
  echo "name: bench"
  echo "metadata: allow"
  echo "ingress:"
  for i in $(seq 0 $((n-1))); do echo "  - {name: r$i, from: 10.$((i / 250)).$((i % 250)).0/24, services: [tcp/$((8000 + i % 1000))]}"; done
  echo "targets:"
  echo "  gcp: {project: bench-project, network: vpc, target_tags: [workers]}"
} > "$work/bench.yaml"
p=target/debug/perimeter
calls() { curl -fsS "$url/_emulator/calls" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["total"], json.dumps(d["by_route"], sort_keys=True))'; }

curl -fsS -X DELETE "$url/_emulator/calls" >/dev/null
start=$(date +%s.%N)
$p apply "$work/bench.yaml" --auto-approve 2>&1 | tail -2
end=$(date +%s.%N)
echo "initial apply of $n rules: wall time $(echo "$end - $start" | bc) s; emulator saw: $(calls)"

curl -fsS -X DELETE "$url/_emulator/calls" >/dev/null
start=$(date +%s.%N)
$p plan "$work/bench.yaml" --detailed-exitcode > "$work/plan.txt" && rc=0 || rc=$?
end=$(date +%s.%N)
tail -2 "$work/plan.txt"
echo "plan over $n owned + 200 foreign rules: exit $rc, wall time $(echo "$end - $start" | bc) s; emulator saw: $(calls)"

# One rule's source changes: one patch.
sed -i "s|{name: r7, from: 10.0.7.0/24|{name: r7, from: 10.99.7.0/24|" "$work/bench.yaml"
curl -fsS -X DELETE "$url/_emulator/calls" >/dev/null
$p apply "$work/bench.yaml" --auto-approve 2>&1 | tail -2
echo "apply of one changed rule: emulator saw: $(calls)"
