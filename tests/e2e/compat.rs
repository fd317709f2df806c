//! Mixed versions, as during an upgrade: a gateway of the previous release against this
//! build's control plane, and this build's gateway against the previous release's control
//! plane. Either way the gateway enrolls, takes its signed config, serves plain and
//! streamed calls, follows a revocation and ships its usage.
//!
//! "Previous release" is the commit in `deploy/compat/previous-release`; its binaries
//! come from `TOLLGATE_PREVIOUS_CONTROL_BIN` / `TOLLGATE_PREVIOUS_GATEWAY_BIN`, or else
//! from `deploy/compat/build-previous` (which builds them once into ~/.cache/tollgate and
//! reuses them; `deploy/local/test` runs it before the tests).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tollgate_tests::control::{ControlPlane, cli_of};
use tollgate_tests::env::TestDb;
use tollgate_tests::gateway::{GatewayProcess, binary};
use tollgate_tests::mock::MockUpstream;

use crate::config_push::{free_port, send, until_ready, until_status};

struct Binaries {
    control: PathBuf,
    gateway: PathBuf,
}

fn current() -> Binaries {
    Binaries {
        control: binary("tollgate-control", "TOLLGATE_CONTROL_BIN").unwrap(),
        gateway: binary("tollgate-gateway", "TOLLGATE_GATEWAY_BIN").unwrap(),
    }
}

/// The previous release's binaries (built at most once per test process).
fn previous() -> &'static Binaries {
    static PREVIOUS: OnceLock<Binaries> = OnceLock::new();
    PREVIOUS.get_or_init(|| {
        let from_env = (
            std::env::var_os("TOLLGATE_PREVIOUS_CONTROL_BIN"),
            std::env::var_os("TOLLGATE_PREVIOUS_GATEWAY_BIN"),
        );
        if let (Some(control), Some(gateway)) = from_env {
            return Binaries {
                control: control.into(),
                gateway: gateway.into(),
            };
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/compat/build-previous");
        let output = std::process::Command::new(&script)
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(
            output.status.success(),
            "{} failed ({})",
            script.display(),
            output.status
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        let value = |name: &str| {
            stdout
                .lines()
                .find_map(|line| line.strip_prefix(&format!("{name}=")))
                .map(PathBuf::from)
                .unwrap_or_else(|| panic!("{} printed no {name}:\n{stdout}", script.display()))
        };
        Binaries {
            control: value("TOLLGATE_PREVIOUS_CONTROL_BIN"),
            gateway: value("TOLLGATE_PREVIOUS_GATEWAY_BIN"),
        }
    })
}

/// A control plane of one release with a gateway of another, set up through the admin
/// API only (the previous release's schema is its own business).
struct Mixed {
    cp: ControlPlane,
    gateway: GatewayProcess,
    org: String,
    team: String,
    _mock: MockUpstream,
    _dir: tempfile::TempDir,
    _db: TestDb,
}

async fn post(cp: &ControlPlane, path: &str, body: Value) -> Value {
    let response = send(Method::POST, &cp.api(path), &cp.admin_token, Some(body)).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert!(status.is_success(), "POST {path}: {status} {body}");
    body
}

impl Mixed {
    async fn start(control: &Path, gateway: &Path) -> Self {
        let db = TestDb::create().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("signing.pem").display().to_string();
        let trusted = cli_of(
            control,
            &db,
            &["signing-key", "new", "--out", &key_file, "--key-id", "k1"],
        )
        .await
        .unwrap()
        .trim()
        .to_owned();
        let grpc = format!("127.0.0.1:{}", free_port());
        let env = [
            ("TOLLGATE_SIGNING__KEY_FILE", key_file.as_str()),
            ("TOLLGATE_SIGNING__KEY_ID", "k1"),
            ("TOLLGATE_GRPC__LISTEN", grpc.as_str()),
        ];
        let cp = ControlPlane::start_of(control, &db, &env).await.unwrap();
        let mock = MockUpstream::start().await.unwrap();

        post(&cp, "/regions", json!({"id": "eu", "name": "EU"})).await;
        let provider = post(
            &cp,
            "/providers",
            json!({"kind": "openai", "name": "mock", "base_url": mock.openai_base_url()}),
        )
        .await;
        let model = post(&cp, "/models", json!({"name": "m"})).await;
        post(
            &cp,
            "/deployments",
            json!({"model_id": model["id"], "region_id": "eu", "provider_id": provider["id"],
                   "upstream_model": "m+chunks=4", "input_price": 1_000_000, "output_price": 1_000_000}),
        )
        .await;
        let org = post(&cp, "/orgs", json!({"slug": "acme", "name": "Acme"})).await;
        let org = org["id"].as_str().unwrap().to_owned();
        let team = post(
            &cp,
            &format!("/orgs/{org}/teams"),
            json!({"slug": "ml", "name": "ML"}),
        )
        .await;
        let team = team["id"].as_str().unwrap().to_owned();
        let token = post(
            &cp,
            "/regions/eu/enrollment-tokens",
            json!({"name": "compat"}),
        )
        .await;
        let lkg = dir.path().join("gw.lkg");
        let config = format!(
            "[server]\nregion = \"eu\"\ngateway_id = \"gw-compat\"\n\
             [control]\nurl = \"http://{grpc}\"\nenrollment_token = \"{token}\"\n\
             trusted_keys = {{ {trusted} }}\nlast_known_good = \"{lkg}\"\nreconnect_max_ms = 300\n\
             [telemetry]\nspool_dir = \"{lkg}.spool\"\n",
            token = token["token"].as_str().unwrap(),
            lkg = lkg.display(),
        );
        let gateway = GatewayProcess::start_of(gateway, &config, &[])
            .await
            .unwrap();
        Self {
            cp,
            gateway,
            org,
            team,
            _mock: mock,
            _dir: dir,
            _db: db,
        }
    }

    /// Requests the usage API reports for the org.
    async fn usage(&self) -> i64 {
        let from = (time::OffsetDateTime::now_utc() - time::Duration::days(2))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let path = format!("/usage?org_id={}&interval=day&from={from}", self.org);
        let report: Value = send(Method::GET, &self.cp.api(&path), &self.cp.admin_token, None)
            .await
            .json()
            .await
            .unwrap();
        report["items"]
            .as_array()
            .unwrap_or_else(|| panic!("{report}"))
            .iter()
            .map(|r| r["requests"].as_i64().unwrap())
            .sum()
    }

    /// Enrolls, serves, streams, ships usage and follows a revocation.
    async fn keeps_serving(&self) {
        until_ready(&self.gateway).await;
        let created = post(
            &self.cp,
            &format!("/orgs/{}/keys", self.org),
            json!({"team_id": self.team, "name": "compat"}),
        )
        .await;
        let key = created["key"].as_str().unwrap();
        until_status(&self.gateway, key, "m", 200).await;

        let streamed = crate::http()
            .post(format!("{}/chat/completions", self.gateway.v1()))
            .bearer_auth(key)
            .json(&json!({"model": "m", "stream": true, "max_tokens": 10,
                          "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(streamed.status(), 200);
        let body = streamed.text().await.unwrap();
        assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");

        // The probe that answered 200 and the stream: both reach the control plane.
        let started = Instant::now();
        loop {
            let seen = self.usage().await;
            assert!(seen <= 2, "usage shows {seen} calls, only 2 were made");
            if seen == 2 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "usage shows {seen} of 2 calls after 60 s:\n{}\n{}",
                self.gateway.stderr(),
                self.cp.stderr()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        let revoked = send(
            Method::POST,
            &self.cp.api(&format!(
                "/orgs/{}/keys/{}/revoke",
                self.org,
                created["id"].as_str().unwrap()
            )),
            &self.cp.admin_token,
            None,
        )
        .await;
        assert_eq!(revoked.status(), 200);
        until_status(&self.gateway, key, "m", 401).await;
    }
}

#[tokio::test]
async fn a_previous_release_gateway_keeps_serving_against_this_control_plane() {
    let (now, before) = (current(), previous());
    Mixed::start(&now.control, &before.gateway)
        .await
        .keeps_serving()
        .await;
}

#[tokio::test]
async fn this_gateway_keeps_serving_against_a_previous_release_control_plane() {
    let (now, before) = (current(), previous());
    Mixed::start(&before.control, &now.gateway)
        .await
        .keeps_serving()
        .await;
}
