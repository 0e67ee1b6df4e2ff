#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| mimi_ds::fuzzing::decode_pseudonymous(data));
