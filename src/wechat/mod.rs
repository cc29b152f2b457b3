//! Talking to WeChat (or the simulator, whose base URL is configuration).

pub(crate) mod call;
pub mod mini;
pub mod pay;

pub use mini::{MiniProgram, PhoneInfo, WechatError};
pub use pay::{PayClient, PayError};
