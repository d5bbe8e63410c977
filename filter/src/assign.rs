//! Sticky weighted assignment: weighted rendezvous hashing.
//!
//! For an identity, every variant with a non-zero weight `w` (in thousandths of a percent)
//! gets a score `-w / ln(u)`, where `u` in (0, 1) comes from a 64-bit hash of the salt, the
//! identity and the variant name. The highest score wins; on an exact tie, the variant listed
//! first. This is algorithm version 1:
//!
//! ```text
//! h     = xxh64(seed 0, field(salt) ‖ field(identity) ‖ field(variant name))
//! field = u32 little-endian byte length ‖ bytes
//! u     = ((h >> 11) | 1) / 2^53            -- an odd integer over 2^53: exact, never 0 or 1
//! score = -w / ln(u)                        -- ln is libm's log, bit-identical everywhere
//! ```
//!
//! Why it keeps its promises:
//! - sticky: a pure function of salt, identity, names and weights;
//! - proportional: `-w / ln(u)` is the reciprocal of an exponential draw with rate `w`, so
//!   variant `i` wins with probability `w_i / Σw`;
//! - minimal disruption: raising one weight raises only that variant's scores, so users can only
//!   move into it; lowering it lowers only its scores, so only its own users can leave. When
//!   weight moves from variant `i` to variant `j`, every user who changes leaves `i` or joins
//!   `j`: nobody leaves `j`, nobody joins `i`. (With three or more variants, a user leaving `i`
//!   may land on a third variant whose weight did not change, while some of that variant's users
//!   join `j`; shares still match the weights.)

use xxhash_rust::xxh64::{xxh64, Xxh64};

/// Most bytes of a route or variant name (the hash input is sized for it).
pub const MAX_NAME_LEN: usize = 63;

/// The version of the assignment algorithm described above.
pub const ALGORITHM_VERSION: u32 = 1;

/// A variant's weight in thousandths of a percent: 100 % is `100_000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Weight(pub u32);

impl Weight {
    /// All the traffic.
    pub const FULL: Weight = Weight(100_000);

    /// The weight as a percentage.
    pub fn percent(self) -> f64 {
        f64::from(self.0) / 1000.0
    }
}

/// Picks the variant for `identity`: the index into `weights` of the highest score. Variants of
/// weight 0 never win; if every weight is 0 the first variant is returned.
pub fn assign<'a, I>(salt: &[u8], identity: &[u8], variants: I) -> usize
where
    I: IntoIterator<Item = (&'a [u8], Weight)>,
{
    // Clearing the buffer is a fixed cost per request: a short one takes a few vector stores, a
    // long one a string instruction costing as much as a hash.
    if FIELDS + salt.len() + identity.len() + MAX_NAME_LEN <= SHORT {
        assign_framed::<SHORT, I>(salt, identity, variants)
    } else {
        assign_framed::<LONG, I>(salt, identity, variants)
    }
}

fn assign_framed<'a, const N: usize, I>(salt: &[u8], identity: &[u8], variants: I) -> usize
where
    I: IntoIterator<Item = (&'a [u8], Weight)>,
{
    let mut buf = [0; N];
    let prefix = put_field(&mut buf, 0, salt).and_then(|at| put_field(&mut buf, at, identity));
    let mut best: Option<(usize, f64)> = None;
    for (index, (name, weight)) in variants.into_iter().enumerate() {
        if weight.0 == 0 {
            continue;
        }
        let s = score(weight, hash_framed(&mut buf, prefix, salt, identity, name));
        if best.is_none_or(|(_, top)| s > top) {
            best = Some((index, s));
        }
    }
    best.map_or(0, |(index, _)| index)
}

/// The score of a variant of weight `weight` whose hash is `hash`.
pub fn score(weight: Weight, hash: u64) -> f64 {
    // An odd integer below 2^53 is exact in an f64, so u is strictly inside (0, 1).
    let u = ((hash >> 11) | 1) as f64 / (1u64 << 53) as f64;
    -f64::from(weight.0) / libm::log(u)
}

/// The hash of one (salt, identity, variant) triple, exposed for documentation and tests.
pub fn variant_hash(salt: &[u8], identity: &[u8], variant: &[u8]) -> u64 {
    let mut buf = [0; LONG];
    let prefix = put_field(&mut buf, 0, salt).and_then(|at| put_field(&mut buf, at, identity));
    hash_framed(&mut buf, prefix, salt, identity, variant)
}

/// Framed inputs up to `SHORT` or `LONG` bytes are hashed in one call from a buffer on the
/// stack; longer ones (a long salt or identity) go through the streaming hasher, which gives the
/// same hash.
const SHORT: usize = 128;
const LONG: usize = 512;
/// The three length prefixes.
const FIELDS: usize = 12;

/// The hash of `field(salt) ‖ field(identity) ‖ field(variant)`, where `buf` holds the first two
/// fields up to `prefix` (`None` if they did not fit). Each variant's field is written after
/// them and the whole hashed in one go: a one-shot xxh64 over a few dozen bytes costs a fraction
/// of the streaming hasher's buffering.
fn hash_framed(
    buf: &mut [u8],
    prefix: Option<usize>,
    salt: &[u8],
    identity: &[u8],
    variant: &[u8],
) -> u64 {
    let end = prefix.and_then(|at| put_field(buf, at, variant));
    match end.and_then(|end| buf.get(..end)) {
        Some(framed) => xxh64(framed, 0),
        None => {
            let mut hasher = Xxh64::new(0);
            write_field(&mut hasher, salt);
            write_field(&mut hasher, identity);
            write_field(&mut hasher, variant);
            hasher.digest()
        }
    }
}

/// Writes `field(bytes)` into `buf` at `at` and returns where it ends, or `None` if it does not
/// fit.
#[inline(always)]
fn put_field(buf: &mut [u8], at: usize, bytes: &[u8]) -> Option<usize> {
    let len = u32::try_from(bytes.len()).ok()?.to_le_bytes();
    let body = at.checked_add(len.len())?;
    let end = body.checked_add(bytes.len())?;
    buf.get_mut(at..body)?.copy_from_slice(&len);
    buf.get_mut(body..end)?.copy_from_slice(bytes);
    Some(end)
}

fn write_field(hasher: &mut Xxh64, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    hasher.update(&len.to_le_bytes());
    hasher.update(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pick(salt: &str, identity: &str, variants: &[(&str, u32)]) -> usize {
        assign(
            salt.as_bytes(),
            identity.as_bytes(),
            variants.iter().map(|(n, w)| (n.as_bytes(), Weight(*w))),
        )
    }

    /// xxh64 itself, against the reference implementation's published values.
    #[test]
    fn xxh64_matches_reference_vectors() {
        let cases: [(&[u8], u64); 3] = [
            (b"", 0xEF46_DB37_51D8_E999),
            (b"a", 0xD24E_C4F1_A98C_6E5B),
            (b"abc", 0x44BC_2CF5_AD77_0999),
        ];
        for (input, want) in cases {
            assert_eq!(xxh64(input, 0), want, "{input:?}");
        }
    }

    /// Golden vectors of algorithm version 1, computed independently with Python's `xxhash`
    /// package, `struct.pack("<I", len)` framing and `math.log` (the README shows the script).
    /// They pin the exact bytes hashed and the arithmetic: if one changes, every user in every
    /// deployment moves. Never edit them; bump `ALGORITHM_VERSION` instead.
    #[test]
    fn golden_hashes() {
        let cases: &[(&str, &str, &str, u64)] = &[
            ("reviews", "user-1", "stable", 3_440_076_685_548_108_146),
            ("reviews", "user-1", "canary", 13_095_800_859_413_473_513),
            ("", "", "", 17_252_927_351_209_727_994),
            (
                "reviews-2026-11",
                "alice",
                "canary",
                4_055_464_638_731_088_157,
            ),
        ];
        for (salt, identity, variant, want) in cases {
            assert_eq!(
                variant_hash(salt.as_bytes(), identity.as_bytes(), variant.as_bytes()),
                *want,
                "hash of ({salt:?}, {identity:?}, {variant:?})"
            );
        }
    }

    #[test]
    fn golden_assignments() {
        let at = |salt: &str,
                  ids: &mut dyn Iterator<Item = String>,
                  v: &[(&str, u32)]|
         -> Vec<usize> { ids.map(|id| pick(salt, &id, v)).collect() };
        let two = |w| [("stable", 100_000 - w), ("canary", w)];
        let users = || (0..32).map(|i| format!("user-{i}"));
        assert_eq!(
            at("reviews", &mut users(), &two(10_000)),
            [
                1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                0, 0, 0, 0
            ],
            "users 0..32 at 90/10, salt reviews"
        );
        assert_eq!(
            at("reviews", &mut users(), &two(30_000)),
            [
                1, 1, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0, 1, 0, 1, 0, 0, 1, 0, 1, 0, 1, 0,
                0, 0, 1, 0
            ],
            "users 0..32 at 70/30, salt reviews"
        );
        assert_eq!(
            at(
                "bookinfo",
                &mut (0..24).map(|i| i.to_string()),
                &[("v1", 33_333), ("v2", 33_333), ("v3", 33_334)]
            ),
            [0, 0, 2, 0, 0, 0, 0, 2, 1, 1, 1, 2, 1, 1, 1, 2, 2, 1, 0, 2, 1, 2, 2, 1],
            "ids 0..24 at 33.333/33.333/33.334, salt bookinfo"
        );
    }

    /// Inputs too long for the stack buffer take the streaming hasher; both give xxh64 of the
    /// same framed bytes, whichever side of the limit an input falls.
    #[test]
    fn long_inputs_hash_the_same_framed_bytes() {
        let framed = |parts: &[&[u8]]| {
            let mut bytes = Vec::new();
            for part in parts {
                bytes.extend_from_slice(&(part.len() as u32).to_le_bytes());
                bytes.extend_from_slice(part);
            }
            bytes
        };
        for len in [
            0, 1, 31, 32, 53, 54, 100, 200, 480, 487, 488, 489, 500, 512, 1000, 70_000,
        ] {
            let identity = vec![b'x'; len];
            for (salt, variant) in [
                (&b"reviews"[..], &b"canary"[..]),
                (&[b's'; 300][..], &b""[..]),
            ] {
                assert_eq!(
                    variant_hash(salt, &identity, variant),
                    xxhash_rust::xxh64::xxh64(&framed(&[salt, &identity, variant]), 0),
                    "identity of {len} bytes, salt of {}",
                    salt.len()
                );
            }
        }
    }

    #[test]
    fn field_framing_is_unambiguous() {
        // ("ab", "c") and ("a", "bc") must not collide by concatenation.
        assert_ne!(
            variant_hash(b"ab", b"c", b"v"),
            variant_hash(b"a", b"bc", b"v")
        );
    }

    #[test]
    fn zero_weight_never_wins_and_all_zero_falls_back_to_first() {
        for i in 0..1000 {
            let id = format!("u{i}");
            assert_eq!(pick("s", &id, &[("a", 0), ("b", 100_000)]), 1, "{id}");
        }
        assert_eq!(pick("s", "x", &[("a", 0), ("b", 0)]), 0);
    }

    #[test]
    fn score_is_finite_and_positive_at_the_hash_extremes() {
        for hash in [0, 1, u64::MAX, u64::MAX >> 1] {
            let s = score(Weight(1), hash);
            assert!(s.is_finite() && s > 0.0, "score({hash}) = {s}");
        }
    }

    /// Weights as thousandths of a percent for `n` variants, summing to 100 %.
    fn weights(n: usize) -> impl Strategy<Value = Vec<u32>> {
        proptest::collection::vec(0u32..=100_000, n).prop_filter_map("sum > 0", |raw| {
            let total: u64 = raw.iter().map(|w| u64::from(*w)).sum();
            if total == 0 {
                return None;
            }
            let mut scaled: Vec<u32> = raw
                .iter()
                .map(|w| (u64::from(*w) * 100_000 / total) as u32)
                .collect();
            let rest = 100_000 - scaled.iter().sum::<u32>();
            scaled[0] += rest;
            Some(scaled)
        })
    }

    fn named(ws: &[u32]) -> Vec<(String, u32)> {
        ws.iter()
            .enumerate()
            .map(|(i, w)| (format!("v{i}"), *w))
            .collect()
    }

    fn pick_named(salt: &str, identity: &str, vs: &[(String, u32)]) -> usize {
        assign(
            salt.as_bytes(),
            identity.as_bytes(),
            vs.iter().map(|(n, w)| (n.as_bytes(), Weight(*w))),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Moving weight from one variant to another (what `set-weight` does): every user who
        /// changes variant leaves the one that shrank or joins the one that grew; nobody leaves
        /// the one that grew, nobody joins the one that shrank.
        #[test]
        fn moving_weight_moves_only_into_the_riser_or_out_of_the_faller(
            ws in (2usize..=5).prop_flat_map(weights),
            from in 0usize..5,
            to in 0usize..5,
            amount in 1u32..=100_000,
        ) {
            let n = ws.len();
            let (from, to) = (from % n, to % n);
            prop_assume!(from != to && ws[from] > 0);
            let amount = amount.min(ws[from]);
            let mut after = ws.clone();
            after[from] -= amount;
            after[to] += amount;
            let (b, a) = (named(&ws), named(&after));
            for u in 0..400 {
                let id = format!("user-{u}");
                let was = pick_named("salt", &id, &b);
                let now = pick_named("salt", &id, &a);
                prop_assert!(was != to || now == to, "user {id} left {to}, which grew");
                prop_assert!(now != from || was == from, "user {id} joined {from}, which shrank");
                prop_assert!(now == was || was == from || now == to,
                    "user {id} moved {was} -> {now}; only {from} -> {to} changed: {ws:?} -> {after:?}");
            }
        }

        /// With two variants, raising the canary keeps every canary user and moves only baseline
        /// users, and exactly the expected share of them.
        #[test]
        fn two_variants_raising_the_canary_keeps_its_users(low in 0u32..=99_000, step in 1u32..=1000) {
            let high = (low + step * 100).min(100_000);
            prop_assume!(high > low);
            let b = named(&[100_000 - low, low]);
            let a = named(&[100_000 - high, high]);
            for u in 0..400 {
                let id = format!("user-{u}");
                let was = pick_named("s", &id, &b);
                let now = pick_named("s", &id, &a);
                prop_assert!(was == 0 || now == 1, "canary user {id} left when canary grew {low} -> {high}");
            }
        }

        /// Same inputs, same answer, whatever the order of evaluation around it.
        #[test]
        fn sticky(ws in (2usize..=5).prop_flat_map(weights), id in ".{0,40}", salt in ".{0,20}") {
            let vs = named(&ws);
            let first = pick_named(&salt, &id, &vs);
            for _ in 0..3 {
                prop_assert_eq!(pick_named(&salt, &id, &vs), first);
            }
            prop_assert!(vs[first].1 > 0, "picked a zero-weight variant");
        }

        /// Over 20,000 identities each variant's share is within six standard deviations of its
        /// weight.
        #[test]
        fn proportional(ws in (2usize..=5).prop_flat_map(weights), salt in "[a-z]{1,8}") {
            let vs = named(&ws);
            let users = 20_000;
            let mut counts = vec![0u32; vs.len()];
            for u in 0..users {
                counts[pick_named(&salt, &format!("id-{u}"), &vs)] += 1;
            }
            for (i, (_, w)) in vs.iter().enumerate() {
                let share = f64::from(counts[i]) * 100.0 / f64::from(users);
                let want = f64::from(*w) / 1000.0;
                // Six standard deviations of a binomial share (points), with a floor for
                // weights so small that a handful of users is a large relative error: a
                // fair hash fails this about once in 10^8 checks, a biased one every time.
                let p = want / 100.0;
                let tolerance = (600.0 * (p * (1.0 - p) / f64::from(users)).sqrt()).max(0.05);
                prop_assert!((share - want).abs() < tolerance,
                    "variant {i}: {share:.3}% for weight {want}%, tolerance {tolerance:.3} ({counts:?})");
            }
        }
    }
}
