//! The runner's side of `/api/runners/…`: one blocking HTTP client, with the runner token.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A request to the daemon did not get an answer.
#[derive(Debug, thiserror::Error)]
#[error("the daemon at {url} did not answer: {message}")]
pub struct Unanswered {
    /// What was asked.
    pub url: String,
    /// Why not.
    pub message: String,
}

/// The daemon's answer: its status and body.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as `T`, when the status is 200.
    pub fn json<T: DeserializeOwned>(&self) -> Option<T> {
        (self.status == 200)
            .then(|| serde_json::from_slice(&self.body).ok())
            .flatten()
    }

    /// The error code of a refusal (`{"error": {"code"}}`).
    pub fn code(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// The body as text, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Talks to one daemon with one runner token.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    auth: String,
}

impl Client {
    /// A client for the daemon at `base` (`http://host:port`).
    pub fn new(base: &str, token: &str) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .build()
            .into();
        Self {
            agent,
            base: base.trim_end_matches('/').to_owned(),
            auth: format!("Bearer {token}"),
        }
    }

    /// POSTs `body` (JSON) to `path`, waiting at most `timeout` for the whole answer.
    pub fn post<B: Serialize>(
        &self,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<Answer, Unanswered> {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        self.post_bytes(path, &bytes, "application/json", timeout)
    }

    /// POSTs raw `bytes` to `path`.
    pub fn post_bytes(
        &self,
        path: &str,
        bytes: &[u8],
        content_type: &str,
        timeout: Duration,
    ) -> Result<Answer, Unanswered> {
        let url = format!("{}{path}", self.base);
        let unanswered = |e: ureq::Error| Unanswered {
            url: url.clone(),
            message: e.to_string(),
        };
        let mut response = self
            .agent
            .post(&url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .header("Authorization", &self.auth)
            .header("Content-Type", content_type)
            .send(bytes)
            .map_err(unanswered)?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_vec()
            .map_err(unanswered)?;
        Ok(Answer { status, body })
    }
}
