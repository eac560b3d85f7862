//! Validation and normalisation of a Compute v1 `Firewall`, as the real API does them
//! (https://cloud.google.com/compute/docs/reference/rest/v1/firewalls and the facts in
//! ../shared/design/cloud-facts.md A4): the name regex, priority 0–65535 (default 1000),
//! INGRESS/EGRESS (default INGRESS), exactly one of allowed and denied, one address family
//! per rule, an ingress rule without any source stored as `sourceRanges: ["0.0.0.0/0"]`,
//! target service accounts never mixed with tags.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::GcpError;

/// RE2 pattern the API quotes in its error message.
pub(super) const NAME_PATTERN: &str = "[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?";

static NAME: LazyLock<regex_lite::Regex> =
    LazyLock::new(|| regex_lite::Regex::new(&format!("^{NAME_PATTERN}$")).expect("valid regex"));

/// Per-rule limits. Google documents the source-range and tag limits per rule; the emulator
/// uses the ones Aerleon's GCE generator encodes (256 ranges, 30 source tags, 70 target tags),
/// the strictest published figures, so a plan that passes here passes in the cloud.
const MAX_RANGES: usize = 256;
const MAX_SOURCE_TAGS: usize = 30;
const MAX_TARGET_TAGS: usize = 70;
const MAX_DESCRIPTION: usize = 2048;
const MAX_PORTS: usize = 256;

/// The request body. Output-only fields are accepted and ignored, unknown fields refused —
/// the API answers "Invalid JSON payload received. Unknown name …" for those.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FirewallBody {
    name: Option<String>,
    description: Option<String>,
    network: Option<String>,
    priority: Option<i64>,
    direction: Option<String>,
    source_ranges: Option<Vec<String>>,
    destination_ranges: Option<Vec<String>>,
    source_tags: Option<Vec<String>>,
    target_tags: Option<Vec<String>>,
    source_service_accounts: Option<Vec<String>>,
    target_service_accounts: Option<Vec<String>>,
    allowed: Option<Vec<ProtocolPorts>>,
    denied: Option<Vec<ProtocolPorts>>,
    disabled: Option<bool>,
    log_config: Option<LogConfig>,
    params: Option<Value>,
    // Output-only fields a client may send back; the API ignores them.
    #[expect(dead_code, reason = "accepted and ignored, like the API does")]
    kind: Option<Value>,
    #[expect(dead_code, reason = "accepted and ignored, like the API does")]
    id: Option<Value>,
    #[expect(dead_code, reason = "accepted and ignored, like the API does")]
    creation_timestamp: Option<Value>,
    #[expect(dead_code, reason = "accepted and ignored, like the API does")]
    self_link: Option<Value>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct ProtocolPorts {
    #[serde(rename = "IPProtocol")]
    ip_protocol: Option<String>,
    ports: Option<Vec<String>>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct LogConfig {
    enable: Option<bool>,
    metadata: Option<String>,
}

pub(super) fn parse_body(value: &Value) -> Result<FirewallBody, GcpError> {
    if !value.is_object() {
        return Err(GcpError::invalid(
            "Invalid JSON payload received. Expected a Firewall object.",
        ));
    }
    serde_json::from_value(value.clone()).map_err(|error| {
        GcpError::invalid(&format!(
            "Invalid JSON payload received. {error} at 'resource'."
        ))
    })
}

/// Everything the stored resource gets from outside the body.
pub(super) struct Context<'a> {
    pub(super) project: &'a str,
    pub(super) api_base: &'a str,
    pub(super) id: String,
    pub(super) creation_timestamp: String,
}

/// The canonical network URL the API stores, from any of the forms it accepts.
pub(super) fn network_url(
    api_base: &str,
    project: &str,
    network: &str,
) -> Result<(String, String), GcpError> {
    let tail = match network.find("projects/") {
        Some(at) => network[at..].to_string(),
        None => match network.strip_prefix("global/networks/") {
            Some(name) => format!("projects/{project}/global/networks/{name}"),
            None if !network.contains('/') => {
                format!("projects/{project}/global/networks/{network}")
            }
            None => {
                return Err(GcpError::invalid(&format!(
                    "Invalid value for field 'resource.network': '{network}'. The URL is malformed."
                )));
            }
        },
    };
    let parts: Vec<&str> = tail.split('/').collect();
    match parts.as_slice() {
        ["projects", p, "global", "networks", name] if *p == project => {
            Ok((format!("{api_base}/{tail}"), (*name).to_string()))
        }
        ["projects", _, "global", "networks", _] => Err(GcpError::invalid(&format!(
            "Invalid value for field 'resource.network': '{network}'. Cross-project references for this resource are not allowed."
        ))),
        _ => Err(GcpError::invalid(&format!(
            "Invalid value for field 'resource.network': '{network}'. The URL is malformed."
        ))),
    }
}

/// Validates a body and returns the resource as the API would store and return it.
pub(super) fn normalize(body: &FirewallBody, context: &Context<'_>) -> Result<Value, GcpError> {
    let name = body.name.clone().unwrap_or_default();
    if name.is_empty() {
        return Err(GcpError::required("resource.name"));
    }
    if !NAME.is_match(&name) {
        return Err(GcpError::invalid(&format!(
            "Invalid value for field 'resource.name': '{name}'. Must be a match of regex '{NAME_PATTERN}'"
        )));
    }
    let description = body.description.clone().unwrap_or_default();
    if description.chars().count() > MAX_DESCRIPTION {
        return Err(GcpError::invalid(&format!(
            "Invalid value for field 'resource.description': '…'. Must be at most {MAX_DESCRIPTION} characters long."
        )));
    }
    let network = body.network.as_deref().unwrap_or("global/networks/default");
    let (network, _) = network_url(context.api_base, context.project, network)?;
    let priority = body.priority.unwrap_or(1000);
    if !(0..=65535).contains(&priority) {
        let bound = if priority < 0 {
            "greater than or equal to 0"
        } else {
            "less than or equal to 65535"
        };
        return Err(GcpError::invalid(&format!(
            "Invalid value for field 'resource.priority': '{priority}'. Must be {bound}"
        )));
    }
    let direction = body.direction.clone().unwrap_or_else(|| "INGRESS".into());
    if direction != "INGRESS" && direction != "EGRESS" {
        return Err(GcpError::invalid(&format!(
            "Invalid value for field 'resource.direction': '{direction}'. Must be one of [INGRESS, EGRESS]"
        )));
    }
    let ingress = direction == "INGRESS";

    let (action, rules) = match (non_empty(&body.allowed), non_empty(&body.denied)) {
        (Some(rules), None) => ("allowed", rules),
        (None, Some(rules)) => ("denied", rules),
        _ => {
            return Err(GcpError::invalid(
                "Invalid value for field 'resource': ''. Exactly one of 'allowed' or 'denied' must be specified.",
            ));
        }
    };
    let rules = rules
        .iter()
        .enumerate()
        .map(|(index, rule)| protocol_ports(action, index, rule))
        .collect::<Result<Vec<_>, _>>()?;

    let mut source_ranges = body.source_ranges.clone().unwrap_or_default();
    let mut destination_ranges = body.destination_ranges.clone().unwrap_or_default();
    let source_tags = body.source_tags.clone().unwrap_or_default();
    let target_tags = body.target_tags.clone().unwrap_or_default();
    let source_accounts = body.source_service_accounts.clone().unwrap_or_default();
    let target_accounts = body.target_service_accounts.clone().unwrap_or_default();

    if !target_accounts.is_empty() && (!target_tags.is_empty() || !source_tags.is_empty()) {
        return Err(GcpError::invalid(
            "Invalid value for field 'resource.targetServiceAccounts': ''. targetServiceAccounts cannot be used at the same time as targetTags or sourceTags.",
        ));
    }
    if !source_accounts.is_empty() && !source_tags.is_empty() {
        return Err(GcpError::invalid(
            "Invalid value for field 'resource.sourceServiceAccounts': ''. sourceServiceAccounts cannot be used at the same time as sourceTags.",
        ));
    }
    if !ingress && (!source_tags.is_empty() || !source_accounts.is_empty()) {
        return Err(GcpError::invalid(
            "Invalid value for field 'resource.sourceTags': ''. Source tags and source service accounts cannot be specified for EGRESS firewall rules.",
        ));
    }
    check_count("sourceTags", &source_tags, MAX_SOURCE_TAGS)?;
    check_count("targetTags", &target_tags, MAX_TARGET_TAGS)?;
    check_count("sourceRanges", &source_ranges, MAX_RANGES)?;
    check_count("destinationRanges", &destination_ranges, MAX_RANGES)?;
    for (field, tags) in [("sourceTags", &source_tags), ("targetTags", &target_tags)] {
        for (index, tag) in tags.iter().enumerate() {
            if !NAME.is_match(tag) {
                return Err(GcpError::invalid(&format!(
                    "Invalid value for field 'resource.{field}[{index}]': '{tag}'. Must be a match of regex '{NAME_PATTERN}'"
                )));
            }
        }
    }

    // One address family per rule, across sources and destinations.
    let mut family: Option<(Family, String)> = None;
    for (field, ranges) in [
        ("sourceRanges", &source_ranges),
        ("destinationRanges", &destination_ranges),
    ] {
        for (index, range) in ranges.iter().enumerate() {
            let Some(this) = parse_range(range) else {
                return Err(GcpError::invalid(&format!(
                    "Invalid value for field 'resource.{field}[{index}]': '{range}'. Must be a CIDR address range that is contained in the network."
                )));
            };
            match &family {
                None => family = Some((this, format!("{field}[{index}]"))),
                Some((first, _)) if *first != this => {
                    return Err(GcpError::invalid(&format!(
                        "Invalid value for field 'resource.{field}[{index}]': '{range}'. IPv4 and IPv6 ranges cannot be mixed in one firewall rule."
                    )));
                }
                Some(_) => {}
            }
        }
    }
    // The API fills in the missing side with "everything" of the rule's family.
    let everything = match family {
        Some((Family::V6, _)) => "::/0",
        _ => "0.0.0.0/0",
    };
    if ingress && source_ranges.is_empty() && source_tags.is_empty() && source_accounts.is_empty() {
        source_ranges.push(everything.into());
    }
    if !ingress && destination_ranges.is_empty() {
        destination_ranges.push(everything.into());
    }

    let log_config = match &body.log_config {
        Some(config) => {
            if let Some(metadata) = &config.metadata
                && metadata != "INCLUDE_ALL_METADATA"
                && metadata != "EXCLUDE_ALL_METADATA"
            {
                return Err(GcpError::invalid(&format!(
                    "Invalid value for field 'resource.logConfig.metadata': '{metadata}'."
                )));
            }
            let mut out = Map::new();
            out.insert("enable".into(), json!(config.enable.unwrap_or(false)));
            if let Some(metadata) = &config.metadata {
                out.insert("metadata".into(), json!(metadata));
            }
            Value::Object(out)
        }
        None => json!({"enable": false}),
    };

    let mut out = Map::new();
    out.insert("kind".into(), json!("compute#firewall"));
    out.insert("id".into(), json!(context.id));
    out.insert(
        "creationTimestamp".into(),
        json!(context.creation_timestamp),
    );
    out.insert("name".into(), json!(name));
    out.insert("description".into(), json!(description));
    out.insert("network".into(), json!(network));
    out.insert("priority".into(), json!(priority));
    for (field, list) in [
        ("sourceRanges", &source_ranges),
        ("destinationRanges", &destination_ranges),
        ("sourceTags", &source_tags),
        ("targetTags", &target_tags),
        ("sourceServiceAccounts", &source_accounts),
        ("targetServiceAccounts", &target_accounts),
    ] {
        // The API leaves empty lists out of its answers.
        if !list.is_empty() {
            out.insert(field.into(), json!(list));
        }
    }
    out.insert(action.into(), Value::Array(rules));
    out.insert("direction".into(), json!(direction));
    out.insert("logConfig".into(), log_config);
    out.insert("disabled".into(), json!(body.disabled.unwrap_or(false)));
    if let Some(params) = &body.params {
        out.insert("params".into(), params.clone());
    }
    out.insert(
        "selfLink".into(),
        json!(format!(
            "{}/projects/{}/global/firewalls/{name}",
            context.api_base, context.project
        )),
    );
    Ok(Value::Object(out))
}

fn non_empty(list: &Option<Vec<ProtocolPorts>>) -> Option<&Vec<ProtocolPorts>> {
    list.as_ref().filter(|list| !list.is_empty())
}

fn check_count(field: &str, list: &[String], limit: usize) -> Result<(), GcpError> {
    if list.len() > limit {
        return Err(GcpError::invalid(&format!(
            "Invalid value for field 'resource.{field}': ''. Too many entries: {} (at most {limit}).",
            list.len()
        )));
    }
    Ok(())
}

fn protocol_ports(action: &str, index: usize, rule: &ProtocolPorts) -> Result<Value, GcpError> {
    let field = format!("resource.{action}[{index}]");
    let Some(protocol) = rule.ip_protocol.clone() else {
        return Err(GcpError::required(&format!("{field}.IPProtocol")));
    };
    let named = ["tcp", "udp", "icmp", "esp", "ah", "sctp", "ipip", "all"];
    let numbered = protocol.parse::<u16>().is_ok_and(|n| n <= 255) && !protocol.starts_with('+');
    if !named.contains(&protocol.as_str()) && !numbered {
        return Err(GcpError::invalid(&format!(
            "Invalid value for field '{field}.IPProtocol': '{protocol}'. Must be one of [tcp, udp, icmp, esp, ah, sctp, ipip, all] or an IP protocol number between 0 and 255"
        )));
    }
    let ports = rule.ports.clone().unwrap_or_default();
    if !ports.is_empty() {
        if !matches!(
            protocol.as_str(),
            "tcp" | "udp" | "sctp" | "6" | "17" | "132"
        ) {
            return Err(GcpError::invalid(&format!(
                "Invalid value for field '{field}.ports': ''. Ports may only be specified for tcp, udp or sctp."
            )));
        }
        if ports.len() > MAX_PORTS {
            return Err(GcpError::invalid(&format!(
                "Invalid value for field '{field}.ports': ''. Too many entries: {} (at most {MAX_PORTS}).",
                ports.len()
            )));
        }
        for (port_index, port) in ports.iter().enumerate() {
            if !valid_port_range(port) {
                return Err(GcpError::invalid(&format!(
                    "Invalid value for field '{field}.ports[{port_index}]': '{port}'. Must be a port or a port range between 0 and 65535."
                )));
            }
        }
    }
    let mut out = Map::new();
    out.insert("IPProtocol".into(), json!(protocol));
    if !ports.is_empty() {
        out.insert("ports".into(), json!(ports));
    }
    Ok(Value::Object(out))
}

fn valid_port_range(text: &str) -> bool {
    let port = |part: &str| {
        !part.is_empty()
            && part.bytes().all(|b| b.is_ascii_digit())
            && part.parse::<u32>().is_ok_and(|n| n <= 65535)
    };
    match text.split_once('-') {
        Some((low, high)) => {
            port(low) && port(high) && low.parse::<u32>().ok() <= high.parse::<u32>().ok()
        }
        None => port(text),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Family {
    V4,
    V6,
}

fn parse_range(text: &str) -> Option<Family> {
    let (address, length) = match text.split_once('/') {
        Some((address, length)) => (address, Some(length)),
        None => (text, None),
    };
    let (family, max) = if address.parse::<Ipv4Addr>().is_ok() {
        (Family::V4, 32)
    } else if address.parse::<Ipv6Addr>().is_ok() {
        (Family::V6, 128)
    } else {
        return None;
    };
    match length {
        None => Some(family),
        Some(length) if !length.is_empty() && length.bytes().all(|b| b.is_ascii_digit()) => length
            .parse::<u32>()
            .ok()
            .filter(|&n| n <= max)
            .map(|_| family),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> Context<'static> {
        Context {
            project: "p",
            api_base: "http://127.0.0.1:1/compute/v1",
            id: "1".into(),
            creation_timestamp: "t".into(),
        }
    }

    fn check(body: Value) -> Result<Value, String> {
        let body = parse_body(&body).map_err(|e| e.message)?;
        normalize(&body, &context()).map_err(|e| e.message)
    }

    #[test]
    fn defaults_are_filled_in_as_the_api_does() {
        let rule = check(json!({"name": "a", "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}]}))
            .unwrap();
        assert_eq!(rule["priority"], 1000);
        assert_eq!(rule["direction"], "INGRESS");
        assert_eq!(rule["sourceRanges"], json!(["0.0.0.0/0"]));
        assert_eq!(
            rule["network"],
            "http://127.0.0.1:1/compute/v1/projects/p/global/networks/default"
        );
        let egress = check(json!({"name": "b", "direction": "EGRESS", "denied": [{"IPProtocol": "all"}], "sourceRanges": ["fd00::/8"]})).unwrap();
        assert_eq!(egress["destinationRanges"], json!(["::/0"]));
        assert!(egress.get("targetTags").is_none());
        let tagged =
            check(json!({"name": "c", "sourceTags": ["x"], "allowed": [{"IPProtocol": "icmp"}]}))
                .unwrap();
        assert!(tagged.get("sourceRanges").is_none());
    }

    #[test]
    fn invalid_rules_are_refused_with_the_apis_words() {
        let cases = [
            (
                json!({"name": "Bad", "allowed": [{"IPProtocol": "tcp"}]}),
                "Must be a match of regex",
            ),
            (
                json!({"name": &"a".repeat(64), "allowed": [{"IPProtocol": "tcp"}]}),
                "Must be a match of regex",
            ),
            (
                json!({"name": "a-", "allowed": [{"IPProtocol": "tcp"}]}),
                "Must be a match of regex",
            ),
            (
                json!({"name": "a", "priority": 65536, "allowed": [{"IPProtocol": "tcp"}]}),
                "less than or equal to 65535",
            ),
            (
                json!({"name": "a", "priority": -1, "allowed": [{"IPProtocol": "tcp"}]}),
                "greater than or equal to 0",
            ),
            (
                json!({"name": "a", "direction": "IN", "allowed": [{"IPProtocol": "tcp"}]}),
                "INGRESS, EGRESS",
            ),
            (json!({"name": "a"}), "Exactly one of 'allowed' or 'denied'"),
            (
                json!({"name": "a", "allowed": [{"IPProtocol": "tcp"}], "denied": [{"IPProtocol": "udp"}]}),
                "Exactly one",
            ),
            (
                json!({"name": "a", "allowed": [{"IPProtocol": "tcp"}], "sourceRanges": ["10.0.0.0/8", "::/0"]}),
                "cannot be mixed",
            ),
            (
                json!({"name": "a", "allowed": [{"IPProtocol": "tcp"}], "sourceRanges": ["10.0.0.0/8"], "destinationRanges": ["fd00::/8"]}),
                "cannot be mixed",
            ),
            (
                json!({"name": "a", "allowed": [{"IPProtocol": "tcp"}], "sourceRanges": ["10.0.0.0/33"]}),
                "CIDR",
            ),
            (
                json!({"name": "a", "allowed": [{"IPProtocol": "gre"}]}),
                "IPProtocol",
            ),
            (
                json!({"name": "a", "allowed": [{"IPProtocol": "icmp", "ports": ["1"]}]}),
                "Ports may only",
            ),
            (
                json!({"name": "a", "allowed": [{"IPProtocol": "tcp", "ports": ["2-1"]}]}),
                "port range",
            ),
            (
                json!({"name": "a", "allowed": [{"IPProtocol": "tcp", "ports": ["70000"]}]}),
                "port range",
            ),
            (
                json!({"name": "a", "allowed": [{"IPProtocol": "tcp"}], "targetTags": ["t"], "targetServiceAccounts": ["sa@x"]}),
                "targetServiceAccounts",
            ),
            (
                json!({"name": "a", "direction": "EGRESS", "allowed": [{"IPProtocol": "tcp"}], "sourceTags": ["t"]}),
                "EGRESS",
            ),
            (
                json!({"name": "a", "allowed": [{"IPProtocol": "tcp"}], "colour": "blue"}),
                "unknown field",
            ),
            (
                json!({"name": "a", "allowed": [{"IPProtocol": "tcp"}], "network": "projects/other/global/networks/n"}),
                "Cross-project",
            ),
        ];
        for (body, expected) in cases {
            let error = check(body.clone()).expect_err(&body.to_string());
            assert!(error.contains(expected), "{body}: {error}");
        }
        let many: Vec<String> = (0..257)
            .map(|i| format!("10.0.{}.{}/32", i / 256, i % 256))
            .collect();
        assert!(
            check(json!({"name": "a", "allowed": [{"IPProtocol": "tcp"}], "sourceRanges": many}))
                .unwrap_err()
                .contains("Too many")
        );
    }

    #[test]
    fn numbered_protocols_and_port_forms() {
        assert!(check(json!({"name": "a", "allowed": [{"IPProtocol": "4"}]})).is_ok());
        assert!(check(json!({"name": "a", "allowed": [{"IPProtocol": "256"}]})).is_err());
        assert!(check(json!({"name": "a", "allowed": [{"IPProtocol": "udp", "ports": ["0", "8472", "30000-32767"]}]})).is_ok());
        assert!(
            check(json!({"name": "a", "allowed": [{"IPProtocol": "tcp", "ports": ["-1"]}]}))
                .is_err()
        );
    }
}
