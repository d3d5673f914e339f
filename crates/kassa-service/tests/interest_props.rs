//! Interest at the service level.
//!
//! - Property tests of the accrual maths against an independent calculation
//!   in exact rationals (sums of reduced fractions, no common fixed-point
//!   denominator) over random balances, rates and dates, leap years
//!   included; a few precomputed fixtures.
//! - A run stopped between any two of its steps (a budget of one or two
//!   commits per run, run again and again) pays exactly what an
//!   uninterrupted run pays, once; a run task aborted half-way and run again
//!   pays once; two runs at the same time pay what one pays.
//! - A posting the ledger refuses is reported and posted by a later run.
//! - A credit card's negative balance is charged, and the charge may take it
//!   past its limit: reported by the run and by the books' check.
//!
//! Here the card is made directly in the test database (a `credit_card`
//! product and account rows) and money moves through the ledger, to reach
//! states the API would take long to build (a charge past the limit). The
//! way customers get a card — an application a manager approves — and its
//! interest charge are tested over HTTP in
//! `crates/kassa-http/tests/interest.rs`
//! (`a_card_from_an_approved_application_is_charged_interest`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap,
    missing_debug_implementations
)]

use std::sync::Arc;

use kassa_core::ledger::{AccountKind, NewAccount, NewTransfer};
use kassa_core::{AccountId, Amount, Currency, TransferId};
use kassa_ledger::{Ledger, LedgerConfig};
use kassa_service::calendar::{self, Day};
use kassa_service::interest::{CARRY_UNITS_PER_MINOR, Rate, RunForm, RunReport, accrue_day};
use kassa_service::people::Registration;
use kassa_service::{Bank, BankIdentity, Caller, SecretBytes, Settings};
use kassa_store::sql::{self, Database, Value};
use kassa_store::{CheckReport, LedgerStore, StoreError};
use kassa_testkit::frac::{Frac, days_in_year};
use proptest::prelude::*;

// ------------------------------------------------------------- the maths

/// The exact interest of one day: balance × (units / 10^decimals) / days in
/// the day's year.
fn exact_day(balance: i64, rate_units: i64, decimals: u32, day: Day) -> Frac {
    Frac::new(i128::from(balance) * i128::from(rate_units), 10_i128.pow(decimals) * days_in_year(day.year()))
}

fn rate_text(units: i64, decimals: u32) -> String {
    if decimals == 0 {
        return units.to_string();
    }
    let scale = 10_i64.pow(decimals);
    format!("{}.{:0width$}", units / scale, units % scale, width = decimals as usize)
}

fn day_at(offset: i64) -> Day {
    let mut day: Day = "2023-01-01".parse().unwrap();
    for _ in 0..offset {
        day = calendar::next_day(day).unwrap();
    }
    day
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Day by day, the whole minor units accrued so far are the floor of the
    /// exact sum, and the carry is exactly what is left of it.
    #[test]
    fn accrual_is_the_floor_of_the_exact_sum_with_the_rest_carried(
        start in 0_i64..(8 * 366),
        segments in proptest::collection::vec((0_i64..=1_000_000_000_000, 1_usize..=60), 1..12),
        rate_units in 0_i64..=10_000_000,
        decimals in 0_u32..=6,
    ) {
        // Keep the rate at most 10 (1000 %), the job's ceiling.
        let rate_units = if decimals == 0 { rate_units % 11 } else { rate_units.min(10 * 10_i64.pow(decimals)) };
        let text = rate_text(rate_units, decimals);
        let rate = Rate::parse(&text).unwrap();
        prop_assert_eq!(rate.units, i128::from(rate_units) * 10_i128.pow(12 - decimals), "{}", text);
        let mut day = day_at(start);
        let (mut carry, mut accrued) = (0_i64, 0_i128);
        let mut exact = Frac::ZERO;
        for (balance, days) in segments {
            for _ in 0..days {
                let step = accrue_day(balance, rate, day, carry).unwrap();
                carry = step.carry;
                accrued += i128::from(step.accrued_minor);
                exact = exact + exact_day(balance, rate_units, decimals, day);
                prop_assert_eq!(accrued, exact.floor(), "{} on {}", text, day);
                // carry / CARRY_UNITS == exact - floor(exact)
                let rest = exact.0 - exact.floor() * exact.1;
                prop_assert_eq!(i128::from(carry) * exact.1, rest * CARRY_UNITS_PER_MINOR, "carry on {}", day);
                day = calendar::next_day(day).unwrap();
            }
        }
    }
}

#[test]
fn precomputed_fixtures() {
    let rate = |text: &str| Rate::parse(text).unwrap();
    let day = |text: &str| text.parse::<Day>().unwrap();
    // 3660.00 at 10 % on 2024-02-29 (a leap year): exactly 1.00.
    assert_eq!(accrue_day(366_000, rate("0.1"), day("2024-02-29"), 0).unwrap().accrued_minor, 100);
    // 3650.00 at 10 % on 2023-03-01: exactly 1.00; on 2024-03-01 a little less.
    let plain = accrue_day(365_000, rate("0.1"), day("2023-03-01"), 0).unwrap();
    assert_eq!((plain.accrued_minor, plain.carry), (100, 0));
    let leap = accrue_day(365_000, rate("0.1"), day("2024-03-01"), 0).unwrap();
    assert_eq!(leap.accrued_minor, 99, "36500/366 = 99.72… kopecks");
    // 1000.00 at 5 % for one day of 2023 is 13.6986… kopecks: 13 and a carry
    // of 0.6986… that the next day's interest adds to (27.397… → 27).
    let first = accrue_day(100_000, rate("0.05"), day("2023-06-01"), 0).unwrap();
    assert_eq!(first.accrued_minor, 13);
    let second = accrue_day(100_000, rate("0.05"), day("2023-06-02"), first.carry).unwrap();
    assert_eq!(first.accrued_minor + second.accrued_minor, 27);
    // Nothing accrues on nothing, or at 0 %.
    assert_eq!(accrue_day(0, rate("0.05"), day("2023-06-01"), 5).unwrap().carry, 5);
    assert_eq!(accrue_day(100_000, rate("0"), day("2023-06-01"), 0).unwrap().accrued_minor, 0);
}

// ------------------------------------------------------------- a bank

const KEY: u8 = 7;

#[allow(dead_code)]
enum Guard {
    _Dir(tempfile::TempDir),
    _Postgres(kassa_testkit::postgres::TempPostgres),
}

struct TestBank {
    bank: Bank,
    store: Arc<dyn LedgerStore>,
    _guard: Guard,
}

async fn bank(postgres: bool) -> Option<TestBank> {
    let (store, db, guard): (Arc<dyn LedgerStore>, Arc<dyn Database>, Guard) = if postgres {
        let database = kassa_testkit::postgres::TempPostgres::create().await?;
        let store = kassa_store_postgres::PostgresStore::connect(database.url(), 8).await.unwrap();
        (Arc::new(store.clone()), Arc::new(store), Guard::_Postgres(database))
    } else {
        let dir = tempfile::tempdir().unwrap();
        let store = kassa_store_sqlite::SqliteStore::open(dir.path().join("kassa.db")).await.unwrap();
        (Arc::new(store.clone()), Arc::new(store), Guard::_Dir(dir))
    };
    let ledger = Ledger::start(Arc::clone(&store), LedgerConfig::default());
    let mut settings = Settings::new(BankIdentity::default(), SecretBytes(vec![KEY; 32]));
    settings.argon2_memory_kib = 1024;
    settings.interest.enabled = false;
    settings.interest.future_days_allowed = true;
    let bank = Bank::start(db, ledger, settings).await.unwrap();
    Some(TestBank { bank, store, _guard: guard })
}

fn cli() -> Caller {
    Caller::anonymous("cli")
}

impl TestBank {
    async fn customer(&self, n: u32) -> i64 {
        let form = Registration {
            first_name: Some("Anna".into()),
            last_name: Some("Ivanova".into()),
            phone: Some(format!("+3752911100{n:02}")),
            email: Some(format!("c{n}@example.com")),
            password: Some("correct horse battery".into()),
            passport_number: Some(format!("MP12345{n:02}")),
            personal_id: Some(format!("30101{n:02}A001PB5")),
        };
        self.bank.register(&Caller::anonymous("test"), form).await.unwrap().customer.id
    }

    async fn sql_int(&self, query: &'static str, params: Vec<Value>) -> i64 {
        sql::read(&**self.bank.database(), move |tx| tx.query_one(query, &params)?.int(0)).await.unwrap()
    }

    /// An account of `kind` ("savings" or "credit_card") for `customer`,
    /// with rows as the accounts service writes them.
    async fn account(&self, customer: i64, kind: AccountKind, credit_limit: i64, number: &str) -> i64 {
        let product = if kind == AccountKind::CreditCard {
            sql::write(&**self.bank.database(), |tx| {
                if let Some(row) = tx.query_opt("SELECT id FROM products WHERE code = 'card'", &[])? {
                    return row.int(0);
                }
                tx.query_one(
                    "INSERT INTO products (code, kind, name, description, currencies, interest_rate, consents, \
                     active, created_at_us) VALUES ('card', 'credit_card', 'Card', '', 'BYN', '0.24', '[]', 1, 0) \
                     RETURNING id",
                    &[],
                )?
                .int(0)
            })
            .await
            .unwrap()
        } else {
            self.sql_int("SELECT id FROM products WHERE code = 'savings'", vec![]).await
        };
        let account = self
            .bank
            .ledger()
            .create_account(NewAccount {
                number: number.into(),
                owner: Some(customer),
                currency: Currency::BYN,
                kind,
                credit_limit: Amount::from_minor(credit_limit),
            })
            .await
            .unwrap()
            .id
            .0;
        sql::write(&**self.bank.database(), move |tx| {
            tx.execute(
                "INSERT INTO account_details (account_id, customer_id, product_id, currency, nickname, is_default, \
                 consents, opened_by) VALUES ($1, $2, $3, 'BYN', '', 0, '[]', 'test')",
                &[Value::Int(account), Value::Int(customer), Value::Int(product)],
            )
        })
        .await
        .unwrap();
        account
    }

    /// Moves `minor` from `debit` to `credit` (system kinds by name).
    async fn mv(&self, id: u128, debit: i64, credit: i64, minor: i64) {
        let transfer = NewTransfer::single(
            TransferId(id),
            AccountId(debit),
            AccountId(credit),
            Amount::from_minor(minor),
            Currency::BYN,
        );
        self.bank.ledger().transfer(transfer).await.unwrap().unwrap();
    }

    async fn cash(&self) -> i64 {
        self.sql_int("SELECT account_id FROM system_accounts WHERE kind = 'cash' AND currency = 'BYN'", vec![]).await
    }

    async fn balance(&self, account: i64) -> i64 {
        self.store.account(AccountId(account)).await.unwrap().unwrap().balances.posted()
    }

    /// Interest transfers per account: (account, count, total minor).
    async fn interest_transfers(&self, account: i64) -> (i64, i64) {
        sql::read(&**self.bank.database(), move |tx| {
            tx.query_one(
                "SELECT COUNT(*), COALESCE(CAST(SUM(amount) AS BIGINT), 0) FROM transfers WHERE kind = 'interest' \
                 AND (debit_account_id = $1 OR credit_account_id = $1)",
                &[Value::Int(account)],
            )
            .and_then(|row| Ok::<_, StoreError>((row.int(0)?, row.int(1)?)))
        })
        .await
        .unwrap()
    }

    async fn run(&self, as_of: Day, steps: Option<u32>) -> RunReport {
        self.bank.run_interest_bounded(&cli(), RunForm { as_of: Some(as_of.to_string()) }, steps).await.unwrap()
    }
}

fn today() -> Day {
    calendar::day_of(&calendar::zone("Europe/Minsk").unwrap(), kassa_store::now_us())
}

/// Three savings accounts with different balances and one credit card
/// spent to its limit; returns their ids in that order.
async fn populate(bank: &TestBank) -> Vec<i64> {
    let customer = bank.customer(1).await;
    let cash = bank.cash().await;
    let mut accounts = Vec::new();
    for (i, minor) in [(1_u128, 100_000_i64), (2, 1_234_567), (3, 1)] {
        let id = bank.account(customer, AccountKind::Savings, 0, &format!("SAV{i}")).await;
        bank.mv(i, cash, id, minor).await;
        accounts.push(id);
    }
    let card = bank.account(customer, AccountKind::CreditCard, 50_000, "CARD1").await;
    bank.mv(9, card, cash, 50_000).await;
    accounts.push(card);
    accounts
}

/// The end of the month after this one: two month ends to post.
fn two_month_ends() -> Day {
    let next = calendar::next_day(today().last_of_month()).unwrap();
    next.last_of_month()
}

async fn a_run_stopped_between_any_two_steps_pays_once(postgres: bool) {
    let (Some(whole), Some(stepwise)) = (bank(postgres).await, bank(postgres).await) else {
        return;
    };
    let as_of = two_month_ends();
    let whole_accounts = populate(&whole).await;
    let step_accounts = populate(&stepwise).await;
    let reference = whole.run(as_of, None).await;
    assert!(reference.complete && reference.failures.is_empty(), "{reference:?}");
    assert_eq!(reference.postings.len(), 8, "two months of four accounts: {reference:?}");

    // One commit per run, then two, alternately, until a run completes (one
    // is not always enough to move on: a run that finds its posting already
    // in the ledger spends its commit on the replay, the next one records it).
    let mut replays = 0;
    let mut runs = 0_u32;
    loop {
        runs += 1;
        assert!(runs < 500, "the stepwise runs never completed");
        let report = stepwise.run(as_of, Some(1 + runs % 2)).await;
        replays += report.postings.iter().filter(|p| p.replayed).count();
        if report.complete {
            break;
        }
    }
    assert!(runs > 8, "each run took one step: {runs} runs");
    // A run stopped after the ledger posted and before the posting row was
    // written: the next run found the transfer (a replay), paid nothing.
    assert!(replays >= 1, "the crash point after posting was exercised");
    for (a, b) in whole_accounts.iter().zip(&step_accounts) {
        assert_eq!(whole.balance(*a).await, stepwise.balance(*b).await, "account {b}");
        let (count, _) = stepwise.interest_transfers(*b).await;
        assert_eq!(count, whole.interest_transfers(*a).await.0, "account {b}");
    }
    // Runs after completion change nothing.
    let before: Vec<i64> = futures_balances(&stepwise, &step_accounts).await;
    let again = stepwise.run(as_of, None).await;
    assert!(again.postings.is_empty() && again.days_accrued == 0, "{again:?}");
    assert_eq!(futures_balances(&stepwise, &step_accounts).await, before);
    let check = CheckReport::from_inputs(stepwise.store.check_inputs().await.unwrap());
    assert!(check.is_ok(), "{:?}", check.violations);
}

async fn futures_balances(bank: &TestBank, accounts: &[i64]) -> Vec<i64> {
    let mut out = Vec::new();
    for account in accounts {
        out.push(bank.balance(*account).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_stopped_between_any_two_steps_pays_once_sqlite() {
    a_run_stopped_between_any_two_steps_pays_once(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_stopped_between_any_two_steps_pays_once_postgres() {
    a_run_stopped_between_any_two_steps_pays_once(true).await;
}

/// A run task aborted wherever it happens to be, then run again: every
/// account is paid for the month exactly once, the exact amount.
async fn an_aborted_run_task_pays_once_on_the_rerun(postgres: bool) {
    let Some(bank) = bank(postgres).await else {
        return;
    };
    let customer = bank.customer(1).await;
    let cash = bank.cash().await;
    let mut accounts = Vec::new();
    for i in 0..20_u128 {
        let id = bank.account(customer, AccountKind::Savings, 0, &format!("S{i}")).await;
        bank.mv(100 + i, cash, id, 100_000).await;
        accounts.push(id);
    }
    let first = today();
    let as_of = first.last_of_month();
    let mut days = Vec::new();
    let mut day = first;
    while day <= as_of {
        days.push(day);
        day = calendar::next_day(day).unwrap();
    }
    let exact = days.iter().fold(Frac::ZERO, |sum, day| sum + exact_day(100_000, 5, 2, *day));
    for attempt in 0..3_u64 {
        let runner = bank.bank.clone();
        let task =
            tokio::spawn(async move { runner.run_interest(&cli(), RunForm { as_of: Some(as_of.to_string()) }).await });
        // Let it get somewhere, then kill it.
        tokio::time::sleep(std::time::Duration::from_millis(5 + attempt * 10)).await;
        task.abort();
        let _ = task.await;
    }
    let report = bank.run(as_of, None).await;
    // Complete, nothing left to anyone else (a write of an aborted run
    // that lands late is read again, not given up on).
    assert!(report.complete && report.failures.is_empty() && report.raced == 0, "{report:?}");
    for account in accounts {
        let (count, total) = bank.interest_transfers(account).await;
        assert_eq!((count, i128::from(total)), (1, exact.floor()), "account {account}");
        assert_eq!(i128::from(bank.balance(account).await), 100_000 + exact.floor());
    }
}

/// Two runs at once (two nodes' schedules) pay what one run pays, once.
async fn concurrent_runs_pay_once(postgres: bool) {
    let (Some(one), Some(two)) = (bank(postgres).await, bank(postgres).await) else {
        return;
    };
    let as_of = two_month_ends();
    let single = populate(&one).await;
    let doubled = populate(&two).await;
    let reference = one.run(as_of, None).await;
    assert!(reference.complete && reference.failures.is_empty(), "{reference:?}");
    let (a, b) = tokio::join!(two.run(as_of, None), two.run(as_of, None));
    assert!(a.failures.is_empty() && b.failures.is_empty(), "{a:?}\n{b:?}");
    let fresh = |report: &RunReport| report.postings.iter().filter(|p| p.transfer_id.is_some() && !p.replayed).count();
    let expected = reference.postings.iter().filter(|p| p.transfer_id.is_some()).count();
    assert_eq!(fresh(&a) + fresh(&b), expected, "{a:?}\n{b:?}");
    for (x, y) in single.iter().zip(&doubled) {
        assert_eq!(one.balance(*x).await, two.balance(*y).await, "account {y}");
        assert_eq!(one.interest_transfers(*x).await, two.interest_transfers(*y).await, "account {y}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_runs_pay_once_sqlite() {
    concurrent_runs_pay_once(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_runs_pay_once_postgres() {
    concurrent_runs_pay_once(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_aborted_run_task_pays_once_on_the_rerun_sqlite() {
    an_aborted_run_task_pays_once_on_the_rerun(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_aborted_run_task_pays_once_on_the_rerun_postgres() {
    an_aborted_run_task_pays_once_on_the_rerun(true).await;
}

async fn a_card_is_charged_past_its_limit_and_it_is_reported(postgres: bool) {
    let Some(bank) = bank(postgres).await else {
        return;
    };
    let customer = bank.customer(1).await;
    let cash = bank.cash().await;
    let card = bank.account(customer, AccountKind::CreditCard, 50_000, "CARD1").await;
    bank.mv(1, card, cash, 50_000).await;
    // A card with money on it is not paid interest.
    let spare = bank.account(customer, AccountKind::CreditCard, 50_000, "CARD2").await;
    bank.mv(2, cash, spare, 10_000).await;
    let as_of = today().last_of_month();
    let report = bank.run(as_of, None).await;
    assert!(report.failures.is_empty(), "{report:?}");
    let charge = report.postings.iter().find(|p| p.account == card).expect("the card was charged");
    assert_eq!(charge.direction, "charge");
    assert!(charge.overdraft, "{charge:?}");
    let mut exact = Frac::ZERO;
    let mut day = today();
    while day <= as_of {
        exact = exact + exact_day(50_000, 24, 2, day);
        day = calendar::next_day(day).unwrap();
    }
    assert!(exact.floor() > 0);
    assert_eq!(i128::from(bank.balance(card).await), -50_000 - exact.floor());
    assert!(report.postings.iter().all(|p| p.account != spare || p.amount == "0.00"), "{report:?}");
    assert_eq!(bank.balance(spare).await, 10_000);
    let account = bank.store.account(AccountId(card)).await.unwrap().unwrap();
    assert!(account.bank_overdraft);
    // The books' check accepts it and reports it.
    let check = CheckReport::from_inputs(bank.store.check_inputs().await.unwrap());
    assert!(check.is_ok(), "{:?}", check.violations);
    assert_eq!(check.bank_overdrafts, vec![AccountId(card)]);
    // The run is journaled, and the charge as interest.post for the customer.
    let journaled = bank
        .sql_int("SELECT COUNT(*) FROM audit_events WHERE action = 'interest.post' AND outcome = 'ok'", vec![])
        .await;
    assert_eq!(journaled, 1);
    let runs = bank.sql_int("SELECT COUNT(*) FROM audit_events WHERE action = 'interest.run'", vec![]).await;
    assert_eq!(runs, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_card_is_charged_past_its_limit_and_it_is_reported_sqlite() {
    a_card_is_charged_past_its_limit_and_it_is_reported(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_card_is_charged_past_its_limit_and_it_is_reported_postgres() {
    a_card_is_charged_past_its_limit_and_it_is_reported(true).await;
}

/// A posting the ledger refuses (a blocked card cannot be debited) is a
/// reported failure; the next run, once the card is unblocked, posts it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_posting_is_reported_and_posted_by_a_later_run() {
    let bank = bank(false).await.unwrap();
    let customer = bank.customer(1).await;
    let cash = bank.cash().await;
    let card = bank.account(customer, AccountKind::CreditCard, 50_000, "CARD1").await;
    bank.mv(1, card, cash, 20_000).await;
    bank.bank.ledger().set_account_status(AccountId(card), kassa_core::ledger::AccountStatus::Blocked).await.unwrap();
    let as_of = today().last_of_month();
    let report = bank.run(as_of, None).await;
    assert_eq!(report.failures.len(), 1, "{report:?}");
    assert_eq!(report.failures[0].code, "debit_account_blocked", "{report:?}");
    assert_eq!(bank.interest_transfers(card).await, (0, 0));
    let again = bank.run(as_of, None).await;
    assert_eq!(again.failures.len(), 1, "still refused, still reported: {again:?}");
    bank.bank.ledger().set_account_status(AccountId(card), kassa_core::ledger::AccountStatus::Active).await.unwrap();
    let fixed = bank.run(as_of, None).await;
    assert!(fixed.failures.is_empty(), "{fixed:?}");
    assert_eq!(fixed.postings.len(), 1, "{fixed:?}");
    let (count, total) = bank.interest_transfers(card).await;
    assert_eq!(count, 1);
    assert_eq!(i128::from(bank.balance(card).await), -20_000 - i128::from(total));
    assert!(bank.run(as_of, None).await.postings.is_empty());
}
