//! The `filter` parameter of Compute list calls: `field op value` comparisons joined by
//! whitespace or `AND` (conjunction), `OR` (binding tighter than AND, as in AIP-160), `NOT`
//! and parentheses. Operators: `=` `!=` (`*` is a wildcard in strings), `<` `<=` `>` `>=`
//! (numbers), `:` (has: equality against any element of a list), `eq` `ne` (RE2 regex that
//! must match the whole value). Fields are dotted paths into the resource JSON.

use serde_json::Value;

#[derive(Debug)]
pub(super) enum Filter {
    All(Vec<Filter>),
    Any(Vec<Filter>),
    Not(Box<Filter>),
    Compare {
        field: String,
        op: Op,
        value: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Has,
    RegexEq,
    RegexNe,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    Word(String),
    Quoted(String),
    Operator(Op),
}

pub(super) fn parse(text: &str) -> Result<Filter, String> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        tokens,
        at: 0,
        depth: 0,
    };
    let filter = parser.conjunction()?;
    if parser.at < parser.tokens.len() {
        return Err(format!(
            "unexpected {:?} in filter",
            parser.tokens[parser.at]
        ));
    }
    Ok(filter)
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            '"' | '\'' => {
                let mut value = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated string in filter".into()),
                        Some('\\') if chars.get(i + 1).is_some() => {
                            value.push(chars[i + 1]);
                            i += 2;
                        }
                        Some(&q) if q == c => {
                            i += 1;
                            break;
                        }
                        Some(&other) => {
                            value.push(other);
                            i += 1;
                        }
                    }
                }
                tokens.push(Token::Quoted(value));
            }
            '=' | '!' | '<' | '>' | ':' => {
                let next = chars.get(i + 1).copied();
                let (op, width) = match (c, next) {
                    ('!', Some('=')) => (Op::Ne, 2),
                    ('<', Some('=')) => (Op::Le, 2),
                    ('>', Some('=')) => (Op::Ge, 2),
                    ('=', _) => (Op::Eq, 1),
                    ('<', _) => (Op::Lt, 1),
                    ('>', _) => (Op::Gt, 1),
                    (':', _) => (Op::Has, 1),
                    _ => return Err(format!("unexpected {c:?} in filter")),
                };
                tokens.push(Token::Operator(op));
                i += width;
            }
            _ => {
                let start = i;
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && !"()=!<>:\"'".contains(chars[i])
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                tokens.push(match word.as_str() {
                    "eq" => Token::Operator(Op::RegexEq),
                    "ne" => Token::Operator(Op::RegexNe),
                    _ => Token::Word(word),
                });
            }
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
}

/// Deepest nesting of parentheses and NOT a filter may have: deeper input is refused rather
/// than allowed to exhaust the stack.
const MAX_DEPTH: usize = 64;

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn conjunction(&mut self) -> Result<Filter, String> {
        let mut terms = vec![self.disjunction()?];
        loop {
            match self.peek() {
                None | Some(Token::Close) => break,
                Some(Token::Word(word)) if word == "AND" => {
                    self.at += 1;
                }
                _ => {}
            }
            terms.push(self.disjunction()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Filter::All(terms)
        })
    }

    fn disjunction(&mut self) -> Result<Filter, String> {
        let mut terms = vec![self.term()?];
        while matches!(self.peek(), Some(Token::Word(word)) if word == "OR") {
            self.at += 1;
            terms.push(self.term()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Filter::Any(terms)
        })
    }

    fn term(&mut self) -> Result<Filter, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("filter nested deeper than {MAX_DEPTH} levels"));
        }
        let term = self.term_inner();
        self.depth -= 1;
        term
    }

    fn term_inner(&mut self) -> Result<Filter, String> {
        match self.next() {
            Some(Token::Open) => {
                let inner = self.conjunction()?;
                match self.next() {
                    Some(Token::Close) => Ok(inner),
                    _ => Err("missing ')' in filter".into()),
                }
            }
            Some(Token::Word(word)) if word == "NOT" => Ok(Filter::Not(Box::new(self.term()?))),
            Some(Token::Word(field)) => {
                let Some(Token::Operator(op)) = self.next() else {
                    return Err(format!("expected an operator after {field:?} in filter"));
                };
                let value = match self.next() {
                    Some(Token::Word(value) | Token::Quoted(value)) => value,
                    _ => return Err(format!("expected a value after {field} in filter")),
                };
                if matches!(op, Op::RegexEq | Op::RegexNe) {
                    regex_lite::Regex::new(&format!("^(?:{value})$"))
                        .map_err(|error| format!("invalid regex {value:?} in filter: {error}"))?;
                }
                Ok(Filter::Compare { field, op, value })
            }
            other => Err(format!("unexpected {other:?} in filter")),
        }
    }
}

impl Filter {
    pub(super) fn matches(&self, resource: &Value) -> bool {
        match self {
            Filter::All(terms) => terms.iter().all(|term| term.matches(resource)),
            Filter::Any(terms) => terms.iter().any(|term| term.matches(resource)),
            Filter::Not(term) => !term.matches(resource),
            Filter::Compare { field, op, value } => {
                let found = field
                    .split('.')
                    .try_fold(resource, |node, key| node.get(key));
                compare(found, *op, value)
            }
        }
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn compare(found: Option<&Value>, op: Op, wanted: &str) -> bool {
    let texts: Vec<String> = match found {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().filter_map(scalar_text).collect(),
        Some(other) => scalar_text(other).into_iter().collect(),
    };
    match op {
        Op::Eq | Op::Has => texts.iter().any(|text| glob(wanted, text)),
        Op::Ne => !texts.iter().any(|text| glob(wanted, text)),
        Op::RegexEq | Op::RegexNe => {
            let regex =
                regex_lite::Regex::new(&format!("^(?:{wanted})$")).expect("checked at parse time");
            let any = texts.iter().any(|text| regex.is_match(text));
            any == (op == Op::RegexEq)
        }
        Op::Lt | Op::Le | Op::Gt | Op::Ge => texts.iter().any(|text| {
            let ordering = match (text.parse::<f64>(), wanted.parse::<f64>()) {
                (Ok(a), Ok(b)) => a.partial_cmp(&b),
                _ => Some(text.as_str().cmp(wanted)),
            };
            matches!(
                (op, ordering),
                (Op::Lt, Some(std::cmp::Ordering::Less))
                    | (
                        Op::Le,
                        Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
                    )
                    | (Op::Gt, Some(std::cmp::Ordering::Greater))
                    | (
                        Op::Ge,
                        Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
                    )
            )
        }),
    }
}

/// `*` matches any run of characters; everything else literally.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule() -> Value {
        json!({"name": "prod-workers-i-ssh", "priority": 1000, "network": "http://x/projects/p/global/networks/prod",
               "targetTags": ["workers", "gpu"], "disabled": false, "logConfig": {"enable": false}})
    }

    fn matches(filter: &str) -> bool {
        parse(filter).unwrap().matches(&rule())
    }

    #[test]
    fn comparisons() {
        assert!(matches(
            r#"network = "http://x/projects/p/global/networks/prod""#
        ));
        assert!(!matches(
            r#"network = "http://x/projects/p/global/networks/pro""#
        ));
        assert!(matches("name = prod-workers-*"));
        assert!(matches("name != other"));
        assert!(matches("network eq .*/networks/prod"));
        assert!(matches("name ne '.*-egress'"));
        assert!(matches("priority >= 1000"));
        assert!(!matches("priority > 1000"));
        assert!(matches("priority < 65534"));
        assert!(matches("targetTags:gpu"));
        assert!(matches("logConfig.enable = false"));
        assert!(!matches("missing = x"));
    }

    #[test]
    fn boolean_structure() {
        assert!(matches("(name = prod-*) (priority = 1000)"));
        assert!(matches("name = prod-* AND priority = 1000"));
        assert!(!matches("(name = prod-*) (priority = 999)"));
        assert!(matches("priority = 999 OR priority = 1000"));
        assert!(matches("NOT priority = 999"));
        assert!(matches(
            "(priority = 999 OR name eq prod.*) AND disabled = false"
        ));
    }

    #[test]
    fn bad_filters_are_errors() {
        for bad in [
            "name =",
            "name",
            "(name = a",
            "name = 'a",
            "name eq '('",
            "= a",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn globs() {
        assert!(glob("a*c", "abc"));
        assert!(glob("a*", "a"));
        assert!(!glob("a*b*c", "acb"));
        assert!(glob("*", ""));
        assert!(!glob("ab*ba", "aba"));
    }
}
