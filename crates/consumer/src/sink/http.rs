//! `--sink http://...`: one POST per event to the bot's own endpoint. Any answer but
//! 2xx, a timeout or a connection error fails the event; the consumer retries it with
//! backoff and dead-letters it after `consumer.handler_attempts`.

use std::time::Duration;

use anyhow::{Context as _, bail};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Request, Uri, header};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// At most this much of an error answer's body is quoted in the error.
const QUOTED_BODY: usize = 200;

/// POSTs events to one URL over a pool of keep-alive connections.
#[derive(Debug)]
pub struct HttpSink {
    url: Uri,
    timeout: Duration,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl HttpSink {
    /// A sink for `url` (http or https; https is verified against the webpki roots).
    ///
    /// # Errors
    ///
    /// When `url` is not a URL.
    pub fn new(url: &str, timeout: Duration) -> anyhow::Result<Self> {
        let url: Uri = url
            .parse()
            .with_context(|| format!("sink {url:?} is not a URL"))?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            url,
            timeout,
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// POSTs `json`; Ok once the endpoint answered 2xx.
    ///
    /// # Errors
    ///
    /// Any other answer (its status and the start of its body), no answer within the
    /// timeout, or a connection error.
    pub async fn post(&self, json: String) -> anyhow::Result<()> {
        let request = Request::post(self.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(json)))?;
        let answered = tokio::time::timeout(self.timeout, async {
            let response = self.client.request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        })
        .await;
        let (status, body) = match answered {
            Ok(answer) => answer.with_context(|| format!("POST {}", self.url))?,
            Err(_) => bail!(
                "POST {}: no answer within {} ms",
                self.url,
                self.timeout.as_millis()
            ),
        };
        if status.is_success() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&body);
        let quoted: String = text.chars().take(QUOTED_BODY).collect();
        bail!("POST {}: HTTP {status}: {}", self.url, quoted.trim())
    }
}
