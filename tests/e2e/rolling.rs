//! A rolling restart under steady load behind a real load balancer: HAProxy (Debian's
//! `haproxy`, `deploy/local/test` installs it) checks each gateway's `/readyz` and
//! spreads calls over three gateways that share the Redis ledger and ship usage to the
//! control plane. Each gateway in turn gets SIGTERM, exits 0 and starts again on the same
//! port, spool and last-known-good file. A client that never retries sees no failed
//! call, the control plane counts every call exactly once, and nothing stays reserved.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tollgate_tests::env::TestRedis;
use tollgate_tests::gateway::GatewayProcess;

use crate::config_push::{Plane, free_port, send, until_ready, until_status};
use crate::telemetry::usage_totals;

const GATEWAYS: usize = 3;
/// Concurrent clients; each sends its next call as soon as the last one answered.
const CLIENTS: usize = 4;
/// Long against the load balancer's check interval (200 ms, one failure marks a server
/// down), so HAProxy has stopped sending new calls before the listener closes.
const DRAIN_DELAY_MS: &str = "3000";

/// The `haproxy` binary: `TOLLGATE_HAPROXY_BIN`, else on `PATH`, else Debian's path
/// (`/usr/sbin` is not on every user's `PATH`).
fn haproxy_bin() -> PathBuf {
    if let Ok(path) = std::env::var("TOLLGATE_HAPROXY_BIN") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("haproxy"))
        .find(|path| path.exists());
    on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/haproxy"))
}

/// HAProxy in front of `backends`, with its stats as CSV on `stats_port`.
struct LoadBalancer {
    url: String,
    stats: String,
    dir: tempfile::TempDir,
    child: Child,
}

impl LoadBalancer {
    async fn start(backends: &[u16]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (port, stats_port) = (free_port(), free_port());
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(i, port)| format!("  server gw{} 127.0.0.1:{port} check\n", i + 1))
            .collect();
        // http-server-close: one backend connection per call, so no call is ever sent on
        // an idle keep-alive connection a draining gateway is closing. retries 0: no
        // second chance for a refused connection either, so it is the readiness check
        // and the drain delay alone that keep calls away from a stopping gateway.
        let config = format!(
            "global\n  maxconn 512\n\
             defaults\n  mode http\n  option http-server-close\n  retries 0\n\
             \x20 timeout connect 5s\n  timeout client 120s\n  timeout server 120s\n\
             frontend gateways\n  bind 127.0.0.1:{port}\n  default_backend gateways\n\
             backend gateways\n  balance roundrobin\n  option httpchk GET /readyz\n\
             \x20 http-check expect status 200\n  default-server inter 200ms fall 1 rise 2\n{servers}\
             listen stats\n  bind 127.0.0.1:{stats_port}\n  stats enable\n  stats uri /stats\n"
        );
        let config_path = dir.path().join("haproxy.cfg");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("haproxy.log")).unwrap();
        let child = Command::new(haproxy_bin())
            .arg("-db")
            .arg("-f")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {}: {e} (Debian: apt-get install haproxy; deploy/local/test does)",
                    haproxy_bin().display()
                )
            });
        Self {
            url: format!("http://127.0.0.1:{port}"),
            stats: format!("http://127.0.0.1:{stats_port}/stats;csv"),
            dir,
            child,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }

    /// HAProxy's view of each gateway: `gw1` → `UP`, `DOWN`, ...
    async fn statuses(&self) -> Vec<(String, String)> {
        let Ok(response) = crate::http().get(&self.stats).send().await else {
            return Vec::new();
        };
        let csv = response.text().await.unwrap_or_default();
        let mut lines = csv.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let column = |name: &str| header.iter().position(|h| *h == name);
        let (Some(px), Some(sv), Some(status)) =
            (column("pxname"), column("svname"), column("status"))
        else {
            return Vec::new();
        };
        lines
            .map(|line| line.split(',').collect::<Vec<_>>())
            .filter(|fields| fields.get(px) == Some(&"gateways"))
            .filter_map(|fields| {
                let name = fields.get(sv)?.to_string();
                let status = fields.get(status)?.to_string();
                name.starts_with("gw").then_some((name, status))
            })
            .collect()
    }

    /// Waits until HAProxy counts `server` (`gw1`...) as up, i.e. sends it calls again.
    async fn until_up(&mut self, server: &str) {
        let started = Instant::now();
        loop {
            let statuses = self.statuses().await;
            if statuses.iter().any(|(s, st)| s == server && st == "UP") {
                return;
            }
            if let Ok(Some(exit)) = self.child.try_wait() {
                panic!("haproxy exited ({exit}):\n{}", self.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "HAProxy never saw {server} up: {statuses:?}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One gateway of region `eu` on a fixed port, so that it comes back where HAProxy
/// looks for it; its spool and last-known-good file outlive the process.
struct Slot {
    port: u16,
    config: String,
}

impl Slot {
    fn new(plane: &Plane, redis: &TestRedis, token: &str, n: usize) -> Self {
        let lkg = plane.dir.path().join(format!("gw{n}.lkg"));
        let config = format!(
            "[server]\nregion = \"eu\"\ngateway_id = \"gw-rolling-{n}\"\n\
             [control]\nurl = \"http://{grpc}\"\nenrollment_token = \"{token}\"\n\
             trusted_keys = {{ {trusted} }}\nlast_known_good = \"{lkg}\"\nreconnect_max_ms = 300\n\
             [telemetry]\nspool_dir = \"{spool}\"\n\
             [ledger]\nkind = \"redis\"\n\
             [redis]\nurl = \"{redis_url}\"\nkey_prefix = \"{prefix}\"\n",
            grpc = plane.cp.grpc.as_deref().unwrap(),
            trusted = plane.trusted,
            lkg = lkg.display(),
            spool = Path::new(&format!("{}.spool", lkg.display())).display(),
            redis_url = redis.url,
            prefix = redis.prefix,
        );
        Self {
            port: free_port(),
            config,
        }
    }

    async fn start(&self) -> GatewayProcess {
        let listen = format!("127.0.0.1:{}", self.port);
        GatewayProcess::start(
            &self.config,
            &[
                ("TOLLGATE_SERVER__LISTEN", listen.as_str()),
                ("TOLLGATE_SERVER__DRAIN_DELAY_MS", DRAIN_DELAY_MS),
                ("TOLLGATE_SERVER__SHUTDOWN_DEADLINE_MS", "30000"),
            ],
        )
        .await
        .unwrap()
    }
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    failures: std::sync::Mutex<Vec<String>>,
}

/// One client: calls through the load balancer until `stop`, alternating a plain and a
/// streamed call of `slow` (40 tokens over about a second). Never retries.
async fn client(url: String, key: String, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let http = reqwest::Client::builder()
        .retry(reqwest::retry::never())
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let mut stream = false;
    while !stop.load(Ordering::Relaxed) {
        stream = !stream;
        let body = json!({"model": "slow", "stream": stream, "max_tokens": 50,
                          "messages": [{"role": "user", "content": "count"}]});
        let outcome = async {
            let response = http
                .post(format!("{url}/v1/chat/completions"))
                .bearer_auth(&key)
                .json(&body)
                .send()
                .await
                .map_err(|e| format!("send: {e:?}"))?;
            let status = response.status();
            let text = response
                .text()
                .await
                .map_err(|e| format!("body after {status}: {e:?}"))?;
            if status != 200 {
                return Err(format!("{status}: {text}"));
            }
            let complete = if stream {
                text.trim_end().ends_with("data: [DONE]")
            } else {
                serde_json::from_str::<Value>(&text)
                    .is_ok_and(|v| v["usage"]["completion_tokens"] == 40)
            };
            if complete {
                Ok(())
            } else {
                Err(format!("incomplete answer (stream: {stream}): {text}"))
            }
        }
        .await;
        match outcome {
            Ok(()) => {
                tally.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(failure) => tally.failures.lock().unwrap().push(failure),
        }
    }
}

/// (reserved summed over every budget counter, open leases) in the test's Redis prefix.
async fn outstanding(redis: &TestRedis) -> (i64, u64) {
    let mut con = redis.connection().await.unwrap();
    let (mut reserved, mut leases) = (0, 0);
    for key in redis.keys().await.unwrap() {
        if key.contains(":budget:") {
            let r: Option<i64> = redis::cmd("HGET")
                .arg(&key)
                .arg("reserved")
                .query_async(&mut con)
                .await
                .unwrap();
            reserved += r.unwrap_or(0);
        } else if key.ends_with(":leases") {
            let n: u64 = redis::cmd("ZCARD")
                .arg(&key)
                .query_async(&mut con)
                .await
                .unwrap();
            leases += n;
        }
    }
    (reserved, leases)
}

#[tokio::test]
async fn restarting_every_gateway_behind_haproxy_under_load_fails_no_call_and_loses_nothing() {
    let plane = Plane::start().await;
    let redis = TestRedis::new().await.unwrap();
    // A team budget far above what the test spends: every call reserves against it.
    let budget = send(
        Method::POST,
        &plane.cp.api(&format!("/orgs/{}/budgets", plane.org)),
        &plane.cp.admin_token,
        Some(json!({"scope_kind": "team", "scope_id": plane.team,
                    "amount_micros": 1_000_000_000, "period": "month"})),
    )
    .await;
    assert_eq!(budget.status(), 201, "{}", budget.text().await.unwrap());
    let (_, key) = plane.create_key().await;
    let token = plane.enrollment_token("eu").await;

    let slots: Vec<Slot> = (1..=GATEWAYS)
        .map(|n| Slot::new(&plane, &redis, &token, n))
        .collect();
    let mut gateways = Vec::new();
    for slot in &slots {
        let gateway = slot.start().await;
        until_ready(&gateway).await;
        // One call straight to each gateway proves it knows the key; it counts as usage.
        until_status(&gateway, &key, "slow", 200).await;
        gateways.push(gateway);
    }
    let direct_calls = GATEWAYS;
    let mut lb = LoadBalancer::start(&slots.iter().map(|s| s.port).collect::<Vec<_>>()).await;
    for n in 1..=GATEWAYS {
        lb.until_up(&format!("gw{n}")).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(client(
                lb.url.clone(),
                key.clone(),
                stop.clone(),
                tally.clone(),
            ))
        })
        .collect();
    // Load first, so every restart happens with calls in flight.
    let started = Instant::now();
    while tally.ok.load(Ordering::Relaxed) < 2 * CLIENTS {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no load through HAProxy: {:?}\n{}",
            tally.failures.lock().unwrap(),
            lb.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Each gateway in turn: SIGTERM, exit 0, start again, back in HAProxy's rotation
    // before the next one goes. The stopped processes are kept for their logs.
    let mut stopped = Vec::new();
    for (n, slot) in slots.iter().enumerate() {
        let mut old = gateways.remove(0);
        old.terminate().await;
        let exit = old.wait().await.unwrap();
        assert!(
            exit.success(),
            "gateway {} exited {exit:?}:\n{}",
            n + 1,
            old.stderr()
        );
        stopped.push(old);
        let fresh = slot.start().await;
        until_ready(&fresh).await;
        gateways.push(fresh);
        lb.until_up(&format!("gw{}", n + 1)).await;
    }
    // Some more load on the restarted fleet, then the clients finish their last calls.
    let after = tally.ok.load(Ordering::Relaxed);
    let started = Instant::now();
    while tally.ok.load(Ordering::Relaxed) < after + CLIENTS
        && tally.failures.lock().unwrap().is_empty()
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the restarted fleet served nothing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }

    let failures = tally.failures.lock().unwrap().clone();
    let ok = tally.ok.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} of {} calls failed through the restarts: {failures:#?}\n{}",
        failures.len(),
        ok + failures.len(),
        lb.log()
    );

    println!("rolling restart of {GATEWAYS} gateways: {ok} calls through HAProxy, none failed");
    // Every call reaches the control plane exactly once: the ones served during the
    // restarts were spooled and shipped by the gateway or its successor.
    let calls = (ok + direct_calls) as i64;
    let started = Instant::now();
    loop {
        let (seen, _) = usage_totals(&plane).await;
        assert!(
            seen <= calls,
            "usage shows {seen} calls, only {calls} were made"
        );
        if seen == calls {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "usage shows {seen} of {calls} calls after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Nothing stays reserved. The reaper would only release a leaked reservation after
    // its lease (the call's longest duration plus a 60 s margin), later than this waits.
    let started = Instant::now();
    loop {
        let open = outstanding(&redis).await;
        if open == (0, 0) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "still (reserved µ$, open leases) = {open:?} after every call ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for gateway in stopped.iter().chain(&gateways) {
        assert!(
            !gateway.stderr().contains("never settled"),
            "{}",
            gateway.stderr()
        );
    }
}
