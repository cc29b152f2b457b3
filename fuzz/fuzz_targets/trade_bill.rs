//! The trade bill reader (`tools::finance::bill`): any file is refused or read, never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wxledger::tools::finance::bill;

fuzz_target!(|data: &[u8]| {
    let _ = bill::parse(data);
});
