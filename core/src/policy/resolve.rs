//! Policy AST → [`Intent`]: resolves network and service names, parses CIDRs and service
//! literals, and checks the rules that span several keys (unique names, `private`).

use std::collections::{BTreeMap, HashMap};

use super::decode::{PolicyDoc, RuleDoc, Spanned, TargetDoc, TargetsDoc};
use super::literal::parse_literal;
use super::naming::quoted;
use super::presets::{self, PROTOCOL_NAMES};
use crate::addr::{AddrSet, Cidr, CidrError};
use crate::diag::{Diagnostic, Span, did_you_mean};
use crate::intent::{Direction, Intent, Peers, Rule, Service, Verdict};
use crate::target::{AwsNaclTarget, AwsTarget, AzureNics, AzureTarget, GcpTarget, Targets};

/// Longest policy or rule name: cloud names are built as `<policy>-<dir>-<rule>` and must stay
/// within GCP's 63 characters in the common case.
pub const MAX_NAME_LEN: usize = 40;

const BUILTIN_PEERS: &[&str] = &["self", "internet"];

pub(crate) struct Resolver<'d> {
    pub(crate) diags: Vec<Diagnostic>,
    text: &'d str,
    doc: &'d PolicyDoc,
    networks: HashMap<&'d str, &'d [Spanned<String>]>,
    services: HashMap<&'d str, &'d [Spanned<String>]>,
    network_cache: HashMap<String, Option<AddrSet>>,
    service_cache: HashMap<String, Option<Vec<Service>>>,
}

mod target_values;

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !s.ends_with('-')
}

fn looks_like_address(s: &str) -> bool {
    s.contains(':') && !s.starts_with("cni:") || s.starts_with(|c: char| c.is_ascii_digit())
}

impl<'d> Resolver<'d> {
    pub(crate) fn new(doc: &'d PolicyDoc, text: &'d str) -> Self {
        Self {
            diags: Vec::new(),
            text,
            doc,
            networks: doc
                .networks
                .iter()
                .map(|(k, v)| (k.value.as_str(), v.as_slice()))
                .collect(),
            services: doc
                .services
                .iter()
                .map(|(k, v)| (k.value.as_str(), v.as_slice()))
                .collect(),
            network_cache: HashMap::new(),
            service_cache: HashMap::new(),
        }
    }

    fn err(&mut self, code: &'static str, span: Span, msg: impl Into<String>) -> &mut Diagnostic {
        self.diags.push(Diagnostic::error(code, span, msg));
        self.diags.last_mut().expect("just pushed")
    }

    fn check_name(&mut self, name: &Spanned<String>, what: &str) {
        if !is_dns_label(&name.value) || name.value.len() > MAX_NAME_LEN {
            let d = self.err(
                "policy::bad-name",
                name.span,
                format!("{what} `{}` is not a valid name", name.value),
            );
            d.label = format!(
                "expected lowercase letters, digits and `-`, starting with a letter, at most {MAX_NAME_LEN} characters"
            );
            d.help = Some(
                "names become part of cloud resource names (GCP allows only [a-z0-9-], 63 characters)".into(),
            );
        }
    }

    pub(crate) fn intent(&mut self) -> Intent {
        let doc = self.doc;
        self.check_name(&doc.name, "policy name");
        for (name, _) in doc.networks.iter().chain(doc.services.iter()) {
            let ok = name.value.starts_with(|c: char| c.is_ascii_alphabetic())
                && name
                    .value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !ok {
                let d = self.err(
                    "policy::bad-name",
                    name.span,
                    format!("`{}` is not a valid network or service name", name.value),
                );
                d.label = "expected a letter, then letters, digits, `-`, `_` or `.`".into();
                d.help = Some(
                    "names must not look like addresses (`10.0.0.0/8`) or protocols (`tcp/22`), which the same lists accept".into(),
                );
            }
        }
        for (name, _) in &doc.networks {
            if BUILTIN_PEERS.contains(&name.value.as_str()) {
                let d = self.err(
                    "policy::reserved-name",
                    name.span,
                    format!("`{}` is built in and cannot be redefined", name.value),
                );
                d.label = "reserved network name".into();
                d.help = Some("`self` means the protected nodes and `internet` means 0.0.0.0/0 and ::/0; pick another name".into());
            }
        }
        for (name, _) in &doc.services {
            let n = name.value.as_str();
            let literal = ["tcp", "udp", "icmp", "icmpv6", "proto"].contains(&n)
                || PROTOCOL_NAMES.iter().any(|(p, _)| *p == n);
            if presets::preset(n).is_some() || literal {
                let d = self.err(
                    "policy::reserved-name",
                    name.span,
                    format!(
                        "`{}` is a built-in service and cannot be redefined",
                        name.value
                    ),
                );
                d.label = "shadows a preset".into();
                d.help =
                    Some("pick another name; see docs/policy-reference.md for the presets".into());
            }
        }
        // Resolve every definition once, even unused ones, so their errors are reported too.
        for (name, _) in &doc.networks {
            self.network(&name.value, name.span, &mut Vec::new());
        }
        for (name, _) in &doc.services {
            self.service_named(&name.value, name.span, &mut Vec::new());
        }
        let ingress = self.rules(&doc.ingress, Direction::Ingress);
        let egress = self.rules(&doc.egress, Direction::Egress);
        if doc.private {
            self.check_private(&ingress);
        }
        let targets = self.targets(&doc.targets);
        Intent {
            name: doc.name.value.clone(),
            private: doc.private,
            metadata: doc.metadata.value,
            metadata_span: doc.metadata.span,
            ingress,
            egress,
            targets,
            warnings: Vec::new(),
        }
    }

    fn rules(&mut self, docs: &[RuleDoc], direction: Direction) -> Vec<Rule> {
        let mut seen: HashMap<&str, Span> = HashMap::new();
        let mut out = Vec::new();
        for r in docs {
            self.check_name(&r.name, "rule name");
            if let Some(first) = seen.get(r.name.value.as_str()) {
                let first = *first;
                let d = self.err(
                    "policy::duplicate-rule",
                    r.name.span,
                    format!(
                        "{} rule `{}` is defined twice",
                        direction.as_str(),
                        r.name.value
                    ),
                );
                d.label = "second rule with this name".into();
                let line = self.text[..first.offset.min(self.text.len())]
                    .matches('\n')
                    .count()
                    + 1;
                self.diags.last_mut().expect("just pushed").help = Some(format!(
                    "rule names identify cloud rules and must be unique per direction; the first `{}` is on line {line}",
                    r.name.value
                ));
            } else {
                seen.insert(r.name.value.as_str(), r.name.span);
            }
            let peers = self.peers(&r.peers);
            let services = self.rule_services(&r.services);
            if let (Some(peers), Some(services)) = (peers, services) {
                out.push(Rule {
                    name: r.name.value.clone(),
                    action: r.action,
                    peers,
                    services,
                    span: r.span,
                });
            }
        }
        out
    }

    fn peers(&mut self, items: &[Spanned<String>]) -> Option<Peers> {
        let mut peers = Peers::default();
        let mut ok = true;
        for item in items {
            match item.value.as_str() {
                "self" => peers.nodes = true,
                "internet" => peers.addrs = peers.addrs.union(&AddrSet::everything()),
                s if looks_like_address(s) => match self.cidr(item) {
                    Some(c) => peers.addrs = peers.addrs.union(&AddrSet::from_cidrs(&[c])),
                    None => ok = false,
                },
                s => match self.network(s, item.span, &mut Vec::new()) {
                    Some(set) => peers.addrs = peers.addrs.union(&set),
                    None => ok = false,
                },
            }
        }
        ok.then_some(peers)
    }

    fn cidr(&mut self, item: &Spanned<String>) -> Option<Cidr> {
        match item.value.parse::<Cidr>() {
            Ok(c) => Some(c),
            Err(e) => {
                let (code, help) = match &e {
                    CidrError::HostBits { network } => (
                        "policy::cidr-host-bits",
                        format!("did you mean `{network}`?"),
                    ),
                    CidrError::BadPrefix(_) => (
                        "policy::bad-cidr",
                        "IPv4 prefixes are 0-32 and IPv6 prefixes 0-128".to_string(),
                    ),
                    CidrError::BadAddress(_) => (
                        "policy::bad-cidr",
                        "write networks as 10.0.0.0/16 or fd00::/48".to_string(),
                    ),
                };
                let d = self.err(
                    code,
                    item.span,
                    format!("invalid network `{}`: {e}", item.value),
                );
                d.label = "not a valid CIDR".into();
                d.help = Some(help);
                None
            }
        }
    }

    fn network(&mut self, name: &str, span: Span, stack: &mut Vec<String>) -> Option<AddrSet> {
        if let Some(cached) = self.network_cache.get(name) {
            return cached.clone();
        }
        let Some(entries) = self.networks.get(name).copied() else {
            let known: Vec<&str> = self
                .networks
                .keys()
                .copied()
                .chain(BUILTIN_PEERS.iter().copied())
                .collect();
            let d = self.err(
                "policy::unknown-network",
                span,
                format!("unknown network `{name}`"),
            );
            d.label = "not defined under `networks:`".into();
            d.help = Some(match did_you_mean(name, known) {
                Some(s) => format!("did you mean `{s}`?"),
                None => "define it under `networks:`, or use `self`, `internet` or a CIDR".into(),
            });
            return None;
        };
        if stack.iter().any(|s| s == name) {
            let d = self.err(
                "policy::reference-cycle",
                span,
                format!(
                    "network `{name}` refers to itself through {}",
                    stack.join(" → ")
                ),
            );
            d.label = "cycle closes here".into();
            d.help = Some("a network may include other networks, but not itself".into());
            return None;
        }
        stack.push(name.to_string());
        let mut set = AddrSet::empty();
        let mut ok = true;
        for e in entries {
            if looks_like_address(&e.value) {
                match self.cidr(e) {
                    Some(c) => set = set.union(&AddrSet::from_cidrs(&[c])),
                    None => ok = false,
                }
            } else if BUILTIN_PEERS.contains(&e.value.as_str()) {
                let d = self.err(
                    "policy::bad-network-entry",
                    e.span,
                    format!("`{}` cannot be part of a named network", e.value),
                );
                d.label = "built-in peer".into();
                d.help =
                    Some("name `self` or `internet` directly in the rule's `from`/`to`".into());
                ok = false;
            } else {
                match self.network(&e.value, e.span, stack) {
                    Some(s) => set = set.union(&s),
                    None => ok = false,
                }
            }
        }
        stack.pop();
        let result = ok.then_some(set);
        self.network_cache.insert(name.to_string(), result.clone());
        result
    }

    fn rule_services(&mut self, items: &[Spanned<String>]) -> Option<Vec<Service>> {
        let mut out = Vec::new();
        let mut ok = true;
        for item in items {
            match self.service_entry(item, &mut Vec::new()) {
                Some(v) => out.extend(v),
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        if out.contains(&Service::Any) {
            return Some(vec![Service::Any]);
        }
        out.sort();
        out.dedup();
        Some(out)
    }

    fn service_named(
        &mut self,
        name: &str,
        span: Span,
        stack: &mut Vec<String>,
    ) -> Option<Vec<Service>> {
        if let Some(cached) = self.service_cache.get(name) {
            return cached.clone();
        }
        let entries = self.services.get(name).copied()?;
        if stack.iter().any(|s| s == name) {
            let d = self.err(
                "policy::reference-cycle",
                span,
                format!(
                    "service `{name}` refers to itself through {}",
                    stack.join(" → ")
                ),
            );
            d.label = "cycle closes here".into();
            return None;
        }
        stack.push(name.to_string());
        let mut out = Vec::new();
        let mut ok = true;
        for e in entries {
            match self.service_entry(e, stack) {
                Some(v) => out.extend(v),
                None => ok = false,
            }
        }
        stack.pop();
        // A set, not a list: `s1: [s0, s0]`, `s2: [s1, s1]`, … must not double at each level.
        out.sort();
        out.dedup();
        if out.contains(&Service::Any) {
            out = vec![Service::Any];
        }
        let result = ok.then_some(out);
        self.service_cache.insert(name.to_string(), result.clone());
        result
    }

    /// One entry of a `services` list: a literal, a preset, a CNI preset or a named service.
    fn service_entry(
        &mut self,
        item: &Spanned<String>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<Service>> {
        let s = item.value.as_str();
        if let Some(rest) = s.strip_prefix("cni:") {
            return self.cni(rest, item.span);
        }
        if let Some(p) = presets::preset(s) {
            return Some(p.services.to_vec());
        }
        if self.services.contains_key(s) {
            return self.service_named(s, item.span, stack);
        }
        let head = s.split('/').next().unwrap_or(s);
        let is_literal = ["tcp", "udp", "icmp", "icmpv6", "proto"].contains(&head)
            || PROTOCOL_NAMES.iter().any(|(n, _)| *n == head);
        if is_literal {
            return self.literal(item).map(|svc| vec![svc]);
        }
        let known: Vec<&str> = presets::PRESETS
            .iter()
            .map(|p| p.name)
            .chain(self.services.keys().copied())
            .collect();
        let d = self.err(
            "policy::unknown-service",
            item.span,
            format!("unknown service `{s}`"),
        );
        d.label = "not a preset, a defined service or a protocol literal".into();
        d.help = Some(match did_you_mean(s, known) {
            Some(m) => format!("did you mean `{m}`?"),
            None => "write `tcp/443`, `udp/53`, `icmp/8`, `proto/4`, a preset such as `ssh`, or `cni:calico`".into(),
        });
        None
    }

    fn cni(&mut self, rest: &str, span: Span) -> Option<Vec<Service>> {
        let (name, mode) = match rest.split_once('/') {
            Some((n, m)) => (n, Some(m)),
            None => (rest, None),
        };
        let Some(cni) = presets::cni(name) else {
            let names: Vec<&str> = presets::CNIS.iter().map(|c| c.name).collect();
            let d = self.err("policy::unknown-cni", span, format!("unknown CNI `{name}`"));
            d.label = format!("expected one of: {}", names.join(", "));
            d.help = did_you_mean(name, names.iter().copied())
                .map(|m| format!("did you mean `cni:{m}`?"));
            return None;
        };
        let modes: Vec<&str> = match mode {
            Some(m) => vec![m],
            None => cni.default_modes.to_vec(),
        };
        let mut out = Vec::new();
        for m in modes {
            match cni.modes.iter().find(|x| x.name == m) {
                Some(found) => out.extend_from_slice(found.services),
                None => {
                    let names: Vec<&str> = cni.modes.iter().map(|x| x.name).collect();
                    let d = self.err(
                        "policy::unknown-cni-mode",
                        span,
                        format!("{} has no mode `{m}`", cni.name),
                    );
                    d.label = format!("expected one of: {}", names.join(", "));
                    d.help = Some(format!("write `cni:{}/MODE`, one mode per entry", cni.name));
                    return None;
                }
            }
        }
        Some(out)
    }

    fn literal(&mut self, item: &Spanned<String>) -> Option<Service> {
        match parse_literal(&item.value) {
            Ok(s) => Some(s),
            Err((msg, help)) => {
                let d = self.err(
                    "policy::bad-service",
                    item.span,
                    format!("invalid service `{}`: {msg}", item.value),
                );
                d.label = "cannot be read as a service".into();
                d.help = Some(help.into());
                None
            }
        }
    }

    fn check_private(&mut self, ingress: &[Rule]) {
        let private = AddrSet::from_cidrs(
            &[
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "100.64.0.0/10",
                "127.0.0.0/8",
                "169.254.0.0/16",
                "fc00::/7",
                "fe80::/10",
                "::1/128",
            ]
            .map(|s| s.parse::<Cidr>().expect("static CIDR")),
        );
        for rule in ingress {
            if rule.action != Verdict::Allow {
                continue;
            }
            let public = rule.peers.addrs.difference(&private);
            if !public.is_empty() {
                let example = if public.v4.is_full() || public.v6.is_full() {
                    "the internet".to_string()
                } else {
                    public
                        .to_cidrs()
                        .first()
                        .map(ToString::to_string)
                        .unwrap_or_default()
                };
                let d = self.err(
                    "policy::private-ingress",
                    rule.span,
                    format!(
                        "rule `{}` allows ingress from public addresses in a private perimeter",
                        rule.name
                    ),
                );
                d.label = format!("includes public addresses: {example}");
                d.help = Some("`private: true` forbids internet ingress; narrow the rule's `from` to private ranges, or set `private: false`".into());
            }
        }
    }

    fn targets(&mut self, doc: &TargetsDoc) -> Targets {
        for (cloud, list) in [("aws", &doc.aws), ("gcp", &doc.gcp), ("azure", &doc.azure)] {
            for t in list {
                self.check_target_values(cloud, t);
            }
        }
        let name = &self.doc.name.value;
        let mut targets = Targets::default();
        for t in &doc.aws {
            let network_acl = t.nacl.as_ref().map(|(span, subnets, cidrs)| AwsNaclTarget {
                subnets: subnets.iter().map(|s| s.value.clone()).collect(),
                node_cidrs: cidrs.iter().filter_map(|c| self.cidr(c)).collect(),
                span: *span,
            });
            targets.aws.push(AwsTarget {
                account: string(t, "account"),
                region: string(t, "region").unwrap_or_default(),
                vpc: string(t, "vpc").unwrap_or_default(),
                security_group: string(t, "security_group").unwrap_or_else(|| name.clone()),
                instances: t.tags.clone().into_iter().collect::<BTreeMap<_, _>>(),
                network_acl,
                attach: t.attach,
                span: t.span,
            });
        }
        for t in &doc.gcp {
            let priority_base = match t.integers.get("priority_base") {
                Some(p) if (0..=65535).contains(&p.value) => p.value as u16,
                Some(p) => {
                    let d = self.err(
                        "policy::bad-value",
                        p.span,
                        format!("priority_base {} is out of range", p.value),
                    );
                    d.label = "GCP priorities are 0-65535".into();
                    1000
                }
                None => 1000,
            };
            let node_ranges = t
                .lists
                .get("node_ranges")
                .map(|l| l.iter().filter_map(|c| self.cidr(c)).collect())
                .unwrap_or_default();
            targets.gcp.push(GcpTarget {
                project: string(t, "project").unwrap_or_default(),
                network: string(t, "network").unwrap_or_default(),
                target_tags: t
                    .lists
                    .get("target_tags")
                    .map(|l| l.iter().map(|s| s.value.clone()).collect())
                    .unwrap_or_else(|| vec![name.clone()]),
                service_accounts: t
                    .lists
                    .get("service_accounts")
                    .map(|l| l.iter().map(|s| s.value.clone()).collect())
                    .unwrap_or_default(),
                regions: t
                    .lists
                    .get("regions")
                    .map(|l| {
                        let set: std::collections::BTreeSet<String> =
                            l.iter().map(|s| s.value.clone()).collect();
                        set.into_iter().collect()
                    })
                    .unwrap_or_default(),
                node_ranges,
                priority_base,
                placeholder: false,
                span: t.span,
            });
        }
        for t in &doc.azure {
            let subnets = t.lists.get("subnets").cloned().unwrap_or_default();
            for subnet in &subnets {
                if !is_azure_subnet(&subnet.value) {
                    let d = self.err(
                        "policy::bad-target-value",
                        subnet.span,
                        format!("{} is not an Azure subnet", quoted(&subnet.value)),
                    );
                    d.label = "`vnet/subnet` or a subnet resource id".into();
                    d.help = Some(
                        "for example `vnet-workers/workers` (in the target's resource group) or `/subscriptions/…/resourceGroups/…/providers/Microsoft.Network/virtualNetworks/vnet-workers/subnets/workers`".into(),
                    );
                }
            }
            if t.shared
                && let Some(first) = subnets.first()
            {
                let d = self.err(
                    "policy::bad-target-value",
                    first.span,
                    "`subnets` cannot be used with `shared: true`".to_string(),
                );
                d.label = "a shared NSG's associations are its owner's".into();
                d.help = Some("remove `subnets`: perimeter reads where a shared NSG is associated (declare `nics` to check the nodes' path), it does not move it".into());
            }
            let nics = t.nics.as_ref().map(|(_, group, tags)| AzureNics {
                resource_group: group.as_ref().map(|g| g.value.clone()),
                tags: tags.clone(),
            });
            targets.azure.push(AzureTarget {
                subscription: string(t, "subscription").unwrap_or_default(),
                resource_group: string(t, "resource_group").unwrap_or_default(),
                nsg: string(t, "nsg").unwrap_or_else(|| name.clone()),
                location: string(t, "location"),
                application_security_group: string(t, "application_security_group")
                    .unwrap_or_else(|| format!("{name}-nodes")),
                shared: t.shared,
                subnets: subnets.iter().map(|s| s.value.clone()).collect(),
                nics,
                span: t.span,
            });
        }
        targets
    }
}

/// `vnet/subnet`, or `/subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.Network/
/// virtualNetworks/{v}/subnets/{n}`.
fn is_azure_subnet(value: &str) -> bool {
    let name = |n: &str| {
        !n.is_empty()
            && n.len() <= 80
            && n.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    };
    let parts: Vec<&str> = value.split('/').collect();
    match parts.as_slice() {
        [vnet, subnet] => name(vnet) && name(subnet),
        ["", subs, s, rg, g, p, ns, vn, v, sn, n] => {
            subs.eq_ignore_ascii_case("subscriptions")
                && !s.is_empty()
                && rg.eq_ignore_ascii_case("resourceGroups")
                && !g.is_empty()
                && p.eq_ignore_ascii_case("providers")
                && ns.eq_ignore_ascii_case("Microsoft.Network")
                && vn.eq_ignore_ascii_case("virtualNetworks")
                && name(v)
                && sn.eq_ignore_ascii_case("subnets")
                && name(n)
        }
        _ => false,
    }
}

fn string(t: &TargetDoc, key: &str) -> Option<String> {
    t.strings.get(key).map(|s| s.value.clone())
}
