//! The benchmarks' way to fill a store through the webhooks: requests spread over
//! concurrent senders, each answer checked, and the Alertmanager group around a
//! benchmark's alerts. Each example includes it with
//! `#[path = "support/flood.rs"] mod flood;`.

use anyhow::bail;
use serde_json::{Value, json};

/// Sends requests `0..count`, request `i` built by `request(i)`, from `senders`
/// concurrent senders (sender `s` sends `s`, `s + senders`, …); fails on the first
/// answer that is not a 2xx, naming its request.
pub async fn post_spread<F>(senders: usize, count: usize, request: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> reqwest::RequestBuilder + Clone + Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    for sender in 0..senders {
        let request = request.clone();
        tasks.spawn(async move {
            for i in (sender..count).step_by(senders) {
                let status = request(i).send().await?.status();
                if !status.is_success() {
                    bail!("request {i}: {status}");
                }
            }
            Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

/// Posts `alerts` alerts to `{base}/webhooks/alertmanager` as `token`, `per` to a
/// notification, from `senders` concurrent senders: notification `n` carries alerts
/// `n * per..` (at most `per`, the last fewer), its body built by `body(n, range)`.
pub async fn post_alerts<B>(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    senders: usize,
    per: usize,
    alerts: usize,
    body: B,
) -> anyhow::Result<()>
where
    B: Fn(usize, std::ops::Range<usize>) -> String + Clone + Send + 'static,
{
    let (http, url, token) = (
        http.clone(),
        format!("{base}/webhooks/alertmanager"),
        token.to_string(),
    );
    post_spread(senders, alerts.div_ceil(per), move |n| {
        let first = n * per;
        http.post(&url)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body(n, first..(first + per).min(alerts)))
    })
    .await
}

/// Alertmanager's body for group `n` carrying `alerts`, each group a new one.
pub fn group(n: usize, alerts: Vec<Value>) -> String {
    json!({
        "receiver": "rollwarden", "status": "firing", "alerts": alerts,
        "groupLabels": {"n": n.to_string()},
        "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093", "version": "4",
        "groupKey": format!("{{}}:{{n=\"{n}\"}}"),
        "truncatedAlerts": 0
    })
    .to_string()
}
