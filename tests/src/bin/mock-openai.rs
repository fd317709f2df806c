//! `mock-openai`: the mock upstream as its own process, for benchmarks, the local `up`
//! script and manual poking with curl.

use std::net::SocketAddr;
use std::sync::OnceLock;

use anyhow::Context;
use clap::Parser;
use tollgate_tests::mock::{self, DIRECTIVES, MockOptions, Shared};

/// Mock OpenAI- and Anthropic-compatible LLM server for tests and benchmarks.
///
/// Endpoints: POST /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/messages
/// (Anthropic), GET /v1/models, Azure's /openai/deployments/{name}/... (needs
/// ?api-version=), and for inspection GET|DELETE /_mock/requests, GET|DELETE /_mock/stats.
///
/// Usage is deterministic: prompt tokens = whitespace-separated words in the request's
/// text fields (content, text, system, prompt, input) + cache_read; completion tokens =
/// chunks (default 8), capped by max_tokens / max_completion_tokens.
#[derive(Debug, Parser)]
#[command(name = "mock-openai", version, after_help = directives_help())]
struct Args {
    /// Address to listen on; port 0 picks a free port (the chosen address is printed).
    #[arg(long, env = "MOCK_OPENAI_LISTEN", default_value = "127.0.0.1:8901")]
    listen: SocketAddr,

    /// Tokio worker threads; 1 keeps the mock on one core for benchmarks.
    #[arg(long, env = "MOCK_OPENAI_THREADS", default_value_t = 1)]
    threads: usize,

    /// How many recent requests to keep for GET /_mock/requests; 0 records nothing.
    #[arg(long, env = "MOCK_OPENAI_RECORD_CAPACITY", default_value_t = 10_000)]
    record_capacity: usize,

    /// Require this credential (Authorization: Bearer, api-key or x-api-key); others get 401.
    #[arg(long, env = "MOCK_OPENAI_REQUIRE_KEY")]
    require_key: Option<String>,
}

fn directives_help() -> &'static str {
    static HELP: OnceLock<String> = OnceLock::new();
    HELP.get_or_init(|| {
        let mut help = String::from(
            "Per-request behaviour: append directives to the model name, separated by '+'\n\
             (\"model\": \"gpt-4o+ttfb=200+chunks=3\"), or send them as headers\n\
             (x-mock-ttfb: 200, x-mock-retry-after: 2). Headers win. Directives:\n",
        );
        for (directive, what) in DIRECTIVES {
            help.push_str(&format!("  {directive:<18} {what}\n"));
        }
        help.push_str(
            "Events for cut/error_after/stall count SSE events, starting with the first.\n\
             Unknown directives are refused with 400, so typos do not go unnoticed.",
        );
        help
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let shared = Shared::new(MockOptions {
        record_capacity: args.record_capacity,
        require_key: args.require_key,
        ..MockOptions::default()
    });
    // One line on stdout, for scripts that started us on port 0.
    announce(addr);
    axum::serve(listener, mock::router(shared))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

#[expect(
    clippy::print_stdout,
    reason = "the listening address is this binary's output"
)]
fn announce(addr: SocketAddr) {
    println!("mock-openai listening on http://{addr}");
}
