//! The HTTP client the commands use to talk to a running node.
//!
//! It talks only to the node of its data dir: the node records its address and
//! identity key in `<data dir>/api.json`, and before the first request the
//! client has the node at that address sign a fresh challenge with that key
//! (`GET /v1/identity`). Whatever else holds the port (another node, a stale
//! record, any local process) gets no request of the command and never the
//! token. With `--api ADDR` the address is the user's, but the check still
//! applies when the data dir has a record; without a record, reads go to ADDR
//! unchecked and nothing carrying the token is sent.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use futures::Stream;
use reqwest::header::AUTHORIZATION;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{ErrorBody, IDENTITY_HEADER, IdentityBody};
use crate::cli::Global;
use crate::daemon::{ApiRecord, api_record_path};

/// The node answered with an error: its stable `code` and its message. `agora
/// --json` prints both (see `main.rs`).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct NodeRefused {
    pub(crate) code: String,
    pub(crate) message: String,
}

/// A client for one node.
#[derive(Debug)]
pub(crate) struct Client {
    http: reqwest::Client,
    addr: SocketAddr,
    data_dir: PathBuf,
    /// The identity the data dir's record names; `None` only with `--api` and
    /// no record.
    expected: Option<agora::PublicKey>,
    /// Set once the node at `addr` proved it holds `expected`.
    verified: tokio::sync::OnceCell<()>,
}

impl Client {
    /// Finds the node: the address the node recorded in its data dir, or
    /// `--api`/`AGORA_API`. Without either, no node is running for the data dir.
    pub(crate) fn new(global: &Global) -> anyhow::Result<Self> {
        let data_dir = global.data_dir.clone().unwrap_or_else(agora::default_data_dir);
        let record = read_record(&data_dir)?;
        let (addr, expected) = match (global.api, record) {
            (Some(addr), record) => (addr, record.map(|record| record.identity)),
            (None, Some(record)) => (record.api, Some(record.identity)),
            (None, None) => bail!(
                "no node is running for the data dir {dir} (it has no {record}); start one with `agora node --data-dir {dir}`",
                dir = data_dir.display(),
                record = api_record_path(&data_dir).display(),
            ),
        };
        let http = reqwest::Client::builder().no_proxy().build().context("building the HTTP client")?;
        Ok(Self { http, addr, data_dir, expected, verified: tokio::sync::OnceCell::new() })
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let response = self.send(self.http.get(self.url(path))).await?;
        decode(response).await
    }

    /// `GET path?query`, with `query` encoded as URL parameters.
    pub(crate) async fn get_with_query<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &impl Serialize,
    ) -> anyhow::Result<T> {
        let response = self.send(self.http.get(self.url(path)).query(query)).await?;
        decode(response).await
    }

    /// `GET path`, handing back the body as it arrives (for artifacts).
    pub(crate) async fn stream_get(
        &self,
        path: &str,
    ) -> anyhow::Result<impl Stream<Item = reqwest::Result<Bytes>> + use<>> {
        Ok(self.send(self.http.get(self.url(path))).await?.bytes_stream())
    }

    /// `POST path` with no body (every POST carries the token), handing back the
    /// body as it arrives (for progress streams).
    pub(crate) async fn post_stream(
        &self,
        path: &str,
    ) -> anyhow::Result<impl Stream<Item = reqwest::Result<Bytes>> + use<>> {
        Ok(self.send(self.authorized(Method::POST, path)?).await?.bytes_stream())
    }

    pub(crate) async fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> anyhow::Result<T> {
        let request = self.authorized(Method::POST, path)?.json(body);
        decode(self.send(request).await?).await
    }

    /// A request carrying the API token.
    pub(crate) fn authorized(&self, method: Method, path: &str) -> anyhow::Result<RequestBuilder> {
        Ok(self.http.request(method, self.url(path)).bearer_auth(self.token()?))
    }

    /// Sends, once the node proved it is the data dir's node (a request carrying
    /// the token is never sent unproven), turning transport failures and error
    /// statuses into messages that say what to do.
    pub(crate) async fn send(&self, request: RequestBuilder) -> anyhow::Result<Response> {
        let request = request.build().context("building the request")?;
        match &self.expected {
            Some(expected) => {
                self.verified.get_or_try_init(|| self.verify(expected)).await?;
            }
            None if request.headers().contains_key(AUTHORIZATION) => bail!(
                "no node is running for the data dir {dir} (it has no {record}), so its API token is not sent to {addr}; \
                 start its node with `agora node --data-dir {dir}`, or pass the data dir of the node at {addr}",
                dir = self.data_dir.display(),
                record = api_record_path(&self.data_dir).display(),
                addr = self.addr,
            ),
            None => {}
        }
        let response = self.http.execute(request).await.map_err(|error| self.transport_error(&error))?;
        if let Some(expected) = &self.expected {
            let answered = response.headers().get(IDENTITY_HEADER).and_then(|value| value.to_str().ok());
            if answered != Some(expected.to_hex().as_str()) {
                return Err(self.not_running(format!(
                    "the reply from {} came from node {}, not from node {expected}",
                    self.addr,
                    answered.unwrap_or("(none)")
                )));
            }
        }
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => (body.error.code, body.error.message),
            Err(_) => ("internal".to_owned(), text),
        };
        let message = if status == StatusCode::UNAUTHORIZED {
            format!("{message} (data dir: {})", self.data_dir.display())
        } else {
            message
        };
        Err(NodeRefused { code, message }.into())
    }

    /// Has the node at `addr` sign a fresh challenge; succeeds only when the
    /// signature is by `expected`.
    async fn verify(&self, expected: &agora::PublicKey) -> anyhow::Result<()> {
        let mut challenge = [0u8; 32];
        getrandom::getrandom(&mut challenge).map_err(|error| anyhow!("the system's random source failed: {error}"))?;
        let response = self
            .http
            .get(self.url("/v1/identity"))
            .query(&[("challenge", hex::encode(challenge))])
            .send()
            .await
            .map_err(|error| self.transport_error(&error))?;
        let addr = self.addr;
        if !response.status().is_success() {
            return Err(self.not_running(format!(
                "{addr} answered the identity check with {} (expected node {expected})",
                response.status()
            )));
        }
        let answer: IdentityBody = response.json().await.map_err(|_| {
            self.not_running(format!("{addr} did not answer the identity check as a node (expected node {expected})"))
        })?;
        if answer.identity != *expected {
            return Err(self.not_running(format!(
                "the node at {addr} is node {}, not this data dir's node {expected}",
                answer.identity
            )));
        }
        let proven = answer
            .signature
            .is_some_and(|signature| expected.verify(&agora::identity_proof_message(&challenge), &signature));
        if !proven {
            return Err(self.not_running(format!(
                "{addr} claims to be this data dir's node {expected} but did not prove it with its key"
            )));
        }
        Ok(())
    }

    /// "No node is running for the data dir", why, and what to do.
    fn not_running(&self, why: String) -> anyhow::Error {
        anyhow!(
            "no node is running for the data dir {dir}: {why}; start it with `agora node --data-dir {dir}`",
            dir = self.data_dir.display()
        )
    }

    fn transport_error(&self, error: &reqwest::Error) -> anyhow::Error {
        if error.is_connect() {
            anyhow!("no node is listening on {} — start one with `agora node`", self.addr)
        } else {
            anyhow!("talking to the node at {}: {error}", self.addr)
        }
    }

    /// The URL of `path`. A crate's package name (`crates/serde`) is one path
    /// segment, so its `/` is escaped; no other package name has one.
    fn url(&self, path: &str) -> String {
        match path.strip_prefix("/v1/packages/crates/") {
            Some(rest) => format!("http://{}/v1/packages/crates%2F{rest}", self.addr),
            None => format!("http://{}{path}", self.addr),
        }
    }

    /// The API address this client talks to.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The data dir whose node this client talks to.
    pub(crate) fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The node's current API token, read from its data dir.
    pub(crate) fn token(&self) -> anyhow::Result<String> {
        let path = agora::api_token_path(&self.data_dir);
        std::fs::read_to_string(&path).map(|token| token.trim().to_owned()).map_err(|_| {
            anyhow!(
                "no API token at {} — start the node with this data dir (`agora node --data-dir {}`) or pass the same --data-dir here",
                path.display(),
                self.data_dir.display()
            )
        })
    }
}

/// The record of the node running for `data_dir`, if it wrote one.
fn read_record(data_dir: &Path) -> anyhow::Result<Option<ApiRecord>> {
    let path = api_record_path(data_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(anyhow!("cannot read {}: {error}", path.display())),
    };
    serde_json::from_str(&text).map(Some).map_err(|error| {
        anyhow!(
            "{} is not a node's record ({error}; expected {{\"api\", \"pid\", \"identity\"}}, as this version writes it); \
             restart the node, or delete the file if no node runs",
            path.display()
        )
    })
}

async fn decode<T: DeserializeOwned>(response: Response) -> anyhow::Result<T> {
    let bytes = response.bytes().await.context("reading the node's reply")?;
    serde_json::from_slice(&bytes).context("the node's reply did not decode (is it the same agora version?)")
}
