//! Daily limits and four-eyes approvals over HTTP, on SQLite and PostgreSQL.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    missing_debug_implementations
)]

mod common;

use common::*;

/// A customer with a BYN account holding `amount`.
async fn funded(app: &App, n: u32, amount: &str) -> (Customer, Value) {
    let customer = app.register(n).await;
    let account = app.open_account(&customer.token).await;
    app.deposit(&account, amount).await;
    (customer, account)
}

async fn withdraw(app: &App, token: &str, account: &Value, amount: &str) -> Answer {
    app.post(
        "/api/v1/staff/cash/withdrawals",
        Some(token),
        json!({"account": account["number"], "amount": amount, "currency": "BYN"}),
    )
    .await
}

async fn staff_transfer(app: &App, token: &str, from: &Value, to: &Value, amount: &str) -> Answer {
    app.post(
        "/api/v1/staff/transfers",
        Some(token),
        json!({"from_account": from["number"], "to_account": to["number"], "amount": amount, "currency": "BYN"}),
    )
    .await
}

async fn limits(app: &App, account: &Value) -> Value {
    let answer = app.get(&format!("/api/v1/staff/accounts/{}/limits", id_of(account)), &app.teller).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body
}

async fn set_limits(app: &App, token: &str, account: &Value, body: Value) -> Answer {
    app.send(Method::PUT, &format!("/api/v1/staff/accounts/{}/limits", id_of(account)), Some(token), Some(body)).await
}

async fn staff_view(app: &App, account: &Value) -> Value {
    let answer = app.get(&format!("/api/v1/staff/accounts/{}", id_of(account)), &app.teller).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body
}

async fn journal(app: &App, action: &str) -> Vec<Value> {
    let answer = app.get(&format!("/api/v1/staff/audit?action={action}"), &app.manager).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["items"].as_array().unwrap().clone()
}

fn approve_path(id: &Value) -> String {
    format!("/api/v1/staff/approvals/{id}/approve")
}

fn reject_path(id: &Value) -> String {
    format!("/api/v1/staff/approvals/{id}/reject")
}

// ------------------------------------------------------------------ limits

async fn a_limit_reached_exactly_at_the_boundary(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    let (customer, account) = funded(&app, 1, "100.00").await;
    let (_, other) = funded(&app, 2, "1.00").await;

    // Defaults come from the product until a manager sets the account's own.
    let before = limits(&app, &account).await;
    assert_eq!(before["daily_withdrawal"]["source"], "product", "{before}");
    assert_eq!(before["daily_withdrawal"]["used_today"], "0.00", "{before}");

    // Only managers change limits.
    let body = json!({"daily_withdrawal": "30.00", "daily_transfer": "20.00"});
    assert_eq!(set_limits(&app, &customer.token, &account, body.clone()).await.status, 403);
    assert_eq!(set_limits(&app, &app.teller, &account, body.clone()).await.status, 403);
    let bad = set_limits(&app, &app.manager, &account, json!({"daily_transfer": "-1.00"})).await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    let set = set_limits(&app, &app.manager, &account, body).await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(set.body["daily_withdrawal"]["limit"], "30.00", "{}", set.body);
    assert_eq!(set.body["daily_withdrawal"]["source"], "account", "{}", set.body);
    assert_eq!(set.body["daily_transfer"]["limit"], "20.00", "{}", set.body);

    // Withdrawals: exactly the limit passes, one minor unit more is refused.
    assert_eq!(withdraw(&app, &app.teller, &account, "29.99").await.status, 201);
    let over = withdraw(&app, &app.teller, &account, "0.02").await;
    assert_eq!(over.status, 422, "{}", over.body);
    assert_eq!(over.code(), "daily_limit_exceeded");
    let detail = over.body["detail"].as_str().unwrap();
    assert!(detail.contains("daily_withdrawal") && detail.contains("0.01 BYN is left"), "{detail}");
    assert_eq!(withdraw(&app, &app.teller, &account, "0.01").await.status, 201);
    let over = withdraw(&app, &app.teller, &account, "0.01").await;
    assert_eq!(over.code(), "daily_limit_exceeded", "{}", over.body);
    assert!(over.body["detail"].as_str().unwrap().contains("0.00 BYN is left"), "{}", over.body);

    // Transfers (customer and staff) count against the transfer limit.
    let me = id_of(&account);
    let pay = |amount: &'static str| {
        let app = &app;
        let token = customer.token.clone();
        let to = other["number"].clone();
        async move {
            app.post(
                "/api/v1/transfers",
                Some(&token),
                json!({"from_account": me.to_string(), "to_account": to, "amount": amount, "currency": "BYN"}),
            )
            .await
        }
    };
    assert_eq!(pay("15.00").await.status, 201);
    assert_eq!(staff_transfer(&app, &app.teller, &account, &other, "4.00").await.status, 201);
    let over = pay("1.01").await;
    assert_eq!(over.status, 422, "{}", over.body);
    assert_eq!(over.code(), "daily_limit_exceeded");
    let detail = over.body["detail"].as_str().unwrap();
    assert!(detail.contains("daily_transfer") && detail.contains("1.00 BYN is left"), "{detail}");
    assert_eq!(pay("1.00").await.status, 201);

    let after = limits(&app, &account).await;
    assert_eq!(after["daily_withdrawal"]["used_today"], "30.00", "{after}");
    assert_eq!(after["daily_withdrawal"]["left_today"], "0.00", "{after}");
    assert_eq!(after["daily_transfer"]["used_today"], "20.00", "{after}");
    assert_eq!(app.balance(&customer.token, me).await, "50.00");

    // A refusal is journaled with its code.
    let refused = journal(&app, "cash.withdrawal").await;
    assert!(refused.iter().any(|event| event["outcome"] == "daily_limit_exceeded"), "{refused:?}");

    // An operation the ledger refuses gives its reservation back.
    let set = set_limits(&app, &app.manager, &account, json!({"daily_withdrawal": "1000.00"})).await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(set.body["daily_transfer"]["limit"], "20.00", "an absent field is left as it was: {}", set.body);
    let poor = withdraw(&app, &app.teller, &account, "60.00").await;
    assert_eq!(poor.status, 422, "{}", poor.body);
    assert_ne!(poor.code(), "daily_limit_exceeded");
    assert_eq!(limits(&app, &account).await["daily_withdrawal"]["used_today"], "30.00");
}
on_both_engines!(a_limit_reached_exactly_at_the_boundary);

async fn concurrent_withdrawals_never_pass_a_limit_together(engine: Engine) {
    let Some(app) = spawn_app(engine).await else { return };
    let (customer, account) = funded(&app, 1, "100.00").await;
    let set = set_limits(&app, &app.manager, &account, json!({"daily_withdrawal": "10.00"})).await;
    assert_eq!(set.status, 200, "{}", set.body);
    let attempts = (0..6).map(|_| withdraw(&app, &app.teller, &account, "4.00"));
    let answers = futures_join_all(attempts).await;
    let passed = answers.iter().filter(|answer| answer.status == 201).count();
    let refused = answers.iter().filter(|answer| answer.code() == "daily_limit_exceeded").count();
    assert_eq!((passed, refused), (2, 4), "{:?}", answers.iter().map(|a| &a.body).collect::<Vec<_>>());
    assert_eq!(app.balance(&customer.token, id_of(&account)).await, "92.00");
    assert_eq!(limits(&app, &account).await["daily_withdrawal"]["used_today"], "8.00");
}
on_both_engines!(concurrent_withdrawals_never_pass_a_limit_together);

/// Runs the futures at once (on the test's runtime) and waits for all.
async fn futures_join_all<F: std::future::Future<Output = Answer>>(futures: impl Iterator<Item = F>) -> Vec<Answer> {
    let futures: Vec<_> = futures.map(Box::pin).collect();
    let mut out = Vec::new();
    let mut pending: Vec<_> = futures.into_iter().map(Some).collect();
    // Poll all together: a small join_all without an extra dependency.
    std::future::poll_fn(|cx| {
        let mut all = true;
        for slot in &mut pending {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(answer) => {
                        out.push(answer);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
    out
}

// ------------------------------------------------------------------ four eyes

/// Thresholds of 10.00 for withdrawals and staff transfers, 100.00 for
/// credit limits.
async fn four_eyes_app(engine: Engine, expiry_s: u32, sweep_every_s: u32) -> Option<App> {
    spawn_app_with(engine, vec![], |settings| {
        settings.approvals.cash_withdrawal_over = 1000;
        settings.approvals.staff_transfer_over = 1000;
        settings.approvals.credit_limit_over = 10_000;
        settings.approvals.expiry_s = expiry_s;
        settings.approvals.sweep_every_s = sweep_every_s;
    })
    .await
}

async fn four_eyes_maker_and_customer_cannot_approve(engine: Engine) {
    let Some(app) = four_eyes_app(engine, 3600, 3600).await else { return };
    let (customer, account) = funded(&app, 1, "100.00").await;
    let (_, other) = funded(&app, 2, "1.00").await;

    // At the threshold it runs at once; above it, it waits (202) and holds.
    assert_eq!(withdraw(&app, &app.teller, &account, "10.00").await.status, 201);
    let asked = withdraw(&app, &app.teller, &account, "50.00").await;
    assert_eq!(asked.status, 202, "{}", asked.body);
    assert_eq!(asked.body["object"], "approval");
    assert_eq!(asked.body["status"], "pending");
    assert_eq!(asked.body["kind"], "cash_withdrawal");
    let id = asked.body["id"].clone();
    let held = staff_view(&app, &account).await;
    assert_eq!(held["balance"], "90.00", "{held}");
    assert_eq!(held["available"], "40.00", "{held}");

    // A customer can neither see nor approve; the teller who made it lacks the role.
    assert_eq!(app.get("/api/v1/staff/approvals", &customer.token).await.status, 403);
    assert_eq!(app.post(&approve_path(&id), Some(&customer.token), json!({})).await.status, 403);
    assert_eq!(app.post(&approve_path(&id), Some(&app.teller), json!({})).await.status, 403);

    // A manager's own request cannot be approved by that manager.
    let own = staff_transfer(&app, &app.manager, &account, &other, "20.00").await;
    assert_eq!(own.status, 202, "{}", own.body);
    assert_eq!(own.body["kind"], "staff_transfer");
    let refused = app.post(&approve_path(&own.body["id"]), Some(&app.manager), json!({})).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.code(), "maker_cannot_approve");
    assert_eq!(staff_view(&app, &account).await["available"], "20.00");

    // A second staff member with the role approves: the hold posts.
    let approved = app.post(&approve_path(&id), Some(&app.manager), json!({})).await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    assert_eq!(approved.body["status"], "approved");
    assert!(approved.body["executed_at"].is_string(), "{}", approved.body);
    let after = staff_view(&app, &account).await;
    assert_eq!((after["balance"].as_str(), after["available"].as_str()), (Some("40.00"), Some("20.00")), "{after}");
    let again = app.post(&approve_path(&id), Some(&app.admin), json!({})).await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert_eq!(again.code(), "approval_not_pending");
    let by_admin = app.post(&approve_path(&own.body["id"]), Some(&app.admin), json!({})).await;
    assert_eq!(by_admin.status, 200, "{}", by_admin.body);
    assert_eq!(app.balance(&customer.token, id_of(&account)).await, "20.00");
    assert_eq!(staff_view(&app, &other).await["balance"], "21.00");

    // Lists, filtered by status; approvals are journaled.
    let list = app.get("/api/v1/staff/approvals?status=approved", &app.teller).await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.body["items"].as_array().unwrap().len(), 2, "{}", list.body);
    assert_eq!(app.get("/api/v1/staff/approvals?status=bogus", &app.teller).await.status, 422);
    let events = journal(&app, "approval.approve").await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.iter().all(|event| event["outcome"] == "ok"), "{events:?}");
    assert_eq!(journal(&app, "approval.request").await.len(), 2);
}
on_both_engines!(four_eyes_maker_and_customer_cannot_approve);

async fn four_eyes_concurrent_approvals_execute_once(engine: Engine) {
    let Some(app) = four_eyes_app(engine, 3600, 3600).await else { return };
    let (customer, account) = funded(&app, 1, "100.00").await;
    let asked = withdraw(&app, &app.teller, &account, "30.00").await;
    assert_eq!(asked.status, 202, "{}", asked.body);
    let path = approve_path(&asked.body["id"]);
    let tokens = [&app.manager, &app.admin, &app.manager, &app.admin];
    let answers = futures_join_all(tokens.iter().map(|token| app.post(&path, Some(token.as_str()), json!({})))).await;
    let won = answers.iter().filter(|answer| answer.status == 200).count();
    let lost = answers.iter().filter(|answer| answer.code() == "approval_not_pending").count();
    assert_eq!((won, lost), (1, 3), "{:?}", answers.iter().map(|a| &a.body).collect::<Vec<_>>());
    let view = staff_view(&app, &account).await;
    assert_eq!((view["balance"].as_str(), view["available"].as_str()), (Some("70.00"), Some("70.00")), "{view}");
    assert_eq!(app.balance(&customer.token, id_of(&account)).await, "70.00");
    assert_eq!(journal(&app, "approval.approve").await.len(), 1);
}
on_both_engines!(four_eyes_concurrent_approvals_execute_once);

async fn four_eyes_rejecting_releases_the_hold(engine: Engine) {
    let Some(app) = four_eyes_app(engine, 3600, 3600).await else { return };
    let (customer, account) = funded(&app, 1, "100.00").await;
    let (_, other) = funded(&app, 2, "1.00").await;
    let asked = staff_transfer(&app, &app.teller, &account, &other, "60.00").await;
    assert_eq!(asked.status, 202, "{}", asked.body);
    assert_eq!(staff_view(&app, &account).await["available"], "40.00");
    assert_eq!(limits(&app, &account).await["daily_transfer"]["used_today"], "60.00");
    let refused = app.post(&reject_path(&asked.body["id"]), Some(&customer.token), json!({"reason": "no"})).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    // A teller may withdraw their own request, not another's.
    let by_manager = staff_transfer(&app, &app.manager, &account, &other, "11.00").await;
    assert_eq!(by_manager.status, 202, "{}", by_manager.body);
    let refused = app.post(&reject_path(&by_manager.body["id"]), Some(&app.teller), json!({})).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let withdrawn = app.post(&reject_path(&by_manager.body["id"]), Some(&app.manager), json!({})).await;
    assert_eq!(withdrawn.body["status"], "rejected", "{}", withdrawn.body);
    let rejected =
        app.post(&reject_path(&asked.body["id"]), Some(&app.manager), json!({"reason": "not verified"})).await;
    assert_eq!(rejected.status, 200, "{}", rejected.body);
    assert_eq!(rejected.body["status"], "rejected");
    assert_eq!(rejected.body["reason"], "not verified");
    let view = staff_view(&app, &account).await;
    assert_eq!((view["balance"].as_str(), view["available"].as_str()), (Some("100.00"), Some("100.00")), "{view}");
    assert_eq!(staff_view(&app, &other).await["balance"], "1.00");
    assert_eq!(limits(&app, &account).await["daily_transfer"]["used_today"], "0.00");
    let late = app.post(&approve_path(&asked.body["id"]), Some(&app.admin), json!({})).await;
    assert_eq!(late.code(), "approval_not_pending", "{}", late.body);
    let events = journal(&app, "approval.reject").await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.iter().any(|event| event["detail"].to_string().contains("not verified")), "{events:?}");
}
on_both_engines!(four_eyes_rejecting_releases_the_hold);

async fn four_eyes_an_expired_request_releases_its_hold(engine: Engine) {
    let Some(app) = four_eyes_app(engine, 1, 1).await else { return };
    let (_, account) = funded(&app, 1, "100.00").await;
    let asked = withdraw(&app, &app.teller, &account, "25.00").await;
    assert_eq!(asked.status, 202, "{}", asked.body);
    assert_eq!(staff_view(&app, &account).await["available"], "75.00");
    let id = asked.body["id"].clone();
    // The background task expires it; poll a bounded number of times.
    let mut status = Value::Null;
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let answer = app.get(&format!("/api/v1/staff/approvals/{id}"), &app.teller).await;
        status = answer.body["status"].clone();
        if status == "expired" {
            break;
        }
    }
    assert_eq!(status, "expired");
    let view = staff_view(&app, &account).await;
    assert_eq!((view["balance"].as_str(), view["available"].as_str()), (Some("100.00"), Some("100.00")), "{view}");
    assert_eq!(limits(&app, &account).await["daily_withdrawal"]["used_today"], "0.00");
    let late = app.post(&approve_path(&id), Some(&app.manager), json!({})).await;
    assert_eq!(late.status, 409, "{}", late.body);
    let events = journal(&app, "approval.expire").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["actor"], "system", "{events:?}");
}
on_both_engines!(four_eyes_an_expired_request_releases_its_hold);

async fn four_eyes_an_overdue_request_expires_when_approved(engine: Engine) {
    // No sweep during the test: the approval itself finds it overdue.
    let Some(app) = four_eyes_app(engine, 1, 3600).await else { return };
    let (_, account) = funded(&app, 1, "100.00").await;
    let asked = withdraw(&app, &app.teller, &account, "25.00").await;
    assert_eq!(asked.status, 202, "{}", asked.body);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let late = app.post(&approve_path(&asked.body["id"]), Some(&app.manager), json!({})).await;
    assert_eq!(late.status, 422, "{}", late.body);
    assert_eq!(late.code(), "approval_expired");
    assert_eq!(staff_view(&app, &account).await["available"], "100.00");
    assert_eq!(journal(&app, "approval.expire").await.len(), 1);
}
on_both_engines!(four_eyes_an_overdue_request_expires_when_approved);

/// Opens a BYN credit card with a 100.00 limit for `customer` the way a
/// customer gets one: an application a manager approves.
async fn credit_card(app: &App, customer: &Customer) -> Value {
    let card = app.credit_card(&customer.token, "100.00", "100.00").await;
    let answer = app.get(&format!("/api/v1/staff/accounts/{card}"), &app.teller).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["kind"], "credit_card", "{}", answer.body);
    answer.body
}

async fn four_eyes_credit_limit_change(engine: Engine) {
    let Some(app) = four_eyes_app(engine, 3600, 3600).await else { return };
    let (customer, current) = funded(&app, 1, "10.00").await;

    // Only a credit card has a credit limit; daily limits are for any account.
    let refused = set_limits(&app, &app.manager, &current, json!({"credit_limit": "50.00"})).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(refused.code(), "credit_limit_not_allowed", "{}", refused.body);
    let refused = set_limits(&app, &app.manager, &current, json!({"credit_limit": "500.00"})).await;
    assert_eq!(refused.code(), "credit_limit_not_allowed", "no request either: {}", refused.body);
    assert_eq!(app.get("/api/v1/staff/approvals", &app.teller).await.body["items"], json!([]));
    assert_eq!(limits(&app, &current).await["credit_limit"], "0.00");
    let daily = set_limits(&app, &app.manager, &current, json!({"daily_transfer": "20.00"})).await;
    assert_eq!(daily.status, 200, "{}", daily.body);

    let account = credit_card(&app, &customer).await;
    assert_eq!(limits(&app, &account).await["credit_limit"], "100.00");
    app.deposit(&account, "10.00").await;
    let small = set_limits(&app, &app.manager, &account, json!({"credit_limit": "50.00"})).await;
    assert_eq!(small.status, 200, "{}", small.body);
    assert_eq!(small.body["credit_limit"], "50.00");
    let large = set_limits(&app, &app.manager, &account, json!({"credit_limit": "500.00"})).await;
    assert_eq!(large.status, 202, "{}", large.body);
    assert_eq!(large.body["credit_limit"], "50.00", "not set before approval: {}", large.body);
    assert_eq!(large.body["approval"]["kind"], "credit_limit");
    let id = large.body["approval"]["id"].clone();
    let own = app.post(&approve_path(&id), Some(&app.manager), json!({})).await;
    assert_eq!(own.code(), "maker_cannot_approve", "{}", own.body);
    let approved = app.post(&approve_path(&id), Some(&app.admin), json!({})).await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    assert_eq!(app.account(&customer.token, id_of(&account)).await["credit_limit"], "500.00");
    assert_eq!(limits(&app, &account).await["credit_limit"], "500.00");
    // The ledger honours the new limit: the account may go below zero.
    assert_eq!(withdraw(&app, &app.teller, &account, "10.00").await.status, 201);
    assert_eq!(withdraw(&app, &app.teller, &account, "10.00").await.status, 201);
    assert_eq!(app.balance(&customer.token, id_of(&account)).await, "-10.00");
    // Lowering it below what the account uses is refused.
    let below = set_limits(&app, &app.manager, &account, json!({"credit_limit": "5.00"})).await;
    assert_eq!(below.code(), "credit_limit_below_usage", "{}", below.body);
}
on_both_engines!(four_eyes_credit_limit_change);

async fn set_status(app: &App, account: &Value, status: &str) {
    let answer = app
        .send(
            Method::PUT,
            &format!("/api/v1/staff/accounts/{}/status", id_of(account)),
            Some(&app.manager),
            Some(json!({"status": status})),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

async fn four_eyes_a_failed_post_releases_the_hold(engine: Engine) {
    let Some(app) = four_eyes_app(engine, 3600, 3600).await else { return };
    let (_, account) = funded(&app, 1, "100.00").await;
    let (_, other) = funded(&app, 2, "1.00").await;
    let asked = staff_transfer(&app, &app.teller, &account, &other, "60.00").await;
    assert_eq!(asked.status, 202, "{}", asked.body);
    let held = staff_view(&app, &account).await;
    assert_eq!((held["balance"].as_str(), held["available"].as_str()), (Some("100.00"), Some("40.00")), "{held}");
    assert_eq!(limits(&app, &account).await["daily_transfer"]["used_today"], "60.00");

    // The ledger refuses to post from a blocked account: the request fails.
    set_status(&app, &account, "blocked").await;
    let id = asked.body["id"].clone();
    let approved = app.post(&approve_path(&id), Some(&app.admin), json!({})).await;
    assert_eq!(approved.status, 422, "{}", approved.body);
    assert_eq!(approved.code(), "debit_account_blocked", "{}", approved.body);
    let request = app.get(&format!("/api/v1/staff/approvals/{id}"), &app.teller).await;
    assert_eq!(request.body["status"], "failed", "{}", request.body);
    assert_eq!(request.body["reason"], "debit_account_blocked", "{}", request.body);
    assert!(request.body["executed_at"].is_null(), "{}", request.body);

    // Its hold is voided at once (not at the ledger's timeout) and its usage given back.
    let view = staff_view(&app, &account).await;
    assert_eq!((view["balance"].as_str(), view["available"].as_str()), (Some("100.00"), Some("100.00")), "{view}");
    assert_eq!(limits(&app, &account).await["daily_transfer"]["used_today"], "0.00");
    set_status(&app, &account, "active").await;
    assert_eq!(staff_view(&app, &account).await["available"], "100.00");
    assert_eq!(staff_view(&app, &other).await["balance"], "1.00");
    // Nothing is left to finish or expire.
    let late = app.post(&approve_path(&id), Some(&app.manager), json!({})).await;
    assert_eq!(late.code(), "approval_not_pending", "{}", late.body);
}
on_both_engines!(four_eyes_a_failed_post_releases_the_hold);
