#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tollgate_control_plane::fuzzing::telemetry_batch(data));
