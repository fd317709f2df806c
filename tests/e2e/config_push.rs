//! Signed config push, end to end: a real control plane (or two) on its own database,
//! real gateways taking their config over `ConfigService.Stream`, the mock upstream.

use std::time::{Duration, Instant};

use prost::Message as _;
use reqwest::Method;
use serde_json::{Value, json};
use tollgate_proto::config as proto;
use tollgate_signing::SnapshotSigner;
use tollgate_tests::control::{ControlPlane, cli};
use tollgate_tests::env::TestDb;
use tollgate_tests::gateway::GatewayProcess;
use tollgate_tests::mock::MockUpstream;

use crate::http;

/// Generous bound for propagation on a loaded 2-core CI box; the real figures are in
/// BENCHMARKS.md.
const PROPAGATION_BOUND: Duration = Duration::from_secs(2);

pub(crate) struct Plane {
    pub(crate) db: TestDb,
    pub(crate) cp: ControlPlane,
    pub(crate) mock: MockUpstream,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) key_file: String,
    pub(crate) trusted: String,
    pub(crate) org: String,
    pub(crate) team: String,
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) async fn send(
    method: Method,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = http().request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

impl Plane {
    /// A control plane with a signing key and a fixed gRPC port, regions `eu` and `us`
    /// each serving model `m` from the mock; `eu` also serves `strict` (max staleness 1.5 s).
    pub(crate) async fn start() -> Self {
        Self::start_with(|_| Vec::new()).await
    }

    /// As [`Self::start`], with more control-plane settings made from the plane's folder.
    pub(crate) async fn start_with(
        extra: impl Fn(&std::path::Path) -> Vec<(String, String)>,
    ) -> Self {
        let db = TestDb::create().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let extra = extra(dir.path());
        let key_file = dir.path().join("signing.pem").display().to_string();
        let trusted = cli(
            &db,
            &["signing-key", "new", "--out", &key_file, "--key-id", "k1"],
        )
        .await
        .unwrap()
        .trim()
        .to_owned();
        let grpc = format!("127.0.0.1:{}", free_port());
        let mut env: Vec<(&str, &str)> = Self::env(&key_file, &grpc).to_vec();
        env.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let cp = ControlPlane::start_with(&db, &env).await.unwrap();
        let mock = MockUpstream::start().await.unwrap();
        let pool = db.pool().await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "INSERT INTO regions (id) VALUES ('eu'), ('us');
             INSERT INTO providers (id, kind, name, base_url) VALUES
               ('00000000-0000-7000-8000-000000000001', 'openai_compatible', 'mock', '{base}');
             INSERT INTO models (id, name) VALUES
               ('00000000-0000-7000-8000-000000000002', 'm'), ('00000000-0000-7000-8000-000000000003', 'strict');
             INSERT INTO deployments (id, model_id, region_id, provider_id, upstream_model, input_price, output_price, max_staleness_ms) VALUES
               ('00000000-0000-7000-8000-000000000004', '00000000-0000-7000-8000-000000000002', 'eu', '00000000-0000-7000-8000-000000000001', 'm', 1, 1, 0),
               ('00000000-0000-7000-8000-000000000005', '00000000-0000-7000-8000-000000000002', 'us', '00000000-0000-7000-8000-000000000001', 'm', 1, 1, 0),
               ('00000000-0000-7000-8000-000000000006', '00000000-0000-7000-8000-000000000003', 'eu', '00000000-0000-7000-8000-000000000001', 'strict', 1, 1, 1500);
             INSERT INTO models (id, name) VALUES
               ('00000000-0000-7000-8000-000000000007', 'broken'), ('00000000-0000-7000-8000-000000000008', 'slow');
             INSERT INTO deployments (id, model_id, region_id, provider_id, upstream_model, input_price, output_price) VALUES
               ('00000000-0000-7000-8000-000000000009', '00000000-0000-7000-8000-000000000007', 'eu', '00000000-0000-7000-8000-000000000001', 'm+status=500', 1, 1),
               ('00000000-0000-7000-8000-00000000000a', '00000000-0000-7000-8000-000000000008', 'eu', '00000000-0000-7000-8000-000000000001', 'm+chunks=40+delay=25', 1000000, 1000000);",
            base = mock.openai_base_url()
        )))
        .execute(&pool)
        .await
        .unwrap();
        let org: Value = send(
            Method::POST,
            &cp.api("/orgs"),
            &cp.admin_token,
            Some(json!({"slug": "acme", "name": "Acme"})),
        )
        .await
        .json()
        .await
        .unwrap();
        let org = org["id"].as_str().unwrap().to_owned();
        let team: Value = send(
            Method::POST,
            &cp.api(&format!("/orgs/{org}/teams")),
            &cp.admin_token,
            Some(json!({"slug": "ml", "name": "ML"})),
        )
        .await
        .json()
        .await
        .unwrap();
        let team = team["id"].as_str().unwrap().to_owned();
        Self {
            db,
            cp,
            mock,
            dir,
            key_file,
            trusted,
            org,
            team,
        }
    }

    pub(crate) fn env<'a>(key_file: &'a str, grpc: &'a str) -> [(&'a str, &'a str); 3] {
        [
            ("TOLLGATE_SIGNING__KEY_FILE", key_file),
            ("TOLLGATE_SIGNING__KEY_ID", "k1"),
            ("TOLLGATE_GRPC__LISTEN", grpc),
        ]
    }

    pub(crate) async fn enrollment_token(&self, region: &str) -> String {
        let created: Value = send(
            Method::POST,
            &self.cp.api(&format!("/regions/{region}/enrollment-tokens")),
            &self.cp.admin_token,
            Some(json!({"name": "test"})),
        )
        .await
        .json()
        .await
        .unwrap();
        created["token"].as_str().unwrap().to_owned()
    }

    /// A gateway of `region` connected to `grpc`, keeping its last-known-good file at
    /// `lkg` (in this plane's directory).
    pub(crate) async fn gateway(
        &self,
        region: &str,
        id: &str,
        grpc: &str,
        token: &str,
        lkg: &str,
    ) -> GatewayProcess {
        let url = format!("http://{grpc}");
        self.gateway_with(region, id, &url, token, lkg, "").await
    }

    /// A gateway with `url` and `extra` lines in its `[control]` section.
    pub(crate) async fn gateway_with(
        &self,
        region: &str,
        id: &str,
        url: &str,
        token: &str,
        lkg: &str,
        extra: &str,
    ) -> GatewayProcess {
        self.gateway_full(region, id, url, token, lkg, extra, "")
            .await
    }

    /// The whole form: `extra` lines in `[control]`, then more `sections` of settings.
    /// The usage spool sits beside the last-known-good file (`<lkg>.spool`), so a
    /// restarted gateway with the same `lkg` finds both.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn gateway_full(
        &self,
        region: &str,
        id: &str,
        url: &str,
        token: &str,
        lkg: &str,
        extra: &str,
        sections: &str,
    ) -> GatewayProcess {
        let config = format!(
            "[server]\nregion = \"{region}\"\ngateway_id = \"{id}\"\n\
             [control]\nurl = \"{url}\"\nenrollment_token = \"{token}\"\n{extra}\
             trusted_keys = {{ {trusted} }}\nlast_known_good = \"{lkg}\"\nreconnect_max_ms = 300\n\
             [telemetry]\nspool_dir = \"{lkg}.spool\"\n{sections}",
            trusted = self.trusted,
            lkg = self.dir.path().join(lkg).display(),
        );
        GatewayProcess::start(&config, &[]).await.unwrap()
    }

    pub(crate) async fn create_key(&self) -> (String, String) {
        let created: Value = send(
            Method::POST,
            &self.cp.api(&format!("/orgs/{}/keys", self.org)),
            &self.cp.admin_token,
            Some(json!({"team_id": self.team})),
        )
        .await
        .json()
        .await
        .unwrap();
        (
            created["id"].as_str().unwrap().to_owned(),
            created["key"].as_str().unwrap().to_owned(),
        )
    }

    pub(crate) async fn revoke_key(&self, id: &str) {
        let response = send(
            Method::POST,
            &self.cp.api(&format!("/orgs/{}/keys/{id}/revoke", self.org)),
            &self.cp.admin_token,
            None,
        )
        .await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }

    pub(crate) async fn fleet(&self) -> Vec<Value> {
        let fleet: Value = send(
            Method::GET,
            &self.cp.api("/gateways"),
            &self.cp.admin_token,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
        fleet["items"].as_array().unwrap().clone()
    }
}

pub(crate) async fn call(gateway: &GatewayProcess, key: &str, model: &str) -> reqwest::Response {
    http()
        .post(format!("{}/chat/completions", gateway.v1()))
        .bearer_auth(key)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}))
        .send()
        .await
        .unwrap()
}

/// Polls until `model` called with `key` answers `status`; how long that took.
pub(crate) async fn until_status(
    gateway: &GatewayProcess,
    key: &str,
    model: &str,
    status: u16,
) -> Duration {
    let started = Instant::now();
    loop {
        let got = call(gateway, key, model).await.status().as_u16();
        if got == status {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "still {got}, not {status}, after 15 s:\n{}",
            gateway.stderr()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub(crate) async fn until_ready(gateway: &GatewayProcess) {
    let started = Instant::now();
    while http()
        .get(format!("{}/readyz", gateway.url))
        .send()
        .await
        .map_or(true, |r| r.status() != 200)
    {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "never ready:\n{}",
            gateway.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_key_reaches_two_regions_within_bounds_and_so_does_its_revocation() {
    let plane = Plane::start().await;
    let grpc = plane.cp.grpc.clone().unwrap();
    let (eu_token, us_token) = (
        plane.enrollment_token("eu").await,
        plane.enrollment_token("us").await,
    );
    let eu = plane
        .gateway("eu", "gw-eu", &grpc, &eu_token, "eu.lkg")
        .await;
    let us = plane
        .gateway("us", "gw-us", &grpc, &us_token, "us.lkg")
        .await;
    until_ready(&eu).await;
    until_ready(&us).await;

    let (id, key) = plane.create_key().await;
    let created_at = Instant::now();
    let (on_eu, on_us) = tokio::join!(
        until_status(&eu, &key, "m", 200),
        until_status(&us, &key, "m", 200)
    );
    let created = created_at.elapsed();
    plane.revoke_key(&id).await;
    let revoked_at = Instant::now();
    tokio::join!(
        until_status(&eu, &key, "m", 401),
        until_status(&us, &key, "m", 401)
    );
    let revoked = revoked_at.elapsed();
    println!(
        "propagation: key usable after {on_eu:?} (eu) / {on_us:?} (us); revoked everywhere after {revoked:?}"
    );
    assert!(created < PROPAGATION_BOUND, "new key took {created:?}");
    assert!(revoked < PROPAGATION_BOUND, "revocation took {revoked:?}");

    // A region only gets its own deployments: `strict` is served in eu, not in us.
    let (_, key) = plane.create_key().await;
    until_status(&eu, &key, "strict", 200).await;
    assert_eq!(call(&us, &key, "strict").await.status(), 404);

    let fleet = plane.fleet().await;
    assert_eq!(fleet.len(), 2, "{fleet:?}");
    for gateway in &fleet {
        assert_eq!(gateway["connected"], true, "{gateway}");
        assert_eq!(
            gateway["applied_version"], gateway["latest_version"],
            "{gateway}"
        );
        assert!(gateway["last_nack_error"].is_null(), "{gateway}");
    }
}

#[tokio::test]
async fn gateways_ride_out_a_control_plane_outage_and_restart_from_last_known_good() {
    let mut plane = Plane::start().await;
    let grpc = plane.cp.grpc.clone().unwrap();
    let token = plane.enrollment_token("eu").await;
    let mut gateway = plane.gateway("eu", "gw-1", &grpc, &token, "gw-1.lkg").await;
    let (id, key) = plane.create_key().await;
    until_status(&gateway, &key, "m", 200).await;
    until_status(&gateway, &key, "strict", 200).await;

    plane.cp.kill().await;
    assert_eq!(
        call(&gateway, &key, "m").await.status(),
        200,
        "serves on without the control plane"
    );
    // `strict` allows 1.5 s of staleness: past it, calls to it fail closed.
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    let stale = call(&gateway, &key, "strict").await;
    assert_eq!(stale.status(), 503);
    let body: Value = stale.json().await.unwrap();
    assert_eq!(body["error"]["code"], "config_stale", "{body}");
    assert_eq!(call(&gateway, &key, "m").await.status(), 200);

    // Restarted while the control plane is still down: serves from the file.
    gateway.kill().await;
    let gateway = plane.gateway("eu", "gw-1", &grpc, &token, "gw-1.lkg").await;
    until_ready(&gateway).await;
    assert_eq!(call(&gateway, &key, "m").await.status(), 200);
    assert!(
        gateway
            .stderr()
            .contains("starting from the last-known-good config"),
        "{}",
        gateway.stderr()
    );

    // The control plane comes back; the gateway catches up with a change made since.
    let env = Plane::env(&plane.key_file, &grpc);
    plane.cp = ControlPlane::serve(&plane.db, plane.cp.admin_token.clone(), &env)
        .await
        .unwrap();
    plane.revoke_key(&id).await;
    until_status(&gateway, &key, "m", 401).await;
    until_status(&gateway, &plane.create_key().await.1, "strict", 200).await;
}

/// Stores a version the publisher did not make, and announces it like the publisher does.
pub(crate) async fn inject(
    plane: &Plane,
    version: i64,
    payload: Vec<u8>,
    signature: Vec<u8>,
    key_id: &str,
) {
    let pool = plane.db.pool().await.unwrap();
    sqlx::query("INSERT INTO config_versions (region_id, version, content_sha256, payload, signature, key_id) VALUES ('eu', $1, '', $2, $3, $4)")
        .bind(version)
        .bind(payload)
        .bind(signature)
        .bind(key_id)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("SELECT pg_notify('tollgate_config_published', $1)")
        .bind(format!("eu:{version}"))
        .execute(&pool)
        .await
        .unwrap();
}

async fn until_nacked(plane: &Plane, version: i64) -> String {
    let started = Instant::now();
    loop {
        let fleet = plane.fleet().await;
        if fleet[0]["last_nack_version"] == version {
            return fleet[0]["last_nack_error"].as_str().unwrap().to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no NACK of {version}: {fleet:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn refused_snapshots_are_nacked_the_old_config_serves_on_and_the_fleet_says_why() {
    let plane = Plane::start().await;
    let grpc = plane.cp.grpc.clone().unwrap();
    let token = plane.enrollment_token("eu").await;
    let gateway = plane
        .gateway("eu", "gw-nack", &grpc, &token, "nack.lkg")
        .await;
    let (_, key) = plane.create_key().await;
    until_status(&gateway, &key, "m", 200).await;

    let pool = plane.db.pool().await.unwrap();
    let (current, payload): (i64, Vec<u8>) = sqlx::query_as(
        "SELECT version, payload FROM config_versions WHERE region_id = 'eu' ORDER BY version DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let signer =
        SnapshotSigner::from_pem("k1", &std::fs::read_to_string(&plane.key_file).unwrap()).unwrap();
    let with_version = |v: i64, edit: &dyn Fn(&mut proto::Snapshot)| {
        let mut snapshot = proto::Snapshot::decode(payload.as_slice()).unwrap();
        snapshot.version = v as u64;
        edit(&mut snapshot);
        snapshot.encode_to_vec()
    };

    // Signed by a key the gateway does not trust.
    let rogue = SnapshotSigner::generate("rogue").unwrap();
    let v = current + 1;
    let body = with_version(v, &|_| {});
    inject(&plane, v, body.clone(), rogue.sign(&body), "rogue").await;
    let reason = until_nacked(&plane, v).await;
    assert!(reason.contains("does not trust"), "{reason}");

    // The trusted key id, but a signature that does not match.
    let v = v + 1;
    let body = with_version(v, &|_| {});
    inject(&plane, v, body.clone(), rogue.sign(&body), "k1").await;
    let reason = until_nacked(&plane, v).await;
    assert!(reason.contains("does not verify"), "{reason}");

    // A correctly signed old snapshot replayed under a newer envelope version (the
    // envelope is not signed; the payload's own version is what counts).
    let v = v + 1;
    inject(&plane, v, payload.clone(), signer.sign(&payload), "k1").await;
    let reason = until_nacked(&plane, v).await;
    assert!(
        reason.contains(&format!("the signed payload says {current}")),
        "{reason}"
    );

    // Correctly signed and newer, but invalid: a model with no deployment.
    let v = v + 1;
    let body = with_version(v, &|s| {
        s.models.push(proto::Model {
            name: "ghost".into(),
            tokenizer: "o200k_base".into(),
            ..Default::default()
        })
    });
    inject(&plane, v, body.clone(), signer.sign(&body), "k1").await;
    let reason = until_nacked(&plane, v).await;
    assert!(reason.contains("\"ghost\" has no deployment"), "{reason}");

    // Through all of it, the config in force kept serving.
    assert_eq!(call(&gateway, &key, "m").await.status(), 200);
    let fleet = plane.fleet().await;
    assert_eq!(fleet[0]["applied_version"], current, "{fleet:?}");
}

#[tokio::test]
async fn a_tampered_last_known_good_file_is_refused_and_the_gateway_stays_unready() {
    let mut plane = Plane::start().await;
    let grpc = plane.cp.grpc.clone().unwrap();
    let token = plane.enrollment_token("eu").await;
    let mut gateway = plane.gateway("eu", "gw-t", &grpc, &token, "t.lkg").await;
    until_ready(&gateway).await;
    // The file is written right after the swap that made the gateway ready.
    let path = plane.dir.path().join("t.lkg");
    let started = Instant::now();
    while !path.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no last-known-good file"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gateway.kill().await;
    plane.cp.kill().await;

    let mut envelope =
        proto::SignedSnapshot::decode(std::fs::read(&path).unwrap().as_slice()).unwrap();
    let last = envelope.payload.len() - 1;
    envelope.payload[last] ^= 1;
    std::fs::write(&path, envelope.encode_to_vec()).unwrap();

    let gateway = plane.gateway("eu", "gw-t", &grpc, &token, "t.lkg").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ready = http()
        .get(format!("{}/readyz", gateway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let log = gateway.stderr();
    assert!(
        log.contains("REFUSING the last-known-good config file"),
        "{log}"
    );
    assert!(log.contains("does not verify"), "{log}");
}

#[tokio::test]
async fn a_write_on_one_replica_reaches_gateways_of_the_other() {
    let plane = Plane::start().await;
    let grpc_b = format!("127.0.0.1:{}", free_port());
    let env = Plane::env(&plane.key_file, &grpc_b);
    let replica_b = ControlPlane::serve(&plane.db, plane.cp.admin_token.clone(), &env)
        .await
        .unwrap();
    let token = plane.enrollment_token("eu").await;
    let gateway = plane
        .gateway(
            "eu",
            "gw-b",
            replica_b.grpc.as_deref().unwrap(),
            &token,
            "b.lkg",
        )
        .await;
    until_ready(&gateway).await;

    // Written through replica A's API; the gateway only talks to replica B.
    let (_, key) = plane.create_key().await;
    let took = until_status(&gateway, &key, "m", 200).await;
    assert!(took < PROPAGATION_BOUND, "{took:?}");
    let fleet = plane.fleet().await;
    assert_eq!(fleet.len(), 1);
    assert_ne!(fleet[0]["replica"], "", "{fleet:?}");
    drop(plane.mock);
}

/// A throwaway CA with a server certificate for 127.0.0.1 and a client certificate, made
/// with the openssl command line.
fn certificates(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "openssl {args:?}");
    };
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &key,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=tollgate test CA",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for who in ["server", "client"] {
        let (keyfile, csr, pem, ext) = (
            format!("{who}.key"),
            format!("{who}.csr"),
            format!("{who}.pem"),
            format!("{who}.ext"),
        );
        run(&[
            &["req"][..],
            &key,
            &[
                "-keyout",
                &keyfile,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={who}"),
            ],
        ]
        .concat());
        run(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
    }
}

#[tokio::test]
async fn the_config_stream_runs_over_mutual_tls_and_refuses_a_gateway_without_a_certificate() {
    let plane = Plane::start_with(|dir| {
        certificates(dir);
        let path = |f: &str| dir.join(f).display().to_string();
        vec![
            ("TOLLGATE_GRPC__TLS_CERT".into(), path("server.pem")),
            ("TOLLGATE_GRPC__TLS_KEY".into(), path("server.key")),
            ("TOLLGATE_GRPC__CLIENT_CA".into(), path("ca.pem")),
        ]
    })
    .await;
    let url = format!("https://{}", plane.cp.grpc.clone().unwrap());
    let token = plane.enrollment_token("eu").await;
    let path = |f: &str| plane.dir.path().join(f).display().to_string();
    let with_certificate = format!(
        "ca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
        path("ca.pem"),
        path("client.pem"),
        path("client.key")
    );
    let gateway = plane
        .gateway_with("eu", "gw-tls", &url, &token, "tls.lkg", &with_certificate)
        .await;
    let (_, key) = plane.create_key().await;
    until_status(&gateway, &key, "m", 200).await;

    let without = format!("ca_file = \"{}\"\n", path("ca.pem"));
    let stranger = plane
        .gateway_with("eu", "gw-anon", &url, &token, "anon.lkg", &without)
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let ready = http()
        .get(format!("{}/readyz", stranger.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ready.status(),
        503,
        "a gateway without a client certificate got config"
    );
    // Its first call, the enrollment exchange, already fails the TLS handshake.
    assert!(
        stranger
            .stderr()
            .contains("enrolling with the control plane failed"),
        "{}",
        stranger.stderr()
    );
}
