//! E-mail over SMTP: the sink (a test SMTP server for the demo, tests and benches).

pub mod connector;
pub mod sink;
