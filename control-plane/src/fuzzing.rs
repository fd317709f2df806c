//! Entry point for the `telemetry_batch` fuzz target in `fuzz/` (cargo-fuzz): the bytes
//! of a `UsageBatch` as a gateway sends them → prost decode → the whole-batch check that
//! runs before anything is stored ([`crate::telemetry::ingest::Batch`]). Arbitrary bytes
//! must give `Err`, never a panic. The test below replays `fuzz/corpus/telemetry_batch/`
//! as a unit test, the CI smoke of the fuzzer (`docs/fuzzing.md`). Not part of the API.

use prost::Message as _;
use tollgate_proto::telemetry::UsageBatch;

use crate::telemetry::ingest::Batch;

pub fn telemetry_batch(data: &[u8]) {
    if let Ok(batch) = UsageBatch::decode(data) {
        let _ = Batch::try_from(batch);
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    #[test]
    fn corpus_telemetry_batch() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/telemetry_batch");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            eprintln!("telemetry_batch: {}", path.display());
            super::telemetry_batch(&std::fs::read(&path).unwrap());
            count += 1;
        }
        assert!(count > 0, "no seed corpus in {}", dir.display());
    }
}
