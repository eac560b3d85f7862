//! perimeter's ARM emulator for the end-to-end tests: subscription `SUB`, resource group
//! `rg-aks-prod`, the nodes' application security group, an AKS-style NSG, and helpers.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value, json};

use super::{LocalCloud, root};

pub(crate) const SUB: &str = "11111111-2222-3333-4444-555555555555";
pub(crate) const AUTH: (&str, &str) = ("Authorization", "Bearer test");

pub(crate) struct Emulator(pub(crate) LocalCloud);

impl std::ops::Deref for Emulator {
    type Target = LocalCloud;
    fn deref(&self) -> &LocalCloud {
        &self.0
    }
}

pub(crate) fn nsg_path() -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/rg-aks-prod/providers/Microsoft.Network/networkSecurityGroups/aks-workers"
    )
}

impl Emulator {
    /// An emulator with the nodes' application security group.
    pub(crate) fn start() -> Emulator {
        let emulator = Emulator(LocalCloud::start());
        let asg = format!(
            "/subscriptions/{SUB}/resourceGroups/rg-aks-prod/providers/Microsoft.Network/applicationSecurityGroups/aks-workers-nodes?api-version=2024-05-01"
        );
        let (status, body) = emulator.arm("PUT", &asg, Some(json!({"location": "westeurope"})));
        assert_eq!(status, 201, "{body}");
        emulator
    }

    pub(crate) fn arm(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_with(method, path, body, &[AUTH])
    }

    pub(crate) fn nsg(&self) -> (u16, Value) {
        self.arm(
            "GET",
            &format!("{}?api-version=2024-05-01", nsg_path()),
            None,
        )
    }

    pub(crate) fn rule(&self, name: &str) -> (u16, Value) {
        self.arm(
            "GET",
            &format!("{}/securityRules/{name}?api-version=2024-05-01", nsg_path()),
            None,
        )
    }

    pub(crate) fn put_rule(&self, name: &str, properties: Value) {
        let (status, body) = self.arm(
            "PUT",
            &format!("{}/securityRules/{name}?api-version=2024-05-01", nsg_path()),
            Some(json!({"properties": properties})),
        );
        assert!(status == 200 || status == 201, "{status} {body}");
    }

    /// An AKS-managed NSG: rules of its own at 500 and up.
    pub(crate) fn aks_nsg(&self, extra: usize) {
        let mut rules = vec![
            aks_rule("k8s-azure-lb_allow_IPv4_443", 500, "Inbound"),
            aks_rule("k8s-azure-lb_allow_IPv4_80", 501, "Inbound"),
            aks_rule("aks-allow-outbound", 500, "Outbound"),
        ];
        rules.extend(
            (0..extra).map(|i| aks_rule(&format!("aks-extra-{i}"), 1000 + i as u16, "Inbound")),
        );
        let (status, body) = self.arm(
            "PUT",
            &format!("{}?api-version=2024-05-01", nsg_path()),
            Some(json!({"location": "westeurope", "properties": {"securityRules": rules}})),
        );
        assert_eq!(status, 201, "{body}");
    }

    pub(crate) fn writes(&self) -> u64 {
        self.count(&[
            "PUT networkSecurityGroups.createOrUpdate",
            "PUT securityRules.createOrUpdate",
            "DELETE securityRules.delete",
            "DELETE networkSecurityGroups.delete",
        ])
    }

    pub(crate) fn perimeter(&self, args: &[&str]) -> Output {
        self.0.perimeter(
            args,
            &[
                ("PERIMETER_AZURE_ENDPOINT", self.url()),
                ("PERIMETER_AZURE_TOKEN", "test-token".to_string()),
            ],
        )
    }
}

pub(crate) fn aks_rule(name: &str, priority: u16, direction: &str) -> Value {
    json!({"name": name, "properties": {"protocol": "Tcp", "access": "Allow", "direction": direction, "priority": priority,
        "sourcePortRange": "*", "destinationPortRange": "443", "sourceAddressPrefix": "Internet",
        "destinationAddressPrefix": "20.1.2.3", "description": "managed by AKS"}})
}

/// policies/aks-workers.yaml in a scratch directory, shared or owned.
pub(crate) fn policy(dir: &Path, shared: bool) -> PathBuf {
    let mut text =
        std::fs::read_to_string(root().join("policies/aks-workers.yaml")).expect("policy");
    if shared {
        text = text.replace(
            "    nsg: aks-workers\n",
            "    nsg: aks-workers\n    shared: true\n",
        );
        assert!(text.contains("shared: true"));
    }
    let path = dir.join("aks-workers.yaml");
    std::fs::write(&path, text).expect("write policy");
    path
}

pub(crate) fn scratch(name: &str) -> PathBuf {
    super::scratch(&format!("azure-{name}"))
}

pub(crate) fn rule_names(nsg: &Value) -> Vec<String> {
    nsg["properties"]["securityRules"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|r| r["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
