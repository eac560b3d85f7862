#!/usr/bin/env bash
# The main job, end to end on local clouds, one policy for all of them:
#   - a local AWS EC2 API (moto server on 127.0.0.1) with a VPC, a node subnet and two workers;
#   - a local GCP Compute API (perimeter's own emulator, local-cloud, on 127.0.0.1) with a
#     project and a VPC network that already holds a rule GKE would have made;
#   - a local Azure Resource Manager (the same emulator) with the nodes' application
#     security group;
# then, with policies/multi-cloud.yaml,
#   perimeter plan → perimeter apply → perimeter plan (nothing to write, but one violation:
#   GKE's own health-check rule lets public ranges reach the nodes; exit 2, or 0 with
#   --fail-on changes) → perimeter drift (the violation: exit 2) → drift with that accepted
#   (in sync)
# and stops what it started. One command, three local clouds, one policy.
#
#   bash localstack/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

export MOTO_PORT="${MOTO_PORT:-5056}" LOCAL_CLOUD_PORT="${LOCAL_CLOUD_PORT:-5061}"
started_moto="" started_gcp=""
cleanup() {
  if [ -n "$started_moto" ]; then localstack/moto.sh stop; fi
  if [ -n "$started_gcp" ]; then localstack/local-cloud.sh stop; fi
  rm -rf "${work:-}"
}
trap cleanup EXIT

cargo build -q -p perimeter-cli -p perimeter-local-cloud
perimeter=target/debug/perimeter

if ! localstack/moto.sh status; then started_moto=yes; fi
aws_url="$(localstack/moto.sh start)"
if ! localstack/local-cloud.sh status; then started_gcp=yes; fi
gcp_url="$(localstack/local-cloud.sh start)"
export AWS_ENDPOINT_URL="$aws_url" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
export PERIMETER_GCP_ENDPOINT="$gcp_url" PERIMETER_GCP_CREDENTIALS=anonymous
# The emulator accepts any bearer token; a static one stands in for a real credential.
export PERIMETER_AZURE_ENDPOINT="$gcp_url" PERIMETER_AZURE_TOKEN=local-demo-token
state="${PERIMETER_STATE_DIR:-localstack/.state}"
curl -fsS -X POST "$aws_url/moto-api/reset" >/dev/null
curl -fsS -X POST "$gcp_url/_emulator/reset" >/dev/null

echo "== local AWS ($aws_url): a VPC, a node subnet and two worker instances"
read -r vpc subnet < <("$state/moto-venv/bin/python" - "$aws_url" <<'PY'
import sys, boto3
ec2 = boto3.client("ec2", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="test", aws_secret_access_key="test")
vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
# The workers also carry the VPC's default group, emptied as CIS AWS 5.4 asks (its stock
# allow-all egress would be a violation of the private perimeter, and plan would say so).
default = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]},
    {"Name": "group-name", "Values": ["default"]}])["SecurityGroups"][0]
for r in ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [default["GroupId"]]}])["SecurityGroupRules"]:
    revoke = ec2.revoke_security_group_egress if r["IsEgress"] else ec2.revoke_security_group_ingress
    revoke(GroupId=default["GroupId"], SecurityGroupRuleIds=[r["SecurityGroupRuleId"]])
subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.16.0/20")["Subnet"]["SubnetId"]
ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
ec2.run_instances(ImageId=ami, MinCount=2, MaxCount=2, SubnetId=subnet,
    TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "kubernetes.io/role", "Value": "node"}]}],
    MetadataOptions={"HttpTokens": "optional", "HttpPutResponseHopLimit": 2})
print(vpc, subnet)
PY
)
echo "   vpc $vpc, subnet $subnet"

echo "== local GCP ($gcp_url): project acme-prod, network prod, and a rule GKE made"
curl -fsS -X POST "$gcp_url/compute/v1/projects/acme-prod/global/networks" \
  -d '{"name": "prod", "autoCreateSubnetworks": false}' >/dev/null
curl -fsS -X POST "$gcp_url/compute/v1/projects/acme-prod/global/firewalls" \
  -d '{"name": "gke-prod-1a2b3c-hc", "network": "global/networks/prod", "sourceRanges": ["35.191.0.0/16", "130.211.0.0/22"],
       "targetTags": ["prod-workers"], "allowed": [{"IPProtocol": "tcp", "ports": ["10256"]}]}' >/dev/null

echo "== local Azure ($gcp_url): the nodes' application security group prod-workers-nodes and subnet prod-vnet/workers"
curl -fsS -X PUT -H "Authorization: Bearer local-demo-token" \
  "$gcp_url/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-prod/providers/Microsoft.Network/applicationSecurityGroups/prod-workers-nodes?api-version=2024-05-01" \
  -d '{"location": "westeurope"}' >/dev/null
curl -fsS -X PUT -H "Authorization: Bearer local-demo-token" \
  "$gcp_url/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-prod/providers/Microsoft.Network/virtualNetworks/prod-vnet?api-version=2024-05-01" \
  -d '{"location": "westeurope", "properties": {"addressSpace": {"addressPrefixes": ["10.20.0.0/16"]},
       "subnets": [{"name": "workers", "properties": {"addressPrefix": "10.20.0.0/20"}}]}}' >/dev/null

work="$(mktemp -d)"
# The demo's copy also attaches the owned security group to the workers (`attach: true`).
sed -e "s/vpc-0123456789abcdef0/$vpc/" -e "s/subnet-0123456789abcdef0/$subnet/" \
  -e "s/^    security_group: prod-workers$/    security_group: prod-workers\n    attach: true/" \
  policies/multi-cloud.yaml > "$work/multi-cloud.yaml"

echo; echo "== perimeter plan (exit 2: changes)"
"$perimeter" plan "$work/multi-cloud.yaml" --out "$work/plan.json" --detailed-exitcode && rc=0 || rc=$?
echo "exit code: $rc"
[ "$rc" = 2 ]

echo; echo "== perimeter apply"
"$perimeter" apply "$work/plan.json"

echo; echo "== perimeter plan again (exit 2: nothing to write, but the nodes' perimeter has one violation)"
"$perimeter" plan "$work/multi-cloud.yaml" --detailed-exitcode && rc=0 || rc=$?
echo "exit code: $rc"
[ "$rc" = 2 ]

echo; echo "== perimeter plan --fail-on changes (exit 0: everything perimeter owns matches the policy)"
"$perimeter" plan "$work/multi-cloud.yaml" --detailed-exitcode --fail-on changes >/dev/null
echo "exit code: 0"

echo; echo "== perimeter drift (exit 2: the violation; GKE's health-check rule lets public ranges in, and perimeter never changes it)"
"$perimeter" drift "$work/multi-cloud.yaml" --format json > "$work/drift.json" && rc=0 || rc=$?
"$perimeter" drift "$work/multi-cloud.yaml" || true
echo "exit code: $rc"
[ "$rc" = 2 ]

echo; echo "== perimeter drift --baseline (exit 0: that rule accepted as known)"
"$perimeter" drift "$work/multi-cloud.yaml" --baseline "$work/drift.json"
echo "exit code: 0"
