#!/usr/bin/env bash
# The main job, end to end on a local AWS: start the EC2 emulator (moto server on 127.0.0.1),
# create a VPC with two node subnets and two worker instances, then run
#   perimeter plan → perimeter apply → perimeter plan
# with policies/eks-workers.yaml, and stop what it started.
#
#   bash localstack/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

port="${MOTO_PORT:-5056}"
export MOTO_PORT="$port"
started=""
cleanup() { if [ -n "$started" ]; then localstack/moto.sh stop; fi; rm -rf "${work:-}"; }
trap cleanup EXIT

if ! localstack/moto.sh status; then started=yes; fi
url="$(localstack/moto.sh start)"
export AWS_ENDPOINT_URL="$url" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
state="${PERIMETER_STATE_DIR:-localstack/.state}"
curl -fsS -X POST "$url/moto-api/reset" >/dev/null

echo "== creating a VPC, two node subnets and two worker instances in the local AWS ($url)"
read -r vpc s1 s2 < <("$state/moto-venv/bin/python" - "$url" <<'PY'
import sys, boto3
ec2 = boto3.client("ec2", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="test", aws_secret_access_key="test")
vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
s1 = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.16.0/20")["Subnet"]["SubnetId"]
s2 = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.32.0/20")["Subnet"]["SubnetId"]
ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
ec2.run_instances(ImageId=ami, MinCount=2, MaxCount=2, SubnetId=s1,
    TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "eks:nodegroup-name", "Value": "workers"}]}],
    MetadataOptions={"HttpTokens": "optional", "HttpPutResponseHopLimit": 2})
print(vpc, s1, s2)
PY
)
echo "   vpc $vpc, subnets $s1 $s2"

work="$(mktemp -d)"
sed -e "s/vpc-0a1b2c3d4e5f60718/$vpc/" -e "s/subnet-0aaa1111bbbb2222c/$s1/" -e "s/subnet-0ddd3333eeee4444f/$s2/" \
  policies/eks-workers.yaml > "$work/eks-workers.yaml"

cargo build -q -p perimeter-cli
perimeter=target/debug/perimeter

echo; echo "== perimeter plan (exit 2: changes)"
"$perimeter" plan "$work/eks-workers.yaml" --out "$work/plan.json" --detailed-exitcode && rc=0 || rc=$?
echo "exit code: $rc"
[ "$rc" = 2 ]

echo; echo "== perimeter apply"
"$perimeter" apply "$work/plan.json"

echo; echo "== perimeter plan again (exit 0: the cloud matches the policy)"
"$perimeter" plan "$work/eks-workers.yaml" --detailed-exitcode
echo "exit code: 0"
