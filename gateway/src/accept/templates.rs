//! The stored templates a submission names (`template_id`), fetched before its
//! items are validated: one store read per distinct template, and a version
//! once compiled is kept (versions never change).

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;

use super::batch;
use super::invalid::Refused;
use crate::app::App;
use crate::templates::{StoredDoc, Template};

/// The templates of one submission: `None` for one that does not exist.
#[derive(Default)]
pub struct Resolved(HashMap<(String, Option<u32>), Option<Arc<Template>>>);

impl Resolved {
    pub fn get(&self, id: &str, version: Option<u32>) -> Option<&Arc<Template>> {
        self.0
            .get(&(id.to_string(), version))
            .and_then(Option::as_ref)
    }
}

#[derive(Deserialize)]
struct Named {
    #[serde(default)]
    template_id: Option<String>,
    #[serde(default)]
    template_version: Option<u32>,
}

/// Fetch the templates `json` (one message, or a batch of at most `max`) names.
pub async fn resolve(
    app: &App,
    tenant: &str,
    json: &str,
    batch_max: Option<usize>,
) -> Result<Resolved, Refused> {
    let mut out = Resolved::default();
    if !json.contains("\"template_id\"") {
        return Ok(out);
    }
    let mut wanted: Vec<(String, Option<u32>)> = Vec::new();
    let mut note = |item: &str| {
        if let Ok(Named {
            template_id: Some(id),
            template_version,
        }) = serde_json::from_str::<Named>(item)
        {
            let k = (id, template_version);
            if !wanted.contains(&k) {
                wanted.push(k);
            }
        }
    };
    match batch_max {
        None => note(json),
        // A malformed envelope is refused by the real pass.
        Some(max) => {
            let _ = batch::parse(json, max, note);
        }
    }
    for (id, version) in wanted {
        let t = fetch(app, tenant, &id, version).await?;
        out.0.insert((id, version), t);
    }
    Ok(out)
}

/// One template version, compiled (from the cache when it was before).
pub async fn fetch(
    app: &App,
    tenant: &str,
    id: &str,
    version: Option<u32>,
) -> Result<Option<Arc<Template>>, Refused> {
    if let Some(v) = version {
        if let Some(t) = app.templates.get(&(tenant.into(), id.into(), v)) {
            return Ok(Some(t));
        }
    }
    let stored = app
        .store
        .templates()
        .template(tenant, id, version)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "Could not read a template; answering 503.");
            Refused::StoreUnavailable
        })?;
    let Some(stored) = stored else {
        return Ok(None);
    };
    if let Some(t) = app
        .templates
        .get(&(tenant.into(), id.into(), stored.version))
    {
        return Ok(Some(t));
    }
    let doc: StoredDoc = serde_json::from_str(&stored.doc)
        .map_err(|e| Refused::Internal(format!("stored template {id}: {e}")))?;
    let t = Template::compile(id, stored.version, doc.template)
        .map_err(|e| Refused::Internal(format!("stored template {id}: {}", e.detail)))?;
    let t = Arc::new(t);
    app.templates
        .put((tenant.into(), id.into(), stored.version), t.clone());
    Ok(Some(t))
}
