//! Where an EnvoyFilter keeps the plugin configuration: in an `EXTENSION_CONFIG` patch, the
//! shape `canaryctl render --api envoyfilter` gives it, whose `TypedExtensionConfig` is either
//! a Wasm filter with the plugin configuration in `config.configuration`, or the native dynamic
//! module's `DynamicModuleFilter` with it in `filter_config`; either way a `StringValue`
//! holding a JSON object with `routes`.
//!
//! An EnvoyFilter is a target only when it holds exactly one such configuration: with none
//! there is nothing to change, and with several canaryctl cannot tell which one routes.

use serde_json::{json, Value};

use crate::ecds;

/// The filter that carries an EnvoyFilter's plugin configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Wasm,
    DynamicModule,
}

impl Filter {
    fn of(type_url: &str) -> Option<Filter> {
        match type_url {
            ecds::WASM => Some(Filter::Wasm),
            ecds::DYNAMIC_MODULE => Some(Filter::DynamicModule),
            _ => None,
        }
    }

    /// Where, in the filter's typed configuration, the plugin configuration `StringValue` is.
    fn configuration(self) -> &'static str {
        match self {
            Filter::Wasm => "config/configuration",
            Filter::DynamicModule => "filter_config",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Filter::Wasm => "the Wasm filter",
            Filter::DynamicModule => "the dynamic module's DynamicModuleFilter",
        }
    }
}

/// One plugin configuration string in an EnvoyFilter's `spec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub filter: Filter,
    /// The index of its patch in `configPatches`.
    patch: usize,
    /// `typed_config` or `typedConfig`, as the patch spells it.
    typed_config: &'static str,
}

impl Place {
    /// The JSON pointer to the string, from `spec`.
    pub fn pointer(&self) -> String {
        format!(
            "/configPatches/{}/patch/value/{}/{}/value",
            self.patch,
            self.typed_config,
            self.filter.configuration()
        )
    }

    /// The string's path as errors name it, from the object: the field, and whose it is.
    pub fn describe(&self) -> String {
        format!(
            "spec.configPatches[{}].patch.value.{}.{}.value ({})",
            self.patch,
            self.typed_config,
            self.filter.configuration().replace('/', "."),
            self.filter.name()
        )
    }

    /// Where the `TypedExtensionConfig` sits, as errors name it.
    pub fn extension_config_path(&self) -> String {
        format!("spec.configPatches[{}].patch.value", self.patch)
    }

    /// The patch's `TypedExtensionConfig`, as Envoy takes it over ECDS (with its `@type`).
    pub fn extension_config(&self, spec: &Value) -> Option<Value> {
        let mut value = spec
            .pointer(&format!("/configPatches/{}/patch/value", self.patch))?
            .clone();
        value
            .as_object_mut()?
            .entry("@type")
            .or_insert_with(|| json!(ecds::TYPED_EXTENSION_CONFIG));
        Some(value)
    }
}

/// What the field that holds the configuration is, for the error when there is none.
pub const FIELD: &str = "spec.configPatches[].patch.value.typed_config \
    (an EXTENSION_CONFIG patch of a Wasm filter with the plugin configuration in \
    config.configuration, or of the dynamic module's DynamicModuleFilter with it in \
    filter_config, a StringValue holding the plugin configuration as JSON)";

/// Every plugin configuration string in the EnvoyFilter's `spec`, in patch order.
pub fn places(spec: &Value) -> Vec<Place> {
    let Some(patches) = spec.get("configPatches").and_then(Value::as_array) else {
        return Vec::new();
    };
    patches
        .iter()
        .enumerate()
        .filter_map(|(index, patch)| place(index, patch))
        .collect()
}

/// The plugin configuration string of one patch, if it carries one.
fn place(index: usize, patch: &Value) -> Option<Place> {
    if patch.get("applyTo")?.as_str()? != "EXTENSION_CONFIG" {
        return None;
    }
    let value = patch.pointer("/patch/value")?;
    let typed_config_key = ["typed_config", "typedConfig"]
        .into_iter()
        .find(|key| value.get(*key).is_some())?;
    let typed_config = value.get(typed_config_key)?;
    let filter = Filter::of(typed_config.get("@type")?.as_str()?)?;
    let configuration = typed_config.pointer(&format!("/{}", filter.configuration()))?;
    if configuration.get("@type")?.as_str()? != ecds::STRING_VALUE {
        return None;
    }
    let text = configuration.get("value")?.as_str()?;
    let parsed: Value = serde_json::from_str(text).ok()?;
    parsed.get("routes")?;
    Some(Place {
        filter,
        patch: index,
        typed_config: typed_config_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extension_config(typed_config: Value) -> Value {
        json!({"applyTo": "EXTENSION_CONFIG", "patch": {"operation": "ADD",
            "value": {"name": "shop.web", "typed_config": typed_config}}})
    }

    fn wasm() -> Value {
        extension_config(json!({"@type": ecds::WASM, "config": {"configuration": {
            "@type": ecds::STRING_VALUE, "value": r#"{"routes":[]}"#}}}))
    }

    fn dynamic() -> Value {
        extension_config(
            json!({"@type": ecds::DYNAMIC_MODULE, "filter_name": "canary",
            "filter_config": {"@type": ecds::STRING_VALUE, "value": r#"{"routes":[]}"#}}),
        )
    }

    #[test]
    fn finds_the_wasm_filter_and_the_dynamic_module_configuration() {
        let http_filter =
            json!({"applyTo": "HTTP_FILTER", "patch": {"operation": "INSERT_BEFORE"}});
        let spec = json!({"configPatches": [http_filter, dynamic()]});
        let found = places(&spec);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].filter, Filter::DynamicModule);
        assert_eq!(
            found[0].pointer(),
            "/configPatches/1/patch/value/typed_config/filter_config/value"
        );
        assert_eq!(
            spec.pointer(&found[0].pointer()),
            Some(&json!(r#"{"routes":[]}"#))
        );
        assert_eq!(
            found[0].describe(),
            "spec.configPatches[1].patch.value.typed_config.filter_config.value \
             (the dynamic module's DynamicModuleFilter)"
        );
        assert_eq!(
            found[0].extension_config(&spec).unwrap()["@type"],
            ecds::TYPED_EXTENSION_CONFIG
        );

        let spec = json!({"configPatches": [wasm()]});
        let found = places(&spec);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].filter, Filter::Wasm);
        assert_eq!(
            found[0].pointer(),
            "/configPatches/0/patch/value/typed_config/config/configuration/value"
        );
    }

    #[test]
    fn finds_every_configuration_and_nothing_else() {
        let mut not_a_config = dynamic();
        not_a_config["patch"]["value"]["typed_config"]["filter_config"]["value"] =
            json!(r#"{"other": 1}"#);
        let mut bytes = dynamic();
        bytes["patch"]["value"]["typed_config"]["filter_config"]["@type"] =
            json!("type.googleapis.com/google.protobuf.BytesValue");
        let mut lua = wasm();
        lua["patch"]["value"]["typed_config"]["@type"] =
            json!("type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua");
        for (label, spec) in [
            ("no patches", json!({})),
            ("no routes", json!({"configPatches": [not_a_config]})),
            ("not a StringValue", json!({"configPatches": [bytes]})),
            ("another filter", json!({"configPatches": [lua]})),
        ] {
            assert_eq!(places(&spec), [], "{label}");
        }
        let both = places(&json!({"configPatches": [wasm(), dynamic()]}));
        let filters: Vec<Filter> = both.iter().map(|place| place.filter).collect();
        assert_eq!(filters, [Filter::Wasm, Filter::DynamicModule]);
    }
}
