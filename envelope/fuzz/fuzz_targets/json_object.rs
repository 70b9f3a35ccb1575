//! `encoding::check_json_object` on arbitrary bytes: never panics, and
//! whatever it accepts is one JSON object that serde_json also parses.

#![no_main]

use libfuzzer_sys::fuzz_target;
use stella_envelope::encoding::check_json_object;

fuzz_target!(|data: &[u8]| {
    if check_json_object(data).is_ok() {
        let value: serde_json::Value =
            serde_json::from_slice(data).expect("accepted json must parse");
        assert!(value.is_object(), "accepted json must be an object");
    }
});
