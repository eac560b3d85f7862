"""Drives the local-cloud emulator with Google's own Python client (google-cloud-compute, REST
transport, anonymous credentials) and checks that every call behaves as the library expects
of the real Compute API: results, pagination, long-running operations, and the exception
classes of the error cases.

    python gcp_conformance.py http://127.0.0.1:PORT

Prints one line per check and a summary; exits 1 if any check failed.
"""

import json
import sys
import traceback
import urllib.request
import uuid

from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

URL = sys.argv[1].rstrip("/")
PROJECT = "conformance-project"
OPTIONS = {"api_endpoint": URL}


def client(kind):
    return kind(credentials=AnonymousCredentials(), client_options=OPTIONS, transport="rest")


firewalls = client(compute_v1.FirewallsClient)
networks = client(compute_v1.NetworksClient)
operations = client(compute_v1.GlobalOperationsClient)
# The library builds the client it polls operations with itself, without the client options
# (so it would poll compute.googleapis.com). Hand it one pointed at the emulator.
for service in (firewalls, networks):
    service._transport._extended_operations_services["global_operations"] = operations


def admin(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(URL + "/_emulator/" + path, data=data, method=method)
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def rule(name, **fields):
    fw = compute_v1.Firewall(name=name, **fields)
    if not fw.allowed and not fw.denied:
        fw.allowed = [compute_v1.Allowed(I_p_protocol="tcp", ports=["22"])]
    return fw


def insert(fw, **fields):
    return firewalls.insert(request=compute_v1.InsertFirewallRequest(project=PROJECT, firewall_resource=fw, **fields))


def expect_error(kind, call):
    try:
        call()
    except kind as error:
        return error
    raise AssertionError(f"expected {kind.__name__}")


CHECKS = []


def check(function):
    CHECKS.append(function)
    return function


@check
def new_project_lists_the_default_rules():
    names = [fw.name for fw in firewalls.list(project=PROJECT)]
    assert names == ["default-allow-icmp", "default-allow-internal", "default-allow-rdp", "default-allow-ssh"], names


@check
def insert_waits_for_the_operation_and_fills_in_defaults():
    op = insert(rule("conf-ssh"), request_id=str(uuid.uuid4()))
    op.result(timeout=30)
    assert op.done() and not op.error_code, (op.status, op.error_code)
    fw = firewalls.get(project=PROJECT, firewall="conf-ssh")
    assert fw.priority == 1000, fw.priority
    assert fw.direction == "INGRESS", fw.direction
    assert list(fw.source_ranges) == ["0.0.0.0/0"], fw.source_ranges
    assert fw.network.endswith("/projects/conformance-project/global/networks/default"), fw.network
    assert fw.id > 0 and fw.self_link.endswith("/global/firewalls/conf-ssh")
    assert fw.allowed[0].I_p_protocol == "tcp" and list(fw.allowed[0].ports) == ["22"]


@check
def duplicate_name_is_a_conflict():
    error = expect_error(exceptions.Conflict, lambda: firewalls.insert(project=PROJECT, firewall_resource=rule("conf-ssh")))
    assert error.code == 409 and "already exists" in error.message, error


@check
def unknown_rule_is_not_found():
    expect_error(exceptions.NotFound, lambda: firewalls.get(project=PROJECT, firewall="conf-nothing"))
    expect_error(exceptions.NotFound, lambda: firewalls.delete(project=PROJECT, firewall="conf-nothing"))


@check
def invalid_rules_are_bad_requests():
    cases = [
        rule("conf-prio", priority=70000),
        rule("Conf_Bad_Name"),
        rule("conf-" + "x" * 60),
        rule("conf-mixed", source_ranges=["10.0.0.0/8", "fd00::/8"]),
        rule("conf-both", allowed=[compute_v1.Allowed(I_p_protocol="tcp")], denied=[compute_v1.Denied(I_p_protocol="udp")]),
        rule("conf-sa", target_tags=["workers"], target_service_accounts=["sa@p.iam.gserviceaccount.com"]),
        rule("conf-ports", allowed=[compute_v1.Allowed(I_p_protocol="icmp", ports=["1"])]),
        rule("conf-egress", direction="EGRESS", source_tags=["workers"]),
    ]
    for fw in cases:
        error = expect_error(exceptions.BadRequest, lambda fw=fw: firewalls.insert(project=PROJECT, firewall_resource=fw))
        assert error.code == 400 and error.message, (fw.name, error)


@check
def patch_changes_only_the_given_fields():
    body = compute_v1.Firewall(description="patched", source_ranges=["10.0.0.0/8"])
    firewalls.patch(project=PROJECT, firewall="conf-ssh", firewall_resource=body).result(timeout=30)
    fw = firewalls.get(project=PROJECT, firewall="conf-ssh")
    assert fw.description == "patched" and list(fw.source_ranges) == ["10.0.0.0/8"], fw
    assert list(fw.allowed[0].ports) == ["22"], fw.allowed


@check
def update_replaces_the_rule():
    body = rule("conf-ssh", direction="INGRESS", priority=900, source_ranges=["192.168.0.0/16"],
                denied=[compute_v1.Denied(I_p_protocol="udp", ports=["53"])], allowed=[])
    firewalls.update(project=PROJECT, firewall="conf-ssh", firewall_resource=body).result(timeout=30)
    fw = firewalls.get(project=PROJECT, firewall="conf-ssh")
    assert fw.priority == 900 and not fw.allowed and fw.denied[0].I_p_protocol == "udp", fw
    assert fw.description == "", fw.description


@check
def list_pages_and_filters():
    for i in range(5):
        firewalls.insert(project=PROJECT, firewall_resource=rule(f"conf-page-{i}")).result(timeout=30)
    request = compute_v1.ListFirewallsRequest(project=PROJECT, max_results=2, filter='name = "conf-page-*"')
    pager = firewalls.list(request=request)
    pages = list(pager.pages)
    names = [fw.name for page in pages for fw in page.items]
    assert names == [f"conf-page-{i}" for i in range(5)], names
    assert len(pages) == 3, len(pages)
    regex = [fw.name for fw in firewalls.list(request=compute_v1.ListFirewallsRequest(project=PROJECT, filter="name eq conf-page-[13]"))]
    assert regex == ["conf-page-1", "conf-page-3"], regex
    expect_error(exceptions.BadRequest, lambda: list(firewalls.list(request=compute_v1.ListFirewallsRequest(project=PROJECT, filter="name ="))))


@check
def a_repeated_request_id_is_answered_not_repeated():
    request_id = str(uuid.uuid4())
    first = insert(rule("conf-once"), request_id=request_id)
    second = insert(rule("conf-once"), request_id=request_id)
    assert first.name == second.name, (first.name, second.name)
    expect_error(exceptions.BadRequest, lambda: insert(rule("conf-bad-id"), request_id="nope"))


@check
def slow_operations_are_polled_until_done():
    admin("POST", "gcp/operations", {"polls_until_done": 3})
    try:
        op = firewalls.delete(project=PROJECT, firewall="conf-once")
        assert not op.done()
        op.result(timeout=60)
        assert op.done() and not op.error_code
    finally:
        admin("POST", "gcp/operations", {"polls_until_done": 0})
    expect_error(exceptions.NotFound, lambda: firewalls.get(project=PROJECT, firewall="conf-once"))


@check
def quota_exhaustion_fails_the_operation():
    used = len(list(firewalls.list(project=PROJECT)))
    admin("POST", f"gcp/projects/{PROJECT}/quota", {"FIREWALLS": used})
    try:
        op = firewalls.insert(project=PROJECT, firewall_resource=rule("conf-over-quota"))
        error = expect_error(exceptions.Forbidden, lambda: op.result(timeout=30))
        assert "QUOTA_EXCEEDED" in str(error) or "Quota" in str(error), error
        project = client(compute_v1.ProjectsClient).get(project=PROJECT)
        quota = [q for q in project.quotas if q.metric == "FIREWALLS"][0]
        assert (quota.limit, quota.usage) == (used, used), quota
    finally:
        admin("POST", f"gcp/projects/{PROJECT}/quota", {"FIREWALLS": 500})
    expect_error(exceptions.NotFound, lambda: firewalls.get(project=PROJECT, firewall="conf-over-quota"))


@check
def injected_faults_raise_the_librarys_exceptions():
    admin("POST", "faults", {"method": "GET", "path_contains": "/firewalls/", "times": 1, "status": 429, "retry_after_seconds": 1})
    expect_error(exceptions.TooManyRequests, lambda: firewalls.get(project=PROJECT, firewall="conf-ssh", retry=None))
    admin("POST", "faults", {"method": "GET", "path_contains": "/firewalls/", "times": 1, "status": 503})
    expect_error(exceptions.ServiceUnavailable, lambda: firewalls.get(project=PROJECT, firewall="conf-ssh", retry=None))
    assert admin("GET", "faults")["pending"] == 0
    firewalls.get(project=PROJECT, firewall="conf-ssh", retry=None)


@check
def networks_are_created_and_guarded():
    networks.insert(project=PROJECT, network_resource=compute_v1.Network(name="conf-net", auto_create_subnetworks=False)).result(timeout=30)
    assert "conf-net" in [n.name for n in networks.list(project=PROJECT)]
    body = rule("conf-in-net", network="global/networks/conf-net")
    firewalls.insert(project=PROJECT, firewall_resource=body).result(timeout=30)
    assert firewalls.get(project=PROJECT, firewall="conf-in-net").network.endswith("/global/networks/conf-net")
    expect_error(exceptions.BadRequest, lambda: networks.delete(project=PROJECT, network="conf-net"))
    missing = rule("conf-no-net", network="global/networks/nowhere")
    expect_error(exceptions.NotFound, lambda: firewalls.insert(project=PROJECT, firewall_resource=missing))


@check
def firewall_policies_apply_in_order_in_get_effective_firewalls():
    policies = client(compute_v1.FirewallPoliciesClient)
    network_policies = client(compute_v1.NetworkFirewallPoliciesClient)
    networks.insert(project=PROJECT, network_resource=compute_v1.Network(
        name="fp-net", auto_create_subnetworks=False)).result()
    admin("POST", "gcp/ancestry", {"project": PROJECT, "ancestors": ["organizations/123", "folders/456"]})
    # An organization policy that is not associated anywhere applies to nothing.
    policies.insert(request=compute_v1.InsertFirewallPolicyRequest(
        parent_id="organizations/123", firewall_policy_resource=compute_v1.FirewallPolicy(short_name="org-unused"))).result()
    operation = policies.insert(request=compute_v1.InsertFirewallPolicyRequest(
        parent_id="folders/456", firewall_policy_resource=compute_v1.FirewallPolicy(short_name="folder-open")))
    operation.result()
    policy_id = operation.target_link.rsplit("/", 1)[-1]
    policies.add_rule(firewall_policy=policy_id, firewall_policy_rule_resource=compute_v1.FirewallPolicyRule(
        priority=100, direction="INGRESS", action="allow", match=compute_v1.FirewallPolicyRuleMatcher(
            src_ip_ranges=["0.0.0.0/0"], layer4_configs=[compute_v1.FirewallPolicyRuleMatcherLayer4Config(
                ip_protocol="tcp", ports=["22"])]))).result()
    policies.add_association(firewall_policy=policy_id, firewall_policy_association_resource=compute_v1.FirewallPolicyAssociation(
        name="folder", attachment_target="folders/456")).result()
    got = policies.get(firewall_policy=policy_id)
    assert [r.priority for r in got.rules][:1] == [100] and len(got.rules) == 5, got.rules
    network_policies.insert(project=PROJECT, firewall_policy_resource=compute_v1.FirewallPolicy(name="net-policy")).result()
    network_policies.add_association(project=PROJECT, firewall_policy="net-policy",
        firewall_policy_association_resource=compute_v1.FirewallPolicyAssociation(
            name="net", attachment_target=f"projects/{PROJECT}/global/networks/fp-net")).result()
    effective = networks.get_effective_firewalls(project=PROJECT, network="fp-net")
    kinds = [(p.short_name, p.type_) for p in effective.firewall_policys]
    assert kinds == [("folder-open", "HIERARCHY"), ("net-policy", "NETWORK")], kinds
    first = effective.firewall_policys[0].rules[0]
    assert (first.action, first.match.layer4_configs[0].ports) == ("allow", ["22"]), first
    assert list(effective.firewalls) == [], effective.firewalls
    expect_error(exceptions.NotFound, lambda: networks.get_effective_firewalls(project=PROJECT, network="absent"))


@check
def regional_network_policies_come_after_the_global_one_in_their_region_only():
    regional = client(compute_v1.RegionNetworkFirewallPoliciesClient)
    networks.insert(project=PROJECT, network_resource=compute_v1.Network(
        name="rp-net", auto_create_subnetworks=False)).result()
    regional.insert(project=PROJECT, region="us-central1",
        firewall_policy_resource=compute_v1.FirewallPolicy(name="central")).result()
    regional.add_rule(project=PROJECT, region="us-central1", firewall_policy="central",
        firewall_policy_rule_resource=compute_v1.FirewallPolicyRule(
            priority=10, direction="INGRESS", action="deny", match=compute_v1.FirewallPolicyRuleMatcher(
                src_ip_ranges=["10.0.0.0/8"], layer4_configs=[compute_v1.FirewallPolicyRuleMatcherLayer4Config(
                    ip_protocol="tcp", ports=["10250"])]))).result()
    regional.add_association(project=PROJECT, region="us-central1", firewall_policy="central",
        firewall_policy_association_resource=compute_v1.FirewallPolicyAssociation(
            name="net", attachment_target=f"projects/{PROJECT}/global/networks/rp-net")).result()
    got = regional.get(project=PROJECT, region="us-central1", firewall_policy="central")
    assert got.rules[0].priority == 10, got.rules
    network_url = f"projects/{PROJECT}/global/networks/rp-net"
    here = regional.get_effective_firewalls(project=PROJECT, region="us-central1", network=network_url)
    # (The folder policy of the check before applies to every network of the project.)
    network_kinds = lambda answer: [(p.name, p.type_) for p in answer.firewall_policys if p.type_ != "HIERARCHY"]
    assert network_kinds(here) == [("central", "NETWORK_REGIONAL")], network_kinds(here)
    elsewhere = regional.get_effective_firewalls(project=PROJECT, region="europe-west1", network=network_url)
    assert network_kinds(elsewhere) == [], network_kinds(elsewhere)
    # The network-level answer has no regional policies.
    assert network_kinds(networks.get_effective_firewalls(project=PROJECT, network="rp-net")) == []
    expect_error(exceptions.NotFound, lambda: regional.get(project=PROJECT, region="us-central1", firewall_policy="absent"))


@check
def delete_removes_the_rule():
    for fw in list(firewalls.list(request=compute_v1.ListFirewallsRequest(project=PROJECT, filter='name = "conf-*"'))):
        firewalls.delete(project=PROJECT, firewall=fw.name).result(timeout=30)
    left = [fw.name for fw in firewalls.list(project=PROJECT)]
    assert all(not name.startswith("conf-") for name in left), left
    networks.delete(project=PROJECT, network="conf-net").result(timeout=30)


def main():
    failed = 0
    for function in CHECKS:
        try:
            function()
            print(f"ok   {function.__name__}")
        except Exception:  # noqa: BLE001 - every failure is reported, then the run fails
            failed += 1
            print(f"FAIL {function.__name__}")
            traceback.print_exc(file=sys.stdout)
    print(f"gcp conformance (google-cloud-compute): {len(CHECKS) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
