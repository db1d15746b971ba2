//! Fuzz target: client request framing (multibulk and inline), whole vs chunked vs streamed.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    turnstile_fuzz::check_request(data);
});
