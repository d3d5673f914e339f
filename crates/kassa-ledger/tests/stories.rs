//! Example-based stories: each rule and feature of the ledger shown once,
//! readably, on every engine. Where the model-based test asks "do the rules
//! agree with an independent model?", these ask "does the ledger do what a
//! banker would expect in this situation?", with the numbers written out.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code: a failure should stop the test")]

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kassa_core::ledger::{
    Account, AccountKind, AccountStatus, Created, NewAccount, NewTransfer, PENDING_TIMEOUT_MAX_S, Transfer,
    TransferError, TransferKind, TransferOp, TransferOutcome, TransferState,
};
use kassa_core::{AccountId, Amount, Currency, TransferId};
use kassa_ledger::{Ledger, LedgerConfig, expiry_void_id};
use kassa_store::{LedgerStore, StoreError, Violation, now_us};
use kassa_testkit::db::{self, Engine, TestDb};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static NEXT_NUMBER: AtomicU64 = AtomicU64::new(1);

const HOUR_US: i64 = 3600 * 1_000_000;

/// A single BYN transfer of `amount` from `debit` to `credit`; stories
/// change the other fields with struct update syntax.
fn transfer(debit: AccountId, credit: AccountId, amount: i64) -> NewTransfer {
    let id =
        TransferId(0x0190_0000_0000_7000_8000_0000_0000_0000 | u128::from(NEXT_ID.fetch_add(1, Ordering::Relaxed)));
    NewTransfer::single(id, debit, credit, Amount::from_minor(amount), Currency::BYN)
}

fn pending(debit: AccountId, credit: AccountId, amount: i64, timeout_s: Option<u32>) -> NewTransfer {
    NewTransfer { op: TransferOp::Pending { timeout_s }, ..transfer(debit, credit, amount) }
}

fn post(hold: &NewTransfer, amount: i64) -> NewTransfer {
    NewTransfer {
        op: TransferOp::Post { pending_id: hold.id },
        currency: hold.currency,
        ..transfer(hold.debit_account, hold.credit_account, amount)
    }
}

fn void(hold: &NewTransfer) -> NewTransfer {
    NewTransfer {
        op: TransferOp::Void { pending_id: hold.id },
        currency: hold.currency,
        ..transfer(hold.debit_account, hold.credit_account, hold.amount.minor())
    }
}

fn reversal(original: &NewTransfer) -> NewTransfer {
    NewTransfer {
        kind: TransferKind::Reversal,
        op: TransferOp::Reverse { original_id: original.id },
        currency: original.currency,
        ..transfer(original.credit_account, original.debit_account, original.amount.minor())
    }
}

fn linked(mut transfer: NewTransfer) -> NewTransfer {
    transfer.linked = true;
    transfer
}

fn code(outcome: &TransferOutcome) -> &'static str {
    match outcome {
        Ok(created) if created.replayed => "replayed",
        Ok(_) => "ok",
        Err(error) => error.code(),
    }
}

/// A ledger on a fresh database, with helpers that read like a banker's
/// notes, and the set of refusal codes the story has produced.
struct Bank {
    engine: Engine,
    ledger: Ledger,
    store: Arc<dyn LedgerStore>,
    seen: BTreeSet<&'static str>,
}

impl Bank {
    fn new(db: &TestDb) -> Bank {
        Bank {
            engine: db.engine,
            ledger: Ledger::start(Arc::clone(&db.store), LedgerConfig::default()),
            store: Arc::clone(&db.store),
            seen: BTreeSet::new(),
        }
    }

    async fn open(&self, kind: AccountKind, currency: Currency, credit_limit: i64) -> AccountId {
        let number = format!("S{:08}", NEXT_NUMBER.fetch_add(1, Ordering::Relaxed));
        let owner = if kind.is_system() { None } else { Some(42) };
        let account = NewAccount { number, owner, currency, kind, credit_limit: Amount::from_minor(credit_limit) };
        self.ledger.create_account(account).await.expect("open an account").id
    }

    async fn cash(&self) -> AccountId {
        self.open(AccountKind::Cash, Currency::BYN, 0).await
    }

    async fn customer(&self, credit_limit: i64) -> AccountId {
        self.open(AccountKind::Current, Currency::BYN, credit_limit).await
    }

    async fn submit(&mut self, request: Vec<NewTransfer>) -> Vec<TransferOutcome> {
        let outcomes = self.ledger.submit(request).await.expect("the ledger answers");
        for outcome in &outcomes {
            if let Err(error) = outcome {
                self.seen.insert(error.code());
            }
        }
        outcomes
    }

    async fn codes(&mut self, request: Vec<NewTransfer>) -> Vec<&'static str> {
        self.submit(request).await.iter().map(code).collect()
    }

    /// Submits one transfer that must be newly accepted.
    async fn ok(&mut self, transfer: NewTransfer) -> Transfer {
        let outcome = self.submit(vec![transfer.clone()]).await.remove(0);
        match outcome {
            Ok(Created { transfer, replayed: false }) => transfer,
            other => panic!("[{}] expected {transfer:?} to be accepted, got {other:?}", self.engine.name()),
        }
    }

    /// Submits one transfer that must be refused with `expected`, and
    /// checks that the refusal changed no balance.
    async fn refused(&mut self, transfer: NewTransfer, expected: &str) -> TransferError {
        let ids: Vec<AccountId> = [transfer.debit_account, transfer.credit_account].into();
        let before = self.store.accounts(&ids).await.unwrap();
        let outcome = self.submit(vec![transfer.clone()]).await.remove(0);
        let after = self.store.accounts(&ids).await.unwrap();
        assert_eq!(before, after, "[{}] a refused transfer changed an account", self.engine.name());
        if expected != "id_reused_with_different_content" {
            let stored = self.store.transfer(transfer.id).await.unwrap();
            assert!(stored.is_none(), "[{}] a refused transfer was stored: {stored:?}", self.engine.name());
        }
        match outcome {
            Err(error) => {
                assert_eq!(error.code(), expected, "[{}] {transfer:?}", self.engine.name());
                error
            }
            Ok(created) => panic!("[{}] expected {expected}, but {created:?} was accepted", self.engine.name()),
        }
    }

    async fn deposit(&mut self, cash: AccountId, to: AccountId, amount: i64) -> Transfer {
        self.ok(NewTransfer { kind: TransferKind::Deposit, ..transfer(cash, to, amount) }).await
    }

    async fn account(&self, id: AccountId) -> Account {
        self.store.account(id).await.unwrap().expect("the account exists")
    }

    async fn balance(&self, id: AccountId) -> i64 {
        self.account(id).await.balances.posted()
    }

    async fn available(&self, id: AccountId) -> i128 {
        self.account(id).await.balances.available()
    }

    async fn assert_check_ok(&self) {
        let report = self.ledger.check().await.expect("run the check");
        assert!(report.is_ok(), "[{}] kassa check: {:?}", self.engine.name(), report.violations);
    }
}

// ----------------------------------------------------------------- stories

/// Malformed requests are refused before any account is looked at, in a
/// fixed order, and change nothing.
async fn malformed_requests(bank: &mut Bank) {
    let cash = bank.cash().await;
    let (alice, bob) = (bank.customer(0).await, bank.customer(0).await);
    let dollars = bank.open(AccountKind::Current, Currency::USD, 0).await;
    bank.deposit(cash, alice, 100).await;
    let missing = AccountId(987_654_321);

    bank.refused(transfer(alice, bob, 0), "amount_must_be_positive").await;
    bank.refused(transfer(alice, bob, -5), "amount_must_be_positive").await;
    // The amount is judged before the accounts: both are wrong here.
    bank.refused(transfer(alice, alice, 0), "amount_must_be_positive").await;
    bank.refused(transfer(alice, alice, 5), "accounts_must_be_different").await;

    // The limit is in bytes: 256 two-byte letters fit, one more byte does not.
    let fits = "é".repeat(256);
    bank.ok(NewTransfer { description: fits.clone(), ..transfer(alice, bob, 1) }).await;
    bank.refused(NewTransfer { description: format!("{fits}x"), ..transfer(alice, bob, 1) }, "description_too_long")
        .await;

    let longest = pending(alice, bob, 1, Some(PENDING_TIMEOUT_MAX_S));
    bank.ok(longest.clone()).await;
    bank.ok(void(&longest)).await;
    bank.refused(pending(alice, bob, 1, Some(PENDING_TIMEOUT_MAX_S + 1)), "timeout_too_long").await;

    bank.refused(NewTransfer { bank_debit: true, ..transfer(alice, bob, 1) }, "bank_debit_not_allowed").await;
    bank.refused(transfer(missing, bob, 1), "debit_account_not_found").await;
    bank.refused(transfer(alice, missing, 1), "credit_account_not_found").await;
    bank.refused(transfer(missing, AccountId(987_654_322), 1), "debit_account_not_found").await;
    bank.refused(transfer(alice, dollars, 1), "accounts_currency_mismatch").await;
    bank.refused(NewTransfer { currency: Currency::USD, ..transfer(alice, bob, 1) }, "currency_mismatch").await;
    assert_eq!(bank.balance(alice).await, 99);
}

/// Blocked accounts may receive but not pay; closed accounts do neither;
/// releasing a hold is allowed whatever the status.
async fn account_statuses(bank: &mut Bank) {
    let cash = bank.cash().await;
    let (alice, bob) = (bank.customer(0).await, bank.customer(0).await);
    bank.deposit(cash, alice, 100).await;
    bank.deposit(cash, bob, 100).await;
    let hold = pending(alice, bob, 30, None);
    bank.ok(hold.clone()).await;

    bank.ledger.set_account_status(alice, AccountStatus::Blocked).await.unwrap();
    bank.refused(transfer(alice, bob, 10), "debit_account_blocked").await;
    bank.refused(post(&hold, 30), "debit_account_blocked").await;
    bank.ok(transfer(bob, alice, 10)).await;
    bank.ok(void(&hold)).await;
    bank.ledger.set_account_status(alice, AccountStatus::Active).await.unwrap();
    bank.ok(transfer(alice, bob, 10)).await;

    // Closing needs a zero balance; an empty account closes and stays shut.
    let refusal = bank.ledger.set_account_status(alice, AccountStatus::Closed).await.unwrap_err();
    assert!(matches!(&refusal, StoreError::Account(error) if error.code() == "account_has_balance"), "{refusal}");
    let empty = bank.customer(0).await;
    bank.ledger.set_account_status(empty, AccountStatus::Closed).await.unwrap();
    bank.refused(transfer(empty, bob, 1), "debit_account_closed").await;
    bank.refused(transfer(bob, empty, 1), "credit_account_closed").await;
    let reopen = bank.ledger.set_account_status(empty, AccountStatus::Active).await.unwrap_err();
    assert!(matches!(&reopen, StoreError::Account(error) if error.code() == "account_closed"), "{reopen}");
}

/// A customer may spend down to minus the credit limit, counting outgoing
/// holds but not incoming ones; the bank's own accounts have no limit.
async fn credit_limits(bank: &mut Bank) {
    let cash = bank.cash().await;
    let card = bank.customer(50).await;
    let friend = bank.customer(0).await;

    bank.ok(transfer(card, cash, 50)).await;
    assert_eq!(bank.balance(card).await, -50);
    let error = bank.refused(transfer(card, cash, 1), "insufficient_funds").await;
    assert_eq!(error, TransferError::InsufficientFunds { available: 0, requested: 1 });

    bank.deposit(cash, card, 100).await;
    bank.ok(pending(card, friend, 30, None)).await;
    // Posted 50, less a hold of 30, with 50 of credit: 70 may still go.
    assert_eq!(bank.available(card).await, 20);
    let error = bank.refused(transfer(card, cash, 71), "insufficient_funds").await;
    assert_eq!(error, TransferError::InsufficientFunds { available: 70, requested: 71 });
    bank.ok(transfer(card, cash, 70)).await;

    // The friend has 30 on the way but nothing posted: none of it is spendable.
    assert_eq!(bank.account(friend).await.balances.credits_pending, Amount::from_minor(30));
    bank.refused(transfer(friend, cash, 1), "insufficient_funds").await;

    // A vault is the bank's own book, with no limit: taking in 1,000 of
    // notes puts it 1,000 below zero, mirroring the customer's claim.
    let vault = bank.cash().await;
    bank.deposit(vault, friend, 1_000).await;
    assert_eq!(bank.balance(vault).await, -1_000);
}

/// A hold reserves money; posting settles any part of it and releases the
/// rest; voiding releases all of it; each hold is resolved at most once.
async fn pending_transfers(bank: &mut Bank) {
    let cash = bank.cash().await;
    let (shop, guest) = (bank.customer(0).await, bank.customer(0).await);
    bank.deposit(cash, guest, 100).await;

    let hotel = pending(guest, shop, 60, None);
    let held = bank.ok(hotel.clone()).await;
    assert_eq!(held.state, TransferState::Pending);
    assert_eq!((bank.balance(guest).await, bank.available(guest).await), (100, 40));

    bank.refused(post(&hotel, 61), "exceeds_pending_amount").await;
    let NewTransfer { debit_account, credit_account, .. } = hotel;
    let swapped = NewTransfer { debit_account: credit_account, credit_account: debit_account, ..post(&hotel, 10) };
    bank.refused(swapped, "pending_transfer_mismatch").await;
    bank.ok(post(&hotel, 45)).await;
    let guest_now = bank.account(guest).await;
    assert_eq!((guest_now.balances.posted(), guest_now.balances.debits_pending.minor()), (55, 0));
    assert_eq!(bank.store.transfer(hotel.id).await.unwrap().unwrap().state, TransferState::Posted);
    bank.refused(post(&hotel, 1), "pending_transfer_already_posted").await;
    bank.refused(void(&hotel), "pending_transfer_already_posted").await;

    let deposit = pending(guest, shop, 30, None);
    bank.ok(deposit.clone()).await;
    bank.refused(NewTransfer { amount: Amount::from_minor(29), ..void(&deposit) }, "pending_transfer_mismatch").await;
    bank.ok(void(&deposit)).await;
    assert_eq!(bank.available(guest).await, 55);
    bank.refused(post(&deposit, 30), "pending_transfer_already_voided").await;

    let plain = transfer(guest, shop, 5);
    bank.ok(plain.clone()).await;
    bank.refused(
        NewTransfer { op: TransferOp::Post { pending_id: plain.id }, ..transfer(guest, shop, 5) },
        "not_a_pending_transfer",
    )
    .await;
    let never = pending(guest, shop, 5, None);
    bank.refused(post(&never, 5), "pending_transfer_not_found").await;
}

/// A hold with a timeout can no longer be posted once it has passed, and
/// the expiry sweep voids it, once, with a void whose id derives from it.
async fn expiry(bank: &mut Bank) {
    let cash = bank.cash().await;
    let (shop, guest) = (bank.customer(0).await, bank.customer(0).await);
    bank.deposit(cash, guest, 100).await;

    let instant = pending(guest, shop, 10, Some(0));
    let stored = bank.ok(instant.clone()).await;
    assert_eq!(stored.expires_at_us, Some(stored.created_at_us));
    bank.refused(post(&instant, 10), "pending_transfer_expired").await;

    let hour = pending(guest, shop, 20, Some(3600));
    let stored = bank.ok(hour.clone()).await;
    assert_eq!(stored.expires_at_us, Some(stored.created_at_us + HOUR_US));
    assert_eq!(bank.available(guest).await, 70);

    // Now: only the instant hold is due.
    assert_eq!(bank.ledger.expire_pending(now_us(), 100).await.unwrap(), 1);
    let sweep = bank.store.transfer(expiry_void_id(instant.id)).await.unwrap().expect("the sweep's void is stored");
    assert_eq!((sweep.op, sweep.description.as_str()), (TransferOp::Void { pending_id: instant.id }, "expired"));
    bank.refused(post(&instant, 10), "pending_transfer_already_voided").await;
    assert_eq!(bank.available(guest).await, 80);

    // Two hours on, the other one is due too; a second sweep finds nothing.
    let later = now_us() + 2 * HOUR_US;
    assert_eq!(bank.ledger.expire_pending(later, 100).await.unwrap(), 1);
    assert_eq!(bank.ledger.expire_pending(later, 100).await.unwrap(), 0);
    assert_eq!((bank.balance(guest).await, bank.available(guest).await), (100, 100));
}

/// Nobody has to run the sweep by hand: the background sweeper started by
/// `spawn_expiry` voids a hold whose timeout passed, in real time.
async fn expiry_in_the_background(bank: &mut Bank) {
    let cash = bank.cash().await;
    let (shop, guest) = (bank.customer(0).await, bank.customer(0).await);
    bank.deposit(cash, guest, 100).await;
    let hold = pending(guest, shop, 30, Some(1));
    bank.ok(hold.clone()).await;
    assert_eq!(bank.available(guest).await, 70);
    let sweeper = bank.ledger.spawn_expiry(Duration::from_millis(100));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = bank.store.transfer(hold.id).await.unwrap().expect("the hold is stored").state;
        if state == TransferState::Voided {
            break;
        }
        assert!(Instant::now() < deadline, "the sweeper did not void the expired hold within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sweeper.abort();
    assert_eq!(bank.available(guest).await, 100);
    bank.refused(post(&hold, 30), "pending_transfer_already_voided").await;
}

/// A posted single or post transfer can be undone once, by a transfer in
/// the opposite direction for the same amount, which obeys the credit limit
/// like any payment.
async fn reversals(bank: &mut Bank) {
    let cash = bank.cash().await;
    let (alice, bob) = (bank.customer(0).await, bank.customer(0).await);
    bank.deposit(cash, alice, 100).await;

    let payment = transfer(alice, bob, 30);
    bank.ok(payment.clone()).await;
    bank.refused(NewTransfer { amount: Amount::from_minor(29), ..reversal(&payment) }, "reversal_mismatch").await;
    let same_direction = NewTransfer { debit_account: alice, credit_account: bob, ..reversal(&payment) };
    bank.refused(same_direction, "reversal_mismatch").await;
    let undo = reversal(&payment);
    bank.ok(undo.clone()).await;
    assert_eq!((bank.balance(alice).await, bank.balance(bob).await), (100, 0));
    bank.refused(reversal(&payment), "already_reversed").await;
    bank.refused(reversal(&undo), "reversal_not_allowed").await;

    let hold = pending(alice, bob, 40, None);
    bank.ok(hold.clone()).await;
    bank.refused(reversal(&hold), "reversal_not_allowed").await;
    let settled = post(&hold, 40);
    bank.ok(settled.clone()).await;
    let voided_hold = pending(alice, bob, 5, None);
    bank.ok(voided_hold.clone()).await;
    let release = void(&voided_hold);
    bank.ok(release.clone()).await;
    bank.refused(reversal(&release), "reversal_not_allowed").await;

    // Bob spent the 40 before the bank tried to take it back.
    bank.ok(transfer(bob, cash, 40)).await;
    bank.refused(reversal(&settled), "insufficient_funds").await;
    bank.refused(reversal(&transfer(alice, bob, 1)), "transfer_to_reverse_not_found").await;
}

/// Linked transfers commit together or not at all.
async fn linked_chains(bank: &mut Bank) {
    let cash = bank.cash().await;
    let (alice, bob, carol) = (bank.customer(0).await, bank.customer(0).await, bank.customer(0).await);
    bank.deposit(cash, alice, 100).await;

    let first = linked(transfer(alice, bob, 10));
    let too_much = transfer(bob, carol, 1_000);
    assert_eq!(bank.codes(vec![first.clone(), too_much]).await, ["linked_transfer_failed", "insufficient_funds"]);
    assert!(bank.store.transfer(first.id).await.unwrap().is_none(), "a failed chain left a transfer behind");
    assert_eq!((bank.balance(alice).await, bank.balance(bob).await), (100, 0));

    let failing_first = linked(transfer(alice, bob, 0));
    assert_eq!(
        bank.codes(vec![failing_first, transfer(alice, bob, 1)]).await,
        ["amount_must_be_positive", "linked_transfer_failed"]
    );

    // A chain of three succeeds as a whole and is marked with its first id.
    let chain = vec![linked(transfer(alice, bob, 10)), linked(transfer(bob, carol, 10)), transfer(carol, alice, 5)];
    let outcomes = bank.submit(chain.clone()).await;
    for outcome in &outcomes {
        assert_eq!(outcome.as_ref().unwrap().transfer.chain_id, Some(chain[0].id));
    }

    // A request that ends inside a chain: the chain never closes.
    let standalone = transfer(alice, bob, 1);
    let open = vec![standalone.clone(), linked(transfer(alice, bob, 2)), linked(transfer(alice, bob, 3))];
    assert_eq!(bank.codes(open).await, ["ok", "linked_chain_open", "linked_chain_open"]);
    assert_eq!(bank.store.transfer(standalone.id).await.unwrap().map(|t| t.chain_id), Some(None));

    // The ids of a failed chain were never used, so they can be sent again.
    bank.ok(NewTransfer { linked: false, ..first }).await;
    assert_eq!(bank.balance(alice).await, 100 - 10 - 10 + 5 - 1);
}

/// A transfer id moves money once: the same request again is answered with
/// the original, even after the world changed, and the same id with other
/// content is refused.
async fn idempotency(bank: &mut Bank) {
    let cash = bank.cash().await;
    let alice = bank.customer(0).await;
    let deposit = NewTransfer { kind: TransferKind::Deposit, ..transfer(cash, alice, 25) };
    let original = bank.ok(deposit.clone()).await;
    let again = bank.submit(vec![deposit.clone()]).await.remove(0).unwrap();
    assert!(again.replayed);
    assert_eq!(again.transfer, original);
    assert_eq!(bank.balance(alice).await, 25);

    bank.refused(NewTransfer { amount: Amount::from_minor(26), ..deposit.clone() }, "id_reused_with_different_content")
        .await;
    bank.refused(NewTransfer { description: "again".into(), ..deposit.clone() }, "id_reused_with_different_content")
        .await;

    // Idempotency comes first: a replay is answered even though the cash
    // account has since been blocked.
    bank.ledger.set_account_status(cash, AccountStatus::Blocked).await.unwrap();
    assert_eq!(bank.codes(vec![deposit]).await, ["replayed"]);
    bank.ledger.set_account_status(cash, AccountStatus::Active).await.unwrap();

    // A replayed hold shows its current state.
    let hold = pending(alice, cash, 5, None);
    bank.ok(hold.clone()).await;
    bank.ok(post(&hold, 5)).await;
    let replay = bank.submit(vec![hold]).await.remove(0).unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.transfer.state, TransferState::Posted);
}

/// No running total may pass `i64::MAX` minor units.
async fn overflow(bank: &mut Bank) {
    let vault = bank.open(AccountKind::Cash, Currency::JPY, 0).await;
    let whale = bank.open(AccountKind::Savings, Currency::JPY, 0).await;
    let huge = NewTransfer { currency: Currency::JPY, kind: TransferKind::Deposit, ..transfer(vault, whale, i64::MAX) };
    bank.ok(huge).await;
    let one_more = NewTransfer { currency: Currency::JPY, kind: TransferKind::Deposit, ..transfer(vault, whale, 1) };
    bank.refused(one_more, "overflow").await;
    assert_eq!(bank.balance(whale).await, i64::MAX);
}

/// Every refusal code, collected by exhaustive match so that a new variant
/// of `TransferError` fails to compile here until a story covers it.
fn every_code() -> BTreeSet<&'static str> {
    let variants = [
        TransferError::LinkedTransferFailed,
        TransferError::LinkedChainOpen,
        TransferError::IdReusedWithDifferentContent,
        TransferError::AmountMustBePositive,
        TransferError::SameAccount,
        TransferError::DescriptionTooLong,
        TransferError::TimeoutTooLong,
        TransferError::BankDebitNotAllowed,
        TransferError::DebitAccountNotFound,
        TransferError::CreditAccountNotFound,
        TransferError::AccountsCurrencyMismatch,
        TransferError::TransferCurrencyMismatch,
        TransferError::DebitAccountBlocked,
        TransferError::DebitAccountClosed,
        TransferError::CreditAccountClosed,
        TransferError::InsufficientFunds { available: 0, requested: 0 },
        TransferError::PendingTransferNotFound,
        TransferError::NotPending,
        TransferError::PendingTransferAlreadyPosted,
        TransferError::PendingTransferAlreadyVoided,
        TransferError::PendingTransferExpired,
        TransferError::PendingTransferMismatch,
        TransferError::ExceedsPendingAmount,
        TransferError::TransferToReverseNotFound,
        TransferError::ReversalNotAllowed,
        TransferError::AlreadyReversed,
        TransferError::ReversalMismatch,
        TransferError::Overflow,
    ];
    for variant in &variants {
        match variant {
            TransferError::LinkedTransferFailed
            | TransferError::LinkedChainOpen
            | TransferError::IdReusedWithDifferentContent
            | TransferError::AmountMustBePositive
            | TransferError::SameAccount
            | TransferError::DescriptionTooLong
            | TransferError::TimeoutTooLong
            | TransferError::BankDebitNotAllowed
            | TransferError::DebitAccountNotFound
            | TransferError::CreditAccountNotFound
            | TransferError::AccountsCurrencyMismatch
            | TransferError::TransferCurrencyMismatch
            | TransferError::DebitAccountBlocked
            | TransferError::DebitAccountClosed
            | TransferError::CreditAccountClosed
            | TransferError::InsufficientFunds { .. }
            | TransferError::PendingTransferNotFound
            | TransferError::NotPending
            | TransferError::PendingTransferAlreadyPosted
            | TransferError::PendingTransferAlreadyVoided
            | TransferError::PendingTransferExpired
            | TransferError::PendingTransferMismatch
            | TransferError::ExceedsPendingAmount
            | TransferError::TransferToReverseNotFound
            | TransferError::ReversalNotAllowed
            | TransferError::AlreadyReversed
            | TransferError::ReversalMismatch
            | TransferError::Overflow => {}
        }
    }
    variants.iter().map(TransferError::code).collect()
}

// ------------------------------------------------------------------- tests

/// Runs one story on a fresh database of every engine, then `kassa check`.
async fn on_every_engine(story: impl AsyncFn(&mut Bank)) {
    for db in db::engines().await {
        let started = Instant::now();
        let mut bank = Bank::new(&db);
        story(&mut bank).await;
        bank.assert_check_ok().await;
        eprintln!("  {}: {:.1?}", db.engine.name(), started.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_refused_in_order() {
    on_every_engine(malformed_requests).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_and_closed_accounts() {
    on_every_engine(account_statuses).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_limits_count_outgoing_holds() {
    on_every_engine(credit_limits).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_transfers_are_posted_or_voided_once() {
    on_every_engine(pending_transfers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_holds_cannot_be_posted_and_are_swept() {
    on_every_engine(expiry).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_sweeper_voids_expired_holds() {
    on_every_engine(expiry_in_the_background).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reversals_undo_a_posted_transfer_once() {
    on_every_engine(reversals).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linked_transfers_are_all_or_nothing() {
    on_every_engine(linked_chains).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_id_moves_money_once() {
    on_every_engine(idempotency).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totals_never_overflow() {
    on_every_engine(overflow).await;
}

/// All stories together reach every refusal code the ledger has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transfer_error_code_is_reachable() {
    for db in db::engines().await {
        let mut bank = Bank::new(&db);
        malformed_requests(&mut bank).await;
        account_statuses(&mut bank).await;
        credit_limits(&mut bank).await;
        pending_transfers(&mut bank).await;
        expiry(&mut bank).await;
        reversals(&mut bank).await;
        linked_chains(&mut bank).await;
        idempotency(&mut bank).await;
        overflow(&mut bank).await;
        let missing: Vec<_> = every_code().difference(&bank.seen).copied().collect();
        assert!(missing.is_empty(), "[{}] no story produced {missing:?}", db.engine.name());
        bank.assert_check_ok().await;
    }
}

/// The bank's own fee or interest may take a customer past the credit
/// limit: allowed, marked on the transfer and the account, and listed by
/// `kassa check` as a bank overdraft rather than a violation. The money must
/// go to the bank's own books: a fee to its fee-income account, interest to
/// its interest account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bank_debit_may_overdraw_and_is_reported() {
    on_every_engine(async |bank: &mut Bank| {
        let cash = bank.cash().await;
        let fees = bank.open(AccountKind::FeeIncome, Currency::BYN, 0).await;
        let interest_account = bank.open(AccountKind::InterestExpense, Currency::BYN, 0).await;
        let alice = bank.customer(0).await;
        bank.deposit(cash, alice, 10).await;

        let small_fee = NewTransfer { kind: TransferKind::Fee, bank_debit: true, ..transfer(alice, fees, 4) };
        assert!(!bank.ok(small_fee).await.overdraft, "a fee within the limit is no overdraft");
        let fee = NewTransfer { kind: TransferKind::Fee, bank_debit: true, ..transfer(alice, fees, 30) };
        let charged = bank.ok(fee).await;
        assert!(charged.overdraft);
        assert_eq!(charged.debit_balance_after, -24);
        assert!(bank.account(alice).await.bank_overdraft);
        let report = bank.ledger.check().await.unwrap();
        assert!(report.is_ok(), "{:?}", report.violations);
        assert_eq!(report.bank_overdrafts, [alice]);

        // The customer's own payments still obey the limit.
        bank.refused(transfer(alice, cash, 1), "insufficient_funds").await;
        let interest =
            NewTransfer { kind: TransferKind::Interest, bank_debit: true, ..transfer(alice, interest_account, 1) };
        assert!(bank.ok(interest).await.overdraft);

        // Paying the debt back clears the mark.
        bank.deposit(cash, alice, 100).await;
        assert!(!bank.account(alice).await.bank_overdraft);
        assert_eq!(bank.balance(alice).await, 75);
        assert!(bank.ledger.check().await.unwrap().bank_overdrafts.is_empty());
    })
    .await;
}

/// Calling a payment a fee does not let it pass the credit limit: a bank
/// debit that credits anything but the bank's own fee-income (for a fee) or
/// interest (for interest) account is refused and changes nothing. The rule
/// needs the credit account, so it is judged after the accounts are looked
/// up and before their statuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bank_debit_must_credit_the_banks_own_account() {
    on_every_engine(async |bank: &mut Bank| {
        let cash = bank.cash().await;
        let fees = bank.open(AccountKind::FeeIncome, Currency::BYN, 0).await;
        let interest_account = bank.open(AccountKind::InterestExpense, Currency::BYN, 0).await;
        let (alice, bob) = (bank.customer(0).await, bank.customer(0).await);
        bank.deposit(cash, alice, 10).await;

        // Alice's money, past her limit, to Bob, labelled a fee.
        let to_bob = NewTransfer { kind: TransferKind::Fee, bank_debit: true, ..transfer(alice, bob, 30) };
        bank.refused(to_bob, "bank_debit_not_allowed").await;
        // Within the limit it is refused just the same: the flag is wrong.
        let small = NewTransfer { kind: TransferKind::Fee, bank_debit: true, ..transfer(alice, bob, 1) };
        bank.refused(small, "bank_debit_not_allowed").await;
        let interest_to_bob =
            NewTransfer { kind: TransferKind::Interest, bank_debit: true, ..transfer(alice, bob, 30) };
        bank.refused(interest_to_bob, "bank_debit_not_allowed").await;
        // Other system accounts are not the bank's income either, and each
        // kind must credit its own account.
        for (kind, credit) in
            [(TransferKind::Fee, cash), (TransferKind::Fee, interest_account), (TransferKind::Interest, fees)]
        {
            let flagged = NewTransfer { kind, bank_debit: true, ..transfer(alice, credit, 30) };
            bank.refused(flagged, "bank_debit_not_allowed").await;
        }
        // A pending bank debit is judged the same way.
        let hold = NewTransfer { kind: TransferKind::Fee, bank_debit: true, ..pending(alice, bob, 30, None) };
        bank.refused(hold, "bank_debit_not_allowed").await;
        assert_eq!((bank.balance(alice).await, bank.balance(bob).await), (10, 0));
        assert!(!bank.account(alice).await.bank_overdraft);

        // The order: a missing credit account is reported first; the rule
        // comes before the statuses.
        let missing =
            NewTransfer { kind: TransferKind::Fee, bank_debit: true, ..transfer(alice, AccountId(987_654_321), 1) };
        bank.refused(missing, "credit_account_not_found").await;
        bank.ledger.set_account_status(alice, AccountStatus::Blocked).await.unwrap();
        let blocked = NewTransfer { kind: TransferKind::Fee, bank_debit: true, ..transfer(alice, bob, 1) };
        bank.refused(blocked, "bank_debit_not_allowed").await;
        let proper = NewTransfer { kind: TransferKind::Fee, bank_debit: true, ..transfer(alice, fees, 1) };
        bank.refused(proper, "debit_account_blocked").await;
        bank.ledger.set_account_status(alice, AccountStatus::Active).await.unwrap();

        // Credited to the bank's own fee income, the same fee is allowed.
        let fee = NewTransfer { kind: TransferKind::Fee, bank_debit: true, ..transfer(alice, fees, 30) };
        assert!(bank.ok(fee).await.overdraft);
        assert_eq!((bank.balance(alice).await, bank.balance(bob).await, bank.balance(fees).await), (-20, 0, 30));
    })
    .await;
}

/// An account's history is newest first, and following the cursor returns
/// every transfer that touched it exactly once, with the balance after each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_return_every_transfer_once_newest_first() {
    on_every_engine(async |bank: &mut Bank| {
        let cash = bank.cash().await;
        let (alice, bob, carol) = (bank.customer(0).await, bank.customer(0).await, bank.customer(0).await);
        bank.deposit(cash, bob, 1_000).await;
        let mut touching_alice: Vec<(TransferId, i64)> = Vec::new();
        let mut balance = 0;
        for step in 0..25_i64 {
            let amount = step + 1;
            let next = match step % 4 {
                0 => NewTransfer { kind: TransferKind::Deposit, ..transfer(cash, alice, amount) },
                1 => transfer(bob, alice, amount),
                2 => transfer(alice, carol, amount / 2),
                _ => pending(alice, bob, 1, None),
            };
            let stored = bank.ok(next).await;
            balance = stored.balance_after_for(alice);
            touching_alice.push((stored.id, balance));
            // Unrelated traffic and refusals in between must not appear.
            bank.ok(transfer(bob, carol, 1)).await;
            bank.refused(transfer(alice, carol, 1_000_000), "insufficient_funds").await;
        }
        // Several transfers in one request keep their request order.
        let request = vec![transfer(bob, alice, 3), transfer(alice, carol, 2)];
        for outcome in bank.submit(request).await {
            let stored = outcome.unwrap().transfer;
            balance = stored.balance_after_for(alice);
            touching_alice.push((stored.id, balance));
        }
        assert_eq!(bank.balance(alice).await, balance);

        let mut pages = Vec::new();
        let mut cursor = None;
        loop {
            let page = bank.ledger.history(alice, cursor, 7).await.unwrap();
            assert!(page.len() <= 7);
            let Some(last) = page.last() else { break };
            cursor = Some(last.seq);
            pages.extend(page);
        }
        let seqs: Vec<i64> = pages.iter().map(|t| t.seq).collect();
        assert!(seqs.windows(2).all(|pair| pair[0] > pair[1]), "history is not newest first: {seqs:?}");
        let ids: HashSet<TransferId> = pages.iter().map(|t| t.id).collect();
        assert_eq!(ids.len(), pages.len(), "a transfer appeared twice");
        let newest_first: Vec<(TransferId, i64)> = pages.iter().map(|t| (t.id, t.balance_after_for(alice))).collect();
        touching_alice.reverse();
        assert_eq!(newest_first, touching_alice);
    })
    .await;
}

/// `balance_at` answers what the posted balance was at any moment: after
/// everything committed at or before it. Holds do not change it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balance_at_reports_the_balance_at_each_moment() {
    on_every_engine(async |bank: &mut Bank| {
        let cash = bank.cash().await;
        let (alice, bob) = (bank.customer(0).await, bank.customer(0).await);
        let mut moments: Vec<(i64, i64)> = Vec::new();
        let steps = [
            NewTransfer { kind: TransferKind::Deposit, ..transfer(cash, alice, 500) },
            transfer(alice, bob, 120),
            pending(alice, bob, 50, None),
            transfer(bob, alice, 20),
            NewTransfer { kind: TransferKind::Withdrawal, ..transfer(alice, cash, 100) },
        ];
        for step in steps {
            // Separate commits by a clear gap so each has its own moment.
            tokio::time::sleep(Duration::from_millis(3)).await;
            let stored = bank.ok(step).await;
            moments.push((stored.created_at_us, bank.balance(alice).await));
        }
        assert_eq!(moments.iter().map(|(_, balance)| *balance).collect::<Vec<_>>(), [500, 380, 380, 400, 300]);
        assert_eq!(bank.ledger.balance_at(alice, moments[0].0 - 1).await.unwrap(), 0);
        let mut previous = 0;
        for (at, balance) in &moments {
            assert_eq!(bank.ledger.balance_at(alice, *at).await.unwrap(), *balance, "at {at}");
            assert_eq!(bank.ledger.balance_at(alice, at - 1).await.unwrap(), previous, "just before {at}");
            previous = *balance;
        }
        assert_eq!(bank.ledger.balance_at(alice, now_us() + HOUR_US).await.unwrap(), 300);
        assert_eq!(bank.ledger.balance_at(bob, moments[1].0).await.unwrap(), 120);
    })
    .await;
}

const HOT_TASKS: usize = 100;
const HOT_REQUESTS_PER_TASK: usize = 10;
const HOT_TRANSFERS_PER_REQUEST: usize = 10;

/// Ten thousand transfers to one account, sent as a thousand requests from
/// a hundred clients at once: group commit gathers them into few large
/// batches, and not one credit is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_account_receives_ten_thousand_concurrent_credits() {
    on_every_engine(async |bank: &mut Bank| {
        let cash = bank.cash().await;
        let hot = bank.customer(0).await;
        let tasks: Vec<_> = (0..HOT_TASKS)
            .map(|task| {
                let ledger = bank.ledger.clone();
                tokio::spawn(async move {
                    let mut sent = 0_i64;
                    for request in 0..HOT_REQUESTS_PER_TASK {
                        let transfers: Vec<NewTransfer> = (0..HOT_TRANSFERS_PER_REQUEST)
                            .map(|n| {
                                let amount = i64::try_from((task + request + n) % 9 + 1).unwrap();
                                sent += amount;
                                NewTransfer { kind: TransferKind::Deposit, ..transfer(cash, hot, amount) }
                            })
                            .collect();
                        for outcome in ledger.submit(transfers).await.unwrap() {
                            assert!(matches!(outcome, Ok(Created { replayed: false, .. })), "{outcome:?}");
                        }
                    }
                    sent
                })
            })
            .collect();
        let mut expected = 0;
        for task in tasks {
            expected += task.await.unwrap();
        }
        let count = HOT_TASKS * HOT_REQUESTS_PER_TASK * HOT_TRANSFERS_PER_REQUEST;
        let account = bank.account(hot).await;
        assert_eq!(account.balances.posted(), expected);
        assert_eq!(account.balances.credits_posted.minor(), expected);

        let largest = bank.ledger.stats().largest_batch.load(Ordering::Relaxed);
        let batches = bank.ledger.stats().batches.load(Ordering::Relaxed);
        assert!(largest > u64::try_from(HOT_TRANSFERS_PER_REQUEST).unwrap(), "no two requests ever shared a batch");
        eprintln!("  hot account: {count} transfers in {batches} batches, largest {largest}");

        // The history chain through all of them is intact.
        let mut seen = 0;
        let mut cursor = None;
        loop {
            let page = bank.ledger.history(hot, cursor, 1000).await.unwrap();
            let Some(last) = page.last() else { break };
            cursor = Some(last.seq);
            seen += page.len();
        }
        assert_eq!(seen, count);
    })
    .await;
}

/// `kassa check` recomputes every balance from the transfers: a balance
/// changed behind the ledger's back is caught. The SQL is run with the
/// testkit's PostgreSQL client; the testkit has no SQLite client, and the
/// SQLite case is covered by the `kassa check` command's own tests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kassa_check_catches_a_balance_altered_by_hand() {
    for db in db::engines().await {
        let mut bank = Bank::new(&db);
        let cash = bank.cash().await;
        let alice = bank.customer(0).await;
        bank.deposit(cash, alice, 100).await;
        bank.assert_check_ok().await;
        let sql = format!("UPDATE accounts SET credits_posted = credits_posted + 1 WHERE id = {}", alice.0);
        if !db.execute_behind_the_ledgers_back(&sql).await {
            eprintln!(
                "  {}: cannot alter the database from here; covered by kassa check's own tests",
                db.engine.name()
            );
            continue;
        }
        let report = bank.ledger.check().await.unwrap();
        assert!(!report.is_ok());
        assert!(report.violations.iter().any(|v| matches!(
            v,
            Violation::CachedTotalMismatch { account, field: "credits_posted", cached: 101, from_transfers: 100 } if *account == alice
        )), "{:?}", report.violations);
        assert!(report.violations.iter().any(|v| matches!(v, Violation::CurrencyNotZero { posted_sum: 1, .. })));
        assert!(report.violations.iter().any(|v| matches!(v, Violation::BalanceAfterMismatch { .. })));
    }
}
