//! `kassa serve --demo`: a few customers, accounts and transfers, so a
//! newcomer has something to look at.

use kassa_service::accounts::{AccountView, Consent, OpenAccount};
use kassa_service::money::{CashForm, TransferForm};
use kassa_service::people::{Registration, StaffForm};
use kassa_service::{Bank, Caller, Role, SignedIn};

const DEMO_PASSWORD: &str = "demo-Password-2026";

fn service(error: kassa_service::ServiceError) -> anyhow::Error {
    anyhow::anyhow!("{error} ({})", error.code())
}

/// Opens a BYN account of `(kind, nickname, consents)` for `owner` at the
/// desk and pays `(amount, description)` in cash into it.
async fn open_with_deposit(
    bank: &Bank,
    teller: &Caller,
    owner: i64,
    (kind, nickname, consents): (&str, &str, Vec<Consent>),
    (amount, description): (&str, &str),
) -> anyhow::Result<AccountView> {
    let account = bank
        .open_account(
            teller,
            Some(owner),
            OpenAccount {
                kind: Some(kind.into()),
                currency: Some("BYN".into()),
                nickname: Some(nickname.into()),
                consents: Some(consents),
                ..OpenAccount::default()
            },
        )
        .await
        .map_err(service)?;
    bank.cash(
        teller,
        true,
        CashForm {
            account: Some(account.number.clone()),
            amount: Some(amount.into()),
            currency: Some("BYN".into()),
            description: Some(description.into()),
        },
        None,
    )
    .await
    .map_err(service)?;
    Ok(account)
}

#[allow(clippy::print_stdout)]
pub async fn seed(bank: &Bank) -> anyhow::Result<()> {
    let desk = Caller::anonymous("demo");
    let already = bank.login("demo", "+375291111111", DEMO_PASSWORD, None).await.is_ok();
    if already {
        println!("Demo data is already there: sign in as +375291111111 / {DEMO_PASSWORD}");
        return Ok(());
    }
    let teller = bank
        .create_staff(
            &Caller::anonymous("cli"),
            StaffForm {
                login: Some("demo-teller".into()),
                name: Some("Demo Teller".into()),
                role: Some("teller".into()),
                password: Some(DEMO_PASSWORD.into()),
                totp: Some(false),
            },
        )
        .await
        .map_err(service)?;
    let teller = Caller {
        user: Some(SignedIn { id: teller.staff.id, role: Role::Teller, session_id: "demo".into(), restricted: false }),
        origin: "demo".into(),
        clock: None,
    };
    let consents = |kind: &str| {
        let mut consents = vec![Consent { document: "terms".into(), version: "2026-01".into() }];
        if kind == "savings" {
            consents.push(Consent { document: "savings".into(), version: "2026-01".into() });
        }
        consents
    };
    let mut accounts = Vec::new();
    for (first, last, phone, passport, personal) in [
        ("Anna", "Petrova", "+375291111111", "MP1111111", "1111111A111PB1"),
        ("Ivan", "Sidorov", "+375292222222", "MP2222222", "2222222A222PB2"),
    ] {
        let registered = bank
            .register(
                &desk,
                Registration {
                    first_name: Some(first.into()),
                    last_name: Some(last.into()),
                    phone: Some(phone.into()),
                    email: Some(format!("{}@example.com", first.to_lowercase())),
                    password: Some(DEMO_PASSWORD.into()),
                    passport_number: Some(passport.into()),
                    personal_id: Some(personal.into()),
                },
            )
            .await
            .map_err(service)?;
        let id = registered.customer.id;
        let account = open_with_deposit(
            bank,
            &teller,
            id,
            ("current", "Everyday", consents("current")),
            ("500.00", "Opening deposit"),
        )
        .await?;
        accounts.push(account);
    }
    if let [anna, ivan] = accounts.as_slice() {
        bank.staff_transfer(
            &teller,
            TransferForm {
                from_account: Some(anna.number.clone()),
                to_account: Some(ivan.number.clone()),
                amount: Some("42.50".into()),
                currency: Some("BYN".into()),
                description: Some("Lunch".into()),
                to_phone: None,
            },
            None,
        )
        .await
        .map_err(service)?;
    }
    // Anna also has a debit card: its number is shown masked in her account
    // list, in full (with the CVV) only through POST /accounts/{id}/card/reveal.
    let mut card_line = None;
    if let Some(anna) = accounts.first() {
        let mut card_consents = consents("debit_card");
        card_consents.push(Consent { document: "cards".into(), version: "2026-01".into() });
        let card = open_with_deposit(
            bank,
            &teller,
            anna.owner,
            ("debit_card", "Card", card_consents),
            ("100.00", "Card top-up"),
        )
        .await?;
        card_line = card.card.map(|c| format!("  Anna's debit card: account {}, {}", card.id, c.number_masked));
    }
    println!("Demo data seeded. Sign in as a customer with POST /api/v1/auth/login:");
    println!("  {{\"login\": \"+375291111111\", \"password\": \"{DEMO_PASSWORD}\"}}  (Anna)");
    println!("  {{\"login\": \"+375292222222\", \"password\": \"{DEMO_PASSWORD}\"}}  (Ivan)");
    println!("  teller: {{\"login\": \"demo-teller\", \"password\": \"{DEMO_PASSWORD}\"}}");
    if let Some(line) = card_line {
        println!("{line}");
    }
    Ok(())
}
