//! canaryctl: validates canary-router configuration, renders the Istio resources, and pushes
//! new weights into running filters through the plugin configuration they receive.
//!
//! `main` only parses [`args::Args`] and calls [`commands::run`].

pub mod args;
pub mod commands;
pub mod document;
pub mod duration;
pub mod ecds;
pub mod http;
pub mod observed;
pub mod package;
pub mod ramps;
pub mod render;
pub mod rollout;
pub mod serve;
pub mod spec;
pub mod targets;
pub mod weights;
