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
    ApplicationSecurityGroup,
    NetworkSecurityGroup,
    SecurityRule,
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
