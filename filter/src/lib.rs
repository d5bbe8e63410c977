//! canary-filter: per-request canary routing for Envoy.
//!
//! The decision logic ([`config`], [`table`], [`assign`], [`cookie`], [`carried`], [`query`]) is plain Rust
//! with no host types and is tested natively. [`http`] drives it through the [`host::Host`]
//! trait; the proxy-wasm binding implementing that trait is compiled only for wasm.

pub mod assign;
pub mod carried;
pub mod config;
pub mod cookie;
mod de;
pub mod duration;
pub mod error;
pub mod host;
pub mod http;
pub mod metrics;
pub mod query;
mod router;
pub mod table;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(feature = "testing")]
pub mod fuzzing;

#[cfg(target_arch = "wasm32")]
mod wasm;

pub use assign::{assign, Weight, ALGORITHM_VERSION};
pub use config::PluginConfig;
pub use error::{ConfigError, ConfigErrors};
pub use table::{Decision, Reason, RequestHeaders, RoutingTable};

/// The one way from the plugin configuration's bytes (JSON) to the compiled routing table: read
/// and decoded by [`config::decode`], checked and compiled by [`RoutingTable`]'s `try_from`. The
/// filter calls it in `on_configure`, and canaryctl on whatever it reads, so the two agree.
pub fn parse(bytes: &[u8]) -> Result<RoutingTable, ConfigErrors> {
    RoutingTable::try_from(config::decode(bytes)?)
}
