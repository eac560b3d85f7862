//! Each cloud's naming rules for the identifiers a target declares (regions, VPC and subnet
//! ids, project ids, resource groups, NSG names), so a bad one is an error at its line.

/// A value as a message quotes it: escaped, and cut to 60 characters with its length.
pub(super) fn quoted(v: &str) -> String {
    let escaped: String = v.escape_debug().collect();
    if escaped.chars().count() <= 64 {
        format!("`{escaped}`")
    } else {
        let head: String = escaped.chars().take(60).collect();
        format!("`{head}…` ({} characters)", v.chars().count())
    }
}

/// `vpc-…`, `subnet-…`: the prefix, a dash and 8 or 17 lower-case hexadecimal digits.
pub(super) fn is_aws_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('-'))
        .is_some_and(|hex| {
            (hex.len() == 8 || hex.len() == 17)
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// The rule a target identifier breaks, with an example of a good one; `None` when it is
/// valid. The rules are the clouds' documented naming rules.
pub(super) fn target_value_rule(
    cloud: &str,
    key: &str,
    v: &str,
) -> Option<(&'static str, &'static str)> {
    let len = v.chars().count();
    let all = |f: fn(char) -> bool| v.chars().all(f);
    let lower_digit_dash = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    let ok = match (cloud, key) {
        ("aws", "region") => {
            (1..=32).contains(&len)
                && all(lower_digit_dash)
                && v.contains('-')
                && v.starts_with(|c: char| c.is_ascii_lowercase())
                && v.ends_with(|c: char| c.is_ascii_digit())
        }
        ("gcp", "region") => {
            (1..=63).contains(&len)
                && all(lower_digit_dash)
                && v.contains('-')
                && v.starts_with(|c: char| c.is_ascii_lowercase())
                && v.ends_with(|c: char| c.is_ascii_digit())
        }
        ("aws", "vpc") => is_aws_id(v, "vpc"),
        ("aws", "account") => len == 12 && all(|c| c.is_ascii_digit()),
        ("aws", "security_group") => {
            (1..=255).contains(&len) && v.trim() == v && !v.starts_with("sg-")
        }
        ("gcp", "project") => {
            // Domain-scoped projects (`example.com:my-project`) carry their domain first.
            let (domain, id) = v.rsplit_once(':').unwrap_or(("", v));
            (6..=30).contains(&id.chars().count())
                && id.chars().all(lower_digit_dash)
                && id.starts_with(|c: char| c.is_ascii_lowercase())
                && !id.ends_with('-')
                && domain
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-".contains(c))
        }
        ("gcp", "network") => {
            (1..=63).contains(&len)
                && all(lower_digit_dash)
                && v.starts_with(|c: char| c.is_ascii_lowercase())
                && !v.ends_with('-')
        }
        ("azure", "subscription") => {
            len == 36
                && v.char_indices().all(|(i, c)| {
                    if [8, 13, 18, 23].contains(&i) {
                        c == '-'
                    } else {
                        c.is_ascii_hexdigit()
                    }
                })
        }
        ("azure", "resource_group") => {
            (1..=90).contains(&len)
                && all(|c| c.is_alphanumeric() || "_-.()".contains(c))
                && !v.ends_with('.')
        }
        ("azure", "nsg" | "application_security_group") => {
            (1..=80).contains(&len)
                && all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                && v.starts_with(|c: char| c.is_ascii_alphanumeric())
                && v.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        }
        ("azure", "location") => {
            (1..=64).contains(&len) && all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        }
        _ => true,
    };
    if ok {
        return None;
    }
    Some(match (cloud, key) {
        ("aws", "region") => (
            "lower-case letters, digits and dashes, ending in a digit",
            "us-east-1",
        ),
        ("gcp", "region") => (
            "a Compute Engine region: lower-case letters, digits and dashes, ending in a digit",
            "us-central1",
        ),
        ("aws", "vpc") => (
            "`vpc-` and 8 or 17 hexadecimal digits",
            "vpc-0123456789abcdef0",
        ),
        ("aws", "account") => ("12 digits, quoted", "\"123456789012\""),
        ("aws", _) => (
            "1-255 characters without surrounding spaces, not starting with `sg-`",
            "prod-workers",
        ),
        ("gcp", "project") => (
            "6-30 lower-case letters, digits and dashes, starting with a letter",
            "acme-prod",
        ),
        ("gcp", _) => (
            "1-63 lower-case letters, digits and dashes, starting with a letter (RFC 1035)",
            "prod",
        ),
        ("azure", "subscription") => ("a GUID", "11111111-2222-3333-4444-555555555555"),
        ("azure", "resource_group") => (
            "1-90 letters, digits and `_-.()`, not ending in `.`",
            "rg-prod",
        ),
        ("azure", "location") => ("a region name in lower case", "westeurope"),
        _ => (
            "1-80 letters, digits and `_.-`, starting with a letter or digit",
            "prod-workers",
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::target_value_rule;

    #[test]
    fn real_identifiers_pass_and_broken_ones_do_not() {
        for (cloud, key, v) in [
            ("aws", "region", "us-gov-west-1"),
            ("aws", "region", "ap-southeast-5"),
            ("aws", "vpc", "vpc-0a1b2c3d"),
            ("aws", "security_group", "eks cluster sg"),
            ("gcp", "project", "acme-prod"),
            ("gcp", "project", "example.com:acme-prod"),
            ("gcp", "network", "default"),
            ("azure", "resource_group", "MC_rg-aks_prod_westeurope"),
            ("azure", "nsg", "aks-agentpool-12345678-nsg"),
            ("azure", "location", "eastus2"),
        ] {
            assert_eq!(target_value_rule(cloud, key, v), None, "{cloud} {key} {v}");
        }
        for (cloud, key, v) in [
            ("aws", "region", " "),
            ("aws", "vpc", "vpc 1"),
            ("aws", "vpc", "vpc-0A1B2C3D"),
            ("gcp", "project", "acme"),
            ("gcp", "project", "Acme-prod"),
            ("gcp", "network", "prod_net"),
            ("azure", "subscription", "sub"),
            ("azure", "resource_group", "rg."),
            ("azure", "nsg", "-nsg"),
        ] {
            assert!(
                target_value_rule(cloud, key, v).is_some(),
                "{cloud} {key} {v}"
            );
        }
        let long = "n".repeat(81);
        assert!(target_value_rule("azure", "nsg", &long).is_some());
    }
}
