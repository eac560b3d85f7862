//! ARM paths: parsing them into routes, naming routes for the call counters, and Entra ID's
//! token endpoint.

use std::collections::BTreeMap;

use serde_json::json;

use crate::http::{Request, Response};

/// A parsed ARM path.
pub(super) enum Route<'a> {
    NsgList {
        group: &'a str,
    },
    Nsg {
        group: &'a str,
        nsg: &'a str,
    },
    Rules {
        group: &'a str,
        nsg: &'a str,
    },
    Rule {
        group: &'a str,
        nsg: &'a str,
        rule: &'a str,
    },
    DefaultRules {
        group: &'a str,
        nsg: &'a str,
    },
    DefaultRule {
        group: &'a str,
        nsg: &'a str,
        rule: &'a str,
    },
    Asg {
        group: &'a str,
        asg: &'a str,
    },
    Vnet {
        group: &'a str,
        vnet: &'a str,
    },
    Subnet {
        group: &'a str,
        vnet: &'a str,
        subnet: &'a str,
    },
    NicList {
        group: &'a str,
    },
    Nic {
        group: &'a str,
        nic: &'a str,
    },
    EffectiveNsgs {
        group: &'a str,
        nic: &'a str,
    },
    Operation {
        id: &'a str,
    },
    OperationResult {
        id: &'a str,
    },
}

pub(super) fn parse(path: &str) -> Option<(&str, Route<'_>)> {
    let tail = path.strip_prefix("/subscriptions/")?;
    let parts: Vec<&str> = tail.trim_end_matches('/').split('/').collect();
    let is = |part: &str, word: &str| part.eq_ignore_ascii_case(word);
    let sub = *parts.first().filter(|s| !s.is_empty())?;
    let rest = &parts[1..];
    let network = |rg: &str, p: &str, ns: &str| {
        is(rg, "resourceGroups") && is(p, "providers") && is(ns, "Microsoft.Network")
    };
    let route = match rest {
        [rg, g, p, ns, kind] if network(rg, p, ns) && is(kind, "networkSecurityGroups") => {
            Route::NsgList { group: g }
        }
        [rg, g, p, ns, kind] if network(rg, p, ns) && is(kind, "networkInterfaces") => {
            Route::NicList { group: g }
        }
        [rg, g, p, ns, kind, v, subnets, s]
            if network(rg, p, ns) && is(kind, "virtualNetworks") && is(subnets, "subnets") =>
        {
            Route::Subnet {
                group: g,
                vnet: v,
                subnet: s,
            }
        }
        [rg, g, p, ns, kind, n, effective]
            if network(rg, p, ns)
                && is(kind, "networkInterfaces")
                && is(effective, "effectiveNetworkSecurityGroups") =>
        {
            Route::EffectiveNsgs { group: g, nic: n }
        }
        [rg, g, p, ns, kind, n]
            if is(rg, "resourceGroups") && is(p, "providers") && is(ns, "Microsoft.Network") =>
        {
            if is(kind, "networkSecurityGroups") {
                Route::Nsg { group: g, nsg: n }
            } else if is(kind, "applicationSecurityGroups") {
                Route::Asg { group: g, asg: n }
            } else if is(kind, "virtualNetworks") {
                Route::Vnet { group: g, vnet: n }
            } else if is(kind, "networkInterfaces") {
                Route::Nic { group: g, nic: n }
            } else {
                return None;
            }
        }
        [rg, g, p, ns, kind, n, sub_kind]
            if is(rg, "resourceGroups")
                && is(p, "providers")
                && is(ns, "Microsoft.Network")
                && is(kind, "networkSecurityGroups") =>
        {
            if is(sub_kind, "securityRules") {
                Route::Rules { group: g, nsg: n }
            } else if is(sub_kind, "defaultSecurityRules") {
                Route::DefaultRules { group: g, nsg: n }
            } else {
                return None;
            }
        }
        [rg, g, p, ns, kind, n, sub_kind, r]
            if is(rg, "resourceGroups")
                && is(p, "providers")
                && is(ns, "Microsoft.Network")
                && is(kind, "networkSecurityGroups") =>
        {
            if is(sub_kind, "securityRules") {
                Route::Rule {
                    group: g,
                    nsg: n,
                    rule: r,
                }
            } else if is(sub_kind, "defaultSecurityRules") {
                Route::DefaultRule {
                    group: g,
                    nsg: n,
                    rule: r,
                }
            } else {
                return None;
            }
        }
        [p, ns, l, _location, ops, id]
            if is(p, "providers") && is(ns, "Microsoft.Network") && is(l, "locations") =>
        {
            if is(ops, "operations") {
                Route::Operation { id }
            } else if is(ops, "operationResults") {
                Route::OperationResult { id }
            } else {
                return None;
            }
        }
        _ => return None,
    };
    Some((sub, route))
}

/// `/{tenant}/oauth2/v2.0/token`: Microsoft Entra ID's token endpoint, so that the
/// client-secret and workload-identity flows can be tested against the emulator.
pub(crate) fn is_token_path(path: &str) -> bool {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    matches!(parts.as_slice(), [tenant, "oauth2", "v2.0", "token"] if !tenant.is_empty())
}

/// Issues a token for a client-credentials request (a secret or a client assertion).
pub(super) fn token(request: &Request) -> Response {
    let form: BTreeMap<String, String> = String::from_utf8_lossy(&request.body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace('+', " ")))
        .collect();
    let field = |name: &str| form.get(name).filter(|v| !v.is_empty());
    let credential = field("client_secret").or_else(|| field("client_assertion"));
    if request.method != "POST"
        || form.get("grant_type").map(String::as_str) != Some("client_credentials")
        || field("client_id").is_none()
        || credential.is_none()
    {
        return Response::json(
            400,
            &json!({"error": "invalid_request", "error_description": "AADSTS900144: a client_credentials request needs client_id and client_secret or client_assertion."}),
        );
    }
    let client = field("client_id").cloned().unwrap_or_default();
    Response::json(
        200,
        &json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": format!("local-cloud-token-for-{client}")}),
    )
}

/// The route a request takes, for call counting.
pub(crate) fn route_name(request: &Request) -> Option<String> {
    if is_token_path(&request.path) {
        return Some(format!("{} entra.token", request.method));
    }
    let (_, route) = parse(&request.path)?;
    let name = match route {
        Route::NsgList { .. } => "networkSecurityGroups.list",
        Route::Nsg { .. } => match request.method.as_str() {
            "GET" => "networkSecurityGroups.get",
            "PUT" => "networkSecurityGroups.createOrUpdate",
            "PATCH" => "networkSecurityGroups.updateTags",
            "DELETE" => "networkSecurityGroups.delete",
            _ => return None,
        },
        Route::Rules { .. } => "securityRules.list",
        Route::Rule { .. } => match request.method.as_str() {
            "GET" => "securityRules.get",
            "PUT" => "securityRules.createOrUpdate",
            "DELETE" => "securityRules.delete",
            _ => return None,
        },
        Route::DefaultRules { .. } => "defaultSecurityRules.list",
        Route::DefaultRule { .. } => "defaultSecurityRules.get",
        Route::Asg { .. } => match request.method.as_str() {
            "GET" => "applicationSecurityGroups.get",
            "PUT" => "applicationSecurityGroups.createOrUpdate",
            "DELETE" => "applicationSecurityGroups.delete",
            _ => return None,
        },
        Route::Vnet { .. } => match request.method.as_str() {
            "GET" => "virtualNetworks.get",
            "PUT" => "virtualNetworks.createOrUpdate",
            _ => return None,
        },
        Route::Subnet { .. } => match request.method.as_str() {
            "GET" => "subnets.get",
            "PUT" => "subnets.createOrUpdate",
            "DELETE" => "subnets.delete",
            _ => return None,
        },
        Route::NicList { .. } => "networkInterfaces.list",
        Route::Nic { .. } => match request.method.as_str() {
            "GET" => "networkInterfaces.get",
            "PUT" => "networkInterfaces.createOrUpdate",
            "DELETE" => "networkInterfaces.delete",
            _ => return None,
        },
        Route::EffectiveNsgs { .. } => "networkInterfaces.listEffectiveNetworkSecurityGroups",
        Route::Operation { .. } => "operations.get",
        Route::OperationResult { .. } => "operationResults.get",
    };
    Some(format!("{} {name}", request.method))
}
