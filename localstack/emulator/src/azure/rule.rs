//! Validation and normalisation of an ARM `securityRules` resource, as Microsoft.Network does
//! them (../shared/design/cloud-facts.md A5): name 1–80 characters of word characters, `.`,
//! `-`, `_`; priority 100–4096; protocol Tcp, Udp, Icmp, Esp, Ah or `*`; ports `*`, `N` or
//! `N-M`; address prefixes `*`, an IP, a CIDR or a known service tag; exactly one of the
//! single and plural forms (or application security groups) per side.

use std::net::IpAddr;

use serde_json::{Map, Value, json};

use super::ArmError;

/// Service tags the emulator knows (the ones perimeter and AKS use, and the common others).
pub(super) const SERVICE_TAGS: &[&str] = &[
    "VirtualNetwork",
    "AzureLoadBalancer",
    "Internet",
    "AzurePlatformIMDS",
    "AzurePlatformDNS",
    "AzurePlatformLKM",
    "AzureCloud",
    "AzureMonitor",
    "AzureActiveDirectory",
    "AzureContainerRegistry",
    "AzureKubernetesService",
    "Storage",
    "Sql",
    "GatewayManager",
];

const MAX_DESCRIPTION: usize = 140;
/// Addresses or ranges in one rule side (the documented limit is 4,000 per NSG side).
const MAX_PREFIXES: usize = 4000;

pub(super) fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric();
    !b.is_empty()
        && b.len() <= 80
        && word(b[0])
        && (word(b[b.len() - 1]) || b[b.len() - 1] == b'_')
        && b.iter()
            .all(|&c| word(c) || matches!(c, b'.' | b'-' | b'_'))
}

fn invalid(code: &str, message: String) -> ArmError {
    ArmError::new(400, code, &message)
}

fn text<'a>(props: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, ArmError> {
    match props.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(other) => Err(invalid(
            "InvalidRequestFormat",
            format!("Cannot parse the request: property '{key}' must be a string, not {other}."),
        )),
    }
}

fn list(props: &Map<String, Value>, key: &str) -> Result<Vec<Value>, ArmError> {
    match props.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items.clone()),
        Some(other) => Err(invalid(
            "InvalidRequestFormat",
            format!("Cannot parse the request: property '{key}' must be an array, not {other}."),
        )),
    }
}

fn strings(props: &Map<String, Value>, key: &str) -> Result<Vec<String>, ArmError> {
    list(props, key)?
        .into_iter()
        .map(|v| match v {
            Value::String(s) => Ok(s),
            other => Err(invalid(
                "InvalidRequestFormat",
                format!("Cannot parse the request: '{key}' must hold strings, not {other}."),
            )),
        })
        .collect()
}

fn one_of<T: AsRef<str>>(values: &[T], allowed: &[&'static str]) -> Option<&'static str> {
    let value = values.first()?.as_ref();
    allowed
        .iter()
        .copied()
        .find(|a| a.eq_ignore_ascii_case(value))
}

fn valid_port_range(text: &str) -> bool {
    let port = |p: &str| {
        !p.is_empty()
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| n <= 65535)
    };
    text == "*"
        || match text.split_once('-') {
            Some((a, b)) => port(a) && port(b) && a.parse::<u32>().ok() <= b.parse::<u32>().ok(),
            None => port(text),
        }
}

fn valid_prefix(text: &str) -> bool {
    if text == "*" || SERVICE_TAGS.iter().any(|t| t.eq_ignore_ascii_case(text)) {
        return true;
    }
    // Regional service tags: `Storage.WestEurope`.
    if let Some((tag, region)) = text.split_once('.')
        && SERVICE_TAGS.iter().any(|t| t.eq_ignore_ascii_case(tag))
        && !region.is_empty()
        && region.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return true;
    }
    let (address, length) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    let Ok(ip) = address.parse::<IpAddr>() else {
        return false;
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    length.is_none_or(|l| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_digit())
            && l.parse::<u32>().is_ok_and(|n| n <= max)
    })
}

/// One side's ports: exactly one of the single and plural forms.
fn ports(
    props: &Map<String, Value>,
    side: &str,
) -> Result<(Option<String>, Vec<String>), ArmError> {
    let single_key = format!("{side}PortRange");
    let plural_key = format!("{side}PortRanges");
    let single = text(props, &single_key)?.map(str::to_string);
    let plural = strings(props, &plural_key)?;
    match (&single, plural.is_empty()) {
        (Some(_), false) => {
            return Err(invalid(
                "SecurityRuleParameterContainsUnsupportedValue",
                format!(
                    "Security rule parameters {single_key} and {plural_key} cannot be specified at the same time."
                ),
            ));
        }
        (None, true) => {
            return Err(invalid(
                "SecurityRuleInvalidPortRange",
                format!("Security rule must specify {single_key} or {plural_key}."),
            ));
        }
        _ => {}
    }
    for value in single.iter().chain(&plural) {
        if !valid_port_range(value) {
            return Err(invalid(
                "SecurityRuleInvalidPortRange",
                format!(
                    "Security rule has invalid Port range. Value provided: {value}. Value should be an integer OR integer range with '-' delimiter. Valid range 0-65535."
                ),
            ));
        }
    }
    Ok((single, plural))
}

/// One side's addresses: the prefix, the prefixes and the application security groups, of
/// which exactly one is given.
type Addresses = (Option<String>, Vec<String>, Vec<Value>);

/// One side's addresses: exactly one of prefix, prefixes and application security groups.
fn addresses(
    props: &Map<String, Value>,
    side: &str,
    asg_exists: &dyn Fn(&str) -> bool,
) -> Result<Addresses, ArmError> {
    let single_key = format!("{side}AddressPrefix");
    let plural_key = format!("{side}AddressPrefixes");
    let asg_key = format!("{side}ApplicationSecurityGroups");
    let single = text(props, &single_key)?.map(str::to_string);
    let plural = strings(props, &plural_key)?;
    let asgs = list(props, &asg_key)?;
    let given = usize::from(single.is_some())
        + usize::from(!plural.is_empty())
        + usize::from(!asgs.is_empty());
    if given != 1 {
        return Err(invalid(
            "SecurityRuleParameterContainsUnsupportedValue",
            format!(
                "Security rule must specify exactly one of {single_key}, {plural_key} and {asg_key}."
            ),
        ));
    }
    if plural.len() > MAX_PREFIXES {
        return Err(invalid(
            "SecurityRuleInvalidAddressPrefix",
            format!(
                "Security rule has {} address prefixes; at most {MAX_PREFIXES} are allowed.",
                plural.len()
            ),
        ));
    }
    for value in single.iter().chain(&plural) {
        if !valid_prefix(value) {
            return Err(invalid(
                "SecurityRuleInvalidAddressPrefix",
                format!("Security rule has invalid Address prefix. Value provided: {value}"),
            ));
        }
    }
    // "You can't specify multiple service tags or application groups in a single rule."
    if plural.len() > 1
        && plural
            .iter()
            .any(|p| p.parse::<IpAddr>().is_err() && !p.contains('/') && p != "*")
    {
        return Err(invalid(
            "SecurityRuleInvalidAddressPrefix",
            format!("Security rule {plural_key} cannot contain service tags or '*'."),
        ));
    }
    for asg in &asgs {
        let id = asg.get("id").and_then(Value::as_str).unwrap_or_default();
        if !asg_exists(id) {
            return Err(invalid(
                "InvalidResourceReference",
                format!(
                    "Resource {id} referenced by resource security rule was not found. Please make sure that the referenced resource exists, and that both resources are in the same region."
                ),
            ));
        }
    }
    Ok((single, plural, asgs))
}

/// Validates the `properties` of a rule and returns the rule as ARM stores and returns it.
pub(super) fn normalize(
    name: &str,
    id: &str,
    etag: &str,
    body: &Value,
    asg_exists: &dyn Fn(&str) -> bool,
) -> Result<Value, ArmError> {
    if !valid_name(name) {
        return Err(invalid(
            "InvalidResourceName",
            format!(
                "Resource name {name} is invalid. The name can be up to 80 characters long. It must begin with a word character, and it must end with a word character or with '_'. The name may contain word characters or '.', '-', '_'."
            ),
        ));
    }
    let Some(props) = body.get("properties").and_then(Value::as_object) else {
        return Err(invalid(
            "InvalidRequestFormat",
            "Cannot parse the request: the rule has no 'properties'.".into(),
        ));
    };
    let protocol = text(props, "protocol")?.unwrap_or_default();
    let Some(protocol) = one_of(&[protocol], &["Tcp", "Udp", "Icmp", "Esp", "Ah", "*"]) else {
        return Err(invalid(
            "SecurityRuleInvalidProtocol",
            format!(
                "Security rule has invalid Protocol. Value provided: {protocol}. Allowed values: Tcp, Udp, Icmp, Esp, Ah, *."
            ),
        ));
    };
    let access = text(props, "access")?.unwrap_or_default();
    let Some(access) = one_of(&[access], &["Allow", "Deny"]) else {
        return Err(invalid(
            "SecurityRuleInvalidAccess",
            format!(
                "Security rule has invalid Access. Value provided: {access}. Allowed values: Allow, Deny."
            ),
        ));
    };
    let direction = text(props, "direction")?.unwrap_or_default();
    let Some(direction) = one_of(&[direction], &["Inbound", "Outbound"]) else {
        return Err(invalid(
            "SecurityRuleInvalidDirection",
            format!(
                "Security rule has invalid Direction. Value provided: {direction}. Allowed values: Inbound, Outbound."
            ),
        ));
    };
    let priority = match props.get("priority") {
        Some(Value::Number(n)) if n.as_i64().is_some_and(|p| (100..=4096).contains(&p)) => {
            n.as_i64().unwrap_or(100)
        }
        other => {
            let shown = other.map_or("none".to_string(), Value::to_string);
            return Err(invalid(
                "SecurityRuleInvalidPriority",
                format!(
                    "Security rule has invalid Priority. Value provided: {shown} Allowed range 100-4096."
                ),
            ));
        }
    };
    let description = text(props, "description")?.map(str::to_string);
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION)
    {
        return Err(invalid(
            "SecurityRuleInvalidDescription",
            format!("Security rule description is longer than {MAX_DESCRIPTION} characters."),
        ));
    }
    let (source_port, source_ports) = ports(props, "source")?;
    let (destination_port, destination_ports) = ports(props, "destination")?;
    let (source, sources, source_asgs) = addresses(props, "source", asg_exists)?;
    let (destination, destinations, destination_asgs) =
        addresses(props, "destination", asg_exists)?;

    let mut out = Map::new();
    out.insert("provisioningState".into(), json!("Succeeded"));
    if let Some(d) = description {
        out.insert("description".into(), json!(d));
    }
    out.insert("protocol".into(), json!(protocol));
    if let Some(p) = source_port {
        out.insert("sourcePortRange".into(), json!(p));
    }
    if let Some(p) = destination_port {
        out.insert("destinationPortRange".into(), json!(p));
    }
    if let Some(p) = source {
        out.insert("sourceAddressPrefix".into(), json!(p));
    }
    if let Some(p) = destination {
        out.insert("destinationAddressPrefix".into(), json!(p));
    }
    out.insert("access".into(), json!(access));
    out.insert("priority".into(), json!(priority));
    out.insert("direction".into(), json!(direction));
    out.insert("sourcePortRanges".into(), json!(source_ports));
    out.insert("destinationPortRanges".into(), json!(destination_ports));
    out.insert("sourceAddressPrefixes".into(), json!(sources));
    out.insert("destinationAddressPrefixes".into(), json!(destinations));
    if !source_asgs.is_empty() {
        out.insert("sourceApplicationSecurityGroups".into(), json!(source_asgs));
    }
    if !destination_asgs.is_empty() {
        out.insert(
            "destinationApplicationSecurityGroups".into(),
            json!(destination_asgs),
        );
    }
    Ok(json!({
        "name": name,
        "id": id,
        "etag": etag,
        "type": "Microsoft.Network/networkSecurityGroups/securityRules",
        "properties": out,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(properties: Value) -> Result<Value, String> {
        let body = json!({"properties": properties});
        normalize("r", "/x/securityRules/r", "W/\"1\"", &body, &|id| {
            id.ends_with("/nodes")
        })
        .map_err(|e| e.message)
    }

    fn rule() -> Value {
        json!({"protocol": "tcp", "access": "allow", "direction": "inbound", "priority": 110,
               "sourcePortRange": "*", "destinationPortRange": "22",
               "sourceAddressPrefix": "10.0.0.0/8", "destinationAddressPrefix": "*"})
    }

    fn with(key: &str, value: Value) -> Value {
        let mut r = rule();
        r[key] = value;
        r
    }

    #[test]
    fn a_valid_rule_is_stored_in_canonical_case_with_every_list() {
        let stored = check(rule()).unwrap();
        let p = &stored["properties"];
        assert_eq!(
            (
                p["protocol"].as_str(),
                p["access"].as_str(),
                p["direction"].as_str()
            ),
            (Some("Tcp"), Some("Allow"), Some("Inbound"))
        );
        assert_eq!(p["sourceAddressPrefixes"], json!([]));
        assert_eq!(p["provisioningState"], "Succeeded");
    }

    #[test]
    fn invalid_rules_get_arms_codes() {
        let cases = [
            (with("priority", json!(99)), "SecurityRuleInvalidPriority"),
            (with("priority", json!(4097)), "SecurityRuleInvalidPriority"),
            (
                with("protocol", json!("Gre")),
                "SecurityRuleInvalidProtocol",
            ),
            (
                with("destinationPortRange", json!("70000")),
                "SecurityRuleInvalidPortRange",
            ),
            (
                with("destinationPortRange", json!("20-10")),
                "SecurityRuleInvalidPortRange",
            ),
            (
                with("sourceAddressPrefix", json!("10.0.0.0/33")),
                "SecurityRuleInvalidAddressPrefix",
            ),
            (
                with("sourceAddressPrefix", json!("NoSuchTag")),
                "SecurityRuleInvalidAddressPrefix",
            ),
            (
                with("sourceAddressPrefixes", json!(["10.0.0.0/8"])),
                "SecurityRuleParameterContainsUnsupportedValue",
            ),
            (
                with("destinationPortRanges", json!(["1"])),
                "SecurityRuleParameterContainsUnsupportedValue",
            ),
            (with("access", json!("Maybe")), "SecurityRuleInvalidAccess"),
            (
                with("direction", json!("Sideways")),
                "SecurityRuleInvalidDirection",
            ),
            (
                with("description", json!("x".repeat(141))),
                "SecurityRuleInvalidDescription",
            ),
        ];
        for (props, code) in cases {
            let body = json!({"properties": props});
            let err = normalize("r", "/x", "e", &body, &|_| false).expect_err(&props.to_string());
            assert_eq!(err.code, code, "{props}: {}", err.message);
        }
        let mut missing = rule();
        missing
            .as_object_mut()
            .unwrap()
            .remove("sourceAddressPrefix");
        assert!(check(missing).is_err());
    }

    #[test]
    fn names_and_references() {
        assert!(valid_name("perimeter-aks-workers-in-ssh_"));
        assert!(!valid_name("-leading"));
        assert!(!valid_name("trailing."));
        assert!(!valid_name(&"a".repeat(81)));
        assert!(check(with("sourceAddressPrefix", json!("AzureLoadBalancer"))).is_ok());
        assert!(check(with("sourceAddressPrefix", json!("Storage.WestEurope"))).is_ok());
        let mut asg = rule();
        asg.as_object_mut()
            .unwrap()
            .remove("destinationAddressPrefix");
        asg["destinationApplicationSecurityGroups"] = json!([{"id": "/sub/asg/nodes"}]);
        assert!(check(asg.clone()).is_ok());
        asg["destinationApplicationSecurityGroups"] = json!([{"id": "/sub/asg/other"}]);
        assert!(check(asg).unwrap_err().contains("was not found"));
    }
}
