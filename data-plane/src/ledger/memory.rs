//! The in-process ledger: exact, atomic under one mutex, and gone when the process
//! exits. For a standalone gateway and for tests; gateways that share budgets need Redis.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use super::{BudgetLine, Ledger, Reservation, ReserveError, ReserveRequest, SettleError};
use crate::money::Micros;

#[derive(Debug, Default)]
pub struct MemoryLedger {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// (budget id, period start) → counters.
    counters: HashMap<(String, i64), Counter>,
    /// Open reservations by id; settling removes them, which makes settle idempotent.
    open: HashMap<uuid::Uuid, Micros>,
    /// Reservations released by [`MemoryLedger::reap`] whose cost is still to come.
    reaped: std::collections::HashSet<uuid::Uuid>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    pub spent: Micros,
    pub reserved: Micros,
}

impl MemoryLedger {
    /// Counters of one budget period (tests and metrics).
    pub fn counter(&self, budget_id: &str, period_start: i64) -> Counter {
        let state = self.lock();
        state
            .counters
            .get(&(budget_id.to_owned(), period_start))
            .copied()
            .unwrap_or_default()
    }

    pub fn open_reservations(&self) -> usize {
        self.lock().open.len()
    }

    /// Whether reservation `id` was made here and is not settled yet.
    pub fn holds(&self, id: &uuid::Uuid) -> bool {
        self.lock().open.contains_key(id)
    }

    /// Releases an open reservation as a reaper does for a gateway that died: a
    /// settlement that arrives later still adds its cost (the model of the Redis
    /// ledger's `reaped` tombstone).
    pub fn reap(&self, reservation: &Reservation) {
        let mut state = self.lock();
        let Some(reserved) = state.open.remove(&reservation.id) else {
            return;
        };
        for line in &reservation.lines {
            let counter = state.counters.entry(key(line)).or_default();
            counter.reserved = counter.reserved - reserved;
        }
        state.reaped.insert(reservation.id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every critical section leaves the maps consistent before it can panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn key(line: &BudgetLine) -> (String, i64) {
    (line.budget_id.clone(), line.period_start)
}

impl Ledger for MemoryLedger {
    async fn reserve(&self, request: ReserveRequest) -> Result<Reservation, ReserveError> {
        let mut state = self.lock();
        let mut grant = request.amount;
        for line in &request.lines {
            let counter = state.counters.get(&key(line)).copied().unwrap_or_default();
            let remaining = line.limit - counter.spent - counter.reserved;
            if remaining < request.amount {
                if !line.clamp || remaining < request.min_amount {
                    return Err(ReserveError::Insufficient {
                        budget_id: line.budget_id.clone(),
                        remaining: remaining.max(Micros::ZERO),
                        needed: request.amount,
                    });
                }
                grant = grant.min(remaining);
            }
        }
        for line in &request.lines {
            state.counters.entry(key(line)).or_default().reserved += grant;
        }
        state.open.insert(request.id, grant);
        Ok(Reservation {
            id: request.id,
            lines: request.lines,
            amount: grant,
        })
    }

    async fn settle(&self, reservation: &Reservation, actual: Micros) -> Result<(), SettleError> {
        let mut state = self.lock();
        let reserved = match state.open.remove(&reservation.id) {
            Some(reserved) => reserved,
            // Reaped before its settlement came: the reserved part is gone, the cost is not.
            None if state.reaped.remove(&reservation.id) => Micros::ZERO,
            None => return Ok(()), // already settled
        };
        for line in &reservation.lines {
            let counter = state.counters.entry(key(line)).or_default();
            counter.reserved = counter.reserved - reserved;
            counter.spent += actual;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, limit: i64) -> BudgetLine {
        BudgetLine {
            budget_id: id.into(),
            org_id: "o".into(),
            period_start: 0,
            limit: Micros(limit),
            clamp: false,
            ttl_secs: 0,
        }
    }

    fn request(lines: Vec<BudgetLine>, amount: i64) -> ReserveRequest {
        ReserveRequest {
            id: uuid::Uuid::now_v7(),
            lines,
            amount: Micros(amount),
            min_amount: Micros(amount),
            deadline_ms: 0,
        }
    }

    #[tokio::test]
    async fn a_clamping_budget_grants_what_is_left_down_to_the_minimum() {
        let ledger = MemoryLedger::default();
        let clamped = BudgetLine {
            clamp: true,
            ..line("c", 100)
        };
        let ask = |amount| ReserveRequest {
            min_amount: Micros(10),
            ..request(vec![clamped.clone()], amount)
        };
        assert_eq!(ledger.reserve(ask(70)).await.unwrap().amount, Micros(70));
        assert_eq!(
            ledger.reserve(ask(70)).await.unwrap().amount,
            Micros(30),
            "clamped to what is left"
        );
        assert!(
            ledger.reserve(ask(70)).await.is_err(),
            "nothing left for a minimal answer"
        );
    }

    #[tokio::test]
    async fn reserves_in_all_lines_or_none() {
        let ledger = MemoryLedger::default();
        let ok = ledger
            .reserve(request(vec![line("team", 100), line("org", 1000)], 60))
            .await
            .unwrap();
        let err = ledger
            .reserve(request(vec![line("team", 100), line("org", 1000)], 60))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            ReserveError::Insufficient {
                budget_id: "team".into(),
                remaining: Micros(40),
                needed: Micros(60)
            }
        );
        // The refused call reserved nothing in the org line either.
        assert_eq!(ledger.counter("org", 0).reserved, Micros(60));
        ledger.settle(&ok, Micros(25)).await.unwrap();
        assert_eq!(
            ledger.counter("team", 0),
            Counter {
                spent: Micros(25),
                reserved: Micros::ZERO
            }
        );
        assert_eq!(
            ledger.counter("org", 0),
            Counter {
                spent: Micros(25),
                reserved: Micros::ZERO
            }
        );
    }

    #[tokio::test]
    async fn settle_is_idempotent_and_release_returns_everything() {
        let ledger = MemoryLedger::default();
        let a = ledger
            .reserve(request(vec![line("b", 100)], 50))
            .await
            .unwrap();
        ledger.settle(&a, Micros(10)).await.unwrap();
        ledger.settle(&a, Micros(10)).await.unwrap();
        assert_eq!(ledger.counter("b", 0).spent, Micros(10));
        let b = ledger
            .reserve(request(vec![line("b", 100)], 90))
            .await
            .unwrap();
        ledger.release(&b).await.unwrap();
        assert_eq!(
            ledger.counter("b", 0),
            Counter {
                spent: Micros(10),
                reserved: Micros::ZERO
            }
        );
        assert_eq!(ledger.open_reservations(), 0);
    }

    #[tokio::test]
    async fn concurrent_reservations_never_overspend() {
        let ledger = std::sync::Arc::new(MemoryLedger::default());
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let ledger = ledger.clone();
                tokio::spawn(async move {
                    let r = ledger.reserve(request(vec![line("b", 1_000)], 7)).await;
                    if let Ok(r) = r {
                        ledger.settle(&r, Micros(7)).await.unwrap();
                        true
                    } else {
                        false
                    }
                })
            })
            .collect();
        let mut successes = 0;
        for t in tasks {
            successes += usize::from(t.await.unwrap());
        }
        assert_eq!(successes, 1_000 / 7);
        assert!(ledger.counter("b", 0).spent <= Micros(1_000));
    }
}
