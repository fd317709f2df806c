//! The Redis ledger on a real Redis: the same semantics as the in-process model
//! (checked by a property test), leases and the reaper, re-seeding, failure policies.

use std::time::Duration;

use proptest::prelude::*;
use tollgate_data_plane::config::{FailurePolicy, RedisSettings};
use tollgate_data_plane::ledger::memory::MemoryLedger;
use tollgate_data_plane::ledger::redis::RedisLedger;
use tollgate_data_plane::ledger::{BudgetLine, Ledger, ReserveError, ReserveRequest};
use tollgate_data_plane::money::Micros;
use tollgate_data_plane::snapshot::{Limits, ScopeKind, now_ms};
use tollgate_tests::env::{RedisCluster, RedisServer, TestRedis};

fn settings(url: &str, prefix: &str) -> RedisSettings {
    RedisSettings {
        url: url.to_owned(),
        key_prefix: prefix.to_owned(),
        timeout_ms: 300,
        ..RedisSettings::default()
    }
}

async fn ledger(redis: &TestRedis, policy: FailurePolicy, cap: i64) -> RedisLedger {
    let ledger =
        RedisLedger::new(&settings(&redis.url, &redis.prefix), policy, Micros(cap)).unwrap();
    ledger.connect().await.unwrap();
    ledger
}

fn line(budget: &str, limit: i64, period_start: i64) -> BudgetLine {
    BudgetLine {
        budget_id: budget.into(),
        org_id: "acme".into(),
        period_start,
        limit: Micros(limit),
        clamp: false,
        ttl_secs: 3600,
    }
}

fn ask(lines: Vec<BudgetLine>, amount: i64) -> ReserveRequest {
    ReserveRequest {
        id: uuid::Uuid::now_v7(),
        lines,
        amount: Micros(amount),
        min_amount: Micros(amount),
        deadline_ms: now_ms() + 60_000,
    }
}

#[tokio::test]
async fn reserves_everywhere_or_nowhere_and_names_the_short_scope() {
    let redis = TestRedis::new().await.unwrap();
    let l = ledger(&redis, FailurePolicy::FailClosed, 0).await;
    let (key, team, org) = (
        line("key", 1_000, 0),
        line("team", 100, 0),
        line("org", 10_000, 0),
    );
    let held = l
        .reserve(ask(vec![key.clone(), team.clone(), org.clone()], 80))
        .await
        .unwrap();
    let refused = l
        .reserve(ask(vec![key.clone(), team.clone(), org.clone()], 30))
        .await
        .unwrap_err();
    assert_eq!(
        refused,
        ReserveError::Insufficient {
            budget_id: "team".into(),
            remaining: Micros(20),
            needed: Micros(30)
        }
    );
    // Nothing of the refused call was reserved in the other scopes.
    assert_eq!(l.counter(&key).await.unwrap(), (Micros(0), Micros(80)));
    assert_eq!(l.counter(&org).await.unwrap(), (Micros(0), Micros(80)));

    l.settle(&held, Micros(55)).await.unwrap();
    l.settle(&held, Micros(55)).await.unwrap(); // idempotent
    for scope in [&key, &team, &org] {
        assert_eq!(l.counter(scope).await.unwrap(), (Micros(55), Micros(0)));
    }
    // Every key lives under the test's prefix and the org's hash tag.
    let keys = redis.keys().await.unwrap();
    assert!(!keys.is_empty());
    assert!(
        keys.iter()
            .all(|k| k.starts_with(&format!("{}{{org:acme}}:", redis.prefix))),
        "{keys:?}"
    );
}

#[tokio::test]
async fn a_settlement_after_a_period_rollover_lands_in_the_period_it_reserved() {
    let redis = TestRedis::new().await.unwrap();
    let l = ledger(&redis, FailurePolicy::FailClosed, 0).await;
    let (today, tomorrow) = (line("daily", 100, 1_000), line("daily", 100, 87_400));
    let held = l.reserve(ask(vec![today.clone()], 60)).await.unwrap();
    // The clock rolls over: new calls count against the new period...
    let next = l.reserve(ask(vec![tomorrow.clone()], 90)).await.unwrap();
    // ...while the old call settles where it reserved.
    l.settle(&held, Micros(40)).await.unwrap();
    assert_eq!(l.counter(&today).await.unwrap(), (Micros(40), Micros(0)));
    assert_eq!(l.counter(&tomorrow).await.unwrap(), (Micros(0), Micros(90)));
    l.release(&next).await.unwrap();
    assert_eq!(l.counter(&tomorrow).await.unwrap(), (Micros(0), Micros(0)));
}

#[tokio::test]
async fn clamping_budgets_grant_what_is_left() {
    let redis = TestRedis::new().await.unwrap();
    let l = ledger(&redis, FailurePolicy::FailClosed, 0).await;
    let budget = BudgetLine {
        clamp: true,
        ..line("c", 100, 0)
    };
    let request = |amount| ReserveRequest {
        min_amount: Micros(10),
        ..ask(vec![budget.clone()], amount)
    };
    assert_eq!(l.reserve(request(70)).await.unwrap().amount, Micros(70));
    assert_eq!(l.reserve(request(70)).await.unwrap().amount, Micros(30));
    assert!(matches!(
        l.reserve(request(70)).await,
        Err(ReserveError::Insufficient { .. })
    ));
}

#[tokio::test]
async fn the_reaper_releases_expired_leases_once() {
    let redis = TestRedis::new().await.unwrap();
    let l = ledger(&redis, FailurePolicy::FailClosed, 0).await;
    let budget = line("b", 100, 0);
    let expired = ReserveRequest {
        deadline_ms: now_ms() - 1,
        ..ask(vec![budget.clone()], 70)
    };
    let _abandoned = l.reserve(expired).await.unwrap();
    let live = l.reserve(ask(vec![budget.clone()], 20)).await.unwrap();
    let orgs = vec!["acme".to_owned()];
    assert_eq!(l.reap(&orgs, now_ms()).await.unwrap(), 1);
    assert_eq!(
        l.counter(&budget).await.unwrap(),
        (Micros(0), Micros(20)),
        "only the expired lease is gone"
    );
    // A second gateway reaping right after finds the lock taken or nothing left.
    assert_eq!(l.reap(&orgs, now_ms()).await.unwrap(), 0);
    l.settle(&live, Micros(5)).await.unwrap();
    assert_eq!(l.counter(&budget).await.unwrap(), (Micros(5), Micros(0)));
}

/// A durable ledger standing in for the control plane's rollups.
struct Durable(Vec<i64>);

impl tollgate_data_plane::ledger::SpendSource for Durable {
    async fn spent(
        &self,
        lines: &[BudgetLine],
    ) -> Result<Vec<Micros>, tollgate_data_plane::ledger::SettleError> {
        Ok(lines.iter().zip(&self.0).map(|(_, s)| Micros(*s)).collect())
    }
}

#[tokio::test]
async fn reseeding_takes_the_larger_spend() {
    let redis = TestRedis::new().await.unwrap();
    let l = ledger(&redis, FailurePolicy::FailClosed, 0).await;
    let (a, b) = (line("a", 1_000, 0), line("b", 1_000, 0));
    let held = l.reserve(ask(vec![a.clone()], 10)).await.unwrap();
    l.settle(&held, Micros(300)).await.unwrap();
    l.reseed(&Durable(vec![200, 450]), &[a.clone(), b.clone()])
        .await
        .unwrap();
    assert_eq!(
        l.counter(&a).await.unwrap().0,
        Micros(300),
        "a seed never lowers live spend"
    );
    assert_eq!(
        l.counter(&b).await.unwrap().0,
        Micros(450),
        "an empty Redis gets the durable spend"
    );
}

#[tokio::test]
async fn unreachable_redis_fails_closed_or_open_within_the_cap() {
    let redis = TestRedis::new().await.unwrap();
    // Nothing listens on port 9.
    let closed = RedisLedger::new(
        &settings("redis://127.0.0.1:9/", &redis.prefix),
        FailurePolicy::FailClosed,
        Micros(0),
    )
    .unwrap();
    assert!(closed.connect().await.is_err());
    assert!(!closed.healthy());
    assert!(matches!(
        closed.reserve(ask(vec![line("b", 100, 0)], 10)).await,
        Err(ReserveError::Unavailable(_))
    ));

    let open = RedisLedger::new(
        &settings("redis://127.0.0.1:9/", &redis.prefix),
        FailurePolicy::FailOpen,
        Micros(25),
    )
    .unwrap();
    let first = open
        .reserve(ask(vec![line("b", 100, 0)], 20))
        .await
        .unwrap();
    assert!(
        open.reserve(ask(vec![line("b", 100, 0)], 20))
            .await
            .is_err(),
        "the local cap holds"
    );
    open.settle(&first, Micros(5)).await.unwrap();
    assert!(
        open.reserve(ask(vec![line("b", 100, 0)], 20)).await.is_ok(),
        "settling frees the cap"
    );
}

#[tokio::test]
async fn settlements_survive_a_redis_outage_and_are_applied_when_it_returns() {
    let mut server = RedisServer::start().await.unwrap();
    let l = RedisLedger::new(
        &settings(&server.url(), "tgtest:outage:"),
        FailurePolicy::FailClosed,
        Micros(0),
    )
    .unwrap();
    l.connect().await.unwrap();
    let budget = line("b", 1_000, 0);
    let held = l.reserve(ask(vec![budget.clone()], 100)).await.unwrap();

    server.stop();
    l.settle(&held, Micros(70)).await.unwrap(); // queued, not lost
    assert_eq!(l.pending_settlements(), 1);
    assert!(matches!(
        l.reserve(ask(vec![budget.clone()], 1)).await,
        Err(ReserveError::Unavailable(_))
    ));
    assert!(!l.healthy());

    server.restart().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while l.pending_settlements() > 0 || !l.healthy() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "queued settlement never applied"
        );
        l.maintain(&["acme".to_owned()], now_ms()).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The restarted Redis was empty, and the queued spend still arrived.
    assert_eq!(l.counter(&budget).await.unwrap(), (Micros(70), Micros(0)));
    // Settling again (a retry that raced) does not count it twice.
    l.settle(&held, Micros(70)).await.unwrap();
    assert_eq!(l.counter(&budget).await.unwrap(), (Micros(70), Micros(0)));
}

#[tokio::test]
async fn a_settlement_after_the_reaper_still_adds_its_cost() {
    let redis = TestRedis::new().await.unwrap();
    let l = ledger(&redis, FailurePolicy::FailClosed, 0).await;
    let budget = line("b", 1_000, 0);
    let held = l
        .reserve(ReserveRequest {
            deadline_ms: now_ms() - 1, // its gateway "died": the lease ran out
            ..ask(vec![budget.clone()], 300)
        })
        .await
        .unwrap();
    assert_eq!(l.reap(&["acme".to_owned()], now_ms()).await.unwrap(), 1);
    assert_eq!(l.counter(&budget).await.unwrap(), (Micros(0), Micros(0)));
    // The call was slow, not dead: its settlement comes after the reaper's release.
    l.settle(&held, Micros(120)).await.unwrap();
    assert_eq!(l.counter(&budget).await.unwrap(), (Micros(120), Micros(0)));
    // Once, not twice.
    l.settle(&held, Micros(120)).await.unwrap();
    assert_eq!(l.counter(&budget).await.unwrap(), (Micros(120), Micros(0)));
}

#[tokio::test]
async fn a_full_settlement_queue_keeps_the_spend() {
    let mut server = RedisServer::start().await.unwrap();
    let l = RedisLedger::new(
        &RedisSettings {
            settle_queue_capacity: 1,
            ..settings(&server.url(), "tgtest:overflow:")
        },
        FailurePolicy::FailClosed,
        Micros(0),
    )
    .unwrap();
    l.connect().await.unwrap();
    let budget = line("b", 10_000, 0);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(l.reserve(ask(vec![budget.clone()], 100)).await.unwrap());
    }
    server.stop();
    for (r, cost) in held.iter().zip([10, 20, 30]) {
        l.settle(r, Micros(cost)).await.unwrap();
    }
    assert_eq!(l.pending_settlements(), 1, "the queue holds one");
    assert_eq!(
        l.owed_spend().values().map(|m| m.0).sum::<i64>(),
        50,
        "the two past capacity are owed, not dropped"
    );
    // It comes back empty: the queued settlement and the owed spend both arrive.
    server.restart().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        l.maintain(&["acme".to_owned()], now_ms()).await;
        if l.counter(&budget).await.ok() == Some((Micros(60), Micros(0))) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "spend or reservations never settled: {:?}",
            l.counter(&budget).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(l.owed_spend().is_empty());
}

#[tokio::test]
async fn the_same_scripts_run_on_a_redis_cluster() {
    let cluster = RedisCluster::start(3).await.unwrap();
    let settings = RedisSettings {
        cluster: true,
        cluster_nodes: cluster.nodes.clone(),
        timeout_ms: 1000,
        ..settings(&cluster.nodes[0], "tgtest:cluster:")
    };
    let l = RedisLedger::new(&settings, FailurePolicy::FailClosed, Micros(0)).unwrap();
    l.connect().await.unwrap();
    // Several orgs, so the keys land on different slots (and nodes).
    let orgs: Vec<String> = (0..6).map(|i| format!("org{i}")).collect();
    for org in &orgs {
        let lines: Vec<BudgetLine> = ["key", "team", "org"]
            .iter()
            .map(|b| BudgetLine {
                org_id: org.clone(),
                ..line(b, 100, 0)
            })
            .collect();
        let held = l.reserve(ask(lines.clone(), 60)).await.unwrap();
        assert!(matches!(
            l.reserve(ask(lines.clone(), 60)).await,
            Err(ReserveError::Insufficient { .. })
        ));
        l.settle(&held, Micros(25)).await.unwrap();
        let expired = ReserveRequest {
            deadline_ms: now_ms() - 1,
            ..ask(lines.clone(), 10)
        };
        l.reserve(expired).await.unwrap();
        for line in &lines {
            assert_eq!(
                l.counter(line).await.unwrap(),
                (Micros(25), Micros(10)),
                "{org}"
            );
        }
    }
    assert_eq!(l.reap(&orgs, now_ms()).await.unwrap(), orgs.len());
    l.maintain(&orgs, now_ms()).await;
    assert!(l.healthy());

    // Rate-limit scripts too: a concurrency limit of 1 on a team.
    let limits = Limits {
        max_concurrent: Some(1),
        ..Limits::default()
    };
    let scopes = [(ScopeKind::Team, "t", limits)];
    let now = now_ms();
    let (slots, _, _) = l
        .admit("org0", &scopes, 10, now, 0, now + 10_000)
        .await
        .unwrap()
        .unwrap();
    assert!(
        l.admit("org0", &scopes, 10, now, 0, now + 10_000)
            .await
            .unwrap()
            .is_err(),
        "second call over the limit"
    );
    l.release_slots(&slots, 0).await.unwrap();
    assert!(
        l.admit("org0", &scopes, 10, now, 0, now + 10_000)
            .await
            .unwrap()
            .is_ok(),
        "slot given back"
    );
}

/// One operation of the property test.
#[derive(Debug, Clone)]
enum Op {
    Reserve {
        lines: Vec<usize>,
        amount: i64,
        clamp: bool,
    },
    Settle {
        which: usize,
        actual: i64,
    },
    Release {
        which: usize,
    },
    /// The gateway holding reservation `which` died: its lease runs out and the reaper runs.
    Expire {
        which: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (proptest::collection::vec(0usize..3, 1..=3), 1i64..400, any::<bool>())
            .prop_map(|(lines, amount, clamp)| Op::Reserve { lines, amount, clamp }),
        2 => (0usize..8, 0i64..500).prop_map(|(which, actual)| Op::Settle { which, actual }),
        1 => (0usize..8).prop_map(|which| Op::Release { which }),
        1 => (0usize..8).prop_map(|which| Op::Expire { which }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    /// Random reserve/settle/release/expire sequences give the same answers and the same
    /// counters from the Lua scripts as from the plain Rust model (where an expired
    /// lease is reaped: released, with a later settlement still adding its cost).
    #[test]
    fn lua_scripts_match_the_rust_model(ops in proptest::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let redis = TestRedis::new().await.unwrap();
            let lua = ledger(&redis, FailurePolicy::FailClosed, 0).await;
            let model = MemoryLedger::default();
            let limits = [500i64, 800, 300];
            let mut held = Vec::new();
            for op in ops {
                match op {
                    Op::Reserve { mut lines, amount, clamp } => {
                        lines.sort_unstable();
                        lines.dedup();
                        let lines: Vec<BudgetLine> = lines
                            .iter()
                            .map(|i| BudgetLine { clamp, ..line(&format!("b{i}"), limits[*i], 0) })
                            .collect();
                        let request = ReserveRequest { min_amount: Micros(amount / 4), ..ask(lines, amount) };
                        let (a, b) = (lua.reserve(request.clone()).await, model.reserve(request).await);
                        prop_assert_eq!(&a, &b);
                        if let Ok(r) = a {
                            held.push(r);
                        }
                    }
                    Op::Settle { which, actual } if !held.is_empty() => {
                        let r = held[which % held.len()].clone();
                        lua.settle(&r, Micros(actual)).await.unwrap();
                        model.settle(&r, Micros(actual)).await.unwrap();
                    }
                    Op::Release { which } if !held.is_empty() => {
                        let r = held[which % held.len()].clone();
                        lua.release(&r).await.unwrap();
                        model.release(&r).await.unwrap();
                    }
                    Op::Expire { which } if !held.is_empty() => {
                        let r = held[which % held.len()].clone();
                        // Move its lease into the past, clear the reaper's lock, reap.
                        let mut con = redis.connection().await.unwrap();
                        let leases = format!("{}{{org:acme}}:leases", redis.prefix);
                        let _: i64 = redis::cmd("ZADD").arg(&leases).arg("XX").arg(0).arg(r.id.simple().to_string())
                            .query_async(&mut con).await.unwrap();
                        let _: i64 = redis::cmd("DEL").arg(format!("{}{{org:acme}}:reaper", redis.prefix))
                            .query_async(&mut con).await.unwrap();
                        lua.reap(&["acme".to_owned()], now_ms()).await.unwrap();
                        model.reap(&r);
                    }
                    _ => {}
                }
                for (i, limit) in limits.iter().enumerate() {
                    let l = line(&format!("b{i}"), *limit, 0);
                    let (spent, reserved) = lua.counter(&l).await.unwrap();
                    let c = model.counter(&l.budget_id, 0);
                    prop_assert_eq!((spent, reserved), (c.spent, c.reserved), "budget b{}", i);
                }
            }
            Ok(())
        })?;
    }
}
