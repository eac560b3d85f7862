#!/usr/bin/env bash
# Measures the effective-perimeter check on a large estate against the local EC2 emulator:
# 500 worker instances, each interface carrying the owned group and 2 of 200 groups
# perimeter does not own, those holding 50 rules each (10,000 rules).
#   bash localstack/bench-effective.sh [NODES] [GROUPS] [RULES_PER_GROUP]
# Prints the API calls and wall time of `perimeter plan` once the policy is applied.
set -euo pipefail
cd "$(dirname "$0")/.."
nodes="${1:-500}" groups="${2:-200}" rules="${3:-50}"
export MOTO_PORT="${MOTO_PORT:-5058}"
started=""
cleanup() { if [ -n "$started" ]; then localstack/moto.sh stop; fi; rm -rf "${work:-}"; }
trap cleanup EXIT
if ! localstack/moto.sh status; then started=yes; fi
url="$(localstack/moto.sh start)"
curl -fsS -X POST "$url/moto-api/reset" >/dev/null
export AWS_ENDPOINT_URL="$url" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_EC2_METADATA_DISABLED=true
state="${PERIMETER_STATE_DIR:-localstack/.state}"
py="$state/moto-venv/bin/python"
read -r vpc subnet < <("$py" - "$url" "$nodes" <<'PY'
import sys, boto3
ec2 = boto3.client("ec2", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="test", aws_secret_access_key="test")
vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.16.0/20")["Subnet"]["SubnetId"]
default = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]},
    {"Name": "group-name", "Values": ["default"]}])["SecurityGroups"][0]["GroupId"]
for r in ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [default]}])["SecurityGroupRules"]:
    revoke = ec2.revoke_security_group_egress if r["IsEgress"] else ec2.revoke_security_group_ingress
    revoke(GroupId=default, SecurityGroupRuleIds=[r["SecurityGroupRuleId"]])
ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
ec2.run_instances(ImageId=ami, MinCount=int(sys.argv[2]), MaxCount=int(sys.argv[2]), SubnetId=subnet,
    TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "role", "Value": "node"}]}])
print(vpc, subnet)
PY
)
work="$(mktemp -d)"
cat > "$work/bench.yaml" <<YAML
apiVersion: perimeter/v1
kind: NodePerimeter
name: bench
private: true
metadata: allow
networks:
  vpc: [10.0.0.0/16]
  control-plane: [10.0.0.0/24]
  monitoring: [10.0.200.0/24]
ingress:
  - {name: cni, from: self, services: [cni:calico]}
  - {name: kubelet, from: control-plane, services: [kubelet]}
  - {name: node-exporter, from: monitoring, services: [node-exporter]}
  - {name: nodeports, from: vpc, services: [nodeports]}
egress:
  - {name: cni, to: self, services: [cni:calico]}
  - {name: apiserver, to: control-plane, services: [https]}
  - {name: dns, to: vpc, services: [dns]}
targets:
  aws:
    region: us-east-1
    vpc: $vpc
    security_group: bench-workers
    attach: true
    instances: {tags: {role: node}}
YAML
cargo build -q -p perimeter-cli
p=target/debug/perimeter
$p apply "$work/bench.yaml" --auto-approve 2>&1 | tail -2
# Now the groups of others, each on 2 × NODES / GROUPS interfaces.
"$py" - "$url" "$vpc" "$groups" "$rules" <<'PY'
import sys, boto3
ec2 = boto3.client("ec2", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="test", aws_secret_access_key="test")
vpc, groups, rules = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ids = []
for g in range(groups):
    gid = ec2.create_security_group(GroupName=f"team-{g}", Description="not perimeter's", VpcId=vpc)["GroupId"]
    perms = [{"IpProtocol": "tcp", "FromPort": 1000 + (g * rules + r) % 60000, "ToPort": 1000 + (g * rules + r) % 60000,
              "IpRanges": [{"CidrIp": f"10.{(g + r) % 250}.{r % 250}.0/24"}]} for r in range(rules // 2)]
    ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=perms)
    perms = [{"IpProtocol": "tcp", "FromPort": 2000 + r, "ToPort": 2000 + r,
              "IpRanges": [{"CidrIp": f"10.{g % 250}.{r % 250}.0/24"}]} for r in range(rules - rules // 2)]
    ec2.authorize_security_group_egress(GroupId=gid, IpPermissions=perms)
    ids.append(gid)
enis = ec2.describe_network_interfaces(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["NetworkInterfaces"]
for i, e in enumerate(enis):
    groups_now = [g["GroupId"] for g in e["Groups"]]
    extra = [ids[(2 * i) % len(ids)], ids[(2 * i + 1) % len(ids)]]
    ec2.modify_network_interface_attribute(NetworkInterfaceId=e["NetworkInterfaceId"], Groups=groups_now + extra)
print(f"{len(ids)} groups of others on {len(enis)} interfaces", file=sys.stderr)
PY
start=$(date +%s.%N)
$p plan "$work/bench.yaml" --detailed-exitcode > "$work/plan.txt" && rc=0 || rc=$?
end=$(date +%s.%N)
grep -c "^  ! " "$work/plan.txt" | sed 's/^/violations: /'
tail -2 "$work/plan.txt"
echo "plan over $nodes nodes, $groups groups of others x $rules rules: exit $rc, wall time $(echo "$end - $start" | bc) s"
