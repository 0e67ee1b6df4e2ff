#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mimi_ds::fuzzing::decode_directory(data);
    mimi_ds::fuzzing::directory_bytes(data);
});
