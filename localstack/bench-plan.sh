#!/usr/bin/env bash
# Measures a plan over many owned security groups against the local EC2 emulator:
# N AWS targets (default 100) in one VPC, each a security group with ~50 rules.
#   bash localstack/bench-plan.sh [N]
# Prints the API calls and wall time of `perimeter plan` once everything is applied.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-100}"
export MOTO_PORT="${MOTO_PORT:-5057}"
started=""
cleanup() { if [ -n "$started" ]; then localstack/moto.sh stop; fi; rm -rf "${work:-}"; }
trap cleanup EXIT
if ! localstack/moto.sh status; then started=yes; fi
url="$(localstack/moto.sh start)"
curl -fsS -X POST "$url/moto-api/reset" >/dev/null
export AWS_ENDPOINT_URL="$url" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_EC2_METADATA_DISABLED=true
state="${PERIMETER_STATE_DIR:-localstack/.state}"
vpc="$("$state/moto-venv/bin/python" -c "
import boto3
ec2 = boto3.client('ec2', endpoint_url='$url', region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test')
print(ec2.create_vpc(CidrBlock='10.0.0.0/16')['Vpc']['VpcId'])")"
work="$(mktemp -d)"
{
  echo "apiVersion: perimeter/v1"
  echo "kind: NodePerimeter"
  echo "name: bench"
  echo "metadata: allow"
  echo "ingress:"
  for i in $(seq 0 24); do echo "  - {name: in$i, from: 10.$((i+100)).0.0/16, services: [tcp/$((8000+i))]}"; done
  echo "egress:"
  for i in $(seq 0 24); do echo "  - {name: out$i, to: 10.$((i+150)).0.0/16, services: [tcp/$((9000+i))]}"; done
  echo "targets:"
  echo "  aws:"
  for i in $(seq -w 0 $((n-1))); do echo "    - {region: us-east-1, vpc: $vpc, security_group: workers-$i}"; done
} > "$work/bench.yaml"
cargo build -q -p perimeter-cli
p=target/debug/perimeter
$p apply "$work/bench.yaml" --auto-approve 2>&1 | tail -2
start=$(date +%s.%N)
$p plan "$work/bench.yaml" --detailed-exitcode > "$work/plan.txt" && rc=0 || rc=$?
end=$(date +%s.%N)
tail -2 "$work/plan.txt"
echo "plan over $n owned security groups x 50 rules: exit $rc, wall time $(echo "$end - $start" | bc) s"
