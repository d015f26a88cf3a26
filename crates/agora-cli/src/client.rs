//! The HTTP client the commands use to talk to a running node.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use futures::Stream;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::ErrorBody;
use crate::cli::Global;
use crate::daemon::{ApiRecord, api_record_path};

/// A client for one node.
#[derive(Debug)]
pub(crate) struct Client {
    http: reqwest::Client,
    addr: SocketAddr,
    data_dir: PathBuf,
}

impl Client {
    /// Finds the node: `--api`/`AGORA_API`, else the address the node recorded in
    /// its data dir, else the default.
    pub(crate) fn new(global: &Global) -> anyhow::Result<Self> {
        let data_dir = global.data_dir.clone().unwrap_or_else(agora::default_data_dir);
        let addr = match global.api {
            Some(addr) => addr,
            None => match std::fs::read_to_string(api_record_path(&data_dir)) {
                Ok(text) => serde_json::from_str::<ApiRecord>(&text).map(|record| record.api).with_context(|| {
                    format!("{} is garbled; delete it and restart the node", api_record_path(&data_dir).display())
                })?,
                Err(_) => agora::Config::default().api,
            },
        };
        let http = reqwest::Client::builder().no_proxy().build().context("building the HTTP client")?;
        Ok(Self { http, addr, data_dir })
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

    /// Sends, turning transport failures and error statuses into messages that
    /// say what to do.
    pub(crate) async fn send(&self, request: RequestBuilder) -> anyhow::Result<Response> {
        let response = request.send().await.map_err(|error| {
            if error.is_connect() {
                anyhow!("no node is listening on {} — start one with `agora node`", self.addr)
            } else {
                anyhow!("talking to the node at {}: {error}", self.addr)
            }
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&text).map(|body| body.error.message).unwrap_or(text);
        if status == StatusCode::UNAUTHORIZED {
            bail!("{message} (data dir: {})", self.data_dir.display());
        }
        bail!("{message}");
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn token(&self) -> anyhow::Result<String> {
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

async fn decode<T: DeserializeOwned>(response: Response) -> anyhow::Result<T> {
    let bytes = response.bytes().await.context("reading the node's reply")?;
    serde_json::from_slice(&bytes).context("the node's reply did not decode (is it the same agora version?)")
}
