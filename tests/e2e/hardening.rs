//! Slow and hostile clients against the real servers (issue #11, points 12 and 13): a
//! slowloris head, a trickling body, idle keep-alive connections and the connection cap
//! are all cut off or held back by the configured limits; anonymous calls are refused
//! before their body is read; every error has OpenAI's body; `/metrics` can live on its
//! own address and never carries a model name a client made up.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate_tests::control::ControlPlane;
use tollgate_tests::env::TestDb;
use tollgate_tests::gateway::{GatewayProcess, TestKey};
use tollgate_tests::mock::MockUpstream;

use crate::http;

struct Setup {
    key: TestKey,
    gateway: GatewayProcess,
    _mock: MockUpstream,
}

/// One org/team/key and model `chat` on the mock; `env` sets the server's limits.
async fn setup(env: &[(&str, &str)]) -> Setup {
    let mock = MockUpstream::start().await.unwrap();
    let key = TestKey::new();
    let config = format!(
        "[[orgs]]\nid = \"acme\"\n[[teams]]\nid = \"search\"\norg = \"acme\"\n\
         [[models]]\nname = \"chat\"\naliases = [\"chat-latest\"]\ndefault_max_output_tokens = 10\n\
         [[deployments]]\nid = \"primary\"\nmodel = \"chat\"\nprovider = \"openai\"\nbase_url = \"{base}\"\n\
         upstream_model = \"mock-gpt-4o\"\nprices = {{ input = 1000000, output = 2000000 }}\n{entry}",
        base = mock.openai_base_url(),
        entry = key.entry("search", ""),
    );
    let gateway = GatewayProcess::start(&config, env).await.unwrap();
    Setup {
        key,
        gateway,
        _mock: mock,
    }
}

fn addr(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

/// Sends `head` at once, then one byte of `drip` every 100 ms, until the server closes
/// the connection; returns how long that took after the first byte, and what came back.
async fn trickle(addr: &str, head: &[u8], drip: &[u8]) -> (Duration, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let started = Instant::now();
    write.write_all(head).await.unwrap();
    let drip = drip.to_vec();
    let writer = tokio::spawn(async move {
        for byte in drip.iter().cycle() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if write.write_all(&[*byte]).await.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0_u8; 4096];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let took = started.elapsed();
    writer.abort();
    assert!(
        closed.is_ok(),
        "the server kept a trickling client for 10 s"
    );
    (took, String::from_utf8_lossy(&answer).into_owned())
}

fn assert_cut_off_near(took: Duration, limit: Duration) {
    assert!(
        took >= limit.mul_f32(0.8) && took < limit + Duration::from_millis(1_500),
        "closed after {took:?}, the limit is {limit:?}"
    );
}

#[tokio::test]
async fn a_slowloris_head_is_cut_off_at_the_header_timeout() {
    let s = setup(&[
        ("TOLLGATE_SERVER__HEADER_READ_TIMEOUT_MS", "500"),
        ("TOLLGATE_SERVER__IDLE_TIMEOUT_MS", "20000"),
    ])
    .await;
    let (took, _) = trickle(
        &addr(&s.gateway.url),
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nX-Slow: ",
        b"a",
    )
    .await;
    assert_cut_off_near(took, Duration::from_millis(500));
}

#[tokio::test]
async fn a_trickling_body_gets_408_at_the_body_timeout() {
    let s = setup(&[("TOLLGATE_SERVER__BODY_READ_TIMEOUT_MS", "500")]).await;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 10000\r\n\r\n{{",
        s.key.full
    );
    let (took, answer) = trickle(&addr(&s.gateway.url), head.as_bytes(), b" ").await;
    assert_cut_off_near(took, Duration::from_millis(500));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
}

#[tokio::test]
async fn anonymous_and_oversized_calls_are_refused_before_their_body() {
    let s = setup(&[("TOLLGATE_SERVER__BODY_READ_TIMEOUT_MS", "20000")]).await;
    // Heads promising big bodies that never come: the answer cannot wait for them.
    for (auth, status, code) in [
        (String::new(), "401", "invalid_api_key"),
        (
            "Authorization: Bearer tg_nosuchkey_0000000000000000000000\r\n".to_owned(),
            "401",
            "invalid_api_key",
        ),
        (
            format!("Authorization: Bearer {}\r\n", s.key.full),
            "413",
            "request_too_large",
        ),
    ] {
        let mut stream = TcpStream::connect(addr(&s.gateway.url)).await.unwrap();
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: 100000000\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let started = Instant::now();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut answer))
            .await
            .expect("answered and closed without the body")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{answer}"
        );
        assert!(answer.contains(&format!("\"code\":\"{code}\"")), "{answer}");
    }
    // The refusals are calls like any other: each has its usage event.
    let events = s.gateway.usage_events(3).await;
    let codes: Vec<&str> = events
        .iter()
        .filter_map(|e| e["error_code"].as_str())
        .collect();
    assert_eq!(
        codes,
        ["invalid_api_key", "invalid_api_key", "request_too_large"],
        "{events:?}"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_at_the_idle_timeout() {
    let s = setup(&[("TOLLGATE_SERVER__IDLE_TIMEOUT_MS", "500")]).await;
    let mut stream = TcpStream::connect(addr(&s.gateway.url)).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0_u8; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let answered = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("idle connection closed");
    assert!(matches!(end, Ok(0) | Err(_)), "{end:?}");
    assert_cut_off_near(answered.elapsed(), Duration::from_millis(500));
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let s = setup(&[("TOLLGATE_SERVER__MAX_CONNECTIONS", "2")]).await;
    let gateway = addr(&s.gateway.url);
    let first = TcpStream::connect(&gateway).await.unwrap();
    let _second = TcpStream::connect(&gateway).await.unwrap();
    // Give the server the moment it needs to take both.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut third = TcpStream::connect(&gateway).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0_u8; 1024];
    let waited = tokio::time::timeout(Duration::from_millis(700), third.read(&mut buf)).await;
    assert!(
        waited.is_err(),
        "a third connection was served beyond the cap"
    );

    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(3), third.read(&mut buf))
        .await
        .expect("served once a slot was free")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn the_control_plane_cuts_off_a_slowloris_too() {
    let db = TestDb::create().await.unwrap();
    let cp = ControlPlane::start_with(
        &db,
        &[
            ("TOLLGATE_SERVER__HEADER_READ_TIMEOUT_MS", "500"),
            ("TOLLGATE_SERVER__BODY_READ_TIMEOUT_MS", "500"),
        ],
    )
    .await
    .unwrap();
    let (took, _) = trickle(
        &addr(&cp.url),
        b"GET /api/v1/orgs HTTP/1.1\r\nHost: cp\r\nX-Slow: ",
        b"a",
    )
    .await;
    assert_cut_off_near(took, Duration::from_millis(500));

    let head = format!(
        "POST /api/v1/orgs HTTP/1.1\r\nHost: cp\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 10000\r\n\r\n{{",
        cp.admin_token
    );
    let (took, _) = trickle(&addr(&cp.url), head.as_bytes(), b" ").await;
    assert_cut_off_near(took, Duration::from_millis(500));
}

#[tokio::test]
async fn every_error_has_an_openai_body() {
    let s = setup(&[]).await;
    let base = &s.gateway.url;
    let cases = [
        (
            http().get(format!("{base}/v1/chat/completions")),
            405,
            "method_not_allowed",
        ),
        (
            http().delete(format!("{base}/v1/models")),
            405,
            "method_not_allowed",
        ),
        (
            http().post(format!("{base}/healthz")),
            405,
            "method_not_allowed",
        ),
        (
            http().get(format!("{base}/v2/anything")),
            404,
            "unknown_url",
        ),
    ];
    for (request, status, code) in cases {
        let response = request.bearer_auth(&s.key.full).send().await.unwrap();
        assert_eq!(response.status(), status);
        assert!(response.headers().contains_key("x-request-id"));
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let body: Value = response.json().await.unwrap();
        let error = &body["error"];
        assert_eq!(error["code"], code, "{body}");
        assert_eq!(error["type"], "invalid_request_error", "{body}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(error.get("param").is_some(), "{body}");
    }
}

#[tokio::test]
async fn metrics_can_have_their_own_address_and_never_echo_a_client_model() {
    // A free port for the metrics listener (the gateway prints only its API address).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let s = setup(&[("TOLLGATE_SERVER__METRICS_LISTEN", metrics_addr.as_str())]).await;
    let chat = |model: &str| {
        http()
            .post(format!("{}/chat/completions", s.gateway.v1()))
            .bearer_auth(&s.key.full)
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    assert_eq!(chat("chat-latest").await.unwrap().status(), 200);
    for i in 0..3 {
        let made_up = format!("made-up-model-{i}");
        assert_eq!(chat(&made_up).await.unwrap().status(), 404);
    }

    let on_main = http()
        .get(format!("{}/metrics", s.gateway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(on_main.status(), 404, "/metrics left the main port");
    let metrics = http()
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let requests: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("tollgate_requests_total{"))
        .collect();
    assert!(!metrics.contains("made-up-model"), "{metrics}");
    assert!(
        !metrics.contains("chat-latest"),
        "an alias is its model's label"
    );
    assert!(
        requests
            .iter()
            .any(|l| l.contains("model=\"chat\"") && l.contains("status=\"200\"")),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|l| l.contains("model=\"unknown\"") && l.ends_with(" 3")),
        "{requests:?}"
    );
}

#[tokio::test]
async fn a_deployment_cannot_send_the_gateways_pepper_upstream() {
    let mock = MockUpstream::start().await.unwrap();
    let key = TestKey::new();
    // The harness sets TOLLGATE_AUTH__KEY_PEPPER in this gateway's environment.
    let config = format!(
        "[[orgs]]\nid = \"acme\"\n[[teams]]\nid = \"search\"\norg = \"acme\"\n\
         [[models]]\nname = \"chat\"\n\
         [[deployments]]\nid = \"leaky\"\nmodel = \"chat\"\nprovider = \"openai\"\nbase_url = \"{base}\"\n\
         credential = \"env:TOLLGATE_AUTH__KEY_PEPPER\"\nprices = {{ input = 1, output = 1 }}\n{entry}",
        base = mock.openai_base_url(),
        entry = key.entry("search", ""),
    );
    let Err(error) = GatewayProcess::start(&config, &[]).await else {
        panic!("a gateway started with its pepper as a provider credential")
    };
    let message = error.to_string();
    assert!(
        message.contains("deployments[0].credential: deployment \"leaky\"")
            && message.contains("TOLLGATE_AUTH__KEY_PEPPER is not one this gateway lets"),
        "{message}"
    );
    assert!(mock.requests().is_empty());
}
