//! Each target identifier checked against its cloud's naming rules, with its line.

use super::Resolver;
use crate::policy::decode::TargetDoc;
use crate::policy::naming::{is_aws_id, quoted, target_value_rule};

impl Resolver<'_> {
    /// Checks each identifier of a target against the cloud's own rules, so that `"vpc 1"`, a
    /// blank region or a 500-character NSG name is an error here, with its line, and not a
    /// failed request later.
    pub(super) fn check_target_values(&mut self, cloud: &str, t: &TargetDoc) {
        for (key, value) in &t.strings {
            if let Some((rule, example)) = target_value_rule(cloud, key, &value.value) {
                let d = self.err(
                    "policy::bad-target-value",
                    value.span,
                    format!("{} is not a valid {cloud} {key}", quoted(&value.value)),
                );
                d.label = rule.into();
                d.help = Some(format!("for example `{example}`"));
            }
        }
        if cloud == "gcp" {
            for region in t.lists.get("regions").into_iter().flatten() {
                if let Some((rule, example)) = target_value_rule(cloud, "region", &region.value) {
                    let d = self.err(
                        "policy::bad-target-value",
                        region.span,
                        format!("{} is not a valid gcp region", quoted(&region.value)),
                    );
                    d.label = rule.into();
                    d.help = Some(format!("for example `{example}`"));
                }
            }
        }
        if let Some((_, subnets, _)) = &t.nacl {
            for subnet in subnets {
                if !is_aws_id(&subnet.value, "subnet") {
                    let d = self.err(
                        "policy::bad-target-value",
                        subnet.span,
                        format!("{} is not a subnet id", quoted(&subnet.value)),
                    );
                    d.label = "`subnet-` and 8 or 17 hexadecimal digits".into();
                    d.help = Some("for example `subnet-0123456789abcdef0`".into());
                }
            }
        }
    }
}
