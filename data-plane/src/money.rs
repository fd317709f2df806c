//! Money and pricing arithmetic. Every amount is integer micro-USD ([`Micros`]); prices
//! are micro-USD per million tokens. All rounding happens here, and always up: a
//! reservation must never be smaller than what the call can cost.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// An amount of money in micro-USD (1 USD = 1_000_000). Saturating arithmetic: overflow
/// would take 9.2 trillion USD, and saturating beats wrapping into a negative budget.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Micros(pub i64);

impl Micros {
    pub const ZERO: Self = Self(0);

    pub fn from_usd_cents(cents: i64) -> Self {
        Self(cents.saturating_mul(10_000))
    }
}

impl Add for Micros {
    type Output = Self;
    fn add(self, rhs: Self) -> Self {
        Self(self.0.saturating_add(rhs.0))
    }
}

impl AddAssign for Micros {
    fn add_assign(&mut self, rhs: Self) {
        *self = *self + rhs;
    }
}

impl Sub for Micros {
    type Output = Self;
    fn sub(self, rhs: Self) -> Self {
        Self(self.0.saturating_sub(rhs.0))
    }
}

impl fmt::Display for Micros {
    /// `$1.234567`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}${}.{:06}", abs / 1_000_000, abs % 1_000_000)
    }
}

/// Prices of one model, micro-USD per 1,000,000 tokens: the base rates and any
/// long-context tiers above them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prices {
    pub input: i64,
    pub output: i64,
    /// Prompt tokens read from the provider's cache.
    pub cached_input: i64,
    /// Prompt tokens written to the provider's cache.
    pub cache_write: i64,
    /// Long-context tiers, thresholds strictly ascending (empty for most models). Shared:
    /// prices are cloned per call, and a refcount is cheaper than a list.
    pub tiers: Arc<[PriceTier]>,
}

/// A long-context tier: a call whose prompt (plain input, cache reads and cache writes
/// together, as Google and Anthropic count it) is above `above_prompt_tokens` has all
/// of its tokens, output included, billed at these rates instead of the base ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PriceTier {
    pub above_prompt_tokens: u64,
    pub input: i64,
    pub output: i64,
    pub cached_input: i64,
    pub cache_write: i64,
}

/// Most tiers a model may have (no provider publishes more than a handful).
pub const MAX_TIERS: usize = 8;

/// Why a list of tiers cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TierError {
    #[error("at most {MAX_TIERS} tiers")]
    TooMany,
    #[error("tier {0}: above_prompt_tokens must be at least 1")]
    ZeroThreshold(usize),
    #[error("tier {0}: above_prompt_tokens must be above the previous tier's")]
    NotAscending(usize),
    #[error("tier {0}: prices must not be negative")]
    Negative(usize),
}

/// Checks what [`Prices::at`] relies on: few tiers, thresholds strictly ascending from
/// at least 1, no negative price.
pub fn check_tiers(tiers: &[PriceTier]) -> Result<(), TierError> {
    if tiers.len() > MAX_TIERS {
        return Err(TierError::TooMany);
    }
    let mut previous = 0;
    for (i, t) in tiers.iter().enumerate() {
        if t.above_prompt_tokens == 0 {
            return Err(TierError::ZeroThreshold(i));
        }
        if i > 0 && t.above_prompt_tokens <= previous {
            return Err(TierError::NotAscending(i));
        }
        if [t.input, t.output, t.cached_input, t.cache_write]
            .iter()
            .any(|p| *p < 0)
        {
            return Err(TierError::Negative(i));
        }
        previous = t.above_prompt_tokens;
    }
    Ok(())
}

/// A reservation takes the tier above a threshold once the prompt's estimate is within
/// 1/`NEAR_TIER` (5%) below it: the estimate is an upper bound by construction, but only
/// as good as the published tokenizer comparisons its safety factors rest on, and a
/// reservation below what settle can charge is the one error pricing must not make.
pub const NEAR_TIER: u64 = 20;

impl Prices {
    /// Flat rates, no tiers.
    pub fn flat(input: i64, output: i64, cached_input: i64, cache_write: i64) -> Self {
        Self {
            input,
            output,
            cached_input,
            cache_write,
            tiers: Arc::from([]),
        }
    }

    /// The rates a call whose provider counted `prompt_tokens` is billed at: the highest
    /// tier whose threshold the prompt is above, else the base rates.
    pub fn at(&self, prompt_tokens: u64) -> Self {
        match self
            .tiers
            .iter()
            .rev()
            .find(|t| prompt_tokens > t.above_prompt_tokens)
        {
            Some(t) => Self::flat(t.input, t.output, t.cached_input, t.cache_write),
            None => Self::flat(self.input, self.output, self.cached_input, self.cache_write),
        }
    }

    /// The rates a reservation for a prompt estimated at `estimate` tokens assumes: the
    /// tier the estimate falls in, or the one above where the estimate is near its
    /// threshold ([`NEAR_TIER`]); per field the higher of the two, so a tier that is
    /// cheaper in some field never lowers the bound.
    pub fn reserved_at(&self, estimate: u64) -> Self {
        let low = self.at(estimate);
        let high = self.at(estimate.saturating_add(estimate / NEAR_TIER));
        low.max_with(&high)
    }

    /// Per-field maximum of two sets of flat rates (tiers dropped).
    pub fn max_with(&self, other: &Self) -> Self {
        Self::flat(
            self.input.max(other.input),
            self.output.max(other.output),
            self.cached_input.max(other.cached_input),
            self.cache_write.max(other.cache_write),
        )
    }
}

/// Token counts of one call, with cache reads/writes kept apart from plain input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens billed at the input price (cache reads and writes excluded).
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

impl Usage {
    /// Prompt tokens as OpenAI reports them (cached ones included). Saturates: the
    /// counts come from the provider's answer, and a hostile one must not panic us.
    pub fn prompt_total(&self) -> u64 {
        self.input
            .saturating_add(self.cache_read)
            .saturating_add(self.cache_write)
    }

    /// Every token of the call, prompt and output (saturating, as above).
    pub fn total(&self) -> u64 {
        self.prompt_total().saturating_add(self.output)
    }
}

/// `tokens × price / 1M`, rounded up to the next micro-USD.
pub fn tokens_cost(tokens: u64, micros_per_mtok: i64) -> Micros {
    let product = i128::from(tokens) * i128::from(micros_per_mtok.max(0));
    let cost = (product + 999_999) / 1_000_000;
    Micros(i64::try_from(cost).unwrap_or(i64::MAX))
}

/// What `usage` costs at `prices`, in the tier its prompt falls in.
pub fn cost(usage: &Usage, prices: &Prices) -> Micros {
    if prices.tiers.is_empty() {
        return cost_flat(usage, prices);
    }
    cost_flat(usage, &prices.at(usage.prompt_total()))
}

/// What `usage` costs at the base rates of `prices`.
fn cost_flat(usage: &Usage, prices: &Prices) -> Micros {
    // Sum before rounding so four round-ups do not add up to 4 µ$ of error per call.
    let total = i128::from(usage.input) * i128::from(prices.input.max(0))
        + i128::from(usage.output) * i128::from(prices.output.max(0))
        + i128::from(usage.cache_read) * i128::from(prices.cached_input.max(0))
        + i128::from(usage.cache_write) * i128::from(prices.cache_write.max(0));
    Micros(i64::try_from((total + 999_999) / 1_000_000).unwrap_or(i64::MAX))
}

/// Worst case of a call before it is made: every prompt token at the input price (no
/// cache discount assumed) or, where writing the provider's cache costs more (Anthropic
/// `cache_control`: 1.25× input), at the cache-write price, since any prompt token may be
/// one written to the cache; and the full output ceiling at the output price — all in
/// the tier the prompt may fall in ([`Prices::reserved_at`]).
pub fn worst_case(prompt_tokens: u64, max_output_tokens: u64, prices: &Prices) -> Micros {
    if !prices.tiers.is_empty() {
        let rates = prices.reserved_at(prompt_tokens);
        return worst_case(prompt_tokens, max_output_tokens, &rates);
    }
    let usage = if prices.cache_write > prices.input {
        Usage {
            cache_write: prompt_tokens,
            output: max_output_tokens,
            ..Usage::default()
        }
    } else {
        Usage {
            input: prompt_tokens,
            output: max_output_tokens,
            ..Usage::default()
        }
    };
    cost_flat(&usage, prices)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpt_4o() -> Prices {
        Prices::flat(2_500_000, 10_000_000, 1_250_000, 0)
    }

    /// Gemini 2.5 Pro: $1.25/$10 (cache $0.125) up to 200k prompt tokens, $2.50/$15
    /// (cache $0.25) above.
    fn gemini_25_pro() -> Prices {
        Prices {
            tiers: Arc::from([PriceTier {
                above_prompt_tokens: 200_000,
                input: 2_500_000,
                output: 15_000_000,
                cached_input: 250_000,
                cache_write: 0,
            }]),
            ..Prices::flat(1_250_000, 10_000_000, 125_000, 0)
        }
    }

    #[test]
    fn one_million_tokens_cost_the_list_price() {
        assert_eq!(tokens_cost(1_000_000, 2_500_000), Micros(2_500_000));
    }

    #[test]
    fn fractions_round_up() {
        // 1 token at $2.50/M is 2.5 µ$ → 3 µ$.
        assert_eq!(tokens_cost(1, 2_500_000), Micros(3));
        assert_eq!(tokens_cost(0, 2_500_000), Micros::ZERO);
    }

    #[test]
    fn cost_keeps_cache_reads_apart() {
        let usage = Usage {
            input: 1000,
            output: 200,
            cache_read: 4000,
            cache_write: 0,
        };
        // 1000×2.5 + 200×10 + 4000×1.25 = 2500 + 2000 + 5000 µ$
        assert_eq!(cost(&usage, &gpt_4o()), Micros(9_500));
        assert_eq!(usage.prompt_total(), 5000);
    }

    #[test]
    fn worst_case_is_never_below_actual_for_the_same_tokens() {
        for (prompt, output) in [(0, 0), (1, 1), (17, 3), (123_456, 4096)] {
            let worst = worst_case(prompt, output, &gpt_4o());
            let cached = cost(
                &Usage {
                    input: prompt / 2,
                    output,
                    cache_read: prompt - prompt / 2,
                    cache_write: 0,
                },
                &gpt_4o(),
            );
            assert!(worst >= cached, "{prompt}/{output}");
        }
    }

    #[test]
    fn worst_case_prices_prompts_as_cache_writes_where_those_cost_more() {
        // Claude Sonnet 4.5: $3 input, $3.75 5-minute cache write, $15 output per 1M.
        let sonnet = Prices::flat(3_000_000, 15_000_000, 300_000, 3_750_000);
        // 10,000 prompt tokens all written to the cache: 37,500 µ$; 1,000 out: 15,000 µ$.
        assert_eq!(worst_case(10_000, 1_000, &sonnet), Micros(52_500));
        let all_written = cost(
            &Usage {
                cache_write: 10_000,
                output: 1_000,
                ..Usage::default()
            },
            &sonnet,
        );
        assert_eq!(worst_case(10_000, 1_000, &sonnet), all_written);
        // Where writes are free or cheaper (OpenAI), the input price stays the bound.
        assert_eq!(worst_case(1_000, 0, &gpt_4o()), Micros(2_500));
    }

    #[test]
    fn a_prompt_at_the_threshold_is_billed_at_the_base_tier_and_one_above_at_the_next() {
        let pro = gemini_25_pro();
        let at = |prompt| Usage {
            input: prompt,
            output: 1_000,
            ..Usage::default()
        };
        // 200,000 × $1.25 + 1,000 × $10 = 250,000 + 10,000 µ$.
        assert_eq!(cost(&at(200_000), &pro), Micros(260_000));
        // 200,001 × $2.50 + 1,000 × $15 = 500,002.5 → 500,003 + 15,000 µ$.
        assert_eq!(cost(&at(200_001), &pro), Micros(515_003));
        assert_eq!(pro.at(200_000).input, 1_250_000);
        assert_eq!(pro.at(200_001).output, 15_000_000);
    }

    #[test]
    fn cache_reads_count_towards_the_threshold_and_are_billed_at_the_tier() {
        let pro = gemini_25_pro();
        // 150k read from the cache + 50,001 fresh: a 200,001-token prompt.
        let usage = Usage {
            input: 50_001,
            output: 0,
            cache_read: 150_000,
            cache_write: 0,
        };
        // 50,001 × $2.50 + 150,000 × $0.25 = 125,002.5 + 37,500 → 162,503 µ$.
        assert_eq!(cost(&usage, &pro), Micros(162_503));
    }

    #[test]
    fn the_highest_tier_passed_applies_when_there_are_several() {
        let tiered = Prices {
            tiers: Arc::from([
                PriceTier {
                    above_prompt_tokens: 32_000,
                    input: 2,
                    output: 20,
                    ..PriceTier::default()
                },
                PriceTier {
                    above_prompt_tokens: 128_000,
                    input: 3,
                    output: 30,
                    ..PriceTier::default()
                },
            ]),
            ..Prices::flat(1, 10, 0, 0)
        };
        assert_eq!(tiered.at(32_000).input, 1);
        assert_eq!(tiered.at(32_001).input, 2);
        assert_eq!(tiered.at(128_000).input, 2);
        assert_eq!(tiered.at(128_001).input, 3);
        assert_eq!(tiered.at(u64::MAX).output, 30);
    }

    #[test]
    fn a_reservation_near_the_threshold_takes_the_tier_above() {
        let pro = gemini_25_pro();
        // Far below: base rates. 100,000 × $1.25 + 1,000 × $10.
        assert_eq!(worst_case(100_000, 1_000, &pro), Micros(135_000));
        // Within 5% below 200k (195,000 + 9,750 > 200,000): the long-context tier.
        assert_eq!(
            worst_case(195_000, 1_000, &pro),
            Micros(195_000 * 5 / 2 + 15_000)
        );
        // Just far enough below (190,477 + 9,523 = 200,000): still the base.
        assert_eq!(pro.reserved_at(190_477).input, 1_250_000);
        assert_eq!(pro.reserved_at(190_478).input, 2_500_000);
        // Above: the tier.
        assert_eq!(pro.reserved_at(250_000).output, 15_000_000);
    }

    #[test]
    fn a_tiered_reservation_is_never_below_what_settle_can_charge_for_the_estimate() {
        let pro = gemini_25_pro();
        for prompt in [0, 1, 190_000, 199_999, 200_000, 200_001, 1_000_000] {
            let output = 8_192;
            let worst = worst_case(prompt, output, &pro);
            // Any prompt up to the estimate, however split between fresh and cached.
            for real in [prompt / 2, prompt.saturating_sub(1), prompt] {
                let charged = cost(
                    &Usage {
                        input: real - real / 3,
                        output,
                        cache_read: real / 3,
                        cache_write: 0,
                    },
                    &pro,
                );
                assert!(worst >= charged, "estimate {prompt}, real {real}");
            }
        }
    }

    #[test]
    fn tiers_must_ascend_from_one_without_negative_prices() {
        let tier = |above, input| PriceTier {
            above_prompt_tokens: above,
            input,
            ..PriceTier::default()
        };
        assert_eq!(check_tiers(&[tier(1, 0), tier(2, 5)]), Ok(()));
        assert_eq!(check_tiers(&[tier(0, 1)]), Err(TierError::ZeroThreshold(0)));
        assert_eq!(
            check_tiers(&[tier(200, 1), tier(200, 2)]),
            Err(TierError::NotAscending(1))
        );
        assert_eq!(check_tiers(&[tier(5, -1)]), Err(TierError::Negative(0)));
        let many: Vec<_> = (1..=9).map(|i| tier(i, 1)).collect();
        assert_eq!(check_tiers(&many), Err(TierError::TooMany));
    }

    #[test]
    fn huge_numbers_saturate_instead_of_wrapping() {
        assert_eq!(tokens_cost(u64::MAX, i64::MAX), Micros(i64::MAX));
        assert_eq!(Micros(i64::MAX) + Micros(1), Micros(i64::MAX));
        // An upstream's usage near u64::MAX (fuzz/corpus/response_json/crash-usage-overflow).
        let usage = Usage {
            input: u64::MAX,
            output: 5,
            cache_read: 1,
            cache_write: 1,
        };
        assert_eq!(usage.prompt_total(), u64::MAX);
        assert_eq!(usage.total(), u64::MAX);
    }

    #[test]
    fn display_as_dollars() {
        assert_eq!(Micros(1_234_567).to_string(), "$1.234567");
        assert_eq!(Micros(-5).to_string(), "-$0.000005");
    }
}
