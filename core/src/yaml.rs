//! A YAML document as a tree of nodes that remember where they are in the file.
//!
//! serde-based YAML crates stop at the first error and lose positions once a value is
//! deserialized. perimeter wants every error at once, each at its line and column, so it reads
//! the event stream of `saphyr-parser` into this small tree and decodes the tree by hand
//! (see `policy::decode`).

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle};

use crate::diag::{Diagnostic, Span};

/// A YAML node with its byte span.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// What it is.
    pub kind: NodeKind,
    /// Where it is.
    pub span: Span,
}

/// The shape of a node. Scalars stay strings; the decoder decides what they mean.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeKind {
    /// A scalar. `plain` is false for quoted and block scalars, which are always strings.
    Scalar {
        /// The text after YAML unescaping.
        value: String,
        /// True when written without quotes.
        plain: bool,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in file order (duplicates are kept so the decoder can report them).
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// True for `~`, `null`, or an empty plain scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar { value, plain: true }
            if value.is_empty() || value == "~" || value == "null" || value == "Null" || value == "NULL")
    }

    /// A short description of the node's type for "expected X, found Y" messages.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            _ if self.is_null() => "nothing",
            NodeKind::Scalar { .. } => "a scalar",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }
}

/// Maps the parser's character indices to byte offsets.
struct Offsets {
    ascii: bool,
    byte_of_char: Vec<usize>,
}

impl Offsets {
    fn new(text: &str) -> Self {
        if text.is_ascii() {
            Self {
                ascii: true,
                byte_of_char: Vec::new(),
            }
        } else {
            let mut v: Vec<usize> = text.char_indices().map(|(b, _)| b).collect();
            v.push(text.len());
            Self {
                ascii: false,
                byte_of_char: v,
            }
        }
    }

    fn byte(&self, char_index: usize) -> usize {
        if self.ascii {
            char_index
        } else {
            self.byte_of_char
                .get(char_index)
                .copied()
                .unwrap_or_else(|| self.byte_of_char.last().copied().unwrap_or(0))
        }
    }

    fn span(&self, s: saphyr_parser::Span) -> Span {
        let start = self.byte(s.start.index());
        let end = self.byte(s.end.index()).max(start);
        Span::new(start, end - start)
    }
}

enum Frame {
    Seq {
        items: Vec<Node>,
        start: Span,
        anchor: usize,
    },
    Map {
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
        start: Span,
        anchor: usize,
    },
}

/// The most nodes one document may have, aliases counted with the nodes they copy: far more
/// than any policy needs, and few enough that a file of aliases of aliases (an "alias bomb")
/// stops at a few tens of megabytes instead of exhausting memory.
pub const MAX_NODES: usize = 200_000;

/// Nodes in a tree, the root included.
fn size(node: &Node) -> usize {
    1 + match &node.kind {
        NodeKind::Scalar { .. } => 0,
        NodeKind::Seq(items) => items.iter().map(size).sum(),
        NodeKind::Map(entries) => entries.iter().map(|(k, v)| size(k) + size(v)).sum(),
    }
}

fn too_many_nodes(span: Span) -> Diagnostic {
    Diagnostic::error(
        "yaml::too-large",
        span,
        format!("the document has more than {MAX_NODES} nodes once its aliases are expanded"),
    )
    .label("the limit is reached here")
    .help("a policy needs far fewer; expand YAML aliases (`*name`) by hand, or split the policy")
}

/// Parses one YAML document. Returns `Ok(None)` for an empty file. Anchors and aliases are
/// supported; an alias counts as the nodes it copies, and a document over [`MAX_NODES`] is an
/// error (`yaml::too-large`).
pub fn parse(text: &str) -> Result<Option<Node>, Diagnostic> {
    let offsets = Offsets::new(text);
    let mut stack: Vec<Frame> = Vec::new();
    // Each anchored node with its size, so an alias costs its size without a walk.
    let mut anchors: HashMap<usize, (Node, usize)> = HashMap::new();
    let mut nodes = 0usize;
    let mut root: Option<Node> = None;
    let mut documents = 0usize;

    for item in Parser::new_from_str(text) {
        let (event, raw_span) = item.map_err(|e| {
            let offset = offsets.byte(e.marker().index());
            Diagnostic::error(
                "yaml::syntax",
                Span::new(offset, 0),
                format!("invalid YAML: {}", e.info()),
            )
            .label("here")
            .help("check indentation and quoting; tabs are not allowed for indentation")
        })?;
        let span = offsets.span(raw_span);
        if nodes > MAX_NODES {
            return Err(too_many_nodes(span));
        }
        let finished: Option<Node> = match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(Diagnostic::error(
                        "yaml::multiple-documents",
                        span,
                        "a policy file holds exactly one YAML document",
                    )
                    .label("second document starts here")
                    .help("put each policy in its own file"));
                }
                None
            }
            Event::Scalar(_, _, _, Some(tag))
            | Event::SequenceStart(_, Some(tag))
            | Event::MappingStart(_, Some(tag)) => {
                return Err(Diagnostic::error(
                    "yaml::tag",
                    span,
                    format!("YAML tag `{}{}` in a policy", tag.handle, tag.suffix),
                )
                .label("a policy has no typed or custom values")
                .help("remove the tag; quote a value to make it a string"));
            }
            Event::Scalar(value, style, anchor, None) => {
                let node = Node {
                    kind: NodeKind::Scalar {
                        value: value.into_owned(),
                        plain: style == ScalarStyle::Plain,
                    },
                    span,
                };
                nodes += 1;
                if anchor != 0 {
                    anchors.insert(anchor, (node.clone(), 1));
                }
                Some(node)
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some((node, copied)) => {
                    nodes = nodes.saturating_add(*copied);
                    if nodes > MAX_NODES {
                        return Err(too_many_nodes(span));
                    }
                    Some(Node {
                        kind: node.kind.clone(),
                        span,
                    })
                }
                None => {
                    return Err(
                        Diagnostic::error("yaml::syntax", span, "unknown alias").label("here")
                    );
                }
            },
            Event::SequenceStart(anchor, _) => {
                stack.push(Frame::Seq {
                    items: Vec::new(),
                    start: span,
                    anchor,
                });
                None
            }
            Event::MappingStart(anchor, _) => {
                stack.push(Frame::Map {
                    entries: Vec::new(),
                    pending_key: None,
                    start: span,
                    anchor,
                });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (kind, start, anchor, last_end) = match stack.pop() {
                    Some(Frame::Seq {
                        items,
                        start,
                        anchor,
                    }) => {
                        let end = items.last().map(|n| n.span.offset + n.span.len);
                        (NodeKind::Seq(items), start, anchor, end)
                    }
                    Some(Frame::Map {
                        entries,
                        start,
                        anchor,
                        ..
                    }) => {
                        let end = entries.last().map(|(_, v)| v.span.offset + v.span.len);
                        (NodeKind::Map(entries), start, anchor, end)
                    }
                    None => continue,
                };
                let end = last_end
                    .unwrap_or(start.offset + start.len)
                    .max(span.offset + span.len);
                let node = Node {
                    kind,
                    span: Span::new(start.offset, end - start.offset),
                };
                nodes += 1;
                if anchor != 0 {
                    let copied = size(&node);
                    anchors.insert(anchor, (node.clone(), copied));
                }
                Some(node)
            }
            _ => None,
        };
        if let Some(node) = finished {
            match stack.last_mut() {
                Some(Frame::Seq { items, .. }) => items.push(node),
                Some(Frame::Map {
                    entries,
                    pending_key,
                    ..
                }) => match pending_key.take() {
                    Some(key) => entries.push((key, node)),
                    None => *pending_key = Some(node),
                },
                None => root = Some(node),
            }
        }
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_point_at_scalars() {
        let text = "a: 1\nlist:\n  - x\n  - \"y\"\n";
        let root = parse(text).unwrap().unwrap();
        let NodeKind::Map(entries) = &root.kind else {
            panic!("not a map")
        };
        let (key, value) = &entries[1];
        assert_eq!(
            &text[key.span.offset..key.span.offset + key.span.len],
            "list"
        );
        let NodeKind::Seq(items) = &value.kind else {
            panic!("not a seq")
        };
        assert_eq!(
            &text[items[0].span.offset..items[0].span.offset + items[0].span.len],
            "x"
        );
        assert!(matches!(
            &items[1].kind,
            NodeKind::Scalar { plain: false, .. }
        ));
    }

    #[test]
    fn syntax_errors_are_located() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(err.code, "yaml::syntax");
        assert!(err.span.is_some());
    }

    #[test]
    fn empty_and_multi_document_files() {
        assert!(parse("").unwrap().is_none());
        assert!(parse("# only a comment\n").unwrap().is_none());
        assert_eq!(
            parse("a: 1\n---\nb: 2\n").unwrap_err().code,
            "yaml::multiple-documents"
        );
    }

    #[test]
    fn an_alias_bomb_stops_at_the_node_budget() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let err = parse(&text).unwrap_err();
        assert_eq!(err.code, "yaml::too-large");
        // A modest use of aliases is fine.
        let ok = "base: &b [10.0.0.0/8, 10.1.0.0/16]\nmore: [*b, *b]\n";
        assert!(parse(ok).unwrap().is_some());
    }

    #[test]
    fn tags_are_refused_where_they_are() {
        for text in [
            "a: !custom 1\n",
            "a: !!str 22\n",
            "a: !x [1]\n",
            "a: !x {b: 1}\n",
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.code, "yaml::tag", "{text}");
            assert_eq!(err.span.unwrap().offset, 3, "{text}");
        }
    }

    #[test]
    fn non_ascii_offsets_are_bytes() {
        let text = "é: ü\nkey: value\n";
        let root = parse(text).unwrap().unwrap();
        let NodeKind::Map(entries) = &root.kind else {
            panic!()
        };
        let key = &entries[1].0;
        assert_eq!(
            &text[key.span.offset..key.span.offset + key.span.len],
            "key"
        );
    }
}
