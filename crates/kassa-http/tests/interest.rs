//! Interest over HTTP, on SQLite and PostgreSQL: a savings account with a
//! balance over a month gets one posting of the exact amount at month end;
//! re-runs pay nothing; the next month carries the remainder; only admins
//! run the job; a day that is not over is refused unless the bank allows it;
//! a credit card from an approved application is charged on its debt.
//! Expected amounts are computed here as exact fractions, independently of
//! the service's fixed-point formula.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    missing_debug_implementations,
    unreachable_pub
)]

mod common;
use common::*;

use kassa_service::calendar::{self, Day};
use kassa_testkit::frac::{Frac, days_in_year};

/// `balance * 5 / 100 / days_in_year` for each day of `days`.
fn exact_interest(balance_minor: i128, days: &[Day]) -> Frac {
    days.iter().fold(Frac::ZERO, |sum, day| sum + Frac::new(balance_minor * 5, 100 * days_in_year(day.year())))
}

fn days_between(from: Day, to: Day) -> Vec<Day> {
    let mut days = Vec::new();
    let mut day = from;
    while day <= to {
        days.push(day);
        day = calendar::next_day(day).unwrap();
    }
    days
}

fn today() -> Day {
    calendar::day_of(&calendar::zone("Europe/Minsk").unwrap(), kassa_store::now_us())
}

fn minor(text: &str) -> i128 {
    let (whole, cents) = text.split_once('.').unwrap();
    whole.parse::<i128>().unwrap() * 100 + cents.parse::<i128>().unwrap()
}

async fn run(app: &App, as_of: Day) -> Value {
    let answer = app.post("/api/v1/admin/jobs/interest", Some(&app.admin), json!({"as_of": as_of.to_string()})).await;
    assert_eq!(answer.status, 200, "{:?}: run {as_of}: {}", app.engine, answer.body);
    answer.body
}

async fn open_savings(app: &App, token: &str) -> Value {
    let form = json!({"kind": "savings", "currency": "BYN",
        "consents": [{"document": "terms", "version": "2026-01"}, {"document": "savings", "version": "2026-01"}]});
    let answer = app.post("/api/v1/accounts", Some(token), form).await;
    assert_eq!(answer.status, 201, "{:?}: open savings: {}", app.engine, answer.body);
    answer.body
}

async fn savings_interest_posts_once_a_month(engine: Engine) {
    let Some(app) = spawn_app_with(engine, vec![], |settings| settings.interest.future_days_allowed = true).await
    else {
        return;
    };
    let customer = app.register(1).await;
    let savings = open_savings(&app, &customer.token).await;
    let id = id_of(&savings);
    app.deposit(&savings, "1000.00").await;
    let first = today();
    let month_end = first.last_of_month();
    let days = days_between(first, month_end);

    // One run per day: only the month's last day posts, the exact amount
    // truncated to whole kopecks.
    let exact = exact_interest(100_000, &days);
    let mut posted = Vec::new();
    for day in &days {
        let report = run(&app, *day).await;
        assert_eq!(report["complete"], true, "{report}");
        assert!(report["failures"].as_array().unwrap().is_empty(), "{report}");
        posted.extend(report["postings"].as_array().unwrap().iter().filter(|p| p["account"] == id).cloned());
    }
    assert_eq!(posted.len(), 1, "{:?}: {posted:?}", app.engine);
    assert_eq!(posted[0]["month"], month_end.to_string()[..7]);
    assert_eq!(minor(posted[0]["amount"].as_str().unwrap()), exact.floor(), "{posted:?}");
    let after_first = minor(&app.balance(&customer.token, id).await);
    assert_eq!(after_first, 100_000 + exact.floor());

    // Running every day again pays nothing and accrues nothing.
    for day in &days {
        let report = run(&app, *day).await;
        assert_eq!(report["days_accrued"], 0, "{report}");
        assert!(report["postings"].as_array().unwrap().is_empty(), "{report}");
    }
    assert_eq!(minor(&app.balance(&customer.token, id).await), after_first);
    let history = app.get(&format!("/api/v1/accounts/{id}/transactions"), &customer.token).await;
    let interest: Vec<&Value> =
        history.body["items"].as_array().unwrap().iter().filter(|t| t["kind"] == "interest").collect();
    assert_eq!(interest.len(), 1, "{}", history.body);

    // The whole next month in one run: the first month's remainder is
    // carried, so the two postings together are the floor of the exact sum.
    let next_first = calendar::next_day(month_end).unwrap();
    let next_end = next_first.last_of_month();
    let next_days = days_between(next_first, next_end);
    let report = run(&app, next_end).await;
    let second: Vec<&Value> = report["postings"].as_array().unwrap().iter().filter(|p| p["account"] == id).collect();
    assert_eq!(second.len(), 1, "{report}");
    let total = exact + exact_interest(after_first, &next_days);
    assert_eq!(exact.floor() + minor(second[0]["amount"].as_str().unwrap()), total.floor(), "{report}");
    assert_eq!(minor(&app.balance(&customer.token, id).await), 100_000 + total.floor());
    // And again: nothing.
    let again = run(&app, next_end).await;
    assert!(again["postings"].as_array().unwrap().is_empty(), "{again}");
    assert_eq!(minor(&app.balance(&customer.token, id).await), 100_000 + total.floor());

    // A current account earns nothing; the books still balance.
    let current = app.open_account(&customer.token).await;
    app.deposit(&current, "50.00").await;
    run(&app, next_end).await;
    assert_eq!(app.balance(&customer.token, id_of(&current)).await, "50.00");
}
on_both_engines!(savings_interest_posts_once_a_month);

async fn only_admins_run_the_job_and_only_for_days_that_are_over(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    let customer = app.register(1).await;
    let yesterday = today().yesterday().unwrap().to_string();
    for token in [&customer.token, &app.teller, &app.manager] {
        let answer = app.post("/api/v1/admin/jobs/interest", Some(token), json!({"as_of": yesterday})).await;
        assert_eq!(answer.status, 403, "{}", answer.body);
    }
    let answer = app.post("/api/v1/admin/jobs/interest", None, json!({})).await;
    assert_eq!(answer.status, 401, "{}", answer.body);
    for (as_of, code) in [(today().to_string(), "as_of_not_past"), ("2026-02-30".to_owned(), "date_invalid")] {
        let answer = app.post("/api/v1/admin/jobs/interest", Some(&app.admin), json!({"as_of": as_of})).await;
        assert_eq!((answer.status, answer.code()), (422, code), "{}", answer.body);
    }
    // A misspelt field is refused rather than read as "yesterday".
    let answer = app.post("/api/v1/admin/jobs/interest", Some(&app.admin), json!({"asof": yesterday})).await;
    assert!((400..500).contains(&answer.status), "{}", answer.body);
    // The default is yesterday.
    let answer = app.post("/api/v1/admin/jobs/interest", Some(&app.admin), json!({})).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["as_of"], yesterday);
}
on_both_engines!(only_admins_run_the_job_and_only_for_days_that_are_over);

/// Minor units of a signed decimal amount ("-300.42" → -30042).
fn signed_minor(text: &str) -> i128 {
    match text.strip_prefix('-') {
        Some(rest) => -minor(rest),
        None => minor(text),
    }
}

/// A credit card opened the way a customer gets one — an application a
/// manager approves with a limit — is charged the product's 24 % on its
/// negative balance, once, at month end.
async fn a_card_from_an_approved_application_is_charged_interest(engine: Engine) {
    let Some(app) = spawn_app_with(engine, vec![], |settings| settings.interest.future_days_allowed = true).await
    else {
        return;
    };
    let customer = app.register(1).await;
    let payee = app.register(2).await;
    let payee_account = app.open_account(&payee.token).await;
    let card = app.credit_card(&customer.token, "1000.00", "500.00").await;

    // Spend into the limit: a transfer to another customer.
    let paid = app
        .post(
            "/api/v1/transfers",
            Some(&customer.token),
            json!({"from_account": card.to_string(), "to_account": payee_account["number"], "amount": "300.00", "currency": "BYN"}),
        )
        .await;
    assert_eq!(paid.status, 201, "{engine:?}: pay: {}", paid.body);
    assert_eq!(signed_minor(&app.balance(&customer.token, card).await), -30_000, "{engine:?}");

    // The month in one run: 24 % a year on 300.00 from today to month end.
    let month_end = today().last_of_month();
    let exact = days_between(today(), month_end)
        .iter()
        .fold(Frac::ZERO, |sum, day| sum + Frac::new(30_000 * 24, 100 * days_in_year(day.year())));
    let report = run(&app, month_end).await;
    assert_eq!(report["complete"], true, "{engine:?}: {report}");
    assert!(report["failures"].as_array().unwrap().is_empty(), "{engine:?}: {report}");
    let charges: Vec<&Value> = report["postings"].as_array().unwrap().iter().filter(|p| p["account"] == card).collect();
    assert_eq!(charges.len(), 1, "{engine:?}: {report}");
    assert_eq!(charges[0]["direction"], "charge", "{engine:?}: {report}");
    assert_eq!(charges[0]["overdraft"], false, "{engine:?}: within the limit: {report}");
    assert_eq!(minor(charges[0]["amount"].as_str().unwrap()), exact.floor(), "{engine:?}: {report}");
    assert!(exact.floor() > 0, "{engine:?}: a month of 24 % on 300.00 is at least a kopeck");
    assert_eq!(signed_minor(&app.balance(&customer.token, card).await), -30_000 - exact.floor(), "{engine:?}");
    // The payee's account earns nothing, and a second run charges nothing more.
    let again = run(&app, month_end).await;
    assert!(again["postings"].as_array().unwrap().is_empty(), "{engine:?}: {again}");
    assert_eq!(signed_minor(&app.balance(&customer.token, card).await), -30_000 - exact.floor(), "{engine:?}");
    assert_eq!(app.balance(&payee.token, id_of(&payee_account)).await, "300.00", "{engine:?}");
}
on_both_engines!(a_card_from_an_approved_application_is_charged_interest);
