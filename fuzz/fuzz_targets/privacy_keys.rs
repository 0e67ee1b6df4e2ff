#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| mimi_ds::fuzzing::privacy_keys(data));
