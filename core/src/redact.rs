//! Nothing secret is printed: every line perimeter writes to stderr — errors quoting a
//! server's answer, an SDK's error, progress — passes [`redact`] first. A server or a proxy
//! that echoes request headers must not put credentials into a CI log.

/// What replaces a credential.
pub const REDACTED: &str = "[redacted]";

/// The longest line printed whole; the rest of a longer one is cut, with its length.
pub const MAX_LINE: usize = 2000;

/// Header or field names whose value is a credential, compared without case.
const SECRET_NAMES: [&str; 10] = [
    "authorization",
    "x-amz-security-token",
    "x-amz-credential",
    "client_secret",
    "client_assertion",
    "access_token",
    "refresh_token",
    "id_token",
    "aws_secret_access_key",
    "aws_session_token",
];

/// `text` without the credentials in `known` (values taken from the environment, at least 8
/// characters) nor anything shaped like a credential: bearer tokens, JWTs (Entra ID tokens,
/// client assertions), Google OAuth tokens, AWS access key ids, the value after a secret
/// header or field name; each line cut to [`MAX_LINE`] characters.
pub fn redact(text: &str, known: &[String]) -> String {
    let mut out = text.to_string();
    for secret in known.iter().filter(|s| s.len() >= 8) {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), REDACTED);
        }
    }
    let out = redact_values_after_names(&out);
    let out = redact_tokens(&out);
    out.split_inclusive('\n').map(cut_line).collect()
}

fn cut_line(line: &str) -> String {
    let n = line.chars().count();
    if n <= MAX_LINE {
        return line.to_string();
    }
    let head: String = line.chars().take(MAX_LINE).collect();
    let newline = if line.ends_with('\n') { "\n" } else { "" };
    format!("{head}… ({} more characters){newline}", n - MAX_LINE)
}

fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~+/=".contains(c)
}

/// The value after `Authorization:`, `"client_secret": "`, `x-amz-security-token=` and the
/// like, up to the end of the value.
fn redact_values_after_names(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    for name in SECRET_NAMES {
        let mut from = 0;
        while let Some(i) = lower[from..].find(name) {
            let start = from + i + name.len();
            from = start;
            // Separators: quotes, colon, equals, spaces; then the value.
            let rest = &text[start..];
            let sep = rest
                .char_indices()
                .find(|(_, c)| !"\"': =".contains(*c))
                .map_or(rest.len(), |(j, _)| j);
            if sep == 0 {
                continue;
            }
            let value_start = start + sep;
            let value = &text[value_start..];
            // `Authorization: Bearer x`: the scheme stays, the credential goes.
            let scheme = [
                "Bearer ",
                "bearer ",
                "Basic ",
                "basic ",
                "AWS4-HMAC-SHA256 ",
            ]
            .into_iter()
            .find(|s| value.starts_with(s))
            .map_or(0, str::len);
            let value_start = value_start + scheme;
            // An Authorization value runs to the end of the header (`Credential=…,
            // SignedHeaders=…, Signature=…`); other values are one token.
            let ends = |c: char| {
                if name == "authorization" {
                    ";\n\r\"'".contains(c)
                } else {
                    !token_char(c)
                }
            };
            let len = text[value_start..]
                .char_indices()
                .find(|(_, c)| ends(*c))
                .map_or(text.len() - value_start, |(j, _)| j);
            if len > 0 {
                cuts.push((value_start, value_start + len));
            }
        }
    }
    apply_cuts(text, cuts)
}

/// Tokens recognisable by their shape wherever they stand.
fn redact_tokens(text: &str) -> String {
    let mut cuts = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let at_start = i == 0 || !token_char(text[..i].chars().next_back().unwrap_or(' '));
        if at_start {
            let run = text[i..]
                .char_indices()
                .find(|(_, c)| !token_char(*c))
                .map_or(text.len() - i, |(j, _)| j);
            let word = &text[i..i + run];
            if looks_like_credential(word) {
                cuts.push((i, i + run));
            }
            i += run.max(1);
        } else {
            i += 1;
        }
        while i < bytes.len() && !text.is_char_boundary(i) {
            i += 1;
        }
    }
    apply_cuts(text, cuts)
}

fn looks_like_credential(word: &str) -> bool {
    let jwt = word.starts_with("eyJ") && word.matches('.').count() >= 2 && word.len() >= 20;
    let google = word.starts_with("ya29.") && word.len() >= 20;
    let aws_key_id = word.len() == 20
        && ["AKIA", "ASIA", "AIDA", "AROA", "ANPA"]
            .iter()
            .any(|p| word.starts_with(p))
        && word
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    jwt || google || aws_key_id
}

fn apply_cuts(text: &str, mut cuts: Vec<(usize, usize)>) -> String {
    if cuts.is_empty() {
        return text.to_string();
    }
    cuts.sort();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in cuts {
        if start < at {
            at = at.max(end);
            continue;
        }
        out.push_str(&text[at..start]);
        out.push_str(REDACTED);
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_removed_wherever_they_stand() {
        let known = vec!["wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_string()];
        let text = "operation failed: 403: echo: authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261201/us-east-1/ec2/aws4_request, Signature=abcdef; x-amz-security-token: FQoGZXIvYXdzEJr//////////wEaDM; secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n";
        let out = redact(text, &known);
        for secret in [
            "AKIAIOSFODNN7EXAMPLE",
            "FQoGZXIvYXdzEJr",
            "wJalrXUtnFEMI",
            "Signature=abcdef",
        ] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(
            out.starts_with(
                "operation failed: 403: echo: authorization: AWS4-HMAC-SHA256 [redacted]"
            ),
            "{out}"
        );
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
        let out = redact(
            &format!(
                "Bearer {jwt} and {{\"client_assertion\": \"{jwt}\"}} ya29.a0AfH6SMBx3abcdefghij"
            ),
            &[],
        );
        assert!(!out.contains("eyJ") && !out.contains("ya29.a0"), "{out}");
        assert_eq!(
            redact("no secrets here: sg-0123456789abcdef0\n", &[]),
            "no secrets here: sg-0123456789abcdef0\n"
        );
    }

    #[test]
    fn long_lines_are_cut() {
        let out = redact(&"x".repeat(MAX_LINE + 5), &[]);
        assert!(out.ends_with("… (5 more characters)"));
    }
}
