//! The behaviour every [`Store`] backend must show. Run it with a fresh store
//! (its own Redis prefix); each check uses its own tenant and ids.

use std::time::Duration;

use goniec_config::Channel;

use goniec_store::model::{new_message_id, now_ms, EmailData, Event, MessageData, Status};
use goniec_store::{
    Change, Correlation, Handover, HistoryKey, IdemBegin, IdemWrite, Job, Lane, Lease, NewMessage,
    Outcome, Store, StoreError, Task, Transition,
};

fn message(
    tenant: &str,
    to: &str,
    client_ref: Option<&str>,
    notify: bool,
    due: Option<i64>,
) -> NewMessage {
    let id = suite_partitions().message_id(tenant, to);
    let now = now_ms();
    let data = MessageData {
        id: id.clone(),
        tenant: tenant.into(),
        channel: Channel::Sms,
        to: to.into(),
        from: None,
        text: Some("Dzień dobry".into()),
        email: None::<EmailData>,
        rcs: None,
        send_at: due,
        valid_until: None,
        callback_url: notify.then(|| "https://example.com/cb".into()),
        client_ref: client_ref.map(str::to_string),
        fallback: vec![],
        fallback_text: None,
        segments: 1,
        encoding: Some("ucs2".into()),
        transliterated: false,
        created_at: now,
        template: None,
        campaign: None,
    };
    let status = if due.is_some() {
        Status::Scheduled
    } else {
        Status::Queued
    };
    NewMessage {
        id,
        tenant: tenant.into(),
        channel: Channel::Sms,
        to: to.into(),
        client_ref: client_ref.map(str::to_string),
        status,
        due_ms: due,
        data_json: serde_json::to_string(&data).unwrap(),
        events: vec![
            Event {
                status: Status::Accepted,
                at: now,
                reason: None,
                detail: None,
            },
            Event {
                status,
                at: now,
                reason: None,
                detail: None,
            },
        ],
        callbacks: if notify {
            goniec_store::Callbacks::All
        } else {
            goniec_store::Callbacks::None
        },
        callback_url: data.callback_url.clone(),
        campaign: None,
    }
}

// The suite predates `Store::finish`; these spell its outcomes the old way.
async fn complete(
    store: &dyn Store,
    l: &Lease,
    change: Option<&Change>,
    corr: Option<(&str, &[String])>,
) -> Result<Transition, StoreError> {
    let outcome = Outcome::Complete {
        change: change.cloned(),
        correlation: corr.map(correlation),
    };
    store.finish(l.clone(), outcome).await
}

async fn complete_handover(
    store: &dyn Store,
    l: &Lease,
    change: Option<&Change>,
    corr: Option<(&str, &[String])>,
    next: &Handover,
) -> Result<Transition, StoreError> {
    let outcome = Outcome::Handover {
        change: change.cloned(),
        correlation: corr.map(correlation),
        next: Box::new(next.clone()),
    };
    store.finish(l.clone(), outcome).await
}

async fn retry(store: &dyn Store, l: &Lease, at_ms: i64, attempt: u32) -> Result<(), StoreError> {
    store
        .finish(l.clone(), Outcome::Retry { at_ms, attempt })
        .await
        .map(drop)
}

async fn bury(
    store: &dyn Store,
    l: &Lease,
    reason: &str,
    change: Option<&Change>,
) -> Result<Transition, StoreError> {
    let outcome = Outcome::Bury {
        reason: reason.to_string(),
        change: change.cloned(),
    };
    store.finish(l.clone(), outcome).await
}

fn correlation((connector, ids): (&str, &[String])) -> Correlation {
    Correlation {
        connector: connector.to_string(),
        provider_ids: ids.to_vec(),
    }
}

/// The suite runs against stores with the default partition count.
fn suite_partitions() -> goniec_store::Partitions {
    goniec_store::Partitions::new(goniec_config::Store::default().partitions)
}

/// `n` queued SMS messages for `tenant`, for tests outside this suite.
pub fn sample_messages(tenant: &str, n: usize) -> Vec<NewMessage> {
    (0..n)
        .map(|i| message(tenant, &format!("+48500{i:06}"), None, false, None))
        .collect()
}

async fn drain(store: &dyn Store, lane: Lane) -> Vec<goniec_store::Lease> {
    let mut all = Vec::new();
    loop {
        let got = store
            .claim(lane, "conformance", 100, Duration::from_millis(50))
            .await
            .unwrap();
        if got.is_empty() {
            return all;
        }
        all.extend(got);
    }
}

/// Run every check. Panics on the first failure.
pub async fn run(store: &dyn Store) {
    assert_eq!(
        store.partitions(),
        suite_partitions(),
        "the suite expects the default partition count"
    );
    // Start from empty lanes: earlier checks of the same store must not leak in.
    for lane in Lane::ALL {
        for l in drain(store, lane).await {
            complete(store, &l, None, None).await.unwrap();
        }
    }
    accept_get_and_transitions(store).await;
    claim_complete_correlate(store).await;
    retry_and_promote(store).await;
    bury_dead_letters(store).await;
    skipped_tenants_are_not_claimed(store).await;
    reclaim_abandoned(store).await;
    scheduled_messages(store).await;
    history_newest_first_with_cursor(store).await;
    idempotency(store).await;
    in_flight_messages_cannot_be_cancelled(store).await;
    heartbeat_keeps_leases(store).await;
    stale_lease_cannot_retry_or_bury(store).await;
    multipart_is_delivered_when_every_part_is(store).await;
    held_messages_are_released_or_dropped(store).await;
    antifraud_counters_and_opt_outs(store).await;
    suppression_lists(store).await;
    handover_to_another_lane(store).await;
    first_seen_recognises_replays(store).await;
    correlate_many_spellings_in_order(store).await;
    one_tenants_backlog_does_not_hold_up_another(store).await;
    submitted_with_its_receipt_check_then_no_receipt(store).await;
    a_final_receipt_removes_the_pending_check(store).await;
    templates_keep_every_version(store).await;
    links_and_clicks(store).await;
    campaign_batches_are_handed_out_until_committed(store).await;
    finish_many_mixes_acks_changes_and_burials(store).await;
    // Last: it leaves scheduled entries behind.
    operator_pauses_audit_and_due_soon(store).await;
}

/// One `finish_many` mixing a plain acknowledgement, a refused and an applied
/// change over three tenants' streams answers in the items' order and leaves
/// nothing pending; a buried callback keeps no copy of its message's context
/// (dead letters outlive the message's retention).
async fn finish_many_mixes_acks_changes_and_burials(store: &dyn Store) {
    let sms = Lane::Channel(Channel::Sms);
    let msgs: Vec<NewMessage> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            message(
                &format!("t-mix-{t}"),
                &format!("+4850000095{i}"),
                None,
                true,
                None,
            )
        })
        .collect();
    store.accept(&msgs, None).await.unwrap();
    let leases = drain(store, sms).await;
    let lease = |m: &NewMessage| leases.iter().find(|l| l.job.id == m.id).unwrap().clone();
    let early = Change::new(Status::Delivered, now_ms(), None, None);
    let submitted = Change::new(Status::Submitted, now_ms(), None, None);
    let out = store
        .finish_many(vec![
            (lease(&msgs[0]), Outcome::done()),
            (lease(&msgs[1]), Outcome::change(early)),
            (lease(&msgs[2]), Outcome::change(submitted)),
        ])
        .await
        .unwrap();
    assert_eq!(
        out,
        [
            Transition::Applied {
                from: Status::Queued
            },
            Transition::Refused {
                current: Status::Queued
            },
            Transition::Applied {
                from: Status::Queued
            },
        ]
    );
    let ids: Vec<&str> = msgs.iter().map(|m| m.id.as_str()).collect();
    let left = store
        .reclaim(sms, "rescuer", Duration::ZERO, 1000)
        .await
        .unwrap();
    assert!(
        left.iter().all(|l| !ids.contains(&l.job.id.as_str())),
        "acknowledged entries stay pending"
    );
    // The applied change's callback carries the context; buried, it does not.
    let hooks = drain(store, Lane::Webhook).await;
    let mine: Vec<_> = hooks
        .iter()
        .filter(|l| matches!(&l.job.task, Task::Callback(p) if p.message_id == msgs[2].id))
        .cloned()
        .collect();
    assert_eq!(mine.len(), 1);
    assert!(matches!(&mine[0].job.task, Task::Callback(p) if p.context.is_some()));
    let bury = Outcome::Bury {
        reason: "conformance".into(),
        change: None,
    };
    let others: Vec<_> = hooks
        .iter()
        .filter(|l| l.job.id != mine[0].job.id)
        .map(|l| (l.clone(), Outcome::done()))
        .collect();
    let mut items = vec![(mine[0].clone(), bury)];
    items.extend(others);
    store.finish_many(items).await.unwrap();
    let dead = store.dead_letters(Lane::Webhook, 10_000).await.unwrap();
    let letter = dead
        .iter()
        .find(|d| d.job.id == mine[0].job.id)
        .expect("buried");
    assert!(
        matches!(&letter.job.task, Task::Callback(p) if p.message_id == msgs[2].id && p.context.is_none()),
        "{:?}",
        letter.job
    );
    assert!(drain(store, Lane::Webhook).await.is_empty());
}

/// A campaign's due recipients come in numbered batches; an open batch is
/// handed out again, whole, until it is committed; a commit of a stale batch
/// writes nothing; adding the same rows twice adds nothing; events count once;
/// a campaign message's status changes count in its report.
async fn campaign_batches_are_handed_out_until_committed(store: &dyn Store) {
    use goniec_store::campaigns::{CampaignMeta, NewRecipient, Reject, StepDone};
    let c = store.campaigns();
    let id = new_message_id();
    let meta = CampaignMeta {
        tenant: "t-camp".into(),
        id: id.clone(),
        state: "draft".into(),
        doc: "{}".into(),
        created_at: 1,
        rows: 0,
        rejected: 0,
    };
    assert!(c.create_campaign(&meta).await.unwrap());
    assert!(!c.create_campaign(&meta).await.unwrap());
    assert_eq!(c.campaign("t-other", &id).await.unwrap(), None);
    assert_eq!(c.campaign_ids("t-camp").await.unwrap(), vec![id.clone()]);
    let now = now_ms();
    let rows: Vec<NewRecipient> = (1..=30)
        .map(|row| NewRecipient {
            row,
            client_ref: Some(format!("ref-{row}")),
            data: format!("{{\"row\":{row}}}"),
            due_ms: if row == 30 { now + 3_600_000 } else { now - 10 },
        })
        .collect();
    let rej = [Reject {
        line: 7,
        reason: "invalid_number".into(),
        detail: "x".into(),
    }];
    c.add_recipients(&id, &rows, &rej, 30).await.unwrap();
    c.add_recipients(&id, &rows, &[], 30).await.unwrap();
    let m = c.campaign("t-camp", &id).await.unwrap().unwrap();
    assert_eq!((m.rows, m.rejected), (30, 1));
    assert_eq!(c.rejects(&id, 0, 10).await.unwrap(), rej);
    assert_eq!(c.pending(&id).await.unwrap(), 30);

    // Running: state changes only from the states given.
    assert_eq!(
        c.set_campaign_state("t-camp", &id, &["paused"], "running")
            .await
            .unwrap()
            .as_deref(),
        Some("draft")
    );
    assert!(c.active_campaigns().await.unwrap().is_empty());
    c.set_campaign_state("t-camp", &id, &["draft"], "running")
        .await
        .unwrap();
    assert_eq!(
        c.active_campaigns().await.unwrap(),
        vec![("t-camp".to_string(), id.clone())]
    );

    // Take every partition's batch; hand each out again before committing.
    let mut seen = Vec::new();
    for p in suite_partitions().all() {
        let Some(b) = c.begin_batch(&id, p, now, 100).await.unwrap() else {
            continue;
        };
        let again = c.begin_batch(&id, p, now, 100).await.unwrap().unwrap();
        assert_eq!(again, b, "an open batch is handed out again");
        assert!(b
            .items
            .iter()
            .all(|i| i.step == 0 && i.state.messages.is_empty()));
        let done: Vec<StepDone> = b
            .items
            .iter()
            .map(|i| {
                let mut state = i.state.clone();
                state.messages.push(Some(format!("m-{}", i.row)));
                state.first_at = Some(now - 60_000);
                StepDone {
                    row: i.row,
                    step: 0,
                    state,
                    next: (i.row % 2 == 0).then_some((1, now - 5)),
                    counts: vec!["s0:sms:accepted".into()],
                }
            })
            .collect();
        assert!(c.commit_batch(&id, p, b.seq, &done).await.unwrap());
        assert!(
            !c.commit_batch(&id, p, b.seq, &done).await.unwrap(),
            "stale"
        );
        seen.extend(b.items.iter().map(|i| i.row));
        // The even rows' second step.
        if let Some(b2) = c.begin_batch(&id, p, now, 100).await.unwrap() {
            assert!(b2.seq > b.seq);
            assert!(b2.items.iter().all(|i| i.step == 1 && i.row % 2 == 0));
            assert!(b2.items.iter().all(|i| i.state.messages.len() == 1));
            let done: Vec<StepDone> = b2
                .items
                .iter()
                .map(|i| StepDone {
                    row: i.row,
                    step: 1,
                    state: i.state.clone(),
                    next: None,
                    counts: vec![],
                })
                .collect();
            assert!(c.commit_batch(&id, p, b2.seq, &done).await.unwrap());
        }
    }
    seen.sort();
    assert_eq!(seen, (1..=29).collect::<Vec<u64>>());
    // Row 30 is not due yet; adding the rows again does not bring back the others.
    c.add_recipients(&id, &rows, &[], 30).await.unwrap();
    assert_eq!(c.pending(&id).await.unwrap(), 1);
    let counters = c.campaign_counters(&id).await.unwrap();
    assert_eq!(counters["s0:sms:accepted"], 29);

    // Events: once each, counted with the time since the first message.
    assert_eq!(
        c.recipient_event(&id, "ref-3", "paid", now).await.unwrap(),
        Some(true)
    );
    assert_eq!(
        c.recipient_event(&id, "ref-3", "paid", now).await.unwrap(),
        Some(false)
    );
    assert_eq!(
        c.recipient_event(&id, "nope", "paid", now).await.unwrap(),
        None
    );
    let counters = c.campaign_counters(&id).await.unwrap();
    assert_eq!(counters["ev:paid"], 1);
    let b = goniec_store::campaigns::time_bucket(60.0);
    assert_eq!(counters[&format!("ev:paid:t{b}")], 1, "{counters:?}");
    assert_eq!(
        counters[&format!("ev:paid:d{}", goniec_store::campaigns::day_of(now))],
        1
    );

    // A campaign's message counts its status changes in the report.
    let mut msg = message("t-camp", "+48500100401", None, false, None);
    msg.campaign = Some((id.clone(), 2));
    store.accept(&[msg.clone()], None).await.unwrap();
    let t = store
        .transition(&msg.id, &Change::new(Status::Submitted, now, None, None))
        .await
        .unwrap();
    assert!(matches!(t, Transition::Applied { .. }), "{t:?}");
    store
        .transition(&msg.id, &Change::new(Status::Delivered, now, None, None))
        .await
        .unwrap();
    let counters = c.campaign_counters(&id).await.unwrap();
    assert_eq!(counters["s2:sms:submitted"], 1, "{counters:?}");
    assert_eq!(counters["s2:sms:delivered"], 1, "{counters:?}");
    assert_eq!(
        counters
            .iter()
            .filter(|(k, _)| k.starts_with("s2:sms:delivered:t"))
            .map(|(_, v)| v)
            .sum::<i64>(),
        1
    );
    for l in drain(store, Lane::Channel(Channel::Sms)).await {
        complete(store, &l, None, None).await.unwrap();
    }

    // Cancelling drops what is due and names each recipient's last message.
    let last = c.drop_due(&id).await.unwrap();
    assert_eq!(last.len(), 29);
    assert_eq!(c.pending(&id).await.unwrap(), 0);
}

/// A template's versions count from 1 and stay readable; ids list per tenant;
/// delete removes every version.
async fn templates_keep_every_version(store: &dyn Store) {
    let t = store.templates();
    assert_eq!(t.template("t-tpl", "rem", None).await.unwrap(), None);
    assert_eq!(
        t.put_template("t-tpl", "rem", "{\"v\":1}").await.unwrap(),
        1
    );
    assert_eq!(
        t.put_template("t-tpl", "rem", "{\"v\":2}").await.unwrap(),
        2
    );
    assert_eq!(t.put_template("t-tpl", "alpha", "{}").await.unwrap(), 1);
    assert_eq!(
        t.put_template("t-tpl-other", "zeta", "{}").await.unwrap(),
        1
    );
    let latest = t.template("t-tpl", "rem", None).await.unwrap().unwrap();
    assert_eq!((latest.version, latest.latest), (2, 2));
    assert_eq!(latest.doc, "{\"v\":2}");
    let first = t.template("t-tpl", "rem", Some(1)).await.unwrap().unwrap();
    assert_eq!(
        (first.version, first.latest, first.doc.as_str()),
        (1, 2, "{\"v\":1}")
    );
    assert_eq!(t.template("t-tpl", "rem", Some(3)).await.unwrap(), None);
    assert_eq!(t.template("t-tpl", "rem", Some(0)).await.unwrap(), None);
    assert_eq!(t.template_ids("t-tpl").await.unwrap(), vec!["alpha", "rem"]);
    assert!(t.delete_template("t-tpl", "rem").await.unwrap());
    assert!(!t.delete_template("t-tpl", "rem").await.unwrap());
    assert_eq!(t.template("t-tpl", "rem", Some(1)).await.unwrap(), None);
    assert_eq!(t.template_ids("t-tpl").await.unwrap(), vec!["alpha"]);
    // A new template under a deleted id starts again at 1.
    assert_eq!(t.put_template("t-tpl", "rem", "{}").await.unwrap(), 1);
}

/// A link leads to its target until it expires; clicks count on the message
/// (people and prefetches apart), go into its history, and queue a callback
/// only for a message that has callbacks.
async fn links_and_clicks(store: &dyn Store) {
    use goniec_store::content::{Click, ClickKind, ClickRecorded, Link};
    let with_cb = message("t-links", "+48500100301", None, true, None);
    let without = message("t-links", "+48500100302", None, false, None);
    store
        .accept(&[with_cb.clone(), without.clone()], None)
        .await
        .unwrap();
    for l in drain(store, Lane::Webhook).await {
        complete(store, &l, None, None).await.unwrap();
    }
    let now = now_ms();
    let link = |code: &str, id: &str, expires_at| Link {
        code: code.into(),
        tenant: "t-links".into(),
        message_id: id.into(),
        target: format!("https://pay.example.com/{code}"),
        expires_at,
    };
    let links = store.links();
    links
        .put_links(&[
            link("Ab3xY9kQ2z", &with_cb.id, now + 60_000),
            link("Zz9yX8wV7u", &without.id, now + 60_000),
            link("Old0000000", &with_cb.id, now - 1),
        ])
        .await
        .unwrap();
    let codes = ["Ab3xY9kQ2z", "Old0000000", "Nope000000"].map(String::from);
    let got = links.find_links(&codes, now).await.unwrap();
    let first = got[0].as_ref().unwrap();
    assert_eq!(first.target, "https://pay.example.com/Ab3xY9kQ2z");
    assert_eq!(first.message_id, with_cb.id);
    assert_eq!(first.code, "Ab3xY9kQ2z");
    assert_eq!(got[1], None, "expired");
    assert_eq!(got[2], None);

    let task = Task::Clicked(goniec_store::ClickedPayload {
        message_id: with_cb.id.clone(),
        at: now,
        url: "https://pay.example.com/Ab3xY9kQ2z".into(),
    })
    .encode();
    let click = |id: &str, kind, at| Click {
        message_id: id.into(),
        kind,
        at,
        callback: (kind == ClickKind::Human).then(|| task.clone()),
        callback_id: goniec_store::model::new_message_id_in(goniec_store::model::partition_of(id)),
    };
    let r = links
        .record_clicks(&[
            click(&with_cb.id, ClickKind::Prefetch, now),
            click(&with_cb.id, ClickKind::Human, now + 5),
            click(&without.id, ClickKind::Human, now + 6),
            click(&with_cb.id, ClickKind::Human, now + 9),
            click(&new_message_id(), ClickKind::Human, now),
        ])
        .await
        .unwrap();
    assert_eq!(r[4], ClickRecorded::NoMessage);
    let ClickRecorded::Recorded(last) = r[3] else {
        panic!("{r:?}")
    };
    assert_eq!(
        (
            last.clicks,
            last.prefetches,
            last.first_click_at,
            last.last_click_at
        ),
        (2, 1, Some(now + 5), Some(now + 9))
    );
    // Read with the record.
    assert_eq!(store.get(&with_cb.id).await.unwrap().unwrap().clicks, last);
    assert_eq!(
        store.get(&without.id).await.unwrap().unwrap().clicks.clicks,
        1
    );
    let rec = store.get(&with_cb.id).await.unwrap().unwrap();
    let reasons: Vec<_> = rec
        .events
        .iter()
        .filter_map(|e| e.reason.as_deref())
        .collect();
    assert_eq!(reasons, ["prefetch", "clicked", "clicked"]);
    assert!(rec.events.iter().all(|e| e.status != Status::Delivered));
    // Two human clicks on the message with callbacks: two callbacks; none for
    // the other message or the prefetch.
    let hooks = drain(store, Lane::Webhook).await;
    assert_eq!(hooks.len(), 2, "{hooks:?}");
    assert!(hooks
        .iter()
        .all(|l| l.job.task == Task::decode(&task).unwrap()));
    for l in hooks {
        complete(store, &l, None, None).await.unwrap();
    }
}

/// The receipt came: the message's pending receipt check is gone from the
/// schedule in the step that made the message final (it would only have been
/// promoted, claimed, loaded and finished for nothing). A multipart message's
/// first part does not remove it.
async fn a_final_receipt_removes_the_pending_check(store: &dyn Store) {
    use goniec_store::{Handover, Job};
    let sms = Lane::Channel(Channel::Sms);
    let mut msgs = Vec::new();
    for to in ["+48500000410", "+48500000411"] {
        let m = message("t-check-gone", to, None, true, None);
        store.accept(std::slice::from_ref(&m), None).await.unwrap();
        msgs.push(m);
    }
    let leases: Vec<goniec_store::Lease> = drain(store, sms)
        .await
        .into_iter()
        .filter(|l| msgs.iter().any(|m| m.id == l.job.id))
        .collect();
    assert_eq!(leases.len(), 2);
    let at = now_ms() + 7_200_000;
    let before = store.lane_stats(sms, now_ms()).await.unwrap().scheduled;
    for (i, l) in leases.iter().enumerate() {
        let check = Handover {
            lane: sms,
            job: Job {
                id: l.job.id.clone(),
                attempt: 0,
                task: Task::ReceiptCheck(goniec_store::ReceiptCheck {
                    connector: "smsc-g".into(),
                    deadline: 0,
                    query_ids: vec![],
                    part_ids: vec![],
                    rounds: 0,
                }),
            },
            at_ms: Some(at),
            note: None,
        };
        let mut ch = Change::new(Status::Submitted, now_ms(), None, None);
        if i == 1 {
            ch.parts = Some(2);
        }
        complete_handover(store, l, Some(&ch), None, &check)
            .await
            .unwrap();
    }
    let scheduled = || async { store.lane_stats(sms, now_ms()).await.unwrap().scheduled };
    assert_eq!(scheduled().await, before + 2, "both checks wait");
    // Single part, delivered: its check goes.
    let delivered = Change::new(Status::Delivered, now_ms(), None, None);
    let t = store
        .transition(&leases[0].job.id, &delivered)
        .await
        .unwrap();
    assert_eq!(
        t,
        Transition::Applied {
            from: Status::Submitted
        }
    );
    assert_eq!(
        scheduled().await,
        before + 1,
        "the delivered message's check is gone"
    );
    // Two parts: the first receipt keeps the check, the second removes it.
    let mut part = delivered.clone();
    part.part = Some("a".into());
    let t = store.transition(&leases[1].job.id, &part).await.unwrap();
    assert_eq!(t, Transition::Partial);
    assert_eq!(
        scheduled().await,
        before + 1,
        "one part in: the check stays"
    );
    part.part = Some("b".into());
    let t = store.transition(&leases[1].job.id, &part).await.unwrap();
    assert_eq!(
        t,
        Transition::Applied {
            from: Status::Submitted
        }
    );
    assert_eq!(
        scheduled().await,
        before,
        "every part in: the check is gone"
    );
    assert_eq!(store.promote_due(sms, at, 100).await.unwrap(), 0);
    for h in drain(store, Lane::Webhook).await {
        complete(store, &h, None, None).await.unwrap();
    }
}

/// Several spellings of a receipt id looked up at once: each answer in its place,
/// only the connector's own mappings.
async fn correlate_many_spellings_in_order(store: &dyn Store) {
    let msgs: Vec<_> = (0..2)
        .map(|i| message("t-corr", &format!("+4850000030{i}"), None, false, None))
        .collect();
    store.accept(&msgs, None).await.unwrap();
    let lane = Lane::Channel(Channel::Sms);
    let leases: Vec<_> = drain(store, lane)
        .await
        .into_iter()
        .filter(|l| msgs.iter().any(|m| m.id == l.job.id))
        .collect();
    assert_eq!(leases.len(), 2);
    for l in &leases {
        let pid = if l.job.id == msgs[0].id { "3039" } else { "ff" };
        let ch = Change::new(Status::Submitted, now_ms(), None, None);
        complete(store, l, Some(&ch), Some(("smsc-m", &[pid.to_string()])))
            .await
            .unwrap();
    }
    let ask: Vec<String> = ["12345", "3039", "nope", "ff"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        store.correlate_many("smsc-m", &ask).await.unwrap(),
        [
            None,
            Some(msgs[0].id.clone()),
            None,
            Some(msgs[1].id.clone())
        ]
    );
    assert_eq!(
        store.correlate_many("smsc-other", &ask).await.unwrap(),
        [None, None, None, None],
        "another connector's ids are another namespace"
    );
    assert_eq!(
        store.correlate_many("smsc-m", &ask[1..2]).await.unwrap(),
        [Some(msgs[0].id.clone())]
    );
    assert!(store
        .correlate_many("smsc-m", &[])
        .await
        .unwrap()
        .is_empty());
}

/// An SMS submitted with its receipt check in the same step (the check scheduled on
/// the SMS lane with its payload, the correlation stored); the check handing over to
/// the next one; and the last one expiring the message `no_receipt` with a callback,
/// which a late receipt can no longer change.
async fn submitted_with_its_receipt_check_then_no_receipt(store: &dyn Store) {
    use goniec_store::{Handover, Job};
    let m = message("t-check", "+48500000400", None, true, None);
    store.accept(std::slice::from_ref(&m), None).await.unwrap();
    let sms = Lane::Channel(Channel::Sms);
    let mine = |ls: Vec<goniec_store::Lease>| -> Vec<goniec_store::Lease> {
        ls.into_iter().filter(|l| l.job.id == m.id).collect()
    };
    let l = mine(drain(store, sms).await).pop().unwrap();
    let check = |n: u32, at: i64| Handover {
        lane: sms,
        job: Job {
            id: m.id.clone(),
            attempt: n,
            task: Task::ReceiptCheck(goniec_store::ReceiptCheck {
                connector: "smsc-k".into(),
                deadline: 0,
                query_ids: vec![],
                part_ids: vec![],
                rounds: n,
            }),
        },
        at_ms: Some(at),
        note: None,
    };
    let ch = Change::new(Status::Submitted, now_ms(), None, None);
    let at = now_ms() + 3_600_000;
    let before = store.lane_stats(sms, now_ms()).await.unwrap().scheduled;
    let t = complete_handover(
        store,
        &l,
        Some(&ch),
        Some(("smsc-k", &["k1".into()])),
        &check(0, at),
    )
    .await
    .unwrap();
    assert_eq!(
        t,
        Transition::Applied {
            from: Status::Queued
        }
    );
    assert_eq!(
        store.correlate("smsc-k", "k1").await.unwrap().as_deref(),
        Some(m.id.as_str())
    );
    assert_eq!(
        store.lane_stats(sms, now_ms()).await.unwrap().scheduled,
        before + 1,
        "the check waits in the lane's schedule"
    );
    assert_eq!(store.promote_due(sms, at - 1, 100).await.unwrap(), 0);
    assert!(store.promote_due(sms, at, 100).await.unwrap() >= 1);
    let first = mine(drain(store, sms).await)
        .pop()
        .expect("the check is due");
    assert_eq!(first.job, check(0, at).job);
    // Still submitted: the check hands over to the next one, and is done itself.
    let at2 = at + 1000;
    complete_handover(store, &first, None, None, &check(1, at2))
        .await
        .unwrap();
    assert!(store.promote_due(sms, at2, 100).await.unwrap() >= 1);
    let last = mine(drain(store, sms).await).pop().expect("the next check");
    assert_eq!(last.job.attempt, 1);
    // The deadline: expired, no_receipt, in the step that finishes the check.
    let hooks_before: Vec<_> = drain(store, Lane::Webhook).await;
    for h in &hooks_before {
        complete(store, h, None, None).await.unwrap();
    }
    let expire = Change::new(
        Status::Expired,
        now_ms(),
        Some("no_receipt".into()),
        Some("no receipt from smsc-k".into()),
    );
    assert_eq!(
        complete(store, &last, Some(&expire), None).await.unwrap(),
        Transition::Applied {
            from: Status::Submitted
        }
    );
    let r = store.get(&m.id).await.unwrap().unwrap();
    assert_eq!(r.status, Status::Expired);
    assert_eq!(
        r.events.last().unwrap().reason.as_deref(),
        Some("no_receipt")
    );
    let hooks = drain(store, Lane::Webhook).await;
    let cb: Vec<_> = hooks
        .iter()
        .filter_map(|l| match &l.job.task {
            Task::Callback(c) => Some(c.clone()),
            _ => None,
        })
        .filter(|p| p.message_id == m.id)
        .collect();
    assert_eq!(cb.len(), 1, "one callback for the expiry");
    assert_eq!(
        (cb[0].status, cb[0].reason.as_deref()),
        (Status::Expired, Some("no_receipt"))
    );
    for h in &hooks {
        complete(store, h, None, None).await.unwrap();
    }
    // A receipt after that changes nothing.
    let late = Change::new(Status::Delivered, now_ms(), None, None);
    assert_eq!(
        store.transition(&m.id, &late).await.unwrap(),
        Transition::Refused {
            current: Status::Expired
        }
    );
    assert!(mine(drain(store, sms).await).is_empty(), "no check left");
}

/// An RCS lease finishing with work for the SMS lane: at once (with a note in the
/// history), or scheduled (the same job twice is one); only the lease's holder
/// hands over.
async fn handover_to_another_lane(store: &dyn Store) {
    use goniec_store::{Handover, Job};
    let mut m = message("t-hand", "+48500000900", None, false, None);
    m.channel = Channel::Rcs;
    store.accept(std::slice::from_ref(&m), None).await.unwrap();
    let (rcs, sms) = (Lane::Channel(Channel::Rcs), Lane::Channel(Channel::Sms));
    let l = drain(store, rcs).await.pop().unwrap();
    let job = |task: Task| Job {
        id: m.id.clone(),
        attempt: 0,
        task,
    };
    let note = Event {
        status: Status::Queued,
        at: now_ms(),
        reason: Some("rcs_unreachable".into()),
        detail: Some("falling back to sms".into()),
    };
    let now = Handover {
        lane: sms,
        job: job(Task::RcsFallback),
        at_ms: None,
        note: Some(note.clone()),
    };
    complete_handover(store, &l, None, None, &now)
        .await
        .unwrap();
    // A stale holder of the same lease hands over nothing.
    complete_handover(store, &l, None, None, &now)
        .await
        .unwrap();
    let got = drain(store, sms).await;
    assert_eq!(got.len(), 1, "handed over once");
    assert_eq!(
        (got[0].job.id.as_str(), &got[0].job.task),
        (m.id.as_str(), &Task::RcsFallback)
    );
    assert!(drain(store, rcs).await.is_empty(), "the RCS lease is done");
    let rec = store.get(&m.id).await.unwrap().unwrap();
    assert_eq!(rec.status, Status::Queued);
    assert_eq!(rec.events.last(), Some(&note));

    // Submitted over SMS, with a check scheduled on the lane twice: one job.
    let ch = Change::new(Status::Submitted, now_ms(), None, None);
    let at = now_ms() + 60_000;
    let later = Handover {
        lane: sms,
        job: job(Task::RcsCheck),
        at_ms: Some(at),
        note: None,
    };
    let before = store.lane_stats(sms, now_ms()).await.unwrap().scheduled;
    complete_handover(store, &got[0], Some(&ch), None, &later)
        .await
        .unwrap();
    assert_eq!(
        store.get(&m.id).await.unwrap().unwrap().status,
        Status::Submitted
    );
    assert_eq!(
        store.lane_stats(sms, now_ms()).await.unwrap().scheduled,
        before + 1
    );
    assert_eq!(store.promote_due(sms, at, 100).await.unwrap(), 1);
    let check = drain(store, sms).await;
    assert_eq!(check.len(), 1);
    assert_eq!(check[0].job.task, Task::RcsCheck);
    // The fallback: submitted → queued is allowed (and nothing else from there).
    let back = Change::new(Status::Queued, now_ms(), Some("rcs_fallback".into()), None);
    assert!(store.transition(&m.id, &back).await.unwrap().applied());
    // Once only: submitted again (the SMS), it never goes back a second time.
    assert!(store.transition(&m.id, &ch).await.unwrap().applied());
    assert_eq!(
        store.transition(&m.id, &back).await.unwrap(),
        Transition::Refused {
            current: Status::Submitted
        },
        "a message falls back at most once"
    );
    complete(store, &check[0], None, None).await.unwrap();
}

async fn first_seen_recognises_replays(store: &dyn Store) {
    let key = format!("conf:{}", new_message_id());
    let ttl = Duration::from_secs(60);
    assert!(store.first_seen(&key, ttl).await.unwrap());
    assert!(!store.first_seen(&key, ttl).await.unwrap(), "a replay");
    assert!(store
        .first_seen(&format!("{key}-other"), ttl)
        .await
        .unwrap());
    store.forget_seen(&key).await.unwrap();
    assert!(
        store.first_seen(&key, ttl).await.unwrap(),
        "seen again after forgetting"
    );
}

async fn suppression_lists(store: &dyn Store) {
    let t = format!("t-sup-{}", new_message_id());
    store
        .suppress(&t, "gone@example.com", "5.1.1 user unknown")
        .await
        .unwrap();
    store
        .suppress(&t, "a@example.com", "added by an operator")
        .await
        .unwrap();
    assert_eq!(
        store
            .suppressed(&t, &["ok@example.com", "gone@example.com"])
            .await
            .unwrap(),
        vec![None, Some("5.1.1 user unknown".to_string())]
    );
    assert_eq!(
        store
            .suppressed("another-tenant", &["gone@example.com"])
            .await
            .unwrap(),
        vec![None],
        "per tenant"
    );
    assert!(store.suppressed(&t, &[]).await.unwrap().is_empty());
    let list = store.suppressions(&t, 10).await.unwrap();
    assert_eq!(
        list.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
        ["a@example.com", "gone@example.com"]
    );
    assert_eq!(store.suppressions(&t, 1).await.unwrap().len(), 1);
    assert!(store.unsuppress(&t, "gone@example.com").await.unwrap());
    assert!(!store.unsuppress(&t, "gone@example.com").await.unwrap());
    assert_eq!(
        store.suppressed(&t, &["gone@example.com"]).await.unwrap(),
        vec![None]
    );
}

/// A message in `status`, as the API stores it after an anti-fraud verdict.
fn message_in(status: Status, to: &str) -> NewMessage {
    let mut m = message("t-held", to, None, false, None);
    m.status = status;
    m.events[1].status = status;
    m
}

async fn held_messages_are_released_or_dropped(store: &dyn Store) {
    let lane = Lane::Channel(Channel::Sms);
    let release = message_in(Status::Held, "+48500000701");
    let dropped = message_in(Status::Held, "+48500000702");
    let rejected = message_in(Status::Rejected, "+48500000703");
    store
        .accept(&[release.clone(), dropped.clone(), rejected.clone()], None)
        .await
        .unwrap();
    // Neither held nor rejected messages are queued.
    assert_eq!(store.promote_due(lane, now_ms(), 10).await.unwrap(), 0);
    assert!(drain(store, lane).await.is_empty());
    assert_eq!(
        store.held(100).await.unwrap(),
        vec![release.id.clone(), dropped.id.clone()],
        "held, oldest first; the rejected one is not"
    );
    assert_eq!(store.held_count().await.unwrap(), 2);
    let now = now_ms();
    let released = Change::new(Status::Scheduled, now, Some("released".into()), None);
    assert_eq!(
        store
            .decide_held(&release.id, &release.tenant, &released, now, Channel::Sms)
            .await
            .unwrap(),
        Transition::Applied { from: Status::Held }
    );
    let drop = Change::new(Status::Rejected, now, Some("dropped".into()), None);
    assert_eq!(
        store
            .decide_held(&dropped.id, &dropped.tenant, &drop, now, Channel::Sms)
            .await
            .unwrap(),
        Transition::Applied { from: Status::Held }
    );
    assert!(store.held(100).await.unwrap().is_empty());
    assert_eq!(store.held_count().await.unwrap(), 0);
    // Decided once: a second decision changes nothing.
    assert_eq!(
        store
            .decide_held(&release.id, &release.tenant, &drop, now, Channel::Sms)
            .await
            .unwrap(),
        Transition::Refused {
            current: Status::Scheduled
        }
    );
    assert_eq!(
        store
            .decide_held(&rejected.id, &rejected.tenant, &released, now, Channel::Sms)
            .await
            .unwrap(),
        Transition::Refused {
            current: Status::Rejected
        }
    );
    // The released message goes out; the dropped one never does.
    assert_eq!(store.promote_due(lane, now, 10).await.unwrap(), 1);
    let l = drain(store, lane).await;
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].job.id, release.id);
    complete(store, &l[0], None, None).await.unwrap();
    let r = store.get(&release.id).await.unwrap().unwrap();
    let trail: Vec<Status> = r.events.iter().map(|e| e.status).collect();
    assert_eq!(
        trail,
        [
            Status::Accepted,
            Status::Held,
            Status::Scheduled,
            Status::Queued
        ]
    );
    assert_eq!(
        store.get(&dropped.id).await.unwrap().unwrap().status,
        Status::Rejected
    );
}

async fn antifraud_counters_and_opt_outs(store: &dyn Store) {
    use goniec_antifraud::{check, needs, Decision, ReasonCode, Screening, TenantPolicy};
    let policy = TenantPolicy::default();
    let now = jiff::Timestamp::now();
    let tenant = format!("t-af-{}", new_message_id());
    let msg = Screening::new(
        &tenant,
        goniec_antifraud::Channel::Sms,
        "+48601234567",
        "Przypomnienie o płatności",
        now,
    );
    let first = store.counters(vec![needs(&msg, &policy)]).await.unwrap();
    let v = check(&msg, &policy, &first[0]);
    assert_eq!(v.decision, Decision::Allow, "{:?}", v.reasons);
    assert!(!v.record.is_empty(), "an accepted message is counted");
    assert_eq!(
        v.caps.len(),
        3,
        "frequency caps per day and week, duplicates"
    );
    assert_eq!(store.reserve(&[&v.caps]).await.unwrap(), [None]);
    store.count(&v.record).await.unwrap();
    // The same text to the same number again: the shared counters say duplicate.
    let again = store.counters(vec![needs(&msg, &policy)]).await.unwrap();
    let v = check(&msg, &policy, &again[0]);
    assert!(v.has(ReasonCode::Duplicate), "{:?}", v.reasons);
    // Opt-outs are per tenant and recipient, and can be cleared.
    let n = needs(&msg, &policy);
    let key = n.opt_out_key().to_string();
    assert!(store.set_opt_out(&key, true, 1_000).await.unwrap());
    let c = store.counters(vec![n]).await.unwrap();
    assert!(c[0].opted_out());
    assert_eq!(
        store
            .opted_out(&[key.clone(), "other".into()])
            .await
            .unwrap(),
        [true, false]
    );
    assert!(check(&msg, &policy, &c[0]).has(ReasonCode::OptedOut));
    assert!(store.set_opt_out(&key, false, 2_000).await.unwrap());
    let c = store.counters(vec![needs(&msg, &policy)]).await.unwrap();
    assert!(!c[0].opted_out());
    // An older event (a replayed opt-out from before the opt-in) changes nothing.
    assert!(!store.set_opt_out(&key, true, 1_500).await.unwrap());
    let c = store.counters(vec![needs(&msg, &policy)]).await.unwrap();
    assert!(
        !c[0].opted_out(),
        "an older opt-out never undoes a newer opt-in"
    );
    // A newer one applies.
    assert!(store.set_opt_out(&key, true, 3_000).await.unwrap());
    let c = store.counters(vec![needs(&msg, &policy)]).await.unwrap();
    assert!(c[0].opted_out());
    assert!(store.set_opt_out(&key, false, 4_000).await.unwrap());
    assert_eq!(
        store.opted_out(std::slice::from_ref(&key)).await.unwrap(),
        [false]
    );
    assert!(store.counters(vec![]).await.unwrap().is_empty());
    assert!(store.reserve(&[]).await.unwrap().is_empty());
    store.release(&[]).await.unwrap();
    frequency_caps_are_exact_under_concurrent_screening(store).await;
}

/// Screenings that all read the counters before any reservation (as instances
/// do at the same moment) get exactly as many places as the cap has left:
/// in one call, in order, and in concurrent calls; a refused message counts
/// nothing (all or nothing); a released place is taken again exactly once.
async fn frequency_caps_are_exact_under_concurrent_screening(store: &dyn Store) {
    use goniec_antifraud::{check, needs, Cap, CounterKind, Decision, Screening, TenantPolicy};
    let policy = TenantPolicy::default(); // at most 3 per day
    let now = jiff::Timestamp::now();
    let tenant = format!("t-cap-{}", new_message_id());
    let texts: Vec<String> = (0..12).map(|i| format!("Przypomnienie {i}")).collect();
    let screen = |i: usize| {
        Screening::new(
            &tenant,
            goniec_antifraud::Channel::Sms,
            "+48601234567",
            &texts[i],
            now,
        )
    };
    // A message's caps: per day (3), per week (10), duplicates (1).
    let caps_of = |i: usize, c: &goniec_antifraud::Counters| -> Vec<Cap> {
        let v = check(&screen(i), &policy, c);
        assert_eq!(v.decision, Decision::Allow, "{:?}", v.reasons);
        assert_eq!(
            v.caps.iter().map(|c| c.limit).collect::<Vec<_>>(),
            [3, 10, 1]
        );
        v.caps
    };
    // Screenings of messages `range`, all reading the counters at once.
    let screen_all = async |range: std::ops::Range<usize>| -> Vec<Vec<Cap>> {
        let read = store
            .counters(range.clone().map(|i| needs(&screen(i), &policy)).collect())
            .await
            .unwrap();
        range.zip(&read).map(|(i, c)| caps_of(i, c)).collect()
    };
    // Six screenings read 0 of 3 at once.
    let caps = screen_all(0..6).await;
    let groups: Vec<&[Cap]> = caps.iter().map(Vec::as_slice).collect();
    assert_eq!(
        store.reserve(&groups).await.unwrap(),
        [None, None, None, Some(0), Some(0), Some(0)],
        "in order, the first three; the others are refused by the daily cap"
    );
    let week = |c: &goniec_antifraud::Counters| c.value(CounterKind::FreqWeek);
    let read = store
        .counters(vec![needs(&screen(0), &policy)])
        .await
        .unwrap();
    assert_eq!(week(&read[0]), 3, "the refused ones counted nothing");
    // The second message was not stored after all: its places come back.
    let second: Vec<&Cap> = caps[1].iter().collect();
    store.release(&second).await.unwrap();
    // Six concurrent reservations for that one place: exactly one gets it.
    let caps = screen_all(6..12).await;
    let try_one = |c: &Vec<Cap>| {
        let c = c.clone();
        async move { store.reserve(&[&c]).await.unwrap()[0].is_none() }
    };
    let granted = tokio::join!(
        try_one(&caps[0]),
        try_one(&caps[1]),
        try_one(&caps[2]),
        try_one(&caps[3]),
        try_one(&caps[4]),
        try_one(&caps[5])
    );
    let granted = [
        granted.0, granted.1, granted.2, granted.3, granted.4, granted.5,
    ];
    assert_eq!(
        granted.iter().filter(|g| **g).count(),
        1,
        "{granted:?}: the one released place, once"
    );
    let read = store
        .counters(vec![needs(&screen(0), &policy)])
        .await
        .unwrap();
    assert_eq!(
        (read[0].value(CounterKind::FreqDay), week(&read[0])),
        (3, 3),
        "the counters hold the three stored messages"
    );
}

async fn multipart_is_delivered_when_every_part_is(store: &dyn Store) {
    let lane = Lane::Channel(Channel::Sms);
    let msgs: Vec<_> = (0..2)
        .map(|i| message("t-parts", &format!("+4850000110{i}"), None, false, None))
        .collect();
    store.accept(&msgs, None).await.unwrap();
    let parts = [
        vec!["a1".to_string(), "a2".into(), "a3".into()],
        vec!["b1".to_string(), "b2".into()],
    ];
    for l in drain(store, lane).await.iter() {
        let i = msgs.iter().position(|m| m.id == l.job.id).unwrap();
        let ids = &parts[i];
        let mut ch = Change::new(Status::Submitted, now_ms(), None, None);
        ch.parts = Some(ids.len() as u32);
        assert!(complete(store, l, Some(&ch), Some(("smsc", ids)))
            .await
            .unwrap()
            .applied());
    }
    let receipt = |to: Status, part: &str| {
        let mut ch = Change::new(to, now_ms(), None, None);
        ch.part = Some(part.to_string());
        ch
    };
    let a = &msgs[0].id;
    assert_eq!(
        store
            .transition(a, &receipt(Status::Delivered, "a1"))
            .await
            .unwrap(),
        Transition::Partial
    );
    // The same part reported again counts once.
    assert_eq!(
        store
            .transition(a, &receipt(Status::Delivered, "a1"))
            .await
            .unwrap(),
        Transition::Refused {
            current: Status::Submitted
        }
    );
    assert_eq!(
        store
            .transition(a, &receipt(Status::Delivered, "a2"))
            .await
            .unwrap(),
        Transition::Partial
    );
    assert_eq!(
        store.get(a).await.unwrap().unwrap().status,
        Status::Submitted
    );
    assert_eq!(
        store
            .transition(a, &receipt(Status::Delivered, "a3"))
            .await
            .unwrap(),
        Transition::Applied {
            from: Status::Submitted
        }
    );
    let r = store.get(a).await.unwrap().unwrap();
    assert_eq!(r.status, Status::Delivered);
    let part_events = r
        .events
        .iter()
        .filter(|e| e.detail.as_deref().is_some_and(|d| d.starts_with("part ")))
        .count();
    assert_eq!(
        part_events, 2,
        "each part before the last shows in the history"
    );
    // Any undeliverable part makes the message undeliverable at once.
    let b = &msgs[1].id;
    assert_eq!(
        store
            .transition(b, &receipt(Status::Delivered, "b1"))
            .await
            .unwrap(),
        Transition::Partial
    );
    assert!(store
        .transition(b, &receipt(Status::Undeliverable, "b2"))
        .await
        .unwrap()
        .applied());
    assert_eq!(
        store.get(b).await.unwrap().unwrap().status,
        Status::Undeliverable
    );
}

async fn in_flight_messages_cannot_be_cancelled(store: &dyn Store) {
    let m = message("t-inflight", "+48500000800", None, false, None);
    store.accept(std::slice::from_ref(&m), None).await.unwrap();
    let lane = Lane::Channel(Channel::Sms);
    let l = drain(store, lane).await.pop().unwrap();
    let recs = store
        .begin_delivery(std::slice::from_ref(&l.job.id))
        .await
        .unwrap();
    assert_eq!(recs[0].as_ref().unwrap().status, Status::Queued);
    let cancel = Change::new(Status::Cancelled, now_ms(), None, None);
    assert_eq!(
        store.transition(&m.id, &cancel).await.unwrap(),
        Transition::InFlight
    );
    // Given back for a retry, it may be cancelled again.
    retry(store, &l, now_ms(), l.job.attempt + 1).await.unwrap();
    assert!(store.transition(&m.id, &cancel).await.unwrap().applied());
    assert_eq!(
        store.begin_delivery(&[new_message_id()]).await.unwrap(),
        vec![None]
    );
    store.promote_due(lane, now_ms() + 1, 100).await.unwrap();
    for l in drain(store, lane).await {
        complete(store, &l, None, None).await.unwrap();
    }
}

async fn heartbeat_keeps_leases(store: &dyn Store) {
    let m = message("t-touch", "+48500000900", None, false, None);
    store.accept(std::slice::from_ref(&m), None).await.unwrap();
    let lane = Lane::Channel(Channel::Sms);
    let l = drain(store, lane).await.pop().unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    store
        .touch(lane, "conformance", &[l.entry_ref()])
        .await
        .unwrap();
    assert!(
        store
            .reclaim(lane, "rescuer", Duration::from_millis(40), 10)
            .await
            .unwrap()
            .is_empty(),
        "a touched lease is not abandoned"
    );
    complete(store, &l, None, None).await.unwrap();
}

async fn stale_lease_cannot_retry_or_bury(store: &dyn Store) {
    let m = message("t-stale", "+48500001000", None, false, None);
    store.accept(std::slice::from_ref(&m), None).await.unwrap();
    let lane = Lane::Channel(Channel::Sms);
    let l = drain(store, lane).await.pop().unwrap();
    complete(store, &l, None, None).await.unwrap();
    // A second holder of the same (already finished) lease must not requeue or bury it.
    retry(store, &l, now_ms(), l.job.attempt + 1).await.unwrap();
    assert_eq!(store.promote_due(lane, now_ms() + 1, 100).await.unwrap(), 0);
    let before = store.dead_letters(lane, 10_000).await.unwrap().len();
    bury(store, &l, "dup", None).await.unwrap();
    assert_eq!(
        store.dead_letters(lane, 10_000).await.unwrap().len(),
        before
    );
    assert!(drain(store, lane).await.is_empty());
}

async fn accept_get_and_transitions(store: &dyn Store) {
    let m = message("t-acc", "+48500000001", Some("inv-1"), true, None);
    store.accept(std::slice::from_ref(&m), None).await.unwrap();
    let r = store.get(&m.id).await.unwrap().expect("stored");
    assert_eq!(r.status, Status::Queued);
    assert_eq!(r.data.to, "+48500000001");
    assert_eq!(
        r.events.iter().map(|e| e.status).collect::<Vec<_>>(),
        [Status::Accepted, Status::Queued]
    );
    assert!(store.get(&new_message_id()).await.unwrap().is_none());

    // Not allowed: queued → delivered.
    let t = store
        .transition(&m.id, &Change::new(Status::Delivered, now_ms(), None, None))
        .await
        .unwrap();
    assert_eq!(
        t,
        Transition::Refused {
            current: Status::Queued
        }
    );
    let t = store
        .transition(&m.id, &Change::new(Status::Cancelled, now_ms(), None, None))
        .await
        .unwrap();
    assert_eq!(
        t,
        Transition::Applied {
            from: Status::Queued
        }
    );
    // Final: nothing moves it.
    for to in [
        Status::Queued,
        Status::Submitted,
        Status::Delivered,
        Status::Failed,
    ] {
        let t = store
            .transition(&m.id, &Change::new(to, now_ms(), None, None))
            .await
            .unwrap();
        assert_eq!(
            t,
            Transition::Refused {
                current: Status::Cancelled
            }
        );
    }
    let missing = store
        .transition(
            &new_message_id(),
            &Change::new(Status::Cancelled, 0, None, None),
        )
        .await
        .unwrap();
    assert_eq!(missing, Transition::Missing);
    let r = store.get(&m.id).await.unwrap().unwrap();
    assert_eq!(r.status, Status::Cancelled);
    assert_eq!(r.events.len(), 3);

    // The applied change (and only it) produced one callback job.
    let hooks = drain(store, Lane::Webhook).await;
    let mine: Vec<_> = hooks
        .iter()
        .filter_map(|l| match &l.job.task {
            Task::Callback(c) => Some(c.clone()),
            _ => None,
        })
        .filter(|p| p.message_id == m.id)
        .collect();
    assert_eq!(mine.len(), 1, "one callback per applied transition");
    assert_eq!(mine[0].status, Status::Cancelled);
    // It carries what its POST says of the message: no load needed.
    assert_eq!(
        mine[0].context,
        Some(goniec_store::CallbackContext {
            tenant: "t-acc".into(),
            channel: Channel::Sms,
            to: "+48500000001".into(),
            client_ref: Some("inv-1".into()),
            url: Some("https://example.com/cb".into()),
        })
    );
    for l in &hooks {
        complete(store, l, None, None).await.unwrap();
    }
    // The cancelled message's queue entry is still there for a worker to drop.
    for l in drain(store, Lane::Channel(Channel::Sms)).await {
        complete(store, &l, None, None).await.unwrap();
    }
}

async fn claim_complete_correlate(store: &dyn Store) {
    let msgs: Vec<_> = (0..5)
        .map(|i| message("t-claim", &format!("+4850000010{i}"), None, false, None))
        .collect();
    store.accept(&msgs, None).await.unwrap();
    assert!(
        store
            .lane_stats(Lane::Channel(Channel::Sms), now_ms())
            .await
            .unwrap()
            .depth
            >= 5
    );
    let leases = drain(store, Lane::Channel(Channel::Sms)).await;
    // First in, first out within a partition (where a recipient's messages are).
    for l in &leases {
        assert_eq!(l.partition, goniec_store::model::partition_of(&l.job.id));
    }
    let order = |ids: Vec<&String>| -> Vec<(u16, String)> {
        let mut v: Vec<(u16, String)> = ids
            .into_iter()
            .map(|id| (goniec_store::model::partition_of(id), id.clone()))
            .collect();
        v.sort_by_key(|(p, _)| *p); // stable: keeps the order within a partition
        v
    };
    assert_eq!(
        order(leases.iter().map(|l| &l.job.id).collect()),
        order(msgs.iter().map(|m| &m.id).collect()),
        "FIFO order within each partition"
    );
    assert!(leases.iter().all(|l| l.job.attempt == 0 && !l.reclaimed));
    for (i, l) in leases.iter().enumerate() {
        let ch = Change::new(Status::Submitted, now_ms(), None, Some(format!("pid-{i}")));
        let t = complete(
            store,
            l,
            Some(&ch),
            Some(("smsc-a", &[format!("PID{i}"), format!("PART{i}")])),
        )
        .await
        .unwrap();
        assert_eq!(
            t,
            Transition::Applied {
                from: Status::Queued
            }
        );
    }
    assert_eq!(
        store.correlate("smsc-a", "PID3").await.unwrap().as_deref(),
        Some(leases[3].job.id.as_str())
    );
    assert_eq!(store.correlate("smsc-b", "PID3").await.unwrap(), None);
    assert_eq!(
        store.correlate("smsc-a", "PART3").await.unwrap().as_deref(),
        Some(leases[3].job.id.as_str()),
        "every part's provider id maps to the message"
    );
    assert_eq!(
        store.get(&msgs[0].id).await.unwrap().unwrap().status,
        Status::Submitted
    );
    // Acknowledged: nothing left to claim or reclaim.
    assert!(drain(store, Lane::Channel(Channel::Sms)).await.is_empty());
    assert!(store
        .reclaim(Lane::Channel(Channel::Sms), "other", Duration::ZERO, 100)
        .await
        .unwrap()
        .is_empty());
    let s = store
        .lane_stats(Lane::Channel(Channel::Sms), now_ms())
        .await
        .unwrap();
    assert_eq!(s.depth, 0);
}

async fn retry_and_promote(store: &dyn Store) {
    let m = message("t-retry", "+48500000200", None, false, None);
    store.accept(std::slice::from_ref(&m), None).await.unwrap();
    let lane = Lane::Channel(Channel::Sms);
    let l = drain(store, lane).await.pop().unwrap();
    let at = now_ms() + 60_000;
    retry(store, &l, at, l.job.attempt + 1).await.unwrap();
    assert_eq!(store.lane_stats(lane, now_ms()).await.unwrap().scheduled, 1);
    assert_eq!(
        store.promote_due(lane, now_ms(), 100).await.unwrap(),
        0,
        "not due yet"
    );
    assert!(drain(store, lane).await.is_empty());
    assert_eq!(store.promote_due(lane, at, 100).await.unwrap(), 1);
    let l2 = drain(store, lane).await.pop().expect("promoted");
    assert_eq!(l2.job.id, m.id);
    assert_eq!(l2.job.attempt, 1);
    complete(store, &l2, None, None).await.unwrap();
    assert_eq!(
        store.get(&m.id).await.unwrap().unwrap().status,
        Status::Queued,
        "retry keeps status"
    );
}

async fn bury_dead_letters(store: &dyn Store) {
    let m = message("t-bury", "+48500000300", None, false, None);
    store.accept(std::slice::from_ref(&m), None).await.unwrap();
    let lane = Lane::Channel(Channel::Sms);
    let l = drain(store, lane).await.pop().unwrap();
    let ch = Change::new(Status::Failed, now_ms(), Some("max_attempts".into()), None);
    assert!(bury(store, &l, "max_attempts", Some(&ch))
        .await
        .unwrap()
        .applied());
    let dead = store.dead_letters(lane, 1000).await.unwrap();
    let d = dead
        .iter()
        .find(|d| d.job.id == m.id && d.reason == "max_attempts")
        .expect("buried job listed")
        .clone();
    assert_eq!(
        store.get(&m.id).await.unwrap().unwrap().status,
        Status::Failed
    );
    assert!(drain(store, lane).await.is_empty());

    // An operator sends it back, once: a second requeue of the same id finds
    // nothing, and the job comes out of the lane with its attempts reset.
    let op = store.operator();
    assert_eq!(op.dead_letter(lane, &d.id).await.unwrap(), Some(d.clone()));
    assert_eq!(op.dead_letter(lane, "0.1-1").await.unwrap(), None);
    assert_eq!(op.dead_letter(lane, "junk").await.unwrap(), None);
    let fresh = Job {
        attempt: 0,
        ..d.job.clone()
    };
    let now = now_ms();
    assert!(op
        .requeue_dead(lane, &d.id, &fresh, "t-bury", now)
        .await
        .unwrap());
    assert!(!op
        .requeue_dead(lane, &d.id, &fresh, "t-bury", now)
        .await
        .unwrap());
    assert!(!store
        .dead_letters(lane, 1000)
        .await
        .unwrap()
        .iter()
        .any(|x| x.id == d.id));
    assert_eq!(store.promote_due(lane, now + 1, 100).await.unwrap(), 1);
    let back = drain(store, lane).await;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].job, fresh);
    // Buried again, then thrown away: once.
    assert!(bury(store, &back[0], "max_attempts", None).await.is_ok());
    let d = store
        .dead_letters(lane, 1000)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.job.id == m.id)
        .expect("buried again");
    assert!(op.discard_dead(lane, &d.id).await.unwrap());
    assert!(!op.discard_dead(lane, &d.id).await.unwrap());
    assert!(!op.discard_dead(lane, "junk").await.unwrap());
    assert_eq!(op.dead_letter(lane, &d.id).await.unwrap(), None);
    assert!(drain(store, lane).await.is_empty());
}

/// A skipped (paused) tenant's entries stay in the queue, unclaimed, while
/// another tenant's are claimed; once no longer skipped, they are claimed.
async fn skipped_tenants_are_not_claimed(store: &dyn Store) {
    let lane = Lane::Channel(Channel::Sms);
    let paused = message("t-paused", "+48500000320", None, false, None);
    let other = message("t-running", "+48500000321", None, false, None);
    store.skip_tenants(["t-paused".to_string()].into());
    store
        .accept(&[paused.clone(), other.clone()], None)
        .await
        .unwrap();
    let got = drain(store, lane).await;
    assert_eq!(
        got.iter().map(|l| l.job.id.clone()).collect::<Vec<_>>(),
        vec![other.id.clone()]
    );
    for l in &got {
        complete(store, l, None, None).await.unwrap();
    }
    store.skip_tenants(Default::default());
    let got = drain(store, lane).await;
    assert_eq!(
        got.iter().map(|l| l.job.id.clone()).collect::<Vec<_>>(),
        vec![paused.id.clone()]
    );
    for l in &got {
        complete(store, l, None, None).await.unwrap();
    }
}

async fn operator_pauses_audit_and_due_soon(store: &dyn Store) {
    let op = store.operator();
    assert!(op
        .set_pause("tenant:acme", Some(r#"{"by":"a"}"#))
        .await
        .unwrap());
    assert!(!op
        .set_pause("tenant:acme", Some(r#"{"by":"b"}"#))
        .await
        .unwrap());
    assert!(op
        .set_pause("connector:smsc", Some(r#"{"by":"c"}"#))
        .await
        .unwrap());
    assert_eq!(
        op.pauses().await.unwrap(),
        vec![
            ("connector:smsc".to_string(), r#"{"by":"c"}"#.to_string()),
            ("tenant:acme".to_string(), r#"{"by":"a"}"#.to_string()),
        ]
    );
    assert!(op.set_pause("tenant:acme", None).await.unwrap());
    assert!(!op.set_pause("tenant:acme", None).await.unwrap());
    assert!(op.set_pause("connector:smsc", None).await.unwrap());
    assert!(op.pauses().await.unwrap().is_empty());

    let before = op.audit_log(100_000).await.unwrap().len();
    for i in 0..3 {
        op.audit(&format!("entry {i}")).await.unwrap();
    }
    let log = op.audit_log(2).await.unwrap();
    assert_eq!(log, vec!["entry 2".to_string(), "entry 1".to_string()]);
    assert_eq!(op.audit_log(100_000).await.unwrap().len(), before + 3);
    assert!(op.audit_log(0).await.unwrap().is_empty());

    // Entries due within 15 minutes count as due soon; later ones do not.
    let lane = Lane::Channel(Channel::Sms);
    let now = now_ms();
    let base = store.lane_stats(lane, now).await.unwrap();
    let soon = message("t-soon", "+48500000310", None, false, Some(now + 60_000));
    let later = message("t-soon", "+48500000311", None, false, Some(now + 3_600_000));
    store.accept(&[soon, later], None).await.unwrap();
    let stats = store.lane_stats(lane, now).await.unwrap();
    assert_eq!(stats.scheduled, base.scheduled + 2);
    assert_eq!(stats.due_soon, base.due_soon + 1);
}

async fn reclaim_abandoned(store: &dyn Store) {
    let m = message("t-reclaim", "+48500000400", None, false, None);
    store.accept(std::slice::from_ref(&m), None).await.unwrap();
    let lane = Lane::Channel(Channel::Sms);
    let l = drain(store, lane).await.pop().unwrap();
    // A live holder keeps it while it is younger than min_idle.
    assert!(store
        .reclaim(lane, "rescuer", Duration::from_secs(3600), 10)
        .await
        .unwrap()
        .is_empty());
    tokio::time::sleep(Duration::from_millis(30)).await;
    let back = store
        .reclaim(lane, "rescuer", Duration::from_millis(10), 10)
        .await
        .unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].job, l.job);
    assert!(back[0].reclaimed);
    complete(store, &back[0], None, None).await.unwrap();
    assert!(store
        .reclaim(lane, "rescuer", Duration::ZERO, 10)
        .await
        .unwrap()
        .is_empty());
}

async fn scheduled_messages(store: &dyn Store) {
    let due = now_ms() + 3_600_000;
    let m = message("t-sched", "+48500000500", None, false, Some(due));
    store.accept(std::slice::from_ref(&m), None).await.unwrap();
    let lane = Lane::Channel(Channel::Sms);
    assert_eq!(
        store.get(&m.id).await.unwrap().unwrap().status,
        Status::Scheduled
    );
    assert_eq!(store.promote_due(lane, now_ms(), 10).await.unwrap(), 0);
    assert!(drain(store, lane).await.is_empty());
    assert_eq!(store.promote_due(lane, due, 10).await.unwrap(), 1);
    let r = store.get(&m.id).await.unwrap().unwrap();
    assert_eq!(r.status, Status::Queued);
    assert_eq!(r.events.last().unwrap().status, Status::Queued);
    let l = drain(store, lane).await;
    assert_eq!(l.len(), 1);
    complete(store, &l[0], None, None).await.unwrap();
}

async fn history_newest_first_with_cursor(store: &dyn Store) {
    let mut ids = Vec::new();
    for i in 0..5 {
        let m = message(
            "t-hist",
            "+48500000600",
            Some(if i % 2 == 0 { "even" } else { "odd" }),
            false,
            None,
        );
        store.accept(std::slice::from_ref(&m), None).await.unwrap();
        ids.push(m.id.clone());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let other = message("t-hist-other", "+48500000600", None, false, None);
    store
        .accept(std::slice::from_ref(&other), None)
        .await
        .unwrap();
    let to = HistoryKey::To("+48500000600".into());
    let page1 = store.history("t-hist", &to, None, 3).await.unwrap();
    assert_eq!(page1, vec![ids[4].clone(), ids[3].clone(), ids[2].clone()]);
    let page2 = store
        .history("t-hist", &to, Some(&page1[2]), 3)
        .await
        .unwrap();
    assert_eq!(page2, vec![ids[1].clone(), ids[0].clone()]);
    let evens = store
        .history("t-hist", &HistoryKey::ClientRef("even".into()), None, 10)
        .await
        .unwrap();
    assert_eq!(evens, vec![ids[4].clone(), ids[2].clone(), ids[0].clone()]);
    // Another tenant's messages to the same number stay invisible.
    assert_eq!(
        store.history("t-hist-other", &to, None, 10).await.unwrap(),
        vec![other.id.clone()]
    );
    assert!(store
        .history("t-nobody", &to, None, 10)
        .await
        .unwrap()
        .is_empty());
    for l in drain(store, Lane::Channel(Channel::Sms)).await {
        complete(store, &l, None, None).await.unwrap();
    }
}

async fn idempotency(store: &dyn Store) {
    assert_eq!(
        store.idem_begin("t-idem", "k1", "fp1").await.unwrap(),
        IdemBegin::New
    );
    assert_eq!(
        store.idem_begin("t-idem", "k1", "fp1").await.unwrap(),
        IdemBegin::InProgress {
            fingerprint: "fp1".into()
        }
    );
    // Same key, another tenant: independent.
    assert_eq!(
        store.idem_begin("t-idem-2", "k1", "fpX").await.unwrap(),
        IdemBegin::New
    );
    let m = message("t-idem", "+48500000700", None, false, None);
    let body = r#"{"id":"x|y"}"#;
    let w = IdemWrite {
        tenant: "t-idem",
        key: "k1",
        fingerprint: "fp1",
        status: 202,
        body,
    };
    store
        .accept(std::slice::from_ref(&m), Some(w))
        .await
        .unwrap();
    assert_eq!(
        store.idem_begin("t-idem", "k1", "other").await.unwrap(),
        IdemBegin::Done {
            fingerprint: "fp1".into(),
            status: 202,
            body: body.into()
        }
    );
    // Abort drops a reservation but never a completed response.
    store.idem_abort("t-idem", "k1").await.unwrap();
    assert!(matches!(
        store.idem_begin("t-idem", "k1", "fp1").await.unwrap(),
        IdemBegin::Done { .. }
    ));
    store.idem_abort("t-idem-2", "k1").await.unwrap();
    assert_eq!(
        store.idem_begin("t-idem-2", "k1", "fpY").await.unwrap(),
        IdemBegin::New
    );
    for l in drain(store, Lane::Channel(Channel::Sms)).await {
        complete(store, &l, None, None).await.unwrap();
    }
}

/// Fairness: a tenant with a backlog cannot make another tenant's new messages
/// wait behind it; each tenant's queue gets its share of every claim.
async fn one_tenants_backlog_does_not_hold_up_another(store: &dyn Store) {
    let lane = Lane::Channel(Channel::Sms);
    let backlog: Vec<_> = (0..300)
        .map(|i| message("t-fair-a", &format!("+48501{i:06}"), None, false, None))
        .collect();
    store.accept(&backlog, None).await.unwrap();
    let late: Vec<_> = (0..3)
        .map(|i| message("t-fair-b", &format!("+48502{i:06}"), None, false, None))
        .collect();
    store.accept(&late, None).await.unwrap();
    let mut claimed = Vec::new();
    for _ in 0..2 {
        claimed.extend(
            store
                .claim(lane, "conformance", 30, Duration::from_millis(50))
                .await
                .unwrap(),
        );
    }
    assert!(claimed.len() <= 2 * (30 + 300), "bounded claims");
    let b: Vec<&Lease> = claimed.iter().filter(|l| l.tenant == "t-fair-b").collect();
    assert_eq!(
        b.len(),
        3,
        "the other tenant's 3 messages come in the first claims, not after 300"
    );
    for l in &claimed {
        let want = if late.iter().any(|m| m.id == l.job.id) {
            "t-fair-b"
        } else {
            "t-fair-a"
        };
        assert_eq!(l.tenant, want, "a lease names its queue's tenant");
    }
    for l in claimed.iter().chain(drain(store, lane).await.iter()) {
        complete(store, l, None, None).await.unwrap();
    }
}
