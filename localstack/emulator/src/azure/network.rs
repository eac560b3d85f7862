//! Where NSGs take effect: `virtualNetworks` with their `subnets` (an NSG associated with a
//! subnet), `networkInterfaces` (an NSG on the NIC, the NIC's subnet and its application
//! security groups) and `networkInterfaces/{nic}/effectiveNetworkSecurityGroups`, the rules
//! of both layers as Azure applies them to that NIC (cloud-facts.md A2: inbound subnet NSG then
//! NIC NSG, outbound NIC NSG then subnet NSG; a packet passes only if both allow).
//!
//! Stored as ARM JSON, keyed by lower-case id. An NSG, subnet or ASG a write names must exist
//! (400 `InvalidResourceReference`); a subnet a NIC uses cannot be deleted, and an NSG with
//! associations cannot be deleted (400 `InUseNetworkSecurityGroupCannotBeDeleted`).

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::nsg::{accepted_delete, if_match, with_async_headers};
use super::routes::Route;
use super::{ArmError, PAGE_SIZE, State, default_rules};
use crate::http::{Request, Response};

/// The routes of this module.
pub(super) fn serve(
    state: &mut State,
    base: &str,
    sub: &str,
    method: &str,
    route: Route<'_>,
    request: &Request,
) -> Result<Response, ArmError> {
    let network_id = |group: &str, kind: &str, name: &str| {
        format!(
            "/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.Network/{kind}/{name}"
        )
    };
    match (method, route) {
        ("PUT", Route::Vnet { group, vnet }) => put_vnet(
            state,
            base,
            sub,
            request,
            &network_id(group, "virtualNetworks", vnet),
            vnet,
        ),
        ("GET", Route::Vnet { group, vnet }) => state
            .vnets
            .get(&network_id(group, "virtualNetworks", vnet).to_ascii_lowercase())
            .map(|v| Response::json(200, v))
            .ok_or_else(|| ArmError::not_found("Microsoft.Network/virtualNetworks", vnet, group)),
        (
            "GET",
            Route::Subnet {
                group,
                vnet,
                subnet,
            },
        ) => {
            let id = format!(
                "{}/subnets/{subnet}",
                network_id(group, "virtualNetworks", vnet)
            );
            find_subnet(state, &id)
                .map(|s| Response::json(200, s))
                .ok_or_else(|| {
                    ArmError::not_found(
                        &format!("Microsoft.Network/virtualNetworks/{vnet}/subnets"),
                        subnet,
                        group,
                    )
                })
        }
        (
            "PUT",
            Route::Subnet {
                group,
                vnet,
                subnet,
            },
        ) => put_subnet(
            state,
            base,
            sub,
            request,
            &network_id(group, "virtualNetworks", vnet),
            subnet,
        ),
        (
            "DELETE",
            Route::Subnet {
                group,
                vnet,
                subnet,
            },
        ) => delete_subnet(
            state,
            base,
            sub,
            &network_id(group, "virtualNetworks", vnet),
            subnet,
        ),
        ("GET", Route::NicList { group }) => list_nics(
            state,
            base,
            request,
            network_id(group, "networkInterfaces", "").trim_end_matches('/'),
        ),
        ("GET", Route::Nic { group, nic }) => state
            .nics
            .get(&network_id(group, "networkInterfaces", nic).to_ascii_lowercase())
            .map(|v| Response::json(200, v))
            .ok_or_else(|| ArmError::not_found("Microsoft.Network/networkInterfaces", nic, group)),
        ("PUT", Route::Nic { group, nic }) => put_nic(
            state,
            base,
            sub,
            request,
            &network_id(group, "networkInterfaces", nic),
            nic,
        ),
        ("DELETE", Route::Nic { group, nic }) => Ok(delete_nic(
            state,
            base,
            sub,
            &network_id(group, "networkInterfaces", nic),
        )),
        ("POST", Route::EffectiveNsgs { group, nic }) => effective_nsgs(
            state,
            base,
            sub,
            &network_id(group, "networkInterfaces", nic),
            group,
            nic,
        ),
        _ => Err(ArmError::new(
            405,
            "MethodNotAllowed",
            &format!("The requested method {method} is not allowed here."),
        )),
    }
}

fn bad_reference(what: &str, id: &str) -> ArmError {
    ArmError::new(
        400,
        "InvalidResourceReference",
        &format!("Resource {id} referenced by {what} was not found."),
    )
}

fn body_of(request: &Request) -> Result<Value, ArmError> {
    request
        .json()
        .map_err(|m| ArmError::new(400, "InvalidRequestContent", &m))
}

fn location_of(body: &Value) -> Result<String, ArmError> {
    match body.get("location").and_then(Value::as_str) {
        Some(l) if !l.is_empty() => Ok(l.to_string()),
        _ => Err(ArmError::new(
            400,
            "LocationRequired",
            "The location property is required for this definition.",
        )),
    }
}

fn id_of(v: &Value) -> Option<String> {
    v.get("id").and_then(Value::as_str).map(str::to_string)
}

/// The subnet with this id, as stored in its VNet.
pub(super) fn find_subnet<'a>(state: &'a State, id: &str) -> Option<&'a Value> {
    let (vnet, _) = id.rsplit_once("/subnets/")?;
    state
        .vnets
        .get(&vnet.to_ascii_lowercase())?
        .pointer("/properties/subnets")?
        .as_array()?
        .iter()
        .find(|s| id_of(s).is_some_and(|i| i.eq_ignore_ascii_case(id)))
}

/// One subnet as ARM stores it: address prefix, optional NSG, a fresh etag.
fn subnet(
    state: &mut State,
    vnet_id: &str,
    name: &str,
    given: &Value,
    etag: &str,
) -> Result<Value, ArmError> {
    let props = given.get("properties").cloned().unwrap_or(json!({}));
    let prefix = props
        .get("addressPrefix")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ArmError::new(
                400,
                "InvalidRequestFormat",
                &format!("Subnet {name} needs properties.addressPrefix."),
            )
        })?;
    let id = format!("{vnet_id}/subnets/{name}");
    let mut out = json!({
        "name": name, "id": id, "etag": etag,
        "type": "Microsoft.Network/virtualNetworks/subnets",
        "properties": {"provisioningState": "Succeeded", "addressPrefix": prefix},
    });
    if let Some(nsg) = props.get("networkSecurityGroup").filter(|v| !v.is_null()) {
        let nsg_id = id_of(nsg).unwrap_or_default();
        if !state.nsgs.contains_key(&nsg_id.to_ascii_lowercase()) {
            return Err(bad_reference(&format!("subnet {name}"), &nsg_id));
        }
        out["properties"]["networkSecurityGroup"] = json!({"id": nsg_id});
    }
    state.next();
    Ok(out)
}

pub(super) fn put_vnet(
    state: &mut State,
    base: &str,
    sub: &str,
    request: &Request,
    id: &str,
    name: &str,
) -> Result<Response, ArmError> {
    let key = id.to_ascii_lowercase();
    if_match(
        request,
        state.vnets.get(&key).and_then(|v| v["etag"].as_str()),
    )?;
    let body = body_of(request)?;
    let location = location_of(&body)?;
    let etag = state.etag();
    let mut subnets = Vec::new();
    let given = body
        .pointer("/properties/subnets")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for s in &given {
        let sname = s.get("name").and_then(Value::as_str).unwrap_or_default();
        subnets.push(subnet(state, id, sname, s, &etag)?);
    }
    let existed = state.vnets.contains_key(&key);
    let stored = json!({
        "name": name, "id": id, "etag": etag, "location": location,
        "type": "Microsoft.Network/virtualNetworks",
        "tags": body.get("tags").cloned().unwrap_or(json!({})),
        "properties": {
            "provisioningState": "Succeeded",
            "addressSpace": body.pointer("/properties/addressSpace").cloned().unwrap_or(json!({"addressPrefixes": []})),
            "subnets": subnets,
        }
    });
    state.vnets.insert(key, stored.clone());
    let op = state.operation();
    Ok(with_async_headers(
        Response::json(if existed { 200 } else { 201 }, &stored),
        base,
        sub,
        &location,
        &op,
    ))
}

pub(super) fn put_subnet(
    state: &mut State,
    base: &str,
    sub: &str,
    request: &Request,
    vnet_id: &str,
    name: &str,
) -> Result<Response, ArmError> {
    let vkey = vnet_id.to_ascii_lowercase();
    let Some(vnet) = state.vnets.get(&vkey) else {
        return Err(ArmError::new(
            404,
            "NotFound",
            &format!("Virtual network {vnet_id} was not found."),
        ));
    };
    let location = vnet["location"].as_str().unwrap_or_default().to_string();
    let id = format!("{vnet_id}/subnets/{name}");
    if_match(
        request,
        find_subnet(state, &id).and_then(|s| s["etag"].as_str()),
    )?;
    let body = body_of(request)?;
    let etag = state.etag();
    let stored = subnet(state, vnet_id, name, &body, &etag)?;
    let vnet = state.vnets.get_mut(&vkey).expect("checked above");
    vnet["etag"] = json!(etag);
    let list = vnet["properties"]["subnets"]
        .as_array_mut()
        .expect("stored as an array");
    let existed = match list
        .iter_mut()
        .find(|s| id_of(s).is_some_and(|i| i.eq_ignore_ascii_case(&id)))
    {
        Some(slot) => {
            *slot = stored.clone();
            true
        }
        None => {
            list.push(stored.clone());
            false
        }
    };
    let op = state.operation();
    Ok(with_async_headers(
        Response::json(if existed { 200 } else { 201 }, &stored),
        base,
        sub,
        &location,
        &op,
    ))
}

/// DELETE of a subnet: refused while a NIC is in it.
pub(super) fn delete_subnet(
    state: &mut State,
    base: &str,
    sub: &str,
    vnet_id: &str,
    name: &str,
) -> Result<Response, ArmError> {
    let id = format!("{vnet_id}/subnets/{name}").to_ascii_lowercase();
    if state
        .nics
        .values()
        .any(|n| nic_subnets(n).iter().any(|s| s.eq_ignore_ascii_case(&id)))
    {
        return Err(ArmError::new(
            400,
            "InUseSubnetCannotBeDeleted",
            &format!("Subnet {name} is in use and cannot be deleted."),
        ));
    }
    let Some(vnet) = state.vnets.get_mut(&vnet_id.to_ascii_lowercase()) else {
        return Ok(accepted_delete(state, base, sub, None));
    };
    let location = vnet["location"].as_str().unwrap_or_default().to_string();
    let list = vnet["properties"]["subnets"]
        .as_array_mut()
        .expect("stored as an array");
    let before = list.len();
    list.retain(|s| !id_of(s).is_some_and(|i| i.eq_ignore_ascii_case(&id)));
    let removed = list.len() != before;
    Ok(accepted_delete(
        state,
        base,
        sub,
        removed.then_some(location),
    ))
}

fn nic_subnets(nic: &Value) -> Vec<String> {
    nic.pointer("/properties/ipConfigurations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.pointer("/properties/subnet/id").and_then(Value::as_str))
        .map(str::to_string)
        .collect()
}

/// The next free address of a subnet (Azure keeps the first four and the last).
fn allocate(state: &State, subnet_prefix: &str) -> Option<String> {
    let (net, len) = subnet_prefix.split_once('/')?;
    let net: Ipv4Addr = net.parse().ok()?;
    let len: u32 = len.parse().ok()?;
    let size = 1u64 << (32 - len.min(32));
    let used: Vec<String> = state
        .nics
        .values()
        .flat_map(|n| {
            n.pointer("/properties/ipConfigurations")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|c| {
            c.pointer("/properties/privateIPAddress")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect();
    (4..size.saturating_sub(1))
        .map(|i| Ipv4Addr::from(u32::from(net).wrapping_add(i as u32)).to_string())
        .find(|a| !used.contains(a))
}

pub(super) fn put_nic(
    state: &mut State,
    base: &str,
    sub: &str,
    request: &Request,
    id: &str,
    name: &str,
) -> Result<Response, ArmError> {
    let key = id.to_ascii_lowercase();
    if_match(
        request,
        state.nics.get(&key).and_then(|v| v["etag"].as_str()),
    )?;
    let body = body_of(request)?;
    let location = location_of(&body)?;
    let etag = state.etag();
    let what = format!("network interface {name}");
    let mut configs = Vec::new();
    let given = body
        .pointer("/properties/ipConfigurations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if given.is_empty() {
        return Err(ArmError::new(
            400,
            "NetworkInterfaceMustHaveAtLeastOneIpConfiguration",
            &format!("Network interface {name} must have at least one IP configuration."),
        ));
    }
    for (i, c) in given.iter().enumerate() {
        let cname = c.get("name").and_then(Value::as_str).unwrap_or("ipconfig1");
        let props = c.get("properties").cloned().unwrap_or(json!({}));
        let subnet_id = props
            .pointer("/subnet/id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let Some(found) = find_subnet(state, &subnet_id) else {
            return Err(bad_reference(&what, &subnet_id));
        };
        let prefix = found
            .pointer("/properties/addressPrefix")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut asgs = Vec::new();
        for a in props
            .get("applicationSecurityGroups")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let asg = id_of(a).unwrap_or_default();
            if !state.asgs.contains_key(&asg.to_ascii_lowercase()) {
                return Err(bad_reference(&what, &asg));
            }
            asgs.push(json!({"id": asg}));
        }
        let address = match props.get("privateIPAddress").and_then(Value::as_str) {
            Some(a) => a.to_string(),
            None => allocate(state, &prefix).unwrap_or_default(),
        };
        configs.push(json!({
            "name": cname, "id": format!("{id}/ipConfigurations/{cname}"), "etag": etag,
            "properties": {
                "provisioningState": "Succeeded",
                "privateIPAddress": address,
                "privateIPAllocationMethod": props.get("privateIPAllocationMethod").cloned().unwrap_or(json!("Dynamic")),
                "subnet": {"id": subnet_id},
                "primary": i == 0,
                "applicationSecurityGroups": asgs,
            }
        }));
    }
    let mut properties = json!({"provisioningState": "Succeeded", "ipConfigurations": configs});
    if let Some(nsg) = body
        .pointer("/properties/networkSecurityGroup")
        .filter(|v| !v.is_null())
    {
        let nsg_id = id_of(nsg).unwrap_or_default();
        if !state.nsgs.contains_key(&nsg_id.to_ascii_lowercase()) {
            return Err(bad_reference(&what, &nsg_id));
        }
        properties["networkSecurityGroup"] = json!({"id": nsg_id});
    }
    let existed = state.nics.contains_key(&key);
    let stored = json!({
        "name": name, "id": id, "etag": etag, "location": location,
        "type": "Microsoft.Network/networkInterfaces",
        "tags": body.get("tags").cloned().unwrap_or(json!({})),
        "properties": properties,
    });
    state.nics.insert(key, stored.clone());
    let op = state.operation();
    Ok(with_async_headers(
        Response::json(if existed { 200 } else { 201 }, &stored),
        base,
        sub,
        &location,
        &op,
    ))
}

/// The subnets and NICs an NSG is associated with (ARM shows them on the NSG).
pub(super) fn nsg_users(state: &State, nsg_id: &str) -> (Vec<Value>, Vec<Value>) {
    let uses = |v: &Value| {
        v.pointer("/properties/networkSecurityGroup/id")
            .and_then(Value::as_str)
            .is_some_and(|i| i.eq_ignore_ascii_case(nsg_id))
    };
    let subnets = state
        .vnets
        .values()
        .flat_map(|v| {
            v.pointer("/properties/subnets")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter(uses)
        .map(|s| json!({"id": s["id"]}))
        .collect();
    let nics = state
        .nics
        .values()
        .filter(|n| uses(n))
        .map(|n| json!({"id": n["id"]}))
        .collect();
    (subnets, nics)
}

/// The effective rules of one NSG as the `effectiveNetworkSecurityGroups` answer writes them.
fn effective_rules(nsg: &super::Nsg) -> Vec<Value> {
    let user = nsg.rules.iter().map(|r| {
        (
            format!("securityRules/{}", r["name"].as_str().unwrap_or("")),
            r,
        )
    });
    let defaults = default_rules(&nsg.id, &nsg.etag);
    let defaults = defaults.iter().map(|r| {
        (
            format!("defaultSecurityRules/{}", r["name"].as_str().unwrap_or("")),
            r,
        )
    });
    let mut out: Vec<Value> = user
        .chain(defaults)
        .map(|(name, r)| {
            let p = &r["properties"];
            let one_or_all = |single: &str, many: &str| -> Value {
                match p[single].as_str() {
                    Some(s) => json!([s]),
                    None => p[many].clone(),
                }
            };
            let protocol = match p["protocol"].as_str().unwrap_or("*") {
                "*" => "All",
                other => other,
            };
            let ports = one_or_all("destinationPortRange", "destinationPortRanges");
            let ports: Vec<Value> = ports
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| match v.as_str() {
                    Some("*") => json!("0-65535"),
                    Some(s) if !s.contains('-') => json!(format!("{s}-{s}")),
                    _ => v.clone(),
                })
                .collect();
            json!({
                "name": name,
                "protocol": protocol,
                "sourcePortRange": "0-65535",
                "destinationPortRanges": ports,
                "sourceAddressPrefixes": one_or_all("sourceAddressPrefix", "sourceAddressPrefixes"),
                "destinationAddressPrefixes": one_or_all("destinationAddressPrefix", "destinationAddressPrefixes"),
                "sourceApplicationSecurityGroups": p["sourceApplicationSecurityGroups"].clone(),
                "destinationApplicationSecurityGroups": p["destinationApplicationSecurityGroups"].clone(),
                "access": p["access"], "priority": p["priority"], "direction": p["direction"],
            })
        })
        .collect();
    out.sort_by_key(|r| {
        (
            r["direction"].as_str().unwrap_or("").to_string(),
            r["priority"].as_i64().unwrap_or(0),
        )
    });
    out
}

/// `POST …/networkInterfaces/{nic}/effectiveNetworkSecurityGroups`: a long-running operation
/// whose result (read at its `Location`) is the NSG of the NIC's subnet and the NIC's own, each
/// with its association and effective rules.
pub(super) fn effective_nsgs(
    state: &mut State,
    base: &str,
    sub: &str,
    nic_id: &str,
    group: &str,
    name: &str,
) -> Result<Response, ArmError> {
    let Some(nic) = state.nics.get(&nic_id.to_ascii_lowercase()).cloned() else {
        return Err(ArmError::new(
            404,
            "NotFound",
            &format!(
                "Resource Microsoft.Network/networkInterfaces/{name} under resource group {group} was not found."
            ),
        ));
    };
    let location = nic["location"].as_str().unwrap_or_default().to_string();
    let mut value = Vec::new();
    for subnet_id in nic_subnets(&nic).into_iter().take(1) {
        let nsg = find_subnet(state, &subnet_id)
            .and_then(|s| s.pointer("/properties/networkSecurityGroup/id"))
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(nsg) = nsg.and_then(|id| state.nsgs.get(&id.to_ascii_lowercase())) {
            value.push(json!({
                "networkSecurityGroup": {"id": nsg.id},
                "association": {"subnet": {"id": subnet_id}},
                "effectiveSecurityRules": effective_rules(nsg),
            }));
        }
    }
    if let Some(nsg) = nic
        .pointer("/properties/networkSecurityGroup/id")
        .and_then(Value::as_str)
        .and_then(|id| state.nsgs.get(&id.to_ascii_lowercase()))
    {
        value.push(json!({
            "networkSecurityGroup": {"id": nsg.id},
            "association": {"networkInterface": {"id": nic["id"]}},
            "effectiveSecurityRules": effective_rules(nsg),
        }));
    }
    let op = state.operation();
    if let Some(o) = state.operations.get_mut(&op) {
        o.result = Some(json!({"value": value}));
    }
    Ok(Response {
        status: 202,
        headers: Vec::new(),
        body: Vec::new(),
    }
    .with_header(
        "Location",
        format!("{base}/subscriptions/{sub}/providers/Microsoft.Network/locations/{location}/operationResults/{op}?api-version=2024-05-01"),
    )
    .with_header("Retry-After", "0"))
}

/// DELETE of a NIC (nothing refuses it here: the emulator has no VMs).
pub(super) fn delete_nic(state: &mut State, base: &str, sub: &str, id: &str) -> Response {
    let removed = state.nics.remove(&id.to_ascii_lowercase());
    let location = removed.map(|n| n["location"].as_str().unwrap_or_default().to_string());
    accepted_delete(state, base, sub, location)
}

/// A page of the NICs of one resource group, the rest behind `nextLink` (`$skiptoken`).
pub(super) fn list_nics(
    state: &State,
    base: &str,
    request: &Request,
    list_path: &str,
) -> Result<Response, ArmError> {
    let prefix = format!("{}/", list_path.to_ascii_lowercase());
    let skip = match request.query("$skiptoken") {
        Some(token) => token.parse::<usize>().map_err(|_| {
            ArmError::new(
                400,
                "InvalidSkipToken",
                &format!("The skip token '{token}' is not valid."),
            )
        })?,
        None => 0,
    };
    let all: Vec<&Value> = state
        .nics
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(_, v)| v)
        .collect();
    let page: Vec<Value> = all
        .iter()
        .skip(skip)
        .take(PAGE_SIZE)
        .map(|v| (*v).clone())
        .collect();
    let mut body = json!({"value": page});
    if skip.saturating_add(PAGE_SIZE) < all.len() {
        let version = request.query("api-version").unwrap_or("2024-05-01");
        body["nextLink"] = json!(format!(
            "{base}{list_path}?api-version={version}&$skiptoken={}",
            skip.saturating_add(PAGE_SIZE)
        ));
    }
    Ok(Response::json(200, &body))
}
