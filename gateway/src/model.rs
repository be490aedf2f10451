//! The message model lives in the store crate ([`goniec_store::model`]); this adds
//! what only the gateway needs from it.

pub use goniec_store::model::*;

use goniec_config::Channel;

/// The message as a connector needs it to ask about or withdraw what was sent
/// (revoke, query_sm): who and from whom, no content.
pub fn reference(rec: &Record, channel: Channel) -> goniec_connectors::Outbound {
    goniec_connectors::Outbound {
        message_id: rec.data.id.clone(),
        channel,
        to: rec.data.to.clone(),
        from: rec.data.from.clone(),
        text: None,
        email: None,
        rcs: None,
        attempt: 0,
        valid_until: None,
    }
}
