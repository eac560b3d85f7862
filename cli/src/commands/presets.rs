//! `perimeter presets`

use std::fmt::Write as _;

use perimeter_core::policy::presets::{CNIS, PRESETS};
use perimeter_core::table;

use crate::{exit, output};

pub(crate) fn run() -> u8 {
    let mut out = String::from("Built-in services (use by name in `services:`):\n");
    let rows: Vec<Vec<String>> = PRESETS
        .iter()
        .map(|p| vec![p.name.to_string(), p.summary.to_string()])
        .collect();
    out.push_str(&table::render(&["Name", "Traffic"], &rows));
    for cni in CNIS {
        let _ = writeln!(
            out,
            "\ncni:{name} (alone: modes {defaults}; one mode: cni:{name}/MODE) - {src}",
            name = cni.name,
            defaults = cni.default_modes.join(" + "),
            src = cni.source
        );
        let rows: Vec<Vec<String>> = cni
            .modes
            .iter()
            .map(|m| {
                vec![
                    format!("cni:{}/{}", cni.name, m.name),
                    m.summary.to_string(),
                ]
            })
            .collect();
        out.push_str(&table::render(&["Name", "Traffic"], &rows));
    }
    out.push_str("\nLiterals: tcp/443, udp/30000-32767, tcp (all ports), icmp, icmp/8, icmp/3/4, icmpv6/128, proto/4, ipip, gre, esp, ah, sctp, any\n");
    output::data(&out);
    exit::OK
}
