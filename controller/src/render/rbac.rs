//! The least privilege a controller needs to run canaryctl against the rendered filter
//! resource: a Role in the spec's namespace granting `get` and `patch` on that one object
//! (`resourceNames`), and a RoleBinding of it to the controller's ServiceAccount.
//!
//! Those two verbs are all canaryctl uses on a `kube://` target: every change, the rollout
//! record included, is a read and a merge patch of the object. Without `list`, `watch`,
//! `create`, `update` or `delete`, and with the name fixed, the account can neither see nor
//! touch any other WasmPlugin, TrafficExtension or EnvoyFilter.

use std::fmt;
use std::str::FromStr;

use serde_json::{json, Value};

use super::metadata;
use super::Api;
use crate::spec::{is_dns_label, is_dns_subdomain, Spec};

const RBAC_API_GROUP: &str = "rbac.authorization.k8s.io";

/// The ServiceAccount the Role is bound to, written `NAMESPACE/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    pub namespace: String,
    pub name: String,
}

impl FromStr for ServiceAccount {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let Some((namespace, name)) = text.split_once('/') else {
            return Err(format!(
                "{text:?} is not NAMESPACE/NAME (the ServiceAccount's namespace and name)"
            ));
        };
        if !is_dns_label(namespace) {
            return Err(format!(
                "{namespace:?} is not a namespace name: at most 63 of a-z, 0-9 and '-', \
                 starting and ending alphanumeric"
            ));
        }
        if !is_dns_subdomain(name) {
            return Err(format!(
                "{name:?} is not a ServiceAccount name: at most 253 of a-z, 0-9, '-' and '.', \
                 each dot-separated part starting and ending alphanumeric"
            ));
        }
        Ok(ServiceAccount {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }
}

impl fmt::Display for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// API group and resource (plural) of the filter resource `api` renders.
pub fn api_resource(api: Api) -> (&'static str, &'static str) {
    match api {
        Api::Wasmplugin => ("extensions.istio.io", "wasmplugins"),
        Api::Trafficextension => ("extensions.istio.io", "trafficextensions"),
        Api::Envoyfilter => ("networking.istio.io", "envoyfilters"),
        Api::Envoyextensionpolicy => ("gateway.envoyproxy.io", "envoyextensionpolicies"),
    }
}

/// Name of the Role and of the RoleBinding: `canaryctl-<the filter resource's name>`.
pub fn role_name(spec: &Spec) -> String {
    format!("canaryctl-{}", spec.name)
}

/// The Role granting `get` and `patch` on the filter resource only, then its RoleBinding to
/// `account`.
pub fn role_and_binding(spec: &Spec, api: Api, account: &ServiceAccount) -> [Value; 2] {
    let name = role_name(spec);
    let (group, resource) = api_resource(api);
    let role = json!({
        "apiVersion": format!("{RBAC_API_GROUP}/v1"),
        "kind": "Role",
        "metadata": metadata(spec, &name),
        "rules": [{
            "apiGroups": [group],
            "resources": [resource],
            "resourceNames": [spec.name],
            "verbs": ["get", "patch"],
        }],
    });
    let binding = json!({
        "apiVersion": format!("{RBAC_API_GROUP}/v1"),
        "kind": "RoleBinding",
        "metadata": metadata(spec, &name),
        "roleRef": {
            "apiGroup": RBAC_API_GROUP,
            "kind": "Role",
            "name": name,
        },
        "subjects": [{
            "kind": "ServiceAccount",
            "name": account.name,
            "namespace": account.namespace,
        }],
    });
    [role, binding]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_accounts_are_namespace_slash_name() {
        assert_eq!(
            "canary-system/canaryctl".parse(),
            Ok(ServiceAccount {
                namespace: "canary-system".into(),
                name: "canaryctl".into(),
            })
        );
        assert_eq!(
            "ns/a.b-c"
                .parse::<ServiceAccount>()
                .map(|account| account.to_string()),
            Ok("ns/a.b-c".to_owned())
        );
        for (text, error) in [
            ("canaryctl", "is not NAMESPACE/NAME"),
            ("/canaryctl", "\"\" is not a namespace name"),
            ("canary.system/canaryctl", "is not a namespace name"),
            ("ns/", "\"\" is not a ServiceAccount name"),
            ("ns/a/b", "\"a/b\" is not a ServiceAccount name"),
            ("ns/Canaryctl", "is not a ServiceAccount name"),
        ] {
            let result = text.parse::<ServiceAccount>();
            assert!(
                result.as_ref().is_err_and(|e| e.contains(error)),
                "{text}: {result:?}"
            );
        }
    }
}
