//! Model-based test of the ledger: random sequences of operations run
//! against the real ledger (group-commit writer over a real database) and
//! against the independent reference model in `kassa_testkit::model`, and
//! after every step the two must agree on every outcome and every balance.
//!
//! The state machine is hand-rolled: proptest generates a list of abstract
//! operations whose account and transfer references are plain indices, and
//! the runner resolves them against whatever exists at that step. That keeps
//! generation independent of execution, so proptest can shrink a failing
//! list freely and every shrunk list is still runnable.
//!
//! Amounts are small and accounts few, so that the interesting rules (credit
//! limits, holds, expiry, reversals, linked chains) trigger often.
//!
//! `KASSA_PROPTEST_CASES` raises the number of cases per engine (default 64).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code: a failure should stop the test")]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kassa_core::ledger::{
    AccountKind, AccountStatus, NewAccount, NewTransfer, PENDING_TIMEOUT_MAX_S, TransferKind, TransferOp,
    TransferOutcome,
};
use kassa_core::{AccountId, Amount, Currency, TransferId};
use kassa_ledger::{Ledger, LedgerConfig, expiry_void_id};
use kassa_store::{LedgerStore, StoreError, now_us};
use kassa_testkit::db::{self, Engine, TestDb};
use kassa_testkit::model::{Model, ModelOutcome};
use proptest::prelude::*;
use proptest::strategy::Union;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

const CURRENCIES: [Currency; 3] = [Currency::BYN, Currency::USD, Currency::JPY];
const CUSTOMER_KINDS: [AccountKind; 4] =
    [AccountKind::Current, AccountKind::Savings, AccountKind::DebitCard, AccountKind::CreditCard];
const SYSTEM_KINDS: [AccountKind; 5] = [
    AccountKind::Cash,
    AccountKind::FeeIncome,
    AccountKind::InterestExpense,
    AccountKind::FxPosition,
    AccountKind::Settlement,
];
/// An id no account in a fresh database has.
const MISSING_ACCOUNT: AccountId = AccountId(9_999_999);
/// How far ahead the expiry sweep looks: past the longest allowed timeout,
/// so every hold with a timeout counts as expired.
const FAR_AHEAD_US: i64 = 31 * 24 * 3600 * 1_000_000;

// ------------------------------------------------------------- operations

/// What one leg of a multi-transfer request does.
#[derive(Clone, Copy, Debug)]
enum LegKind {
    /// Cash to a customer.
    Deposit,
    /// A customer to cash.
    Withdraw,
    /// A customer to another customer of the same currency.
    Move,
    /// A transfer with amount zero, which always fails.
    Broken,
}

#[derive(Clone, Copy, Debug)]
struct Leg {
    from: usize,
    to: usize,
    amount: i64,
    kind: LegKind,
}

/// One abstract step. Indices pick among what exists when the step runs.
#[derive(Clone, Debug)]
enum Op {
    Open {
        system: bool,
        currency: usize,
        kind: usize,
        limit: i64,
    },
    /// `newest` picks the account opened last, which is often still empty
    /// and so may be closed.
    SetStatus {
        account: usize,
        status: AccountStatus,
        newest: bool,
    },
    Deposit {
        to: usize,
        amount: i64,
    },
    /// A deposit of just over half of `i64::MAX`: the second one in a
    /// currency overflows the cash account's debit total.
    Huge {
        to: usize,
    },
    Withdraw {
        from: usize,
        amount: i64,
    },
    Move {
        from: usize,
        to: usize,
        amount: i64,
        to_any: bool,
    },
    /// A fee or interest charge. `target`: 0 credits the bank's own account
    /// for it (fee income for a fee, interest expense for interest), 1 the
    /// other of the two, 2 another customer; only 0 may be a bank debit.
    Fee {
        from: usize,
        amount: i64,
        bank_debit: bool,
        interest: bool,
        target: u8,
    },
    Linked {
        legs: Vec<Leg>,
        leave_open: bool,
    },
    Several {
        legs: Vec<Leg>,
    },
    /// A hold on a customer. A bank-debit hold is a fee that credits the
    /// fee-income account when `to_bank`, and another customer otherwise
    /// (which the bank-debit rule refuses).
    Hold {
        from: usize,
        to: usize,
        amount: i64,
        timeout: Option<u32>,
        bank_debit: bool,
        to_bank: bool,
    },
    /// `how`: 0 full, 1 part, 2 more than held, 3 swapped accounts,
    /// 4 refers to a transfer that is not pending, 5 to no transfer.
    Post {
        pending: usize,
        how: u8,
    },
    Void {
        pending: usize,
        wrong_amount: bool,
    },
    /// `how`: 0 proper, 1 wrong amount, 2 accounts not swapped, 3 refers to
    /// a pending transfer, 4 reverses again what the latest reversal did.
    Reverse {
        original: usize,
        how: u8,
    },
    ReplaySame {
        which: usize,
        whole_request: bool,
    },
    ReplayDifferent {
        which: usize,
        tweak: u8,
    },
    Expire,
    /// The same transfer twice in one request: the second is a replay of
    /// the first if the first committed, and judged afresh if it did not.
    Twice {
        leg: Leg,
    },
    Invalid {
        what: u8,
        from: usize,
        to: usize,
    },
    /// Several single-transfer requests submitted at once, on pairwise
    /// disjoint accounts so that their order cannot change any outcome.
    Concurrent {
        legs: Vec<Leg>,
    },
}

fn leg() -> impl Strategy<Value = Leg> {
    let kind = prop_oneof![
        3 => Just(LegKind::Deposit),
        3 => Just(LegKind::Withdraw),
        5 => Just(LegKind::Move),
        1 => Just(LegKind::Broken),
    ];
    (any::<usize>(), any::<usize>(), 1_i64..=60, kind).prop_map(|(from, to, amount, kind)| Leg {
        from,
        to,
        amount,
        kind,
    })
}

fn op() -> impl Strategy<Value = Op> {
    let index = || any::<usize>();
    let status = prop_oneof![
        2 => Just(AccountStatus::Active),
        2 => Just(AccountStatus::Blocked),
        1 => Just(AccountStatus::Closed),
    ];
    let limit = prop_oneof![3 => Just(0_i64), 1 => 1_i64..=50];
    let timeout = prop_oneof![
        3 => Just(None),
        2 => Just(Some(0_u32)),
        2 => Just(Some(3600_u32)),
        1 => Just(Some(PENDING_TIMEOUT_MAX_S)),
    ];
    let arms: Vec<(u32, BoxedStrategy<Op>)> = vec![
        (
            2,
            (any::<bool>(), 0..CURRENCIES.len(), index(), limit)
                .prop_map(|(system, currency, kind, limit)| Op::Open { system, currency, kind, limit })
                .boxed(),
        ),
        (
            3,
            (index(), status, prop::bool::weighted(0.4))
                .prop_map(|(account, status, newest)| Op::SetStatus { account, status, newest })
                .boxed(),
        ),
        (10, (index(), 1_i64..=150).prop_map(|(to, amount)| Op::Deposit { to, amount }).boxed()),
        (2, index().prop_map(|to| Op::Huge { to }).boxed()),
        (4, (index(), 1_i64..=60).prop_map(|(from, amount)| Op::Withdraw { from, amount }).boxed()),
        (
            8,
            (index(), index(), 1_i64..=60, prop::bool::weighted(0.15))
                .prop_map(|(from, to, amount, to_any)| Op::Move { from, to, amount, to_any })
                .boxed(),
        ),
        (
            3,
            (
                index(),
                1_i64..=40,
                any::<bool>(),
                any::<bool>(),
                prop_oneof![6 => Just(0_u8), 1 => Just(1), 1 => Just(2)],
            )
                .prop_map(|(from, amount, bank_debit, interest, target)| Op::Fee {
                    from,
                    amount,
                    bank_debit,
                    interest,
                    target,
                })
                .boxed(),
        ),
        (
            4,
            (prop::collection::vec(leg(), 2..=4), prop::bool::weighted(0.15))
                .prop_map(|(legs, leave_open)| Op::Linked { legs, leave_open })
                .boxed(),
        ),
        (2, prop::collection::vec(leg(), 2..=5).prop_map(|legs| Op::Several { legs }).boxed()),
        (
            7,
            (index(), index(), 1_i64..=60, timeout, prop::bool::weighted(0.2), prop::bool::weighted(0.7))
                .prop_map(|(from, to, amount, timeout, bank_debit, to_bank)| Op::Hold {
                    from,
                    to,
                    amount,
                    timeout,
                    bank_debit,
                    to_bank,
                })
                .boxed(),
        ),
        (
            7,
            (index(), prop_oneof![4 => 0_u8..=1, 2 => 2_u8..=5])
                .prop_map(|(pending, how)| Op::Post { pending, how })
                .boxed(),
        ),
        (
            4,
            (index(), prop::bool::weighted(0.2))
                .prop_map(|(pending, wrong_amount)| Op::Void { pending, wrong_amount })
                .boxed(),
        ),
        (
            3,
            (index(), prop_oneof![4 => Just(0_u8), 2 => 1_u8..=4])
                .prop_map(|(original, how)| Op::Reverse { original, how })
                .boxed(),
        ),
        (
            2,
            (index(), any::<bool>()).prop_map(|(which, whole_request)| Op::ReplaySame { which, whole_request }).boxed(),
        ),
        (2, (index(), 0_u8..3).prop_map(|(which, tweak)| Op::ReplayDifferent { which, tweak }).boxed()),
        (1, Just(Op::Expire).boxed()),
        (1, leg().prop_map(|leg| Op::Twice { leg }).boxed()),
        (2, (0_u8..10, index(), index()).prop_map(|(what, from, to)| Op::Invalid { what, from, to }).boxed()),
        (2, prop::collection::vec(leg(), 2..=6).prop_map(|legs| Op::Concurrent { legs }).boxed()),
    ];
    Union::new_weighted(arms)
}

// ------------------------------------------------------------------ world

/// How often each outcome code was seen across all cases of a run, printed
/// at the end so that a change which stops a rule from ever triggering is
/// noticed.
static SEEN: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

fn tally(codes: &[String]) {
    if let Ok(mut seen) = SEEN.lock() {
        for code in codes {
            *seen.entry(code.clone()).or_default() += 1;
        }
    }
}

/// One run: the real ledger, the model, and what the run has created so far
/// for indices to pick from.
struct World {
    ledger: Ledger,
    store: Arc<dyn LedgerStore>,
    model: Model,
    cash: HashMap<Currency, AccountId>,
    fee_income: HashMap<Currency, AccountId>,
    interest_expense: HashMap<Currency, AccountId>,
    accounts: Vec<AccountId>,
    customers: Vec<AccountId>,
    currency_of: HashMap<AccountId, Currency>,
    /// Every request submitted, for replays.
    requests: Vec<Vec<NewTransfer>>,
    /// Every pending transfer ever asked for, committed or not.
    holds: Vec<NewTransfer>,
    /// Every single, post or reverse ever asked for, committed or not.
    postings: Vec<NewTransfer>,
    next_id: u128,
    next_number: u64,
    /// Readable lines of what ran, printed with a failure.
    trace: Vec<String>,
}

fn pick<T: Copy>(list: &[T], index: usize) -> Option<T> {
    if list.is_empty() { None } else { Some(list[index % list.len()]) }
}

/// Counts bank debits that went past a credit limit, which the codes alone
/// do not show.
fn tally_overdrafts(real: &[TransferOutcome]) {
    let overdrafts = real.iter().filter(|o| matches!(o, Ok(c) if !c.replayed && c.transfer.overdraft)).count();
    tally(&vec!["overdraft".to_owned(); overdrafts]);
}

fn code_of(outcome: &TransferOutcome) -> String {
    match outcome {
        Ok(created) if created.replayed => "replayed".to_owned(),
        Ok(_) => "ok".to_owned(),
        Err(error) => error.code().to_owned(),
    }
}

fn model_code_of(outcome: &ModelOutcome) -> String {
    match outcome {
        Ok(created) if created.replayed => "replayed".to_owned(),
        Ok(_) => "ok".to_owned(),
        Err(code) => (*code).to_owned(),
    }
}

/// Compares the ledger's answer for one request with the model's, transfer
/// by transfer: the same code, and for successes the same stored fields.
fn compare_outcomes(request: &[NewTransfer], real: &[TransferOutcome], model: &[ModelOutcome]) -> Result<(), String> {
    if real.len() != model.len() || real.len() != request.len() {
        return Err(format!(
            "{} transfers but {} outcomes from the ledger and {} from the model",
            request.len(),
            real.len(),
            model.len()
        ));
    }
    for (position, (real, model)) in real.iter().zip(model).enumerate() {
        let (real_code, model_code) = (code_of(real), model_code_of(model));
        if real_code != model_code {
            return Err(format!(
                "transfer #{position} ({}): the ledger says {real_code}, the model says {model_code}\n  request: {:?}",
                request[position].id, request[position]
            ));
        }
        if let (Ok(real), Ok(model)) = (real, model) {
            let differences = model.transfer.differences(&real.transfer);
            if !differences.is_empty() {
                return Err(format!("transfer #{position}: {}", differences.join("; ")));
            }
        }
    }
    Ok(())
}

fn store_code(error: &StoreError) -> Result<&'static str, String> {
    match error {
        StoreError::Account(error) => Ok(error.code()),
        other => Err(format!("the store failed: {other}")),
    }
}

impl World {
    async fn start(db: &TestDb) -> Result<World, String> {
        let ledger = Ledger::start(Arc::clone(&db.store), LedgerConfig::default());
        let mut world = World {
            ledger,
            store: Arc::clone(&db.store),
            model: Model::new(),
            cash: HashMap::new(),
            fee_income: HashMap::new(),
            interest_expense: HashMap::new(),
            accounts: Vec::new(),
            customers: Vec::new(),
            currency_of: HashMap::new(),
            requests: Vec::new(),
            holds: Vec::new(),
            postings: Vec::new(),
            next_id: 0,
            next_number: 0,
            trace: Vec::new(),
        };
        for currency in CURRENCIES {
            let cash = world.open(true, currency, AccountKind::Cash, 0).await?;
            world.cash.insert(currency, cash);
            let fees = world.open(true, currency, AccountKind::FeeIncome, 0).await?;
            world.fee_income.insert(currency, fees);
            let interest = world.open(true, currency, AccountKind::InterestExpense, 0).await?;
            world.interest_expense.insert(currency, interest);
        }
        for (currency, limit) in [
            (Currency::BYN, 0),
            (Currency::BYN, 0),
            (Currency::BYN, 25),
            (Currency::USD, 0),
            (Currency::USD, 0),
            (Currency::JPY, 10),
        ] {
            let customer = world.open(false, currency, AccountKind::Current, limit).await?;
            // Start with some money, so that spending is not refused from
            // the first step on.
            let deposit =
                world.transfer(world.cash[&currency], customer, 100, TransferKind::Deposit, TransferOp::Single);
            world.submit(vec![deposit]).await?;
        }
        Ok(world)
    }

    async fn open(
        &mut self,
        system: bool,
        currency: Currency,
        kind: AccountKind,
        limit: i64,
    ) -> Result<AccountId, String> {
        self.next_number += 1;
        let account = self
            .ledger
            .create_account(NewAccount {
                number: format!("ACC{:06}", self.next_number),
                owner: if system { None } else { Some(1) },
                currency,
                kind,
                credit_limit: Amount::from_minor(limit),
            })
            .await
            .map_err(|error| format!("opening an account failed: {error}"))?;
        self.model.open_account(account.id, currency, kind, limit);
        self.accounts.push(account.id);
        if !system {
            self.customers.push(account.id);
        }
        self.currency_of.insert(account.id, currency);
        Ok(account.id)
    }

    fn fresh_id(&mut self) -> TransferId {
        self.next_id += 1;
        // Time-ordered like a UUIDv7 in spirit: a fixed prefix and a counter.
        TransferId((0x0190_0000_0000_7000_8000_0000_0000_0000_u128) | self.next_id)
    }

    fn currency(&self, account: AccountId) -> Currency {
        self.currency_of.get(&account).copied().unwrap_or(Currency::BYN)
    }

    fn transfer(
        &mut self,
        debit: AccountId,
        credit: AccountId,
        amount: i64,
        kind: TransferKind,
        op: TransferOp,
    ) -> NewTransfer {
        NewTransfer {
            id: self.fresh_id(),
            debit_account: debit,
            credit_account: credit,
            amount: Amount::from_minor(amount),
            currency: self.currency(debit),
            kind,
            op,
            linked: false,
            bank_debit: false,
            description: String::new(),
        }
    }

    /// A customer other than `from` of the same currency, if there is one.
    fn counterpart(&self, from: AccountId, index: usize) -> Option<AccountId> {
        let currency = self.currency(from);
        let same: Vec<AccountId> =
            self.customers.iter().copied().filter(|id| *id != from && self.currency(*id) == currency).collect();
        // Cross-currency attempts come from `Move { to_any }` and the
        // invalid requests; here they would only drown the other rules.
        pick(&same, index)
    }

    fn leg_transfer(&mut self, leg: Leg) -> Option<NewTransfer> {
        let customer = pick(&self.customers, leg.from)?;
        let currency = self.currency(customer);
        let transfer = match leg.kind {
            LegKind::Deposit => {
                let cash = self.cash[&currency];
                self.transfer(cash, customer, leg.amount, TransferKind::Deposit, TransferOp::Single)
            }
            LegKind::Withdraw => {
                let cash = self.cash[&currency];
                self.transfer(customer, cash, leg.amount, TransferKind::Withdrawal, TransferOp::Single)
            }
            LegKind::Move => {
                let to = self.counterpart(customer, leg.to)?;
                self.transfer(customer, to, leg.amount, TransferKind::Transfer, TransferOp::Single)
            }
            LegKind::Broken => {
                let cash = self.cash[&currency];
                self.transfer(cash, customer, 0, TransferKind::Deposit, TransferOp::Single)
            }
        };
        Some(transfer)
    }

    fn remember(&mut self, request: &[NewTransfer]) {
        for transfer in request {
            match transfer.op {
                TransferOp::Pending { .. } => self.holds.push(transfer.clone()),
                TransferOp::Single | TransferOp::Post { .. } | TransferOp::Reverse { .. } => {
                    self.postings.push(transfer.clone());
                }
                TransferOp::Void { .. } => {}
            }
        }
        self.requests.push(request.to_vec());
    }

    /// The model's clock for a request: the commit time the ledger stamped
    /// on it. The ledger reads the clock inside its writer, so the model
    /// cannot know it beforehand; taking it from a transfer the request
    /// created keeps expiry dates comparable. A request that created nothing
    /// stored no time, and any moment after its commit decides expiry the
    /// same way, because the timeouts used are either zero or far longer
    /// than a test run.
    fn commit_time(real: &[TransferOutcome]) -> i64 {
        real.iter()
            .find_map(|outcome| match outcome {
                Ok(created) if !created.replayed => Some(created.transfer.created_at_us),
                _ => None,
            })
            .unwrap_or_else(now_us)
    }

    async fn submit(&mut self, request: Vec<NewTransfer>) -> Result<(), String> {
        self.remember(&request);
        let real = self.ledger.submit(request.clone()).await.map_err(|error| format!("submit failed: {error}"))?;
        let model = self.model.submit(&request, World::commit_time(&real));
        let codes: Vec<String> = real.iter().map(code_of).collect();
        tally(&codes);
        tally_overdrafts(&real);
        self.trace.push(format!("  -> {codes:?}"));
        compare_outcomes(&request, &real, &model)
    }

    /// Submits several requests at the same moment, each from its own task,
    /// so the writer can put them into one batch. Their accounts are
    /// disjoint, so the model may apply them in any order.
    async fn submit_concurrently(&mut self, requests: Vec<Vec<NewTransfer>>) -> Result<(), String> {
        for request in &requests {
            self.remember(request);
        }
        let handles: Vec<_> = requests
            .iter()
            .cloned()
            .map(|request| {
                let ledger = self.ledger.clone();
                tokio::spawn(async move { ledger.submit(request).await })
            })
            .collect();
        let mut answers = Vec::with_capacity(handles.len());
        for handle in handles {
            answers.push(handle.await.map_err(|error| format!("a task failed: {error}"))?.map_err(|e| e.to_string())?);
        }
        let mut codes = Vec::new();
        for (request, real) in requests.iter().zip(&answers) {
            let model = self.model.submit(request, World::commit_time(real));
            compare_outcomes(request, real, &model)?;
            codes.extend(real.iter().map(code_of));
            tally_overdrafts(real);
        }
        tally(&codes);
        self.trace.push(format!("  -> {codes:?}"));
        Ok(())
    }

    async fn run(&mut self, op: &Op) -> Result<(), String> {
        self.trace.push(format!("{op:?}"));
        match op {
            Op::Open { system, currency, kind, limit } => {
                let currency = CURRENCIES[*currency];
                let (kind, limit) = if *system {
                    (SYSTEM_KINDS[kind % SYSTEM_KINDS.len()], 0)
                } else {
                    (CUSTOMER_KINDS[kind % CUSTOMER_KINDS.len()], *limit)
                };
                self.open(*system, currency, kind, limit).await?;
            }
            Op::SetStatus { account, status, newest } => {
                let chosen = if *newest { self.accounts.last().copied() } else { pick(&self.accounts, *account) };
                let Some(id) = chosen else { return Ok(()) };
                let real = match self.ledger.set_account_status(id, *status).await {
                    Ok(_) => "ok",
                    Err(error) => store_code(&error)?,
                };
                let model = match self.model.set_status(id, *status) {
                    Ok(()) => "ok",
                    Err(code) => code,
                };
                tally(&[format!("status:{real}")]);
                self.trace.push(format!("  -> {real}"));
                if real != model {
                    return Err(format!("setting {id} {status:?}: the ledger says {real}, the model says {model}"));
                }
            }
            Op::Deposit { to, amount } => {
                let Some(customer) = pick(&self.customers, *to) else { return Ok(()) };
                let cash = self.cash[&self.currency(customer)];
                let transfer = self.transfer(cash, customer, *amount, TransferKind::Deposit, TransferOp::Single);
                self.submit(vec![transfer]).await?;
            }
            Op::Huge { to } => {
                let Some(customer) = pick(&self.customers, *to) else { return Ok(()) };
                let cash = self.cash[&self.currency(customer)];
                let transfer =
                    self.transfer(cash, customer, i64::MAX / 2 + 1, TransferKind::Deposit, TransferOp::Single);
                self.submit(vec![transfer]).await?;
            }
            Op::Withdraw { from, amount } => {
                let Some(customer) = pick(&self.customers, *from) else { return Ok(()) };
                let cash = self.cash[&self.currency(customer)];
                let transfer = self.transfer(customer, cash, *amount, TransferKind::Withdrawal, TransferOp::Single);
                self.submit(vec![transfer]).await?;
            }
            Op::Move { from, to, amount, to_any } => {
                let Some(customer) = pick(&self.customers, *from) else { return Ok(()) };
                let target = if *to_any { pick(&self.accounts, *to) } else { self.counterpart(customer, *to) };
                let Some(target) = target else { return Ok(()) };
                let transfer = self.transfer(customer, target, *amount, TransferKind::Transfer, TransferOp::Single);
                self.submit(vec![transfer]).await?;
            }
            Op::Fee { from, amount, bank_debit, interest, target } => {
                let Some(customer) = pick(&self.customers, *from) else { return Ok(()) };
                let currency = self.currency(customer);
                let (own, other) = if *interest {
                    (self.interest_expense[&currency], self.fee_income[&currency])
                } else {
                    (self.fee_income[&currency], self.interest_expense[&currency])
                };
                let credit = match target {
                    0 => own,
                    1 => other,
                    _ => {
                        let Some(to) = self.counterpart(customer, *from / 2) else { return Ok(()) };
                        to
                    }
                };
                let kind = if *interest { TransferKind::Interest } else { TransferKind::Fee };
                let mut transfer = self.transfer(customer, credit, *amount, kind, TransferOp::Single);
                transfer.bank_debit = *bank_debit;
                self.submit(vec![transfer]).await?;
            }
            Op::Linked { legs, leave_open } => {
                let mut request: Vec<NewTransfer> = legs.iter().filter_map(|leg| self.leg_transfer(*leg)).collect();
                let last = request.len().saturating_sub(1);
                for (position, transfer) in request.iter_mut().enumerate() {
                    transfer.linked = position < last || *leave_open;
                }
                if !request.is_empty() {
                    self.submit(request).await?;
                }
            }
            Op::Several { legs } => {
                let request: Vec<NewTransfer> = legs.iter().filter_map(|leg| self.leg_transfer(*leg)).collect();
                if !request.is_empty() {
                    self.submit(request).await?;
                }
            }
            Op::Hold { from, to, amount, timeout, bank_debit, to_bank } => {
                let Some(customer) = pick(&self.customers, *from) else { return Ok(()) };
                let target = if *bank_debit && *to_bank {
                    Some(self.fee_income[&self.currency(customer)])
                } else {
                    self.counterpart(customer, *to)
                };
                let Some(target) = target else { return Ok(()) };
                let kind = if *bank_debit { TransferKind::Fee } else { TransferKind::Transfer };
                let mut transfer =
                    self.transfer(customer, target, *amount, kind, TransferOp::Pending { timeout_s: *timeout });
                transfer.bank_debit = *bank_debit;
                self.submit(vec![transfer]).await?;
            }
            Op::Post { pending, how } => {
                let request = match how {
                    4 => {
                        let Some(original) = self.postings.get(pending % self.postings.len().max(1)).cloned() else {
                            return Ok(());
                        };
                        self.resolution(
                            &original,
                            original.amount.minor(),
                            TransferOp::Post { pending_id: original.id },
                        )
                    }
                    5 => {
                        let Some(hold) = self.holds.get(pending % self.holds.len().max(1)).cloned() else {
                            return Ok(());
                        };
                        let missing = TransferId(hold.id.0 ^ (1 << 100));
                        self.resolution(&hold, hold.amount.minor(), TransferOp::Post { pending_id: missing })
                    }
                    _ => {
                        let Some(hold) = self.holds.get(pending % self.holds.len().max(1)).cloned() else {
                            return Ok(());
                        };
                        let held = hold.amount.minor();
                        let amount = match how {
                            1 => (held / 2).max(1),
                            2 => held + 1,
                            _ => held,
                        };
                        let mut post = self.resolution(&hold, amount, TransferOp::Post { pending_id: hold.id });
                        if *how == 3 {
                            std::mem::swap(&mut post.debit_account, &mut post.credit_account);
                        }
                        post
                    }
                };
                self.submit(vec![request]).await?;
            }
            Op::Void { pending, wrong_amount } => {
                let Some(hold) = self.holds.get(pending % self.holds.len().max(1)).cloned() else { return Ok(()) };
                let amount = hold.amount.minor() + i64::from(*wrong_amount);
                let void = self.resolution(&hold, amount, TransferOp::Void { pending_id: hold.id });
                self.submit(vec![void]).await?;
            }
            Op::Reverse { original, how } => {
                let source = if *how == 3 { &self.holds } else { &self.postings };
                let mut chosen = source.get(original % source.len().max(1)).cloned();
                if *how == 4 {
                    let again = self.postings.iter().rev().find_map(|t| match t.op {
                        TransferOp::Reverse { original_id } => Some(original_id),
                        _ => None,
                    });
                    if let Some(again) = again {
                        chosen = self.postings.iter().find(|t| t.id == again).cloned();
                    }
                }
                let Some(original) = chosen else { return Ok(()) };
                let mut reversal = self.transfer(
                    original.credit_account,
                    original.debit_account,
                    original.amount.minor(),
                    TransferKind::Reversal,
                    TransferOp::Reverse { original_id: original.id },
                );
                reversal.currency = original.currency;
                match how {
                    1 => reversal.amount = Amount::from_minor(original.amount.minor() + 1),
                    2 => std::mem::swap(&mut reversal.debit_account, &mut reversal.credit_account),
                    _ => {}
                }
                self.submit(vec![reversal]).await?;
            }
            Op::ReplaySame { which, whole_request } => {
                let Some(request) = self.requests.get(which % self.requests.len().max(1)).cloned() else {
                    return Ok(());
                };
                if *whole_request {
                    self.submit(request).await?;
                } else {
                    let one = request[which % request.len()].clone();
                    self.submit(vec![one]).await?;
                }
            }
            Op::ReplayDifferent { which, tweak } => {
                let Some(request) = self.requests.get(which % self.requests.len().max(1)).cloned() else {
                    return Ok(());
                };
                let mut one = request[which % request.len()].clone();
                one.linked = false;
                match tweak {
                    0 => one.amount = Amount::from_minor(one.amount.minor() + 1),
                    1 => one.description.push_str("changed"),
                    _ => {
                        one.kind = if one.kind == TransferKind::Adjustment {
                            TransferKind::Transfer
                        } else {
                            TransferKind::Adjustment
                        }
                    }
                }
                self.submit(vec![one]).await?;
            }
            Op::Expire => self.expire().await?,
            Op::Twice { leg } => {
                let Some(transfer) = self.leg_transfer(*leg) else { return Ok(()) };
                self.submit(vec![transfer.clone(), transfer]).await?;
            }
            Op::Invalid { what, from, to } => {
                let Some(customer) = pick(&self.customers, *from) else { return Ok(()) };
                let Some(other) = self.counterpart(customer, *to) else { return Ok(()) };
                let mut transfer = self.transfer(customer, other, 5, TransferKind::Transfer, TransferOp::Single);
                match what {
                    0 => transfer.amount = Amount::ZERO,
                    1 => transfer.amount = Amount::from_minor(-5),
                    2 => transfer.credit_account = customer,
                    // 257 two-byte characters: 514 bytes but only 257 chars,
                    // so a limit counted in characters would be caught.
                    3 => transfer.description = "é".repeat(257),
                    4 => transfer.op = TransferOp::Pending { timeout_s: Some(PENDING_TIMEOUT_MAX_S + 1) },
                    5 => transfer.bank_debit = true,
                    6 => transfer.debit_account = MISSING_ACCOUNT,
                    7 => transfer.credit_account = MISSING_ACCOUNT,
                    8 => {
                        let other_currency = CURRENCIES.into_iter().find(|c| *c != transfer.currency).unwrap();
                        transfer.currency = other_currency;
                    }
                    _ => {
                        // A credit account of another currency, when one exists.
                        let currency = self.currency(customer);
                        if let Some(foreign) = self.accounts.iter().copied().find(|id| self.currency(*id) != currency) {
                            transfer.credit_account = foreign;
                        }
                    }
                }
                self.submit(vec![transfer]).await?;
            }
            Op::Concurrent { legs } => {
                let mut used: HashSet<AccountId> = HashSet::new();
                let mut requests = Vec::new();
                for leg in legs {
                    let Some(from) = pick(&self.customers, leg.from) else { continue };
                    let Some(to) = self.counterpart(from, leg.to) else { continue };
                    if used.contains(&from) || used.contains(&to) {
                        continue;
                    }
                    used.insert(from);
                    used.insert(to);
                    let transfer = self.transfer(from, to, leg.amount, TransferKind::Transfer, TransferOp::Single);
                    requests.push(vec![transfer]);
                }
                if !requests.is_empty() {
                    self.submit_concurrently(requests).await?;
                }
            }
        }
        Ok(())
    }

    /// A post or void of `hold` (or of any transfer standing in for one).
    fn resolution(&mut self, hold: &NewTransfer, amount: i64, op: TransferOp) -> NewTransfer {
        let mut transfer = self.transfer(hold.debit_account, hold.credit_account, amount, hold.kind, op);
        transfer.currency = hold.currency;
        transfer
    }

    /// Runs the expiry sweep far in the future and mirrors it in the model:
    /// every hold with a timeout is voided, by a void whose id derives from
    /// the hold's. The ledger reports only a count, so the voids it wrote
    /// are read back to replay them in the model in the order they were
    /// committed.
    async fn expire(&mut self) -> Result<(), String> {
        let far = now_us() + FAR_AHEAD_US;
        let expected = self.model.expired_pending(far);
        let voided =
            self.ledger.expire_pending(far, 10_000).await.map_err(|error| format!("expiry failed: {error}"))?;
        self.trace.push(format!("  -> {voided} voided"));
        tally(&vec!["expired".to_owned(); voided]);
        if voided != expected.len() {
            return Err(format!("the expiry sweep voided {voided} holds, the model expected {}", expected.len()));
        }
        let mut written = Vec::new();
        for pending in &expected {
            let void = self
                .store
                .transfer(expiry_void_id(*pending))
                .await
                .map_err(|error| error.to_string())?
                .ok_or_else(|| format!("no void was written for the expired hold {pending}"))?;
            written.push((void, *pending));
        }
        written.sort_by_key(|(void, _)| void.seq);
        for (void, pending_id) in written {
            let hold = self.model.transfer(pending_id).map(|t| t.request.clone()).ok_or("unknown hold")?;
            let request = NewTransfer {
                id: expiry_void_id(pending_id),
                debit_account: hold.debit_account,
                credit_account: hold.credit_account,
                amount: hold.amount,
                currency: hold.currency,
                kind: hold.kind,
                op: TransferOp::Void { pending_id },
                linked: false,
                bank_debit: false,
                description: "expired".to_owned(),
            };
            let outcome = self.model.submit(std::slice::from_ref(&request), void.created_at_us);
            match &outcome[0] {
                Ok(created) if !created.replayed => {
                    let differences = created.transfer.differences(&void);
                    if !differences.is_empty() {
                        return Err(differences.join("; "));
                    }
                }
                other => return Err(format!("the model refused the expiry void of {pending_id}: {other:?}")),
            }
        }
        Ok(())
    }

    /// Every account as stored equals the model's, and money is conserved
    /// per currency in the stored balances.
    async fn compare_balances(&self) -> Result<(), String> {
        let stored = self.store.accounts(&self.accounts).await.map_err(|error| error.to_string())?;
        if stored.len() != self.accounts.len() {
            return Err(format!("{} accounts read back of {}", stored.len(), self.accounts.len()));
        }
        let mut sums: HashMap<Currency, (i128, i128, i128)> = HashMap::new();
        for account in &stored {
            let model =
                self.model.account(account.id).ok_or_else(|| format!("account {} unknown to the model", account.id))?;
            let differences = model.differences(account);
            if !differences.is_empty() {
                return Err(differences.join("\n"));
            }
            let entry = sums.entry(account.currency).or_default();
            entry.0 += i128::from(account.balances.posted());
            entry.1 += i128::from(account.balances.debits_pending.minor());
            entry.2 += i128::from(account.balances.credits_pending.minor());
        }
        for (currency, (posted, debits, credits)) in sums {
            if posted != 0 || debits != credits {
                return Err(format!(
                    "{currency}: posted balances sum to {posted}; pending debits {debits}, pending credits {credits}"
                ));
            }
        }
        let model_violations = self.model.conservation_violations();
        if !model_violations.is_empty() {
            return Err(format!("the model itself does not conserve money: {model_violations:?}"));
        }
        Ok(())
    }

    /// At the end: every transfer the model holds is stored exactly so
    /// (state included), and `kassa check` finds nothing wrong.
    async fn finish(&self) -> Result<(), String> {
        for model in self.model.transfers() {
            let stored = self
                .store
                .transfer(model.request.id)
                .await
                .map_err(|error| error.to_string())?
                .ok_or_else(|| format!("transfer {} is in the model but not stored", model.request.id))?;
            let differences = model.differences(&stored);
            if !differences.is_empty() {
                return Err(differences.join("\n"));
            }
        }
        let report = self.ledger.check().await.map_err(|error| error.to_string())?;
        if !report.is_ok() {
            return Err(format!("kassa check failed: {:?}", report.violations));
        }
        let model_count = u64::try_from(self.model.transfers().count()).unwrap_or(u64::MAX);
        if report.transfers != model_count {
            return Err(format!("{} transfers stored, {model_count} in the model", report.transfers));
        }
        Ok(())
    }
}

async fn run_case(engine: Engine, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let db = match engine {
        Engine::Sqlite => db::sqlite().await,
        Engine::Postgres => db::postgres().await.ok_or_else(|| TestCaseError::fail("PostgreSQL went away"))?,
    };
    let mut world = World::start(&db).await.map_err(TestCaseError::fail)?;
    let failure = |world: &World, step: usize, message: String| {
        let trace = world.trace.join("\n");
        TestCaseError::fail(format!("{} step {step}: {message}\ntrace:\n{trace}", engine.name()))
    };
    if let Err(message) = world.compare_balances().await {
        return Err(failure(&world, 0, message));
    }
    for (step, op) in ops.iter().enumerate() {
        if let Err(message) = world.run(op).await {
            return Err(failure(&world, step + 1, message));
        }
        if let Err(message) = world.compare_balances().await {
            return Err(failure(&world, step + 1, message));
        }
    }
    if let Err(message) = world.finish().await {
        return Err(failure(&world, ops.len(), message));
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("KASSA_PROPTEST_CASES").ok().and_then(|text| text.parse().ok()).unwrap_or(64)
}

fn run_property(engine: Engine) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    if engine == Engine::Postgres && runtime.block_on(db::postgres()).is_none() {
        // The helper has already printed a loud SKIPPED line.
        return;
    }
    let config = Config {
        cases: cases(),
        // Failures are reported with their minimal input; regression files
        // would be written into the source tree, which tests must not touch.
        failure_persistence: None,
        // Each shrinking step runs a whole scenario on a fresh database, so
        // shrinking is bounded in time to keep a failing CI run short.
        max_shrink_time: 120_000,
        ..Config::default()
    };
    let started = Instant::now();
    let mut runner = TestRunner::new(config);
    let strategy = prop::collection::vec(op(), 1..=40);
    let result = runner.run(&strategy, |ops| runtime.block_on(run_case(engine, ops)));
    eprintln!("model_based on {}: {} cases in {:.1?}", engine.name(), cases(), started.elapsed());
    if let Ok(seen) = SEEN.lock() {
        eprintln!("outcomes seen so far: {seen:?}");
    }
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, ops)) => panic!("{reason}\nminimal failing operations: {ops:#?}"),
        Err(TestError::Abort(reason)) => panic!("aborted: {reason}"),
    }
}

#[test]
fn ledger_agrees_with_the_model_on_sqlite() {
    run_property(Engine::Sqlite);
}

#[test]
fn ledger_agrees_with_the_model_on_postgres() {
    run_property(Engine::Postgres);
}
