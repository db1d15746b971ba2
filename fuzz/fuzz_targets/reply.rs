//! Fuzz target: the upstream reply scanner, whole vs chunked, progress on every call.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    turnstile_fuzz::check_reply(data);
});
