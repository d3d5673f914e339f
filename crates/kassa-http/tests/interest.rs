//! Interest over HTTP, on SQLite and PostgreSQL: a savings account with a
//! balance over a month gets one posting of the exact amount at month end;
//! re-runs pay nothing; the next month carries the remainder; only admins
//! run the job; a day that is not over is refused unless the bank allows it.
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

fn gcd(a: i128, b: i128) -> i128 {
    if b == 0 { a.abs() } else { gcd(b, a % b) }
}

/// An exact non-negative fraction.
#[derive(Clone, Copy, Debug)]
struct Frac(i128, i128);

impl Frac {
    fn add(self, other: Frac) -> Frac {
        let (n, d) = (self.0 * other.1 + other.0 * self.1, self.1 * other.1);
        let g = gcd(n, d).max(1);
        Frac(n / g, d / g)
    }
    fn floor(self) -> i128 {
        self.0 / self.1
    }
}

fn is_leap(year: i16) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// `balance * 5 / 100 / days_in_year` for each day of `days`.
fn exact_interest(balance_minor: i128, days: &[Day]) -> Frac {
    days.iter().fold(Frac(0, 1), |sum, day| {
        let year = if is_leap(day.year()) { 366 } else { 365 };
        sum.add(Frac(balance_minor * 5, 100 * year))
    })
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
    let total = exact.add(exact_interest(after_first, &next_days));
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
