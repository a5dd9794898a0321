//! Arbitrary bytes (read as UTF-8, lossily) into `parse_feature`. It must never
//! panic, and whatever it accepts must survive a write/re-parse round trip.
#![no_main]

use eol_core::{OperationPhase, parse_feature, write_feature};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let src = String::from_utf8_lossy(data);
    let Ok(feature) = parse_feature("fuzz.eol", &src) else {
        return;
    };
    let written = write_feature(&feature);
    let again = match parse_feature("fuzz.eol", &written) {
        Ok(f) => f,
        Err(e) => panic!("written feature does not parse:\n{e}\n--- written ---\n{written}"),
    };
    assert_eq!(again, feature, "model changed by write + parse");
    assert_eq!(again.body(), feature.body(), "body changed by write");
    assert_eq!(write_feature(&again), written, "write is not idempotent");

    // The in-place edits must not panic either, and the simple ones must keep the
    // file valid: an operation can always be switched to prototyping or given code.
    for phase in eol_core::Phase::ALL {
        let _ = eol_core::with_feature_phase(&feature, phase);
    }
    for op in &feature.operations {
        let text = eol_core::with_operation_phase(&feature, op, OperationPhase::Prototyping);
        match parse_feature("fuzz.eol", &text) {
            Ok(f) => assert_eq!(
                f.operation(&op.name).map(|o| o.phase),
                Some(OperationPhase::Prototyping)
            ),
            Err(e) => panic!(
                "switching '{}' to prototyping broke the file:\n{e}\n---\n{text}",
                op.name
            ),
        }
        let code = format!("def {}():\n    return {{}}\n", op.name);
        let text = eol_core::with_operation_code(&feature, op, &code);
        match parse_feature("fuzz.eol", &text) {
            Ok(f) => assert_eq!(
                f.operation(&op.name)
                    .and_then(|o| o.code.as_ref())
                    .map(|c| c.source.as_str()),
                Some(code.as_str())
            ),
            Err(e) => panic!(
                "giving '{}' code broke the file:\n{e}\n---\n{text}",
                op.name
            ),
        }
    }
});
