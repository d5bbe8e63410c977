//! Durations as the command line and the environment write them: the filter's syntax, so that a
//! ramp's `duration` in the configuration and a flag's value read alike.

pub use canary_filter::duration::parse_duration;
