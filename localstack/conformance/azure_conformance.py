"""Drives the local-cloud emulator with Microsoft's own Python SDK (azure-mgmt-network, a static
test credential, plain HTTP) and checks that every call behaves as the library expects of the
real Azure Resource Manager: results, long-running pollers, paging, retries of throttling, and
the exception types and error codes of the error cases.

    python azure_conformance.py http://127.0.0.1:PORT

Prints one line per check and a summary; exits 1 if any check failed.
"""

import json
import sys
import time
import traceback
import urllib.error
import urllib.request

from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.network.models import (
    AddressSpace,
    ApplicationSecurityGroup,
    NetworkInterface,
    NetworkInterfaceIPConfiguration,
    NetworkSecurityGroup,
    SecurityRule,
    Subnet,
    VirtualNetwork,
)

URL = sys.argv[1].rstrip("/")
SUBSCRIPTION = "00000000-0000-0000-0000-00000000c0de"
GROUP = "rg-conformance"
NSG = "conformance-nsg"
# azure-core refuses to send a bearer token over plain HTTP unless told; every call says so.
HTTP = {"enforce_https": False}


class StaticCredential:
    def get_token(self, *scopes, **kwargs):
        return AccessToken("static-test-token", int(time.time()) + 3600)


client = NetworkManagementClient(StaticCredential(), SUBSCRIPTION, base_url=URL, polling_interval=0)


def admin(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(URL + "/_emulator/" + path, data=data, method=method)
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def rule(name, priority, port="22", direction="Inbound", access="Allow", source="10.0.0.0/8", **extra):
    fields = dict(protocol="Tcp", source_port_range="*", destination_port_range=port,
                  source_address_prefix=source, destination_address_prefix="*", access=access,
                  priority=priority, direction=direction)
    fields.update(extra)
    return SecurityRule(name=name, **fields)


def expect_error(kind, call, code=None, status=None):
    try:
        call()
    except kind as error:
        if code is not None:
            assert error.error is not None and error.error.code == code, (error.error and error.error.code, str(error))
        if status is not None:
            assert error.status_code == status, (error.status_code, str(error))
        return error
    raise AssertionError(f"expected {kind.__name__}")


CHECKS = []


def check(function):
    CHECKS.append(function)
    return function


@check
def create_nsg_with_inline_rules_through_the_poller():
    poller = client.network_security_groups.begin_create_or_update(
        GROUP, NSG, NetworkSecurityGroup(location="westeurope", security_rules=[rule("allow-ssh", 110)]), **HTTP)
    nsg = poller.result()
    assert nsg.provisioning_state == "Succeeded", nsg.provisioning_state
    assert [r.name for r in nsg.security_rules] == ["allow-ssh"]
    defaults = sorted(r.name for r in nsg.default_security_rules)
    assert defaults == sorted(["AllowVnetInBound", "AllowAzureLoadBalancerInBound", "DenyAllInBound",
                               "AllowVnetOutBound", "AllowInternetOutBound", "DenyAllOutBound"]), defaults
    assert nsg.etag and nsg.id.endswith(f"/networkSecurityGroups/{NSG}"), (nsg.etag, nsg.id)


@check
def get_returns_the_rule_in_canonical_form():
    got = client.security_rules.get(GROUP, NSG, "allow-ssh", **HTTP)
    assert (got.protocol, got.access, got.direction, got.priority) == ("Tcp", "Allow", "Inbound", 110), got
    assert got.destination_port_range == "22" and got.source_address_prefixes == [], got


@check
def rules_are_created_updated_and_listed_across_pages():
    for i in range(150):
        client.security_rules.begin_create_or_update(GROUP, NSG, f"r{i:03}", rule(f"r{i:03}", 200 + i, port=str(1000 + i)), **HTTP).result()
    updated = client.security_rules.begin_create_or_update(GROUP, NSG, "r000", rule("r000", 200, port="2222"), **HTTP).result()
    assert updated.destination_port_range == "2222", updated
    pages = list(client.security_rules.list(GROUP, NSG, **HTTP).by_page())
    names = [r.name for page in pages for r in page]
    assert len(names) == 151 and len(pages) == 2, (len(names), len(pages))


@check
def invalid_rules_are_bad_requests_with_arm_codes():
    cases = [
        (rule("bad-priority", 5000), "SecurityRuleInvalidPriority"),
        (rule("bad-port", 120, port="70000"), "SecurityRuleInvalidPortRange"),
        (rule("bad-prefix", 121, source="10.0.0.0/33"), "SecurityRuleInvalidAddressPrefix"),
        (rule("bad-tag", 122, source="NoSuchServiceTag"), "SecurityRuleInvalidAddressPrefix"),
        (rule("both", 123, source_address_prefixes=["10.1.0.0/16"]), "SecurityRuleParameterContainsUnsupportedValue"),
        (rule("conflict", 110), "SecurityRuleConflict"),
        (rule("bad-name-", 124), "InvalidResourceName"),
    ]
    for body, code in cases:
        expect_error(HttpResponseError, lambda body=body: client.security_rules.begin_create_or_update(
            GROUP, NSG, body.name, body, **HTTP).result(), code=code, status=400)
    # The same priority in the other direction is fine.
    client.security_rules.begin_create_or_update(GROUP, NSG, "out-110", rule("out-110", 110, direction="Outbound"), **HTTP).result()


@check
def unknown_resources_are_not_found():
    expect_error(ResourceNotFoundError, lambda: client.network_security_groups.get(GROUP, "no-such-nsg", **HTTP))
    expect_error(ResourceNotFoundError, lambda: client.security_rules.get(GROUP, NSG, "no-such-rule", **HTTP))


@check
def application_security_groups_are_referenced_by_id():
    asg = client.application_security_groups.begin_create_or_update(
        GROUP, "nodes", ApplicationSecurityGroup(location="westeurope"), **HTTP).result()
    body = rule("to-nodes", 130, destination_address_prefix=None, destination_application_security_groups=[asg])
    created = client.security_rules.begin_create_or_update(GROUP, NSG, "to-nodes", body, **HTTP).result()
    assert created.destination_application_security_groups[0].id == asg.id
    missing = ApplicationSecurityGroup(id=asg.id.replace("/nodes", "/absent"))
    body = rule("to-absent", 131, destination_address_prefix=None, destination_application_security_groups=[missing])
    expect_error(HttpResponseError, lambda: client.security_rules.begin_create_or_update(
        GROUP, NSG, "to-absent", body, **HTTP).result(), code="InvalidResourceReference")


@check
def slow_operations_are_polled_until_they_succeed():
    admin("POST", "azure/operations", {"polls_until_done": 3})
    try:
        poller = client.security_rules.begin_delete(GROUP, NSG, "r149", **HTTP)
        poller.result()
        assert poller.status() == "Succeeded", poller.status()
        poller = client.security_rules.begin_create_or_update(GROUP, NSG, "slow", rule("slow", 400), **HTTP)
        assert poller.result().provisioning_state == "Succeeded"
    finally:
        admin("POST", "azure/operations", {"polls_until_done": 0})
    expect_error(ResourceNotFoundError, lambda: client.security_rules.get(GROUP, NSG, "r149", **HTTP))


@check
def throttling_is_retried_by_the_sdk_and_surfaces_when_retries_are_off():
    calls_before = admin("GET", "calls")["total"]
    admin("POST", "faults", {"method": "GET", "path_contains": "/securityRules/", "times": 2, "status": 429, "retry_after_seconds": 0})
    client.security_rules.get(GROUP, NSG, "allow-ssh", **HTTP)
    assert admin("GET", "calls")["total"] - calls_before == 3, "two throttled attempts and one that worked"
    admin("POST", "faults", {"method": "GET", "path_contains": "/securityRules/", "times": 1, "status": 429, "retry_after_seconds": 0})
    error = expect_error(HttpResponseError, lambda: client.security_rules.get(GROUP, NSG, "allow-ssh", retry_total=0, **HTTP), status=429)
    assert error.error.code == "SubscriptionRequestsThrottled", error.error.code


@check
def api_version_and_token_are_required():
    path = f"{URL}/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/Microsoft.Network/networkSecurityGroups/{NSG}"
    for url, headers, status, code in [
        (path, {"Authorization": "Bearer x"}, 400, "MissingApiVersionParameter"),
        (path + "?api-version=1999-01-01", {"Authorization": "Bearer x"}, 400, "InvalidResourceType"),
        (path + "?api-version=2024-05-01", {}, 401, "AuthenticationFailed"),
    ]:
        try:
            urllib.request.urlopen(urllib.request.Request(url, headers=headers))
            raise AssertionError(f"expected {status} for {url}")
        except urllib.error.HTTPError as error:
            body = json.load(error)
            assert (error.code, body["error"]["code"]) == (status, code), (error.code, body)


@check
def subnets_and_nics_carry_nsgs_and_the_nsg_shows_them():
    nsg = client.network_security_groups.get(GROUP, NSG, **HTTP)
    vnet = client.virtual_networks.begin_create_or_update(GROUP, "vnet", VirtualNetwork(
        location="westeurope", address_space=AddressSpace(address_prefixes=["10.20.0.0/16"]),
        subnets=[Subnet(name="workers", address_prefix="10.20.1.0/24")]), **HTTP).result()
    assert [s.name for s in vnet.subnets] == ["workers"], vnet.subnets
    subnet = client.subnets.get(GROUP, "vnet", "workers", **HTTP)
    assert subnet.network_security_group is None
    subnet.network_security_group = NetworkSecurityGroup(id=nsg.id)
    subnet = client.subnets.begin_create_or_update(GROUP, "vnet", "workers", subnet, **HTTP).result()
    assert subnet.network_security_group.id == nsg.id, subnet.network_security_group
    asg = client.application_security_groups.get(GROUP, "nodes", **HTTP)
    nic = client.network_interfaces.begin_create_or_update(GROUP, "node-0", NetworkInterface(
        location="westeurope", tags={"role": "worker"}, network_security_group=NetworkSecurityGroup(id=nsg.id),
        ip_configurations=[NetworkInterfaceIPConfiguration(
            name="ipconfig1", subnet=Subnet(id=subnet.id), application_security_groups=[asg])]), **HTTP).result()
    config = nic.ip_configurations[0]
    assert config.private_ip_address == "10.20.1.4", config.private_ip_address
    assert config.application_security_groups[0].id == asg.id
    listed = [n.name for n in client.network_interfaces.list(GROUP, **HTTP)]
    assert listed == ["node-0"], listed
    shown = client.network_security_groups.get(GROUP, NSG, **HTTP)
    assert [s.id for s in shown.subnets] == [subnet.id], shown.subnets
    assert [n.id for n in shown.network_interfaces] == [nic.id], shown.network_interfaces
    missing = NetworkSecurityGroup(id=nsg.id.replace(NSG, "absent"))
    subnet.network_security_group = missing
    expect_error(HttpResponseError, lambda: client.subnets.begin_create_or_update(
        GROUP, "vnet", "workers", subnet, **HTTP).result(), code="InvalidResourceReference")


@check
def effective_security_groups_list_both_layers_with_default_rules():
    result = client.network_interfaces.begin_list_effective_network_security_groups(GROUP, "node-0", **HTTP).result()
    layers = result.value
    assert len(layers) == 2, layers
    assert layers[0].association.subnet.id.endswith("/subnets/workers"), layers[0].association
    assert layers[1].association.network_interface.id.endswith("/networkInterfaces/node-0"), layers[1].association
    names = [r.name for r in layers[0].effective_security_rules]
    assert "securityRules/allow-ssh" in names and "defaultSecurityRules/DenyAllInBound" in names, names
    ssh = next(r for r in layers[0].effective_security_rules if r.name == "securityRules/allow-ssh")
    assert (ssh.protocol, ssh.destination_port_ranges, ssh.access) == ("Tcp", ["22-22"], "Allow"), ssh


@check
def an_nsg_in_use_cannot_be_deleted_until_dissociated():
    expect_error(HttpResponseError, lambda: client.network_security_groups.begin_delete(GROUP, NSG, **HTTP).result(),
                 code="InUseNetworkSecurityGroupCannotBeDeleted", status=400)
    client.network_interfaces.begin_delete(GROUP, "node-0", **HTTP).result()
    subnet = client.subnets.get(GROUP, "vnet", "workers", **HTTP)
    subnet.network_security_group = None
    subnet = client.subnets.begin_create_or_update(GROUP, "vnet", "workers", subnet, **HTTP).result()
    assert subnet.network_security_group is None
    assert client.network_security_groups.get(GROUP, NSG, **HTTP).subnets == []


@check
def whole_nsg_put_replaces_the_rules_and_delete_removes_it():
    nsg = client.network_security_groups.begin_create_or_update(
        GROUP, NSG, NetworkSecurityGroup(location="westeurope", security_rules=[rule("only", 100)]), **HTTP).result()
    assert [r.name for r in nsg.security_rules] == ["only"]
    client.network_security_groups.begin_delete(GROUP, NSG, **HTTP).result()
    expect_error(ResourceNotFoundError, lambda: client.network_security_groups.get(GROUP, NSG, **HTTP))
    # Deleting what is not there is not an error in ARM (204).
    client.network_security_groups.begin_delete(GROUP, NSG, **HTTP).result()


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
    print(f"azure conformance (azure-mgmt-network): {len(CHECKS) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
