//! YAML tree → policy AST, collecting every shape error (unknown keys, wrong types, missing
//! fields) with its position. Names are not resolved here; see `resolve`.

use std::collections::BTreeMap;

use crate::diag::{Diagnostic, Span, did_you_mean};
use crate::intent::{MetadataMode, Verdict};
use crate::yaml::{Node, NodeKind};

/// A value with the span it was read from.
#[derive(Clone, Debug, PartialEq)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where it was written.
    pub span: Span,
}

/// A policy as written, before names are resolved.
#[derive(Clone, Debug)]
pub(crate) struct PolicyDoc {
    pub name: Spanned<String>,
    pub private: bool,
    pub metadata: Spanned<MetadataMode>,
    pub networks: Vec<(Spanned<String>, Vec<Spanned<String>>)>,
    pub services: Vec<(Spanned<String>, Vec<Spanned<String>>)>,
    pub ingress: Vec<RuleDoc>,
    pub egress: Vec<RuleDoc>,
    pub targets: TargetsDoc,
}

/// A rule as written.
#[derive(Clone, Debug)]
pub(crate) struct RuleDoc {
    pub name: Spanned<String>,
    pub action: Verdict,
    pub peers: Vec<Spanned<String>>,
    pub services: Vec<Spanned<String>>,
    pub span: Span,
}

/// Targets as written: each a map of fields.
#[derive(Clone, Debug, Default)]
pub(crate) struct TargetsDoc {
    pub aws: Vec<TargetDoc>,
    pub gcp: Vec<TargetDoc>,
    pub azure: Vec<TargetDoc>,
}

/// `network_acl` as written: its span, `subnets` and `node_cidrs`.
pub(crate) type NaclDoc = (Span, Vec<Spanned<String>>, Vec<Spanned<String>>);

/// One target's fields, already shape-checked.
/// An azure target's `nics`: where it is declared, its resource group, its tags.
pub(crate) type NicsDoc = (Span, Option<Spanned<String>>, BTreeMap<String, String>);

#[derive(Clone, Debug, Default)]
pub(crate) struct TargetDoc {
    pub span: Span,
    pub strings: BTreeMap<&'static str, Spanned<String>>,
    pub lists: BTreeMap<&'static str, Vec<Spanned<String>>>,
    pub tags: BTreeMap<String, String>,
    pub integers: BTreeMap<&'static str, Spanned<i64>>,
    pub nacl: Option<NaclDoc>,
    pub attach: bool,
    /// Azure: the NSG belongs to someone else (AKS); perimeter manages only its own rules.
    pub shared: bool,
    /// Azure: the node NICs' resource group (if given) and tags.
    pub nics: Option<NicsDoc>,
}

pub(crate) const TOP_KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "name",
    "description",
    "private",
    "metadata",
    "networks",
    "services",
    "ingress",
    "egress",
    "targets",
];
const RULE_KEYS: &[&str] = &["name", "action", "from", "to", "services", "description"];
const AWS_KEYS: &[&str] = &[
    "account",
    "region",
    "vpc",
    "security_group",
    "instances",
    "network_acl",
    "attach",
];
const GCP_KEYS: &[&str] = &[
    "project",
    "network",
    "target_tags",
    "service_accounts",
    "regions",
    "node_ranges",
    "priority_base",
];
const AZURE_KEYS: &[&str] = &[
    "subscription",
    "resource_group",
    "nsg",
    "location",
    "application_security_group",
    "shared",
    "subnets",
    "nics",
];

/// The decoder: walks the tree, pushing diagnostics instead of stopping.
pub(crate) struct Decoder<'s> {
    pub(crate) diags: Vec<Diagnostic>,
    pub(crate) text: &'s str,
}

type Fields<'n> = BTreeMap<String, (&'n Node, &'n Node)>;

impl Decoder<'_> {
    fn line_of(&self, span: Span) -> usize {
        self.text[..span.offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    fn err(&mut self, code: &'static str, span: Span, msg: impl Into<String>) -> &mut Diagnostic {
        self.diags.push(Diagnostic::error(code, span, msg));
        self.diags.last_mut().expect("just pushed")
    }

    fn expected(&mut self, node: &Node, what: &str, expected: &str) {
        self.err(
            "policy::wrong-type",
            node.span,
            format!("{what} must be {expected}, found {}", node.type_name()),
        )
        .label = format!("expected {expected}");
    }

    /// Reads a mapping, reporting duplicate and unknown keys.
    fn fields<'n>(&mut self, node: &'n Node, what: &str, allowed: &[&str]) -> Option<Fields<'n>> {
        let NodeKind::Map(entries) = &node.kind else {
            self.expected(node, what, "a mapping");
            return None;
        };
        let mut out = Fields::new();
        for (key, value) in entries {
            let NodeKind::Scalar { value: k, .. } = &key.kind else {
                self.expected(key, &format!("a key of {what}"), "a string");
                continue;
            };
            if !allowed.contains(&k.as_str()) {
                let d = self.err(
                    "policy::unknown-key",
                    key.span,
                    format!("unknown key `{k}` in {what}"),
                );
                d.label = "not a known key".into();
                d.help = Some(match did_you_mean(k, allowed.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("known keys: {}", allowed.join(", ")),
                });
                continue;
            }
            if let Some((first, _)) = out.get(k) {
                let first_line = self.line_of(first.span);
                let d = self.err(
                    "policy::duplicate-key",
                    key.span,
                    format!("`{k}` is given twice in {what}"),
                );
                d.label = "second occurrence".into();
                d.help = Some(format!(
                    "remove one of them; the first is on line {first_line}"
                ));
                continue;
            }
            out.insert(k.clone(), (key, value));
        }
        Some(out)
    }

    fn require<'n>(
        &mut self,
        fields: &Fields<'n>,
        key: &str,
        parent: &Node,
        what: &str,
    ) -> Option<&'n Node> {
        match fields.get(key) {
            Some((_, v)) => Some(*v),
            None => {
                let span = Span::new(parent.span.offset, 0);
                let d = self.err(
                    "policy::missing-key",
                    span,
                    format!("{what} is missing the required key `{key}`"),
                );
                d.label = format!("`{key}` expected in this mapping");
                None
            }
        }
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<Spanned<String>> {
        match &node.kind {
            NodeKind::Scalar { value, .. } if !node.is_null() => Some(Spanned {
                value: value.clone(),
                span: node.span,
            }),
            _ => {
                self.expected(node, what, "a string");
                None
            }
        }
    }

    /// A string, or a list of strings (a single string is a one-element list).
    fn string_list(&mut self, node: &Node, what: &str) -> Option<Vec<Spanned<String>>> {
        match &node.kind {
            NodeKind::Scalar { .. } => self.string(node, what).map(|s| vec![s]),
            NodeKind::Seq(items) => {
                let mut out = Vec::new();
                for item in items {
                    if let Some(s) = self.string(item, &format!("an item of {what}")) {
                        out.push(s);
                    }
                }
                if items.is_empty() {
                    let d = self.err("policy::empty-list", node.span, format!("{what} is empty"));
                    d.label = "empty list".into();
                    d.help = Some("list at least one entry, or remove the key".into());
                    return None;
                }
                Some(out)
            }
            NodeKind::Map(_) => {
                self.expected(node, what, "a string or a list of strings");
                None
            }
        }
    }

    fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        if let NodeKind::Scalar { value, plain: true } = &node.kind {
            match value.as_str() {
                "true" | "True" | "TRUE" => return Some(true),
                "false" | "False" | "FALSE" => return Some(false),
                _ => {}
            }
        }
        let d = self.err(
            "policy::wrong-type",
            node.span,
            format!("{what} must be true or false"),
        );
        d.label = "expected a boolean".into();
        d.help = Some("write `true` or `false` without quotes".into());
        None
    }

    fn integer(&mut self, node: &Node, what: &str) -> Option<Spanned<i64>> {
        if let NodeKind::Scalar { value, plain: true } = &node.kind
            && let Ok(v) = value.parse::<i64>()
        {
            return Some(Spanned {
                value: v,
                span: node.span,
            });
        }
        self.expected(node, what, "an integer");
        None
    }

    fn choice<T: Copy>(
        &mut self,
        node: &Node,
        what: &str,
        choices: &[(&str, T)],
    ) -> Option<Spanned<T>> {
        let s = self.string(node, what)?;
        if let Some((_, v)) = choices.iter().find(|(k, _)| *k == s.value) {
            return Some(Spanned {
                value: *v,
                span: s.span,
            });
        }
        let names: Vec<&str> = choices.iter().map(|(k, _)| *k).collect();
        let d = self.err(
            "policy::bad-value",
            s.span,
            format!("`{}` is not a valid {what}", s.value),
        );
        d.label = format!("expected one of: {}", names.join(", "));
        d.help =
            did_you_mean(&s.value, names.iter().copied()).map(|m| format!("did you mean `{m}`?"));
        None
    }

    /// Decodes a whole policy. Returns `None` when the shape is too broken to continue; the
    /// diagnostics say why.
    pub(crate) fn policy(&mut self, root: &Node) -> Option<PolicyDoc> {
        let fields = self.fields(root, "the policy", TOP_KEYS)?;

        if let Some(v) = self.require(&fields, "apiVersion", root, "the policy")
            && let Some(s) = self.string(v, "`apiVersion`")
            && s.value != "perimeter/v1"
        {
            let d = self.err(
                "policy::api-version",
                s.span,
                format!("unsupported apiVersion `{}`", s.value),
            );
            d.label = "this version of perimeter reads perimeter/v1".into();
            d.help = Some("set `apiVersion: perimeter/v1`".into());
        }
        if let Some(v) = self.require(&fields, "kind", root, "the policy")
            && let Some(s) = self.string(v, "`kind`")
            && s.value != "NodePerimeter"
        {
            let d = self.err(
                "policy::kind",
                s.span,
                format!("unsupported kind `{}`", s.value),
            );
            d.label = "expected NodePerimeter".into();
            d.help = Some("set `kind: NodePerimeter`".into());
        }
        let name = self
            .require(&fields, "name", root, "the policy")
            .and_then(|v| self.string(v, "`name`"));
        if let Some(v) = fields.get("description").map(|(_, v)| *v) {
            self.string(v, "`description`");
        }
        let private = match fields.get("private") {
            Some((_, v)) => self.boolean(v, "`private`").unwrap_or(true),
            None => true,
        };
        let metadata_choices = [
            ("deny-pods", MetadataMode::DenyPods),
            ("deny-all", MetadataMode::DenyAll),
            ("allow", MetadataMode::Allow),
        ];
        let metadata = match fields.get("metadata") {
            Some((_, v)) => self.choice(v, "metadata mode", &metadata_choices),
            None => Some(Spanned {
                value: MetadataMode::DenyPods,
                span: Span::default(),
            }),
        };
        let networks = match fields.get("networks") {
            Some((_, v)) => self.named_lists(v, "`networks`"),
            None => Vec::new(),
        };
        let services = match fields.get("services") {
            Some((_, v)) => self.named_lists(v, "`services`"),
            None => Vec::new(),
        };
        let ingress = match fields.get("ingress") {
            Some((_, v)) => self.rules(v, "ingress"),
            None => Vec::new(),
        };
        let egress = match fields.get("egress") {
            Some((_, v)) => self.rules(v, "egress"),
            None => Vec::new(),
        };
        let targets = match fields.get("targets") {
            Some((_, v)) => self.targets(v),
            None => TargetsDoc::default(),
        };
        Some(PolicyDoc {
            name: name?,
            private,
            metadata: metadata?,
            networks,
            services,
            ingress,
            egress,
            targets,
        })
    }

    fn named_lists(
        &mut self,
        node: &Node,
        what: &str,
    ) -> Vec<(Spanned<String>, Vec<Spanned<String>>)> {
        let NodeKind::Map(entries) = &node.kind else {
            if !node.is_null() {
                self.expected(node, what, "a mapping of names to lists");
            }
            return Vec::new();
        };
        let mut out: Vec<(Spanned<String>, Vec<Spanned<String>>)> = Vec::new();
        for (k, v) in entries {
            let Some(key) = self.string(k, &format!("a name in {what}")) else {
                continue;
            };
            if out.iter().any(|(existing, _)| existing.value == key.value) {
                let d = self.err(
                    "policy::duplicate-key",
                    key.span,
                    format!("`{}` is defined twice in {what}", key.value),
                );
                d.label = "second definition".into();
                continue;
            }
            if let Some(list) = self.string_list(v, &format!("`{}`", key.value)) {
                out.push((key, list));
            }
        }
        out
    }

    fn rules(&mut self, node: &Node, direction: &str) -> Vec<RuleDoc> {
        let NodeKind::Seq(items) = &node.kind else {
            if !node.is_null() {
                self.expected(node, &format!("`{direction}`"), "a list of rules");
            }
            return Vec::new();
        };
        let peer_key = if direction == "ingress" { "from" } else { "to" };
        let wrong_key = if direction == "ingress" { "to" } else { "from" };
        let mut out = Vec::new();
        for item in items {
            let what = format!("an {direction} rule");
            let Some(fields) = self.fields(item, &what, RULE_KEYS) else {
                continue;
            };
            if let Some((k, _)) = fields.get(wrong_key) {
                let d = self.err(
                    "policy::wrong-peer-key",
                    k.span,
                    format!(
                        "{direction} rules name their peers with `{peer_key}`, not `{wrong_key}`"
                    ),
                );
                d.label = format!("use `{peer_key}` here");
                d.help = Some("ingress rules say `from:` (who may connect to the nodes); egress rules say `to:` (where the nodes may connect)".into());
            }
            let name = self
                .require(&fields, "name", item, &what)
                .and_then(|v| self.string(v, "a rule `name`"));
            let action = match fields.get("action") {
                Some((_, v)) => self
                    .choice(
                        v,
                        "rule action",
                        &[("allow", Verdict::Allow), ("deny", Verdict::Deny)],
                    )
                    .map(|s| s.value),
                None => Some(Verdict::Allow),
            };
            let peers = if fields.contains_key(wrong_key) {
                None
            } else {
                self.require(&fields, peer_key, item, &what)
                    .and_then(|v| self.string_list(v, &format!("`{peer_key}`")))
            };
            let services = self
                .require(&fields, "services", item, &what)
                .and_then(|v| self.string_list(v, "`services`"));
            if let Some(v) = fields.get("description").map(|(_, v)| *v) {
                self.string(v, "a rule `description`");
            }
            if let (Some(name), Some(action), Some(peers), Some(services)) =
                (name, action, peers, services)
            {
                out.push(RuleDoc {
                    name,
                    action,
                    peers,
                    services,
                    span: item.span,
                });
            }
        }
        out
    }

    fn targets(&mut self, node: &Node) -> TargetsDoc {
        let mut out = TargetsDoc::default();
        let Some(fields) = self.fields(node, "`targets`", &["aws", "gcp", "azure"]) else {
            return out;
        };
        for (cloud, (_, value)) in &fields {
            // A cloud takes one target (a mapping) or several (a list of mappings).
            let items: Vec<&Node> = match &value.kind {
                NodeKind::Seq(items) => items.iter().collect(),
                _ => vec![value],
            };
            for item in items {
                let doc = match cloud.as_str() {
                    "aws" => self.aws_target(item),
                    "gcp" => self.target_fields(
                        item,
                        "a gcp target",
                        GCP_KEYS,
                        &["project", "network"],
                        &["target_tags", "service_accounts", "regions", "node_ranges"],
                        &["priority_base"],
                    ),
                    _ => self
                        .target_fields(
                            item,
                            "an azure target",
                            AZURE_KEYS,
                            &["subscription", "resource_group"],
                            &["subnets"],
                            &[],
                        )
                        .map(|mut doc| {
                            doc.shared = self.shared_flag(item);
                            doc.nics = self.azure_nics(item);
                            doc
                        }),
                };
                let Some(doc) = doc else { continue };
                match cloud.as_str() {
                    "aws" => out.aws.push(doc),
                    "gcp" => out.gcp.push(doc),
                    _ => out.azure.push(doc),
                }
            }
        }
        out
    }

    fn target_fields(
        &mut self,
        node: &Node,
        what: &str,
        allowed: &[&'static str],
        required: &[&str],
        lists: &[&str],
        integers: &[&str],
    ) -> Option<TargetDoc> {
        let fields = self.fields(node, what, allowed)?;
        let mut doc = TargetDoc {
            span: node.span,
            ..TargetDoc::default()
        };
        for key in required {
            self.require(&fields, key, node, what);
        }
        for &key in allowed {
            let Some((_, v)) = fields.get(key) else {
                continue;
            };
            if lists.contains(&key) {
                if let Some(l) = self.string_list(v, &format!("`{key}`")) {
                    doc.lists.insert(key, l);
                }
            } else if integers.contains(&key) {
                if let Some(i) = self.integer(v, &format!("`{key}`")) {
                    doc.integers.insert(key, i);
                }
            } else if key == "instances"
                || key == "nics"
                || key == "network_acl"
                || key == "attach"
                || key == "shared"
            {
                // Structured keys, decoded by `aws_target` and `shared_flag`.
            } else if let Some(s) = self.string(v, &format!("`{key}`")) {
                doc.strings.insert(key, s);
            }
        }
        Some(doc)
    }

    /// The `shared:` flag of an azure target (false when absent).
    fn shared_flag(&mut self, node: &Node) -> bool {
        let NodeKind::Map(entries) = &node.kind else {
            return false;
        };
        entries
            .iter()
            .find(|(k, _)| matches!(&k.kind, NodeKind::Scalar { value, .. } if value == "shared"))
            .and_then(|(_, v)| self.boolean(v, "`shared`"))
            .unwrap_or(false)
    }

    /// A mapping of tag keys to values; a key given twice is an error.
    fn tag_map(&mut self, tags: &Node, what: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let NodeKind::Map(pairs) = &tags.kind else {
            self.expected(tags, "`tags`", "a mapping of tag keys to values");
            return out;
        };
        for (tk, tv) in pairs {
            let (Some(a), Some(b)) = (self.string(tk, "a tag key"), self.string(tv, "a tag value"))
            else {
                continue;
            };
            if out.contains_key(&a.value) {
                let d = self.err(
                    "policy::duplicate-key",
                    a.span,
                    format!("tag `{}` is given twice in {what}", a.value),
                );
                d.label = "second occurrence".into();
                let resource = if what.contains("nics") {
                    "a network interface"
                } else {
                    "an instance"
                };
                d.help = Some(format!(
                    "{resource} has one value per tag key: remove one of them"
                ));
                continue;
            }
            out.insert(a.value, b.value);
        }
        out
    }

    /// The `nics:` of an azure target: `tags` (required) and `resource_group`.
    fn azure_nics(&mut self, node: &Node) -> Option<NicsDoc> {
        let NodeKind::Map(entries) = &node.kind else {
            return None;
        };
        let (_, v) = entries
            .iter()
            .find(|(k, _)| matches!(&k.kind, NodeKind::Scalar { value, .. } if value == "nics"))?;
        let f = self.fields(v, "`nics`", &["tags", "resource_group"])?;
        let group = match f.get("resource_group") {
            Some((_, g)) => Some(self.string(g, "`nics.resource_group`")?),
            None => None,
        };
        let tags = self.require(&f, "tags", v, "`nics`")?;
        let tags = self.tag_map(tags, "`nics.tags`");
        Some((v.span, group, tags))
    }

    fn aws_target(&mut self, node: &Node) -> Option<TargetDoc> {
        let mut doc = self.target_fields(
            node,
            "an aws target",
            AWS_KEYS,
            &["region", "vpc"],
            &[],
            &[],
        )?;
        let NodeKind::Map(entries) = &node.kind else {
            return Some(doc);
        };
        for (k, v) in entries {
            let NodeKind::Scalar { value: key, .. } = &k.kind else {
                continue;
            };
            match key.as_str() {
                "attach" => doc.attach = self.boolean(v, "`attach`").unwrap_or(false),
                "instances" => {
                    let Some(f) = self.fields(v, "`instances`", &["tags"]) else {
                        continue;
                    };
                    if let Some(tags) = self.require(&f, "tags", v, "`instances`") {
                        doc.tags = self.tag_map(tags, "`instances.tags`");
                    }
                }
                "network_acl" => {
                    let Some(f) = self.fields(v, "`network_acl`", &["subnets", "node_cidrs"])
                    else {
                        continue;
                    };
                    let subnets = self
                        .require(&f, "subnets", v, "`network_acl`")
                        .and_then(|n| self.string_list(n, "`subnets`"));
                    let cidrs = match f.get("node_cidrs") {
                        Some((_, n)) => self.string_list(n, "`node_cidrs`"),
                        None => Some(Vec::new()),
                    };
                    if let (Some(s), Some(c)) = (subnets, cidrs) {
                        doc.nacl = Some((v.span, s, c));
                    }
                }
                _ => {}
            }
        }
        Some(doc)
    }
}
