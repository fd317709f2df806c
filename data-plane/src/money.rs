//! Money and pricing arithmetic. Every amount is integer micro-USD ([`Micros`]); prices
//! are micro-USD per million tokens. All rounding happens here, and always up: a
//! reservation must never be smaller than what the call can cost.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};

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

/// Prices of one model, micro-USD per 1,000,000 tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prices {
    pub input: i64,
    pub output: i64,
    /// Prompt tokens read from the provider's cache.
    pub cached_input: i64,
    /// Prompt tokens written to the provider's cache.
    pub cache_write: i64,
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

/// What `usage` costs at `prices`.
pub fn cost(usage: &Usage, prices: &Prices) -> Micros {
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
/// one written to the cache; and the full output ceiling at the output price.
pub fn worst_case(prompt_tokens: u64, max_output_tokens: u64, prices: &Prices) -> Micros {
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
    cost(&usage, prices)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GPT_4O: Prices = Prices {
        input: 2_500_000,
        output: 10_000_000,
        cached_input: 1_250_000,
        cache_write: 0,
    };

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
        assert_eq!(cost(&usage, &GPT_4O), Micros(9_500));
        assert_eq!(usage.prompt_total(), 5000);
    }

    #[test]
    fn worst_case_is_never_below_actual_for_the_same_tokens() {
        for (prompt, output) in [(0, 0), (1, 1), (17, 3), (123_456, 4096)] {
            let worst = worst_case(prompt, output, &GPT_4O);
            let cached = cost(
                &Usage {
                    input: prompt / 2,
                    output,
                    cache_read: prompt - prompt / 2,
                    cache_write: 0,
                },
                &GPT_4O,
            );
            assert!(worst >= cached, "{prompt}/{output}");
        }
    }

    #[test]
    fn worst_case_prices_prompts_as_cache_writes_where_those_cost_more() {
        // Claude Sonnet 4.5: $3 input, $3.75 5-minute cache write, $15 output per 1M.
        let sonnet = Prices {
            input: 3_000_000,
            output: 15_000_000,
            cached_input: 300_000,
            cache_write: 3_750_000,
        };
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
        assert_eq!(worst_case(1_000, 0, &GPT_4O), Micros(2_500));
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
