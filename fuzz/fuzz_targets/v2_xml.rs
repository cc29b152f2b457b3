//! The v2 XML reader (`wechat::pay::v2::xml`): any bytes are refused or read, never a
//! panic; what is read writes back to a document that reads the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wxledger::wechat::pay::v2::xml;

const LIMIT: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let Ok(fields) = xml::parse(data, LIMIT) else {
        return;
    };
    let written = fields.to_xml();
    let again = xml::parse(written.as_bytes(), usize::MAX).expect("our own XML reads back");
    assert_eq!(again, fields, "written: {written}");
});
