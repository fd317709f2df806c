//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz), one per parser that reads
//! bytes someone else controls: client request bodies, upstream responses and streams,
//! API keys, pushed snapshots, the last-known-good file and the usage spool.
//!
//! Each function takes arbitrary bytes and must return without panicking, whatever they
//! are; an `Err` from the code under test is a correct answer, a panic is a bug. The
//! bodies live here rather than in `fuzz/` so that the tests below replay every seed and
//! regression input in `fuzz/corpus/<target>/` as ordinary unit tests, which is the
//! smoke CI runs (`docs/fuzzing.md`). Not part of the gateway's API.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue};
use prost::Message as _;
use serde_json::Value;
use tollgate_proto::config as proto;
use tollgate_proto::telemetry::UsageEvent;
use tollgate_signing::{SnapshotSigner, TrustedKeys};

use crate::pipeline::{authenticate, request, reserve};
use crate::prices::PriceTable;
use crate::providers::sse::{self, SseEvent};
use crate::providers::{Endpoint, anthropic, error_message, openai, openai_usage};
use crate::snapshot::file::StaticSnapshot;
use crate::snapshot::signed::{Acceptance, read_last_known_good};
use crate::snapshot::{Credentials, Snapshot};
use crate::telemetry::spool::Spool;

/// A throwaway Ed25519 key that signs the harness's envelopes (seed corpora included).
/// It exists only here; no deployment trusts it.
const FUZZ_SIGNING_KEY: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIBuTkrq4WdunV1UwCa0aBGDwGF/ftXCQMdP5XPU/TasJ
-----END PRIVATE KEY-----
";
pub const FUZZ_KEY_ID: &str = "fuzz";
pub const FUZZ_REGION: &str = "fuzz";
/// The pepper of the fixture snapshot's key, whose secret is [`FUZZ_KEY_SECRET`].
const PEPPER: &[u8] = b"fuzz-pepper";
pub const FUZZ_KEY_PUBLIC_ID: &str = "AbC123xyz789";
pub const FUZZ_KEY_SECRET: &str = "s3cr3tS3cr3tS3cr3tS3cr3tS3cr3tAB";

/// One org, team, project, key, two models (one per encoding) on three providers.
const FIXTURE: &str = r#"
[[orgs]]
id = "acme"
[[teams]]
id = "search"
org = "acme"
[[projects]]
id = "ranker"
team = "search"
[[models]]
name = "gpt-4o"
[[models]]
name = "gpt-4"
tokenizer = "cl100k_base"
[[deployments]]
id = "oai"
model = "gpt-4o"
provider = "openai"
base_url = "https://api.openai.com/v1"
[[deployments]]
id = "az"
model = "gpt-4o"
provider = "azure"
base_url = "https://acme.openai.azure.com"
api_version = "2024-10-21"
prices = { input = 1, output = 2 }
[[deployments]]
id = "claude"
model = "gpt-4"
provider = "anthropic"
base_url = "https://api.anthropic.com/v1"
prices = { input = 3000000, output = 15000000, cached_input = 300000, cache_write = 3750000 }
"#;

struct Fixture {
    snapshot: Snapshot,
    prices: PriceTable,
    credentials: Credentials,
    signer: SnapshotSigner,
    trusted: TrustedKeys,
    runtime: tokio::runtime::Runtime,
}

fn fixture() -> &'static Fixture {
    static FIXTURE_CELL: OnceLock<Fixture> = OnceLock::new();
    FIXTURE_CELL.get_or_init(|| {
        let secret_hmac = hex::encode(tollgate_keys::secret_hmac(PEPPER, FUZZ_KEY_SECRET));
        let text = format!(
            "{FIXTURE}\n[[keys]]\npublic_id = \"{FUZZ_KEY_PUBLIC_ID}\"\nsecret_hmac = \"{secret_hmac}\"\nteam = \"search\"\nproject = \"ranker\"\n"
        );
        let file: StaticSnapshot = toml::from_str(&text).expect("the fixture parses");
        let wire = file.into_proto(FUZZ_REGION).expect("the fixture converts");
        let prices = PriceTable::built_in().expect("the built-in price table loads");
        let credentials = Credentials::from_map([("OPENAI_API_KEY".into(), "sk-fuzz".into())]);
        let snapshot =
            Snapshot::from_proto(wire, &prices, &credentials).expect("the fixture is valid");
        let signer =
            SnapshotSigner::from_pem(FUZZ_KEY_ID, FUZZ_SIGNING_KEY).expect("the fuzz key loads");
        let public = signer.public_key_base64();
        let trusted =
            TrustedKeys::parse([(FUZZ_KEY_ID, public.as_str())]).expect("the fuzz key is valid");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime starts");
        Fixture {
            snapshot,
            prices,
            credentials,
            signer,
            trusted,
            runtime,
        }
    })
}

/// A fresh, empty directory for one run (runs may overlap when replayed as tests).
fn scratch_dir(kind: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tollgate-fuzz-{kind}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `request`: a client body for the endpoint picked by the first byte → parse → the
/// reservation estimate (real tokenizer) → clamping → the Anthropic translation.
pub fn request(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let endpoint = match selector % 3 {
        0 => Endpoint::Chat,
        1 => Endpoint::Completions,
        _ => Endpoint::Embeddings,
    };
    let Ok(mut req) = request::parse(body, endpoint) else {
        return;
    };
    let fx = fixture();
    let model_name = if selector & 0x80 == 0 {
        "gpt-4o"
    } else {
        "gpt-4"
    };
    let Some(model) = fx.snapshot.model(model_name) else {
        return;
    };
    let Ok(estimate) = reserve::estimate(model, &req, endpoint) else {
        return;
    };
    // The bound the reservation may use is never below the tokenizer's count.
    let exact = reserve::estimate_counted(model, &req, endpoint, crate::tokenize::Counting::Exact);
    if let Ok(exact) = exact {
        assert!(
            estimate.prompt_tokens >= exact.prompt_tokens && estimate.amount >= exact.amount,
            "bound {estimate:?} below the tokenizer's {exact:?}"
        );
    }
    let prices = reserve::max_prices(model, estimate.prompt_tokens);
    let granted = crate::money::Micros(estimate.amount.0 / 2);
    let tokens = reserve::affordable_output(granted, &estimate, &prices);
    let _ = req.model();
    let _ = req.include_usage();
    req.output_ceiling = Some(if selector & 0x40 != 0 {
        tokens
    } else {
        estimate.max_output_tokens
    });
    let _ = req.output_cap();
    if endpoint == Endpoint::Chat {
        let _ = anthropic::request_body(&req, "claude-sonnet-4", req.stream());
    }
}

/// Splits `data` into the pieces a TCP stream might deliver: the first byte sets the
/// piece size, so the fuzzer explores SSE lines and UTF-8 sequences cut mid-way.
fn upstream_response(data: &[u8]) -> reqwest::Response {
    let (size, body) = match data.split_first() {
        Some((&size, body)) => (usize::from(size % 64) + 1, body),
        None => (1, data),
    };
    let pieces: Vec<Result<bytes::Bytes, std::io::Error>> = body
        .chunks(size)
        .map(|piece| Ok(bytes::Bytes::copy_from_slice(piece)))
        .collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(pieces));
    reqwest::Response::from(http::Response::new(body))
}

fn upstream_events(data: &[u8]) -> Vec<Result<SseEvent, crate::providers::ProviderError>> {
    let fx = fixture();
    let response = upstream_response(data);
    fx.runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        sse::events(response, deadline).collect().await
    })
}

/// `stream_openai`: an upstream body as OpenAI-style SSE → events → chunks, until
/// `[DONE]` or the first error, as the OpenAI and Azure adapters read it.
pub fn stream_openai(data: &[u8]) {
    for event in upstream_events(data) {
        let Ok(event) = event else { return };
        match openai::chunk(&event) {
            Ok(Some(chunk)) => {
                let _ = chunk.usage.map(|u| u.prompt_total());
            }
            Ok(None) | Err(_) => return,
        }
    }
}

/// `stream_anthropic`: an upstream body as Anthropic SSE → events → the stateful
/// translation into OpenAI chunks, until `message_stop` or the first error.
pub fn stream_anthropic(data: &[u8]) {
    let mut translator = anthropic::StreamTranslator::new();
    for event in upstream_events(data) {
        let Ok(event) = event else { return };
        if translator.on_event(&event).is_err() || translator.ended {
            return;
        }
    }
}

/// `response_json`: a complete upstream JSON answer (or error body) as each adapter
/// reads it: OpenAI usage, the provider's error message, Anthropic's message → OpenAI.
pub fn response_json(data: &[u8]) {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let _ = body.get("usage").and_then(openai_usage);
    let _ = error_message(&body);
    if let Ok(reply) = anthropic::response_body(&body) {
        let _ = reply.usage.map(|u| u.prompt_total());
    }
}

/// `key`: a presented credential (first byte: `Authorization` or `api-key` header)
/// → key parsing → lookup, HMAC check and expiry against the fixture snapshot.
pub fn key(data: &[u8]) {
    let Some((&selector, value)) = data.split_first() else {
        return;
    };
    if let Ok(text) = std::str::from_utf8(value)
        && let Some(presented) = tollgate_keys::parse(text)
    {
        let _ = tollgate_keys::verify(PEPPER, presented.secret, &[0; 32]);
    }
    let Ok(value) = HeaderValue::from_bytes(value) else {
        return;
    };
    let mut headers = HeaderMap::new();
    if selector & 1 == 0 {
        headers.insert(http::header::AUTHORIZATION, value);
    } else {
        headers.insert("api-key", value);
    }
    let now_ms = i64::from(selector) * 1_000_000_000;
    let _ = authenticate::authenticate(&fixture().snapshot, &headers, PEPPER, now_ms);
}

/// `snapshot`: a `Snapshot` payload → prost decode → validation into the domain type.
pub fn snapshot(data: &[u8]) {
    let Ok(wire) = proto::Snapshot::decode(data) else {
        return;
    };
    let fx = fixture();
    let _ = Snapshot::from_proto(wire, &fx.prices, &fx.credentials);
}

/// An envelope around `payload` signed with the fuzz key, as the control plane sends it.
pub fn sign_for_fuzzing(payload: Vec<u8>) -> proto::SignedSnapshot {
    let version = proto::Snapshot::decode(payload.as_slice()).map_or(0, |s| s.version);
    proto::SignedSnapshot {
        version,
        nonce: 1,
        signature: fixture().signer.sign(&payload),
        payload,
        key_id: FUZZ_KEY_ID.into(),
    }
}

/// `signed_snapshot`, by the first byte: (0) a `SignedSnapshot` envelope → signature,
/// decode, version, region, validation; (1) a payload the harness signs first, so the
/// checks after the signature see arbitrary bytes too; (2) an envelope read back as the
/// last-known-good file.
pub fn signed_snapshot(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let fx = fixture();
    let acceptance = Acceptance {
        trusted: &fx.trusted,
        prices: &fx.prices,
        credentials: &fx.credentials,
        region: FUZZ_REGION,
        applied: u64::from(selector >> 2),
    };
    match selector & 3 {
        0 => {
            if let Ok(envelope) = proto::SignedSnapshot::decode(rest) {
                let _ = acceptance.accept(&envelope);
            }
        }
        1 => {
            let _ = acceptance.accept(&sign_for_fuzzing(rest.to_vec()));
        }
        _ => {
            let dir = scratch_dir("lkg");
            if std::fs::create_dir_all(&dir).is_err() {
                return;
            }
            let path = dir.join("last-known-good.pb");
            if std::fs::write(&path, rest).is_ok() {
                let _ = read_last_known_good(&path, &acceptance);
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// `spool`: bytes found in a spool segment after a crash → open (recovery, torn-tail
/// cut) → read back → append → acknowledge, as a restarted gateway does.
pub fn spool(data: &[u8]) {
    let dir = scratch_dir("spool");
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    if std::fs::write(dir.join("00000000000000000001.spool"), data).is_ok()
        && let Ok(spool) = Spool::open(&dir, 1 << 20, "fuzz")
    {
        let pending = spool.read_after(0, 100).unwrap_or_default();
        let event = UsageEvent {
            event_id: "019a0000-0000-7000-8000-000000000000".into(),
            ..Default::default()
        };
        if let Ok(seq) = spool.append(vec![event]) {
            let _ = spool.read_after(seq.saturating_sub(1), 10);
        }
        let committed = pending.iter().map(|b| b.seq).max().unwrap_or(0);
        let _ = spool.acked(committed);
        let _ = spool.bytes();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(test)]
mod tests {
    //! Every file in `fuzz/corpus/<target>/` (seeds, and inputs that once crashed) runs
    //! through its target: the CI smoke of the fuzzers, without a fuzzing toolchain.

    use super::*;

    fn replay(target: &str, run: fn(&[u8])) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target);
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            // A panic names the input, so a red run says which file to look at.
            eprintln!("{target}: {}", path.display());
            run(&data);
            count += 1;
        }
        assert!(count > 0, "no seed corpus in {}", dir.display());
    }

    #[test]
    fn corpus_request() {
        replay("request", request);
    }

    #[test]
    fn corpus_stream_openai() {
        replay("stream_openai", stream_openai);
    }

    #[test]
    fn corpus_stream_anthropic() {
        replay("stream_anthropic", stream_anthropic);
    }

    #[test]
    fn corpus_response_json() {
        replay("response_json", response_json);
    }

    #[test]
    fn corpus_key() {
        replay("key", key);
    }

    #[test]
    fn corpus_snapshot() {
        replay("snapshot", snapshot);
    }

    #[test]
    fn corpus_signed_snapshot() {
        replay("signed_snapshot", signed_snapshot);
    }

    #[test]
    fn corpus_spool() {
        replay("spool", spool);
    }

    #[test]
    fn the_fixture_key_authenticates() {
        // Keeps the `key` target honest: its fixture must accept the right key, or the
        // fuzzer would only ever explore refusals.
        let mut headers = HeaderMap::new();
        let value = format!("Bearer tg_{FUZZ_KEY_PUBLIC_ID}_{FUZZ_KEY_SECRET}");
        headers.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(&value).unwrap(),
        );
        assert!(authenticate::authenticate(&fixture().snapshot, &headers, PEPPER, 0).is_ok());
    }

    #[test]
    fn a_harness_signed_snapshot_is_accepted() {
        let payload = proto::Snapshot {
            version: 7,
            region: FUZZ_REGION.into(),
            ..Default::default()
        }
        .encode_to_vec();
        let fx = fixture();
        let acceptance = Acceptance {
            trusted: &fx.trusted,
            prices: &fx.prices,
            credentials: &fx.credentials,
            region: FUZZ_REGION,
            applied: 0,
        };
        assert_eq!(
            acceptance
                .accept(&sign_for_fuzzing(payload))
                .unwrap()
                .version,
            7
        );
    }

    #[test]
    fn the_binary_seeds_pass_every_check() {
        // They were made from this module's fixture (signed with its key); if the wire
        // format moves on, regenerate them, or the fuzzer starts from refusals only.
        let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        let read = |name: &str| std::fs::read(corpus.join(name)).unwrap();
        let fx = fixture();
        let wire = proto::Snapshot::decode(read("snapshot/fixture").as_slice()).unwrap();
        let snapshot = Snapshot::from_proto(wire, &fx.prices, &fx.credentials).unwrap();
        assert!(!snapshot.budgets.is_empty());
        let envelope = read("signed_snapshot/envelope");
        let envelope = proto::SignedSnapshot::decode(&envelope[1..]).unwrap();
        let acceptance = Acceptance {
            trusted: &fx.trusted,
            prices: &fx.prices,
            credentials: &fx.credentials,
            region: FUZZ_REGION,
            applied: 0,
        };
        assert_eq!(acceptance.accept(&envelope).unwrap().version, 5);
        let dir = scratch_dir("seed-check");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("00000000000000000001.spool"),
            read("spool/two_batches"),
        )
        .unwrap();
        let spool = Spool::open(&dir, 1 << 20, "fuzz").unwrap();
        assert_eq!(spool.read_after(0, 10).unwrap().len(), 2);
        drop(spool);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
