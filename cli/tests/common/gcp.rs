//! perimeter's GCP Compute emulator for the end-to-end tests: a project `acme-prod` with its
//! network `prod-vpc`, and helpers to read and change its firewall rules.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value, json};

use super::{LocalCloud, code, root, text};

/// The emulator with project `acme-prod` and its network `prod-vpc`, and GCP helpers.
pub(crate) struct Emulator(pub(crate) LocalCloud);

impl std::ops::Deref for Emulator {
    type Target = LocalCloud;
    fn deref(&self) -> &LocalCloud {
        &self.0
    }
}

impl Emulator {
    pub(crate) fn start() -> Emulator {
        let emulator = Emulator(LocalCloud::start());
        let (status, _) = emulator.call(
            "POST",
            "/compute/v1/projects/acme-prod/global/networks",
            Some(json!({"name": "prod-vpc", "autoCreateSubnetworks": false})),
        );
        assert_eq!(status, 200);
        emulator
    }

    pub(crate) fn firewall(&self, name: &str) -> (u16, Value) {
        self.call(
            "GET",
            &format!("/compute/v1/projects/acme-prod/global/firewalls/{name}"),
            None,
        )
    }

    pub(crate) fn insert(&self, rule: Value) {
        let (status, body) = self.call(
            "POST",
            "/compute/v1/projects/acme-prod/global/firewalls",
            Some(rule),
        );
        assert_eq!(status, 200, "{body}");
    }

    pub(crate) fn names(&self) -> Vec<String> {
        let (_, list) = self.call(
            "GET",
            "/compute/v1/projects/acme-prod/global/firewalls",
            None,
        );
        list["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn writes(&self) -> u64 {
        self.count(&[
            "POST firewalls.insert",
            "PATCH firewalls.patch",
            "PUT firewalls.update",
            "DELETE firewalls.delete",
        ])
    }

    pub(crate) fn perimeter(&self, args: &[&str]) -> Output {
        self.0.perimeter(
            args,
            &[
                ("PERIMETER_GCP_ENDPOINT", self.url()),
                ("PERIMETER_GCP_CREDENTIALS", "anonymous".to_string()),
            ],
        )
    }
}

pub(crate) fn scratch(name: &str) -> PathBuf {
    super::scratch(&format!("gcp-{name}"))
}

/// policies/gke-workers.yaml in a scratch directory (the tests edit their own copies).
pub(crate) fn policy(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(root().join("policies/gke-workers.yaml")).expect("policy");
    let path = dir.join("gke-workers.yaml");
    std::fs::write(&path, text).expect("write policy");
    path
}

/// `perimeter plan POLICY --out DIR/plan.json`, which must succeed; the plan file's path.
pub(crate) fn saved_plan(emulator: &Emulator, policy: &Path, dir: &Path) -> PathBuf {
    let plan_file = dir.join("plan.json");
    let plan = emulator.perimeter(&[
        "plan",
        policy.to_str().unwrap(),
        "--out",
        plan_file.to_str().unwrap(),
    ]);
    assert_eq!(code(&plan), 0, "{}", text(&plan));
    plan_file
}

/// GKE's own kind of rule: health checks to the nodes, not perimeter's.
pub(crate) fn gke_rule() -> Value {
    json!({"name": "gke-prod-abc123-hc", "network": "global/networks/prod-vpc", "priority": 1000,
           "sourceRanges": ["130.211.0.0/22", "35.191.0.0/16"], "targetTags": ["gke-workers"],
           "allowed": [{"IPProtocol": "tcp", "ports": ["10256"]}],
           "description": "{\"kubernetes.io/cluster-id\":\"abc123\"}"})
}
