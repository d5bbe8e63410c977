//! `seal`: a fresh secret for the decision values, for the spec's `seal.current`.

use std::process::ExitCode;

/// Random bytes in a seal: 256 bits, written as 64 hexadecimal digits.
pub const SEAL_BYTES: usize = 32;

pub fn run() -> anyhow::Result<ExitCode> {
    println!("{}", generate()?);
    Ok(ExitCode::SUCCESS)
}

/// A seal from the operating system's random source.
pub fn generate() -> anyhow::Result<String> {
    let mut bytes = [0u8; SEAL_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("the OS random source failed: {e}"))?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_seal_is_valid_and_fresh() {
        let a = generate().unwrap_or_default();
        let b = generate().unwrap_or_default();
        assert_eq!(a.len(), 2 * SEAL_BYTES, "{a}");
        assert_eq!(canary_filter::table::check_seal(&a), Ok(()));
        assert_ne!(a, b, "two seals differ");
    }
}
