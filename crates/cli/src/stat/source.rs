//! Where `stat`'s numbers come from. Both sources answer with what each pod's
//! proxy counted over the window ([`Observation`]s by pod), or say why a pod
//! is left out:
//! - [`from_pods`] (the default, no Prometheus): each meshed pod's
//!   `/metrics` through the API server's pod proxy subresource, scraped at
//!   the start and at the end of the window, pods concurrently (bounded);
//! - [`from_prometheus`]: Linkerd viz's `increase(…[window])` queries, summed
//!   by pod and the labels the summariser reads, over the `namespace` and
//!   `pod` labels that kinject's scrape configuration gives.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde::Deserialize;

use super::resources::PodInfo;
use super::traffic::{Family, KEPT_LABELS, Labels, Observation, Scrape, kept};

/// At most this many pods are scraped at once.
const CONCURRENT_SCRAPES: usize = 32;
/// A proxy that has not answered in this long is left out.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// What was gathered for the window.
#[derive(Debug, Default)]
pub struct Gathered {
    /// By index into the pod list.
    pub traffic: BTreeMap<usize, Vec<Observation>>,
    /// The window's length as measured (seconds).
    pub window_secs: f64,
    /// Pods left out, with why (never counted as zero).
    pub left_out: Vec<(String, String)>,
}

fn pod_name(p: &PodInfo) -> String {
    format!("{}/{}", p.namespace, p.name)
}

/// A meshed pod's proxy `/metrics`, through the API server's pod proxy
/// subresource; the error says why in a way a user can act on.
pub async fn proxy_metrics(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
    admin_port: u16,
) -> Result<String, String> {
    let path = format!("/api/v1/namespaces/{namespace}/pods/{pod}:{admin_port}/proxy/metrics");
    let req = http::Request::get(path)
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(SCRAPE_TIMEOUT, client.request_text(req)).await {
        Err(_) => Err(format!(
            "its proxy did not answer on :{admin_port} within {}s",
            SCRAPE_TIMEOUT.as_secs()
        )),
        Ok(Err(kube::Error::Api(e))) if e.code == 403 => Err(format!(
            "forbidden: reading it needs `get` on pods/proxy in {namespace} (docs/stat-rbac.yaml)"
        )),
        Ok(Err(e)) => Err(format!("its proxy's /metrics on :{admin_port}: {e}")),
        Ok(Ok(t)) => Ok(t),
    }
}

async fn scrape(client: &kube::Client, pod: &PodInfo) -> Result<Scrape, String> {
    let text = proxy_metrics(client, &pod.namespace, &pod.name, pod.admin_port).await?;
    Scrape::parse(&text).map_err(|e| e.to_string())
}

async fn scrape_all(
    client: &kube::Client,
    pods: &[PodInfo],
    which: &[usize],
) -> BTreeMap<usize, Result<Scrape, String>> {
    futures::stream::iter(which.iter().copied())
        .map(|i| async move { (i, scrape(client, &pods[i]).await) })
        .buffer_unordered(CONCURRENT_SCRAPES)
        .collect()
        .await
}

/// Scrapes `which` pods now and after `window`, and differences the two.
pub async fn from_pods(
    client: &kube::Client,
    pods: &[PodInfo],
    which: &[usize],
    window: Duration,
) -> Gathered {
    let started = Instant::now();
    let before = scrape_all(client, pods, which).await;
    let answered: Vec<usize> = before
        .iter()
        .filter(|(_, s)| s.is_ok())
        .map(|(i, _)| *i)
        .collect();
    tokio::time::sleep(window.saturating_sub(started.elapsed())).await;
    let window_secs = started.elapsed().as_secs_f64();
    let after = scrape_all(client, pods, &answered).await;
    let mut out = Gathered {
        window_secs,
        ..Gathered::default()
    };
    for (i, first) in before {
        let pair = first.and_then(|a| match after.get(&i) {
            Some(Ok(b)) => a.until(b).map_err(|e| e.to_string()),
            Some(Err(e)) => Err(e.clone()),
            None => Err("no second scrape".into()),
        });
        match pair {
            Ok(obs) => {
                out.traffic.insert(i, obs);
            }
            Err(why) => out.left_out.push((pod_name(&pods[i]), why)),
        }
    }
    out
}

/// How to reach Prometheus' HTTP API.
pub enum Prometheus {
    /// `--prometheus-url`, with one HTTP(S) client for all the queries.
    Url { base: String, http: Box<HttpClient> },
    /// A Service reached through the API server's service proxy
    /// (`--prometheus-namespace`): `/api/v1/namespaces/NS/services/NAME/proxy`,
    /// `name` being `NAME:PORT`.
    Service {
        client: kube::Client,
        namespace: String,
        name: String,
    },
}

#[derive(Deserialize)]
struct QueryResponse {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<QueryData>,
}

#[derive(Deserialize)]
struct QueryData {
    #[serde(default)]
    result: Vec<VectorSample>,
}

#[derive(Debug, Deserialize)]
struct VectorSample {
    metric: BTreeMap<String, String>,
    /// `[unix time, "value"]`.
    value: (f64, String),
}

type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Empty<hyper::body::Bytes>,
>;

impl Prometheus {
    /// Prometheus at `base`, over HTTP or HTTPS (the system's roots), with the
    /// HTTP client kube already builds on.
    pub fn url(base: &str) -> Result<Prometheus> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .build();
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(https);
        Ok(Prometheus::Url {
            base: base.to_string(),
            http: Box::new(http),
        })
    }

    fn describe(&self) -> String {
        match self {
            Prometheus::Url { base, .. } => base.clone(),
            Prometheus::Service {
                namespace, name, ..
            } => format!("service {namespace}/{name}"),
        }
    }

    async fn query(&self, promql: &str) -> Result<Vec<VectorSample>> {
        let q = url_encode(promql);
        let body = match self {
            Prometheus::Url { base, http } => {
                let uri: http::Uri =
                    format!("{}/api/v1/query?query={q}", base.trim_end_matches('/'))
                        .parse()
                        .with_context(|| format!("--prometheus-url {base:?} is not a URL"))?;
                let (status, text) = tokio::time::timeout(Duration::from_secs(30), get(http, uri))
                    .await
                    .map_err(|_| anyhow::anyhow!("Prometheus at {base} did not answer within 30s"))?
                    .with_context(|| {
                        format!(
                            "cannot reach Prometheus at {base}: is the URL right, and is it running?"
                        )
                    })?;
                if !status.is_success() && !text.trim_start().starts_with('{') {
                    bail!("Prometheus at {base} answered {status}: {}", text.trim());
                }
                text
            }
            Prometheus::Service {
                client,
                namespace,
                name,
            } => {
                let path = format!(
                    "/api/v1/namespaces/{namespace}/services/{name}/proxy/api/v1/query?query={q}"
                );
                let req = http::Request::get(path).body(Vec::new())?;
                client.request_text(req).await.with_context(|| {
                    format!(
                        "cannot reach Prometheus through the API server's proxy to service {namespace}/{name}"
                    )
                })?
            }
        };
        let rsp: QueryResponse = serde_json::from_str(&body).with_context(|| {
            format!(
                "{} did not answer as Prometheus' query API",
                self.describe()
            )
        })?;
        if rsp.status != "success" {
            bail!(
                "Prometheus refused the query {promql:?}: {}",
                rsp.error.unwrap_or_default()
            );
        }
        Ok(rsp.data.map(|d| d.result).unwrap_or_default())
    }
}

/// One GET; the status and the body.
async fn get(http: &HttpClient, uri: http::Uri) -> Result<(http::StatusCode, String)> {
    use http_body_util::BodyExt;
    let rsp = http.get(uri).await?;
    let status = rsp.status();
    let body = rsp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Percent-encodes a query string value.
fn url_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The PromQL for one family over the pods of `namespaces`.
pub fn promql(family: Family, namespaces: &[String], window: Duration) -> String {
    let mut by: Vec<&str> = vec!["namespace", "pod"];
    by.extend(KEPT_LABELS);
    let ns = namespaces
        .iter()
        .map(|n| regex_quote(n))
        .collect::<Vec<_>>()
        .join("|");
    let selector = format!("{}{{namespace=~\"{ns}\"}}", family.metric());
    let inner = match family {
        Family::TcpOpen => selector,
        _ => format!("increase({selector}[{}s])", window.as_secs().max(1)),
    };
    format!("sum by ({}) ({inner})", by.join(", "))
}

/// Namespace names are DNS labels, but quote what a regex would read.
fn regex_quote(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = ".+*?()|[]{}^$\\".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

/// Linkerd viz's queries, one per family, answered by pod.
pub async fn from_prometheus(
    prom: &Prometheus,
    pods: &[PodInfo],
    which: &[usize],
    window: Duration,
) -> Result<Gathered> {
    let index: BTreeMap<(&str, &str), usize> = which
        .iter()
        .map(|&i| ((pods[i].namespace.as_str(), pods[i].name.as_str()), i))
        .collect();
    let mut namespaces: Vec<String> = which.iter().map(|&i| pods[i].namespace.clone()).collect();
    namespaces.sort();
    namespaces.dedup();
    let mut out = Gathered {
        window_secs: window.as_secs_f64(),
        ..Gathered::default()
    };
    for &i in which {
        out.traffic.insert(i, Vec::new());
    }
    if namespaces.is_empty() {
        return Ok(out);
    }
    let mut broken: BTreeMap<usize, String> = BTreeMap::new();
    for family in Family::ALL {
        for s in prom.query(&promql(family, &namespaces, window)).await? {
            let key = (
                s.metric.get("namespace").map_or("", String::as_str),
                s.metric.get("pod").map_or("", String::as_str),
            );
            let Some(&i) = index.get(&key) else { continue };
            let value: f64 = match s.value.1.parse() {
                Ok(v) if f64::is_finite(v) => v,
                _ => {
                    broken.insert(
                        i,
                        format!(
                            "Prometheus has {} = {:?} for it",
                            family.metric(),
                            s.value.1
                        ),
                    );
                    continue;
                }
            };
            let labels: Labels = kept(&s.metric);
            if let Some(obs) = out.traffic.get_mut(&i) {
                obs.push(Observation {
                    family,
                    labels,
                    value,
                });
            }
        }
    }
    for (i, why) in broken {
        out.traffic.remove(&i);
        out.left_out.push((pod_name(&pods[i]), why));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An HTTP server on loopback answering `status` and `body` to every
    /// request.
    async fn answering(status: &'static str, body: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = vec![0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let rsp = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(rsp.as_bytes()).await;
            }
        });
        format!("http://{addr}")
    }

    async fn query_error(status: &'static str, body: &'static str) -> String {
        let base = answering(status, body).await;
        let prom = Prometheus::url(&base).expect("client");
        format!("{:#}", prom.query("up").await.expect_err("refused"))
    }

    #[tokio::test]
    async fn answers_that_are_not_prometheus_are_named() {
        let e = query_error("200 OK", "<html>a login page</html>").await;
        assert!(e.contains("did not answer as Prometheus' query API"), "{e}");
        let e = query_error("500 Internal Server Error", "down for maintenance").await;
        assert!(
            e.contains("answered 500 Internal Server Error: down for maintenance"),
            "{e}"
        );
        let e = query_error(
            "400 Bad Request",
            r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#,
        )
        .await;
        assert!(
            e.contains("Prometheus refused the query \"up\": parse error"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_prometheus_url_that_is_not_one_is_named() {
        let prom = Prometheus::url("not a url").expect("client");
        let e = format!("{:#}", prom.query("up").await.expect_err("refused"));
        assert!(
            e.contains("--prometheus-url \"not a url\" is not a URL"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_series_that_is_not_a_number_leaves_its_pod_out() {
        let base = answering(
            "200 OK",
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"namespace":"apps","pod":"web-1"},"value":[1,"NaN"]}]}}"#,
        )
        .await;
        let prom = Prometheus::url(&base).expect("client");
        let pod = super::super::resources::pod_info(
            serde_json::json!({"metadata": {"name": "web-1", "namespace": "apps"}}),
            "linkerd",
        );
        let got = from_prometheus(&prom, &[pod], &[0], Duration::from_secs(60))
            .await
            .expect("answers");
        assert!(got.traffic.is_empty(), "left out, not counted as zero");
        assert_eq!(got.left_out.len(), 1);
        assert_eq!(got.left_out[0].0, "apps/web-1");
        assert!(got.left_out[0].1.contains("\"NaN\""), "{:?}", got.left_out);
    }

    #[test]
    fn queries_are_viz_s_increase_summed_by_pod_and_the_read_labels() {
        let q = promql(
            Family::Responses,
            &["apps".into(), "web.x".into()],
            Duration::from_secs(60),
        );
        assert_eq!(
            q,
            "sum by (namespace, pod, direction, peer, tls, classification, target_port, dst_namespace, dst_pod, le) (increase(response_total{namespace=~\"apps|web\\.x\"}[60s]))"
        );
        let g = promql(Family::TcpOpen, &["apps".into()], Duration::from_secs(60));
        assert!(
            g.ends_with("(tcp_open_connections{namespace=~\"apps\"})"),
            "{g}"
        );
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(url_encode("a b{c=\"d\"}"), "a%20b%7Bc%3D%22d%22%7D");
    }
}
