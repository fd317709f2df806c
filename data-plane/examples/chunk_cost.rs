//! Translates N copies of one stream format's sample chunk
//! (`providers::stream_samples`), for instruction counts that a noisy machine cannot
//! blur: run it under `valgrind --tool=callgrind` at two values of N and divide the
//! difference in instructions by the difference in N (setup cancels out). See
//! BENCHMARKS.md for the command.
//!
//! Usage: `chunk_cost <openai|anthropic|gemini|bedrock|bedrock-frame> <N>`

use std::hint::black_box;
use std::process::ExitCode;

use tollgate_data_plane::providers::stream_samples as samples;
use tollgate_data_plane::providers::{anthropic, bedrock, gemini, openai};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(format), Some(n)) = (
        args.first(),
        args.get(1).and_then(|n| n.parse::<u64>().ok()),
    ) else {
        eprintln!("usage: chunk_cost <openai|anthropic|gemini|bedrock|bedrock-frame> <N>");
        return ExitCode::from(2);
    };
    let mut chunks = 0usize;
    match format.as_str() {
        "openai" => {
            let event = samples::openai_event();
            for _ in 0..n {
                chunks += usize::from(matches!(openai::chunk(black_box(&event)), Ok(Some(_))));
            }
        }
        "anthropic" => {
            let mut t = anthropic::StreamTranslator::new();
            let _ = t.on_event(&samples::anthropic_start());
            let event = samples::anthropic_event();
            for _ in 0..n {
                chunks += t.on_event(black_box(&event)).map_or(0, |c| c.len());
            }
        }
        "gemini" => {
            let mut t = gemini::StreamTranslator::new("gemini-2.5-flash".into());
            let event = samples::gemini_event();
            for _ in 0..n {
                chunks += t.on_event(black_box(&event)).map_or(0, |c| c.len());
            }
        }
        "bedrock" => {
            let mut t = bedrock::StreamTranslator::new("claude".into());
            let message = samples::bedrock_message();
            for _ in 0..n {
                chunks += t.on_message(black_box(&message)).map_or(0, |c| c.len());
            }
        }
        "bedrock-frame" => {
            let mut t = bedrock::StreamTranslator::new("claude".into());
            let frame = samples::bedrock_frame();
            for _ in 0..n {
                let message = samples::decode_frame(black_box(&frame));
                chunks += t.on_message(&message).map_or(0, |c| c.len());
            }
        }
        other => {
            eprintln!("unknown format {other:?}");
            return ExitCode::from(2);
        }
    }
    // Every call must have produced chunks, or the count measured a failure path.
    if chunks == 0 && n > 0 {
        eprintln!("{format}: no chunks produced");
        return ExitCode::FAILURE;
    }
    eprintln!("{format}: {n} events, {chunks} chunks");
    ExitCode::SUCCESS
}
