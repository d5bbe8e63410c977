//! Where an Envoy Gateway EnvoyExtensionPolicy keeps the plugin configuration: the `config` of
//! its `dynamicModule` entry whose `filterName` is the dynamic module's filter (`canary`), as
//! `canaryctl render --api envoyextensionpolicy` writes it. Envoy Gateway passes that object to
//! the module as JSON, so it is the plugin configuration as an object.
//!
//! A policy is a target only when exactly one entry carries it.

use serde_json::Value;

use crate::ecds::DYNAMIC_MODULE_FILTER;

/// One plugin configuration in a policy's `spec`: the entry of `dynamicModule` at this index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place(usize);

impl Place {
    /// The JSON pointer to the configuration object, from `spec`.
    pub fn pointer(self) -> String {
        format!("/dynamicModule/{}/config", self.0)
    }

    /// Its path as errors name it, from the object.
    pub fn describe(self) -> String {
        format!("spec.dynamicModule[{}].config", self.0)
    }
}

/// The field that holds the configuration, for the error when there is none.
pub const FIELD: &str = "spec.dynamicModule[].config (an entry with filterName \"canary\" \
    whose config is the plugin configuration)";

/// Every plugin configuration in the policy's `spec`, in order.
pub fn places(spec: &Value) -> Vec<Place> {
    let Some(modules) = spec.get("dynamicModule").and_then(Value::as_array) else {
        return Vec::new();
    };
    modules
        .iter()
        .enumerate()
        .filter(|(_, module)| {
            module.get("filterName").and_then(Value::as_str) == Some(DYNAMIC_MODULE_FILTER)
                && module.pointer("/config/routes").is_some()
        })
        .map(|(index, _)| Place(index))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_the_canary_filters_configuration() {
        let spec = json!({"targetRefs": [], "dynamicModule": [
            {"name": "other", "filterName": "auth", "config": {"routes": []}},
            {"name": "canary-router", "filterName": "canary", "config": {"routes": []}},
            {"name": "canary-router", "filterName": "canary"},
        ]});
        let found = places(&spec);
        assert_eq!(found, [Place(1)]);
        assert_eq!(found[0].describe(), "spec.dynamicModule[1].config");
        assert_eq!(
            spec.pointer(&found[0].pointer()),
            Some(&json!({"routes": []}))
        );
        assert_eq!(places(&json!({})), []);
    }
}
