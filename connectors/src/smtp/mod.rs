//! E-mail over SMTP: the connector and its per-domain throttle. The SMTP sink
//! the demo, tests and benches send to is in `goniec-sims`.

pub mod config;
pub mod connector;
pub mod throttle;
