//! The retry delay every backend uses when the server names none: full-jitter exponential
//! backoff (a uniformly random wait up to base·2^(attempt−1), capped). Pure: the caller
//! supplies the random number, so the formula is tested without a clock or a generator.

use std::time::Duration;

/// The wait before retry number `attempt` (1 for the first retry); `unit` is uniform in [0, 1).
pub fn full_jitter(base: Duration, max: Duration, attempt: u32, unit: f64) -> Duration {
    let ceiling = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(max);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_scales_by_the_unit() {
        let (base, max) = (Duration::from_millis(500), Duration::from_secs(32));
        assert_eq!(full_jitter(base, max, 1, 1.0), Duration::from_millis(500));
        assert_eq!(full_jitter(base, max, 3, 1.0), Duration::from_secs(2));
        assert_eq!(full_jitter(base, max, 30, 1.0), max);
        assert_eq!(full_jitter(base, max, 3, 0.5), Duration::from_secs(1));
        assert_eq!(full_jitter(base, max, 0, 0.0), Duration::ZERO);
    }
}
