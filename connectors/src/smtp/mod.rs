//! E-mail over SMTP: the connector, its per-domain throttle, and the sink (a test
//! SMTP server for the demo, tests and benches).

pub mod connector;
pub mod sink;
pub mod throttle;
