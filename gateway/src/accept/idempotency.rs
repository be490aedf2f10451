//! `Idempotency-Key`: the first request under a key reserves it; its answer is
//! stored with its messages in one transaction, and a retry with the same body
//! gets that answer back byte for byte. A refused request frees its key, so a
//! corrected retry is not told "in progress".

use goniec_core::Problem;
use sha2::{Digest, Sha256};

use super::invalid::{Invalid, Refused};
use crate::app::App;
use crate::store::IdemBegin;
use crate::tenants::TenantCtx;

/// Where a submission stands with its idempotency key.
pub enum Idem {
    /// No key.
    None,
    /// A new key, reserved for this request.
    Fresh { key: String, fingerprint: String },
    /// The key's request was answered already: answer this again.
    Replay { status: u16, body: String },
}

/// Check `key` (the header's value, if any) and reserve it for `body`.
pub async fn begin(
    app: &App,
    tenant: &TenantCtx,
    key: Option<&[u8]>,
    body: &[u8],
) -> Result<Idem, Refused> {
    let Some(raw) = key else {
        return Ok(Idem::None);
    };
    let key = std::str::from_utf8(raw)
        .ok()
        .filter(|k| {
            !k.is_empty()
                && k.len() <= 255
                && k.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
        })
        .ok_or_else(|| {
            Invalid::new(
                Problem::InvalidIdempotencyKey,
                "`Idempotency-Key` must be 1 to 255 visible ASCII characters",
            )
        })?
        .to_string();
    let fingerprint = hex::encode(Sha256::digest(body));
    match app
        .store
        .idem_begin(&tenant.cfg.name, &key, &fingerprint)
        .await
    {
        Ok(IdemBegin::New) => Ok(Idem::Fresh { key, fingerprint }),
        Ok(IdemBegin::Done {
            fingerprint: fp,
            status,
            body,
        }) if fp == fingerprint => Ok(Idem::Replay { status, body }),
        Ok(IdemBegin::InProgress { fingerprint: fp }) if fp == fingerprint => {
            Err(Refused::InProgress)
        }
        Ok(_) => Err(Refused::KeyReused),
        Err(_) => Err(Refused::StoreUnavailable),
    }
}

/// Free the reservation of a request that was refused.
pub async fn release(app: &App, tenant: &TenantCtx, idem: &Idem) {
    if let Idem::Fresh { key, .. } = idem {
        let _ = app.store.idem_abort(&tenant.cfg.name, key).await;
    }
}
