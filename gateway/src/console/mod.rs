//! The operator console's state: its logins ([`sessions`]), this instance's
//! metrics over the last minutes ([`snapshots`], filled once a second by
//! [`live`], which also builds the overview), and submit times for
//! submitted → receipt ([`submit_times`]). Its page, login and stream are
//! served by [`crate::http::console`]; its actions are the admin API's own
//! endpoints (`/v1/admin/*`), called with the session cookie and the
//! session's CSRF token, each audited ([`crate::operator`]).

pub mod live;
pub mod sessions;
pub mod snapshots;
pub mod submit_times;

use std::time::Duration;

use sessions::Sessions;

/// The console's state in [`crate::app::App`].
pub struct Console {
    pub sessions: Sessions,
    pub live: snapshots::Live,
    pub submit_times: submit_times::SubmitTimes,
}

impl Console {
    pub fn new(session_ttl: Duration) -> Self {
        Console {
            sessions: Sessions::new(session_ttl),
            live: Default::default(),
            submit_times: Default::default(),
        }
    }
}
