//! The OpenAI Responses lane end to end: passed through to an OpenAI deployment (byte
//! for byte, metered from `response.completed`), translated for an Anthropic one, with
//! stored state refused there, and budgets as on chat.

use serde_json::{Value, json};

use tollgate_tests::gateway::TestKey;

use crate::messages::{Lane, lane};
use crate::{http, sse_events};

impl Lane {
    /// A Responses call the way OpenAI's SDKs make it.
    async fn responses(&self, body: Value) -> reqwest::Response {
        http()
            .post(format!("{}/responses", self.gateway.v1()))
            .bearer_auth(&self.key.full)
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

fn request(model: &str, extra: Value) -> Value {
    let mut body = json!({"model": model, "instructions": "be brief", "input": "hello big world"});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

fn function_tools() -> Value {
    json!([{"type": "function", "name": "lookup", "description": "Find a thing",
        "parameters": {"type": "object", "properties": {"ok": {"type": "boolean"}}}}])
}

#[tokio::test]
async fn a_response_passes_through_to_openai_byte_for_byte_and_is_metered() {
    let h = lane("+cache_read=10", "").await;
    let response = h.responses(request("gpt", json!({}))).await;
    assert_eq!(response.status(), 200, "{}", h.gateway.stderr());
    let received = response.text().await.unwrap();
    assert_eq!(received, h.mock.responses()[0].body, "byte for byte");
    let upstream = &h.mock.requests()[0];
    assert_eq!(upstream.path, "/v1/responses");
    assert_eq!(
        upstream.header("authorization"),
        Some("Bearer provider-secret")
    );
    let sent = upstream.json();
    assert_eq!(sent["model"], "mock-gpt+cache_read=10");
    // No limit from the client: the reserved ceiling went upstream.
    assert_eq!(sent["max_output_tokens"], 64);
    assert_eq!(sent["instructions"], "be brief");

    let events = h.gateway.usage_events(1).await;
    let e = &events[0];
    assert_eq!(e["endpoint"], "/v1/responses", "{e}");
    assert_eq!(e["deployment_id"], "openai-dep");
    // The mock counts "hello big world" (3) plus the 10 cached; 8 out.
    assert_eq!(e["prompt_tokens"], 13, "{e}");
    assert_eq!(e["cache_read_tokens"], 10, "{e}");
    assert_eq!(e["cost_micros"], 3 + 16 + 5, "{e}");
}

#[tokio::test]
async fn a_streamed_response_passes_through_byte_for_byte_and_counts_usage_once() {
    let h = lane("", "").await;
    let response = h.responses(request("gpt", json!({"stream": true}))).await;
    assert_eq!(response.status(), 200, "{}", h.gateway.stderr());
    let received = response.text().await.unwrap();
    assert_eq!(received, h.mock.responses()[0].body, "byte for byte");
    let names: Vec<_> = sse_events(&received)
        .into_iter()
        .filter_map(|(e, _)| e)
        .collect();
    assert_eq!(names.first().map(String::as_str), Some("response.created"));
    assert_eq!(names.last().map(String::as_str), Some("response.completed"));
    let events = h.gateway.usage_events(1).await;
    assert_eq!(events[0]["completion_tokens"], 8, "{}", events[0]);
    assert_eq!(events[0]["cost_micros"], 3 + 16, "{}", events[0]);
    assert!(events[0]["streamed"].as_bool().unwrap());

    // max_output_tokens cuts it: response.incomplete is metered too.
    let response = h
        .responses(request(
            "gpt",
            json!({"stream": true, "max_output_tokens": 3}),
        ))
        .await;
    let received = response.text().await.unwrap();
    assert!(
        received.contains("event: response.incomplete"),
        "{received}"
    );
    assert_eq!(h.mock.requests()[1].json()["max_output_tokens"], 3);
    let events = h.gateway.usage_events(2).await;
    assert_eq!(events[1]["completion_tokens"], 3, "{}", events[1]);
}

#[tokio::test]
async fn a_response_to_an_anthropic_deployment_is_translated() {
    let h = lane("", "").await;
    let body: Value = h
        .responses(request("claude", json!({})))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["object"], "response", "{body}");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["model"], "claude");
    assert_eq!(
        body["output"][0]["content"][0]["text"],
        "w0 w1 w2 w3 w4 w5 w6 w7"
    );
    assert_eq!(body["usage"]["input_tokens"], 5);
    assert_eq!(body["usage"]["output_tokens"], 8);
    let sent = h.mock.requests()[0].json();
    assert_eq!(h.mock.requests()[0].path, "/v1/messages");
    assert_eq!(sent["system"], "be brief");
    assert_eq!(sent["max_tokens"], 64);

    let text = h
        .responses(request("claude", json!({"stream": true})))
        .await
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    let names: Vec<&str> = events.iter().filter_map(|(e, _)| e.as_deref()).collect();
    assert_eq!(names.first(), Some(&"response.created"), "{text}");
    assert_eq!(names.last(), Some(&"response.completed"), "{text}");
    let deltas: String = events
        .iter()
        .filter(|(e, _)| e.as_deref() == Some("response.output_text.delta"))
        .map(|(_, d)| {
            serde_json::from_str::<Value>(d).unwrap()["delta"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(deltas, "w0 w1 w2 w3 w4 w5 w6 w7");
    let completed: Value = serde_json::from_str(&events.last().unwrap().1).unwrap();
    assert_eq!(completed["response"]["usage"]["output_tokens"], 8);

    let body: Value = h
        .responses(request("claude", json!({"tools": function_tools()})))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["output"][0]["type"], "function_call", "{body}");
    assert_eq!(body["output"][0]["name"], "lookup");
    assert_eq!(
        serde_json::from_str::<Value>(body["output"][0]["arguments"].as_str().unwrap()).unwrap(),
        json!({"ok": true})
    );

    let events = h.gateway.usage_events(3).await;
    assert!(
        events
            .iter()
            .all(|e| e["endpoint"] == "/v1/responses" && e["deployment_id"] == "anthropic-dep")
    );
    assert_eq!(events[0]["cost_micros"], 5 + 16);
}

#[tokio::test]
async fn stored_state_is_refused_on_a_translated_deployment_naming_the_field() {
    let h = lane("", "").await;
    for (extra, param) in [
        (
            json!({"previous_response_id": "resp_1"}),
            "previous_response_id",
        ),
        (json!({"store": true}), "store"),
        (json!({"tools": [{"type": "web_search"}]}), "tools"),
    ] {
        let response = h.responses(request("claude", extra)).await;
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["param"], param, "{body}");
    }
    assert!(h.mock.requests().is_empty(), "nothing was sent");

    // background: its usage would arrive after the call, unmetered: refused everywhere.
    let response = h
        .responses(request("gpt", json!({"background": true})))
        .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["param"], "background");
}

#[tokio::test]
async fn a_response_id_is_pinned_to_its_deployment_and_readable_by_its_org_only() {
    let stranger = TestKey::new();
    let h = lane(
        "",
        &format!(
            "[[orgs]]\nid = \"other\"\n[[teams]]\nid = \"ot\"\norg = \"other\"\n{}",
            stranger.entry("ot", "")
        ),
    )
    .await;
    let first: Value = h
        .responses(request("gpt", json!({"store": true})))
        .await
        .json()
        .await
        .unwrap();
    let id = first["id"].as_str().unwrap().to_owned();
    // A streamed response is pinned from its response.created event.
    let streamed = h
        .responses(request("gpt", json!({"stream": true})))
        .await
        .text()
        .await
        .unwrap();
    let created: Value = serde_json::from_str(&sse_events(&streamed)[0].1).unwrap();
    let streamed_id = created["response"]["id"].as_str().unwrap().to_owned();

    // Chaining reaches the deployment that holds the previous response.
    let response = h
        .responses(request(
            "gpt",
            json!({"previous_response_id": id, "input": "and then?"}),
        ))
        .await;
    assert_eq!(response.status(), 200, "{}", h.gateway.stderr());
    assert_eq!(
        h.mock.requests()[2].json()["previous_response_id"],
        id.as_str()
    );
    // One that Tollgate never saw for this org is not found, and not sent anywhere.
    let response = h
        .responses(request(
            "gpt",
            json!({"previous_response_id": "resp_elsewhere"}),
        ))
        .await;
    assert_eq!(response.status(), 404);
    assert_eq!(h.mock.requests().len(), 3);

    let get = |key: &TestKey, path: String| {
        let url = format!("{}/responses/{path}", h.gateway.v1());
        let token = key.full.clone();
        async move { http().get(url).bearer_auth(token).send().await.unwrap() }
    };
    let response = get(&h.key, id.clone()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-tollgate-deployment"], "openai-dep");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], id.as_str());
    assert_eq!(get(&h.key, streamed_id.clone()).await.status(), 200);
    let items: Value = get(&h.key, format!("{id}/input_items"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(items["object"], "list");
    // Another org's key cannot read it, and the provider is not even asked.
    let before = h.mock.requests().len();
    let response = get(&stranger, id.clone()).await;
    assert_eq!(response.status(), 404);
    assert_eq!(h.mock.requests().len(), before);

    let deleted: Value = http()
        .delete(format!("{}/responses/{id}", h.gateway.v1()))
        .bearer_auth(&h.key.full)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(deleted["deleted"], true);
    assert_eq!(get(&h.key, id.clone()).await.status(), 404);

    let events = h.gateway.usage_events(9).await;
    let gets: Vec<&Value> = events
        .iter()
        .filter(|e| e["endpoint"] == "GET /v1/responses/{id}")
        .collect();
    assert!(gets.len() >= 3, "{events:?}");
    assert!(gets.iter().all(|e| e["cost_micros"] == 0));
    assert!(
        events
            .iter()
            .any(|e| e["endpoint"] == "DELETE /v1/responses/{id}" && e["http_status"] == 200)
    );
}

#[tokio::test]
async fn the_budget_refuses_a_response_it_cannot_afford_before_the_provider_is_called() {
    let h = lane(
        "",
        "[[budgets]]\nscope = \"team:t\"\namount_usd = \"0.000010\"\nperiod = \"day\"\n",
    )
    .await;
    for model in ["gpt", "claude"] {
        let response = h.responses(request(model, json!({}))).await;
        assert_eq!(response.status(), 429);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "insufficient_quota");
    }
    assert!(h.mock.requests().is_empty());
    let events = h.gateway.usage_events(2).await;
    assert!(events.iter().all(|e| e["endpoint"] == "/v1/responses"));
}
