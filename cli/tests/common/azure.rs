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
        emulator.node_network(2);
        emulator
    }

    /// The nodes' VNet `aks-vnet` with subnet `aks-nodes`, and `count` node NICs in it
    /// (tagged `aks-nodepool: workers`, in the nodes' ASG).
    pub(crate) fn node_network(&self, count: usize) {
        let group =
            format!("/subscriptions/{SUB}/resourceGroups/rg-aks-prod/providers/Microsoft.Network");
        let (status, body) = self.arm(
            "PUT",
            &format!("{group}/virtualNetworks/aks-vnet?api-version=2024-05-01"),
            Some(json!({"location": "westeurope", "properties": {
                "addressSpace": {"addressPrefixes": ["10.224.0.0/12"]},
                "subnets": [{"name": "aks-nodes", "properties": {"addressPrefix": "10.224.0.0/16"}}]}})),
        );
        assert_eq!(status, 201, "{body}");
        for i in 0..count {
            self.node_nic(&format!("aks-node-{i}"), None);
        }
    }

    /// A node NIC in `aks-vnet/aks-nodes`, optionally with an NSG of its own.
    pub(crate) fn node_nic(&self, name: &str, nsg: Option<&str>) {
        let group =
            format!("/subscriptions/{SUB}/resourceGroups/rg-aks-prod/providers/Microsoft.Network");
        let mut properties = json!({"ipConfigurations": [{"name": "ipconfig1", "properties": {
            "subnet": {"id": format!("{group}/virtualNetworks/aks-vnet/subnets/aks-nodes")},
            "applicationSecurityGroups": [{"id": format!("{group}/applicationSecurityGroups/aks-workers-nodes")}]}}]});
        if let Some(nsg) = nsg {
            properties["networkSecurityGroup"] =
                json!({"id": format!("{group}/networkSecurityGroups/{nsg}")});
        }
        let (status, body) = self.arm(
            "PUT",
            &format!("{group}/networkInterfaces/{name}?api-version=2024-05-01"),
            Some(json!({"location": "westeurope", "tags": {"aks-nodepool": "workers"}, "properties": properties})),
        );
        assert!(status == 200 || status == 201, "{status} {body}");
    }

    /// Sets (or with `None` removes) the NSG of the nodes' subnet, out of band.
    pub(crate) fn set_subnet_nsg(&self, nsg: Option<&str>) {
        let group =
            format!("/subscriptions/{SUB}/resourceGroups/rg-aks-prod/providers/Microsoft.Network");
        let path =
            format!("{group}/virtualNetworks/aks-vnet/subnets/aks-nodes?api-version=2024-05-01");
        let mut properties = json!({"addressPrefix": "10.224.0.0/16"});
        if let Some(nsg) = nsg {
            properties["networkSecurityGroup"] =
                json!({"id": format!("{group}/networkSecurityGroups/{nsg}")});
        }
        let (status, body) = self.arm("PUT", &path, Some(json!({"properties": properties})));
        assert!(status == 200 || status == 201, "{status} {body}");
    }

    /// The NSG id on the nodes' subnet.
    pub(crate) fn subnet_nsg(&self) -> Option<String> {
        let path = format!(
            "/subscriptions/{SUB}/resourceGroups/rg-aks-prod/providers/Microsoft.Network/virtualNetworks/aks-vnet/subnets/aks-nodes?api-version=2024-05-01"
        );
        let (_, body) = self.arm("GET", &path, None);
        body.pointer("/properties/networkSecurityGroup/id")
            .and_then(Value::as_str)
            .map(|id| id.rsplit('/').next().unwrap_or(id).to_string())
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
        // AKS puts its NSG on the nodes' subnet (or their NICs).
        self.set_subnet_nsg(Some("aks-workers"));
    }

    /// An NSG of someone else, with no rules of its own.
    pub(crate) fn aks_nsg_named(&self, name: &str) {
        let path = format!(
            "/subscriptions/{SUB}/resourceGroups/rg-aks-prod/providers/Microsoft.Network/networkSecurityGroups/{name}?api-version=2024-05-01"
        );
        let (status, body) = self.arm("PUT", &path, Some(json!({"location": "westeurope"})));
        assert_eq!(status, 201, "{body}");
    }

    pub(crate) fn writes(&self) -> u64 {
        self.count(&[
            "PUT networkSecurityGroups.createOrUpdate",
            "PUT securityRules.createOrUpdate",
            "DELETE securityRules.delete",
            "DELETE networkSecurityGroups.delete",
            "PUT subnets.createOrUpdate",
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
        // A shared NSG's associations are its owner's.
        text = text.replace("    subnets: [aks-vnet/aks-nodes]\n", "");
        assert!(text.contains("shared: true") && !text.contains("subnets:"));
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
