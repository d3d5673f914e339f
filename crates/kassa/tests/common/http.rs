//! A small JSON client for a test server's HTTP API: every answer is its
//! status and its body as JSON (`null` when the body is not JSON), and a
//! request that gets no answer at all fails the test.

use std::time::Duration;

use serde_json::Value;

pub struct Http {
    client: reqwest::Client,
    /// `http://127.0.0.1:PORT`
    base: String,
}

impl Http {
    /// A client for the server at `base` (no proxy); one request may take
    /// at most `timeout`.
    pub fn new(base: &str, timeout: Duration) -> Http {
        let client = reqwest::Client::builder().no_proxy().timeout(timeout).build().expect("an HTTP client");
        Http { client, base: base.to_owned() }
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        let mut request = self.client.post(format!("{}{path}", self.base)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap_or_else(|error| panic!("POST {path}: {error}"));
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap_or_else(|error| panic!("GET {path}: {error}"));
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}
