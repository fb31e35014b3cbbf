//! Arbitrary bytes through the XNNPACK payload read path: container, verified decode,
//! cross-reference checks, summary, JSON, re-encoding. Any panic, hang or out-of-bounds
//! read is a bug; whatever the writer produces from a decoded payload must decode again
//! and re-encode to the same bytes (the writer's output is a fixed point).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ptekit_flatbuffers::Limits;
use ptekit_format::xnnpack::{self, ConstantSources};

fuzz_target!(|data: &[u8]| {
    let Ok(p) = xnnpack::decode_payload(data, &Limits::default()) else {
        return;
    };
    let _ = xnnpack::validate(
        &p.graph,
        &ConstantSources {
            constant_data: p.constant_data,
            named: Some(&|k: &str| (k.len() % 2 == 0).then_some(64)),
        },
    );
    let _ = xnnpack::render_summary(&xnnpack::summary(&p, None), "");
    let _ = xnnpack::payload_json(&p).to_string();
    if let Ok(out) = xnnpack::reencode_payload(&p) {
        let again = xnnpack::decode_payload(&out, &Limits::default()).expect("re-decode");
        let out2 = xnnpack::reencode_payload(&again).expect("re-encode");
        assert_eq!(out, out2);
    }
});
