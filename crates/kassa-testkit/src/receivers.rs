//! Local receivers for the notification gateways, for tests: an HTTP SMS
//! receiver in the style of Twilio's Messages API that records every
//! request it gets (and can be told to fail).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::{HeaderMap, StatusCode};

/// One request the SMS receiver got, as sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmsRequest {
    /// The `X-Message-Id` header.
    pub message_id: String,
    /// The `Idempotency-Key` header (the gateway sends the same id in both).
    pub idempotency_key: String,
    /// The `Authorization` header.
    pub authorization: String,
    /// The form as sent (`To`, `From`, `Body`, URL-encoded).
    pub body: String,
}

impl SmsRequest {
    /// One field of the form (`To`, `From`, `Body`); empty when absent.
    pub fn field(&self, name: &str) -> String {
        let form: HashMap<String, String> = form_urlencoded::parse(self.body.as_bytes()).into_owned().collect();
        form.get(name).cloned().unwrap_or_default()
    }
}

/// An HTTP SMS receiver: answers 201 and records each request, or answers
/// 503 (recording nothing) while [`SmsReceiver::set_failing`] is on.
#[derive(Debug, Default)]
pub struct SmsReceiver {
    requests: Mutex<Vec<SmsRequest>>,
    failing: AtomicBool,
}

impl SmsReceiver {
    /// Starts a receiver on a free loopback port; returns it and the URL
    /// to configure as `notifications.http_sms.url`.
    pub async fn start() -> std::io::Result<(Arc<SmsReceiver>, String)> {
        let receiver = Arc::new(SmsReceiver::default());
        let shared = Arc::clone(&receiver);
        let handler = move |headers: HeaderMap, body: String| {
            let receiver = Arc::clone(&shared);
            async move {
                if receiver.failing.load(Ordering::SeqCst) {
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                let request = SmsRequest {
                    message_id: header("x-message-id"),
                    idempotency_key: header("idempotency-key"),
                    authorization: header("authorization"),
                    body,
                };
                receiver.requests.lock().unwrap_or_else(PoisonError::into_inner).push(request);
                StatusCode::CREATED
            }
        };
        let router = axum::Router::new().route("/sms", axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok((receiver, format!("http://{address}/sms")))
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<SmsRequest> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// While on, every request is answered 503 and not recorded.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
}
