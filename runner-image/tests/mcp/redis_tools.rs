//! The built-in Redis tools, through the toolbox (an rmcp client over a duplex):
//! the typed tools round trip under the feature's prefix, bad calls are clear
//! errors (and `is_error` results from the server itself), and calls made in a
//! test keyspace stay in it.

use crate::{SHOP, client_config, common, object, raw_get, text_of};
use eol_core::parse_feature;
use eol_runner::mcp::{RedisToolServer, Toolbox};
use eol_runner::prototype::Tools;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::service::ServiceError;
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test]
async fn redis_tools_round_trip_under_the_feature_prefix() {
    let redis = common::local_redis();
    let store = common::store(&redis);
    let feature = parse_feature("shop.eol", SHOP).unwrap();
    let toolbox = Toolbox::connect(&feature, store.clone()).await.unwrap();

    let names = toolbox.tool_names();
    for t in [
        "get",
        "set",
        "del",
        "incr",
        "expire",
        "hset",
        "hgetall",
        "json_get",
        "json_set",
        "ft_search",
        "xadd",
    ] {
        assert!(names.contains(&format!("redis__{t}").as_str()), "{names:?}");
    }
    let defs = toolbox.definitions();
    let set = defs
        .iter()
        .find(|d| d["function"]["name"] == "redis__set")
        .unwrap();
    assert_eq!(set["type"], "function");
    assert_eq!(set["function"]["parameters"]["type"], "object");
    assert!(set["function"]["parameters"]["properties"]["ex"].is_object());
    assert!(
        set["function"]["description"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );

    // set then get
    let ok = toolbox
        .call("redis__set", r#"{"key": "cart:1", "value": "3 apples"}"#)
        .await
        .unwrap();
    assert_eq!(serde_json::from_str::<Value>(&ok).unwrap(), json!("OK"));
    let got = toolbox
        .call("redis__get", r#"{"key": "cart:1"}"#)
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&got).unwrap(),
        json!("3 apples")
    );
    assert_eq!(
        toolbox
            .call("redis__get", r#"{"key": "nothing"}"#)
            .await
            .unwrap(),
        "null"
    );
    // The key lives under the prefix, and nowhere else.
    assert_eq!(
        raw_get(&store, "eol:shop:cart:1").await.as_deref(),
        Some("3 apples")
    );
    assert_eq!(raw_get(&store, "cart:1").await, None);

    // set with ex: a TTL is set
    toolbox
        .call(
            "redis__set",
            r#"{"key": "session", "value": "x", "ex": 100}"#,
        )
        .await
        .unwrap();
    let mut conn = store.connection().await.unwrap();
    let ttl: i64 = redis::cmd("TTL")
        .arg("eol:shop:session")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((1..=100).contains(&ttl), "ttl {ttl}");

    // incr, expire, del
    assert_eq!(
        toolbox
            .call("redis__incr", r#"{"key": "visits"}"#)
            .await
            .unwrap(),
        "1"
    );
    assert_eq!(
        toolbox
            .call("redis__incr", r#"{"key": "visits", "by": 5}"#)
            .await
            .unwrap(),
        "6"
    );
    assert_eq!(
        toolbox
            .call("redis__expire", r#"{"key": "visits", "seconds": 60}"#)
            .await
            .unwrap(),
        "true"
    );
    assert_eq!(
        toolbox
            .call("redis__expire", r#"{"key": "absent", "seconds": 60}"#)
            .await
            .unwrap(),
        "false"
    );
    assert_eq!(
        toolbox
            .call("redis__del", r#"{"keys": ["visits", "absent"]}"#)
            .await
            .unwrap(),
        "1"
    );
    assert_eq!(raw_get(&store, "eol:shop:visits").await, None);

    // hashes
    assert_eq!(
        toolbox
            .call(
                "redis__hset",
                r#"{"key": "user:1", "fields": {"name": "Ada", "plan": "pro"}}"#
            )
            .await
            .unwrap(),
        "2"
    );
    let all = toolbox
        .call("redis__hgetall", r#"{"key": "user:1"}"#)
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&all).unwrap(),
        json!({"name": "Ada", "plan": "pro"})
    );
    let exists: bool = redis::cmd("EXISTS")
        .arg("eol:shop:user:1")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(exists);

    // JSON documents
    toolbox
        .call(
            "redis__json_set",
            r#"{"key": "doc:1", "value": {"title": "Redis", "n": 2}}"#,
        )
        .await
        .unwrap();
    toolbox
        .call(
            "redis__json_set",
            r#"{"key": "doc:1", "path": "$.n", "value": 3}"#,
        )
        .await
        .unwrap();
    let doc = toolbox
        .call("redis__json_get", r#"{"key": "doc:1", "path": "$.n"}"#)
        .await
        .unwrap();
    assert_eq!(serde_json::from_str::<Value>(&doc).unwrap(), json!([3]));
    let whole = toolbox
        .call("redis__json_get", r#"{"key": "doc:1"}"#)
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&whole).unwrap(),
        json!([{"title": "Redis", "n": 3}])
    );

    // Search: the index name is prefixed too, and result keys are shown without the prefix.
    common::create_title_index(&store, "eol:shop:docs", "eol:shop:article:").await;
    toolbox
        .call(
            "redis__hset",
            r#"{"key": "article:1", "fields": {"title": "Redis streams explained"}}"#,
        )
        .await
        .unwrap();
    toolbox
        .call(
            "redis__hset",
            r#"{"key": "article:2", "fields": {"title": "Cooking pasta"}}"#,
        )
        .await
        .unwrap();
    let mut found = Value::Null;
    for _ in 0..50 {
        // Indexing is asynchronous; it is quick, but not instant.
        let text = toolbox
            .call(
                "redis__ft_search",
                r#"{"index": "docs", "query": "@title:streams", "limit": 5}"#,
            )
            .await
            .unwrap();
        found = serde_json::from_str(&text).unwrap();
        if found["total"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["results"][0]["key"], "article:1", "{found}");
    assert_eq!(
        found["results"][0]["fields"]["title"],
        "Redis streams explained"
    );
    // An index that does not exist is a tool error.
    let e = toolbox
        .call("redis__ft_search", r#"{"index": "nope", "query": "*"}"#)
        .await
        .unwrap_err();
    assert!(
        e.contains("redis__ft_search") && e.contains("failed"),
        "{e}"
    );

    // Streams
    let id = toolbox
        .call(
            "redis__xadd",
            r#"{"stream": "events", "fields": {"kind": "checkout"}}"#,
        )
        .await
        .unwrap();
    let id: String = serde_json::from_str(&id).unwrap();
    assert!(id.contains('-'), "{id}");
    let len: i64 = redis::cmd("XLEN")
        .arg("eol:shop:events")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(len, 1);

    // Nothing escaped the prefix.
    let keys = common::all_keys(&store).await;
    assert!(keys.iter().all(|k| k.starts_with("eol:shop:")), "{keys:?}");
    toolbox.close().await;
}

#[tokio::test]
async fn unknown_tools_and_invalid_arguments_are_clear_errors() {
    let redis = common::local_redis();
    let store = common::store(&redis);
    let feature = parse_feature("shop.eol", SHOP).unwrap();
    let toolbox = Toolbox::connect(&feature, store).await.unwrap();

    let e = toolbox.call("redis__flushall", "{}").await.unwrap_err();
    assert!(e.contains("no tool 'redis__flushall'"), "{e}");
    assert!(
        e.contains("redis__get") && e.contains("redis__xadd"),
        "lists the known tools: {e}"
    );

    let e = toolbox
        .call("redis__get", r#"["cart:1"]"#)
        .await
        .unwrap_err();
    assert!(e.contains("must be a JSON object"), "{e}");
    let e = toolbox.call("redis__get", "{key: cart}").await.unwrap_err();
    assert!(e.contains("not valid JSON"), "{e}");

    // Arguments the server refuses come back as its tool error.
    let e = toolbox
        .call("redis__get", r#"{"key": 42}"#)
        .await
        .unwrap_err();
    assert!(
        e.contains("invalid arguments for redis tool 'get'") && e.contains("invalid type"),
        "{e}"
    );
    let e = toolbox
        .call("redis__set", r#"{"key": "a"}"#)
        .await
        .unwrap_err();
    assert!(e.contains("missing field `value`"), "{e}");
    let e = toolbox
        .call("redis__incr", r#"{"key": "a", "step": 2}"#)
        .await
        .unwrap_err();
    assert!(e.contains("unknown field `step`"), "{e}");
    // A Redis error is a tool error too.
    toolbox
        .call("redis__set", r#"{"key": "s", "value": "text"}"#)
        .await
        .unwrap();
    let e = toolbox
        .call("redis__incr", r#"{"key": "s"}"#)
        .await
        .unwrap_err();
    assert!(e.contains("redis tool 'incr' failed"), "{e}");
    // The toolbox still works after all that.
    assert_eq!(
        toolbox.call("redis__get", r#"{"key": "s"}"#).await.unwrap(),
        "\"text\""
    );
    toolbox.close().await;
}

#[tokio::test]
async fn the_redis_server_answers_bad_calls_with_is_error_results() {
    let redis = common::local_redis();
    let store = common::store(&redis);
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(async move {
        let running = RedisToolServer::new(store, "shop")
            .serve(server_io)
            .await
            .unwrap();
        running.waiting().await.unwrap();
    });
    let client = client_config().serve(client_io).await.unwrap();
    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), 13);
    let get = tools.iter().find(|t| t.name == "get").unwrap();
    assert_eq!(get.input_schema["required"], json!(["key"]));

    let bad = client
        .call_tool(CallToolRequestParams::new("set").with_arguments(object(json!({"key": "k"}))))
        .await
        .unwrap();
    assert_eq!(bad.is_error, Some(true));
    assert!(text_of(&bad).contains("missing field `value`"));

    let good = client
        .call_tool(
            CallToolRequestParams::new("set")
                .with_arguments(object(json!({"key": "k", "value": "v"}))),
        )
        .await
        .unwrap();
    assert_eq!(good.is_error, Some(false));
    assert_eq!(text_of(&good), "\"OK\"");

    let unknown = client
        .call_tool(CallToolRequestParams::new("flushall"))
        .await
        .unwrap_err();
    assert!(
        matches!(&unknown, ServiceError::McpError(e) if e.message.contains("no tool 'flushall'")),
        "{unknown:?}"
    );
    client.cancel().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn redis_tools_called_in_a_test_keyspace_stay_in_it() {
    let redis = common::local_redis();
    let store = common::store(&redis);
    let feature = parse_feature("shop.eol", SHOP).unwrap();
    let toolbox = Toolbox::connect(&feature, store.clone()).await.unwrap();
    let keyspace = eol_runner::testing::TestKeyspace::new("shop");
    let tools = eol_runner::prototype::InKeyspace {
        tools: &toolbox,
        scope: keyspace.scope(),
    };
    tools
        .call("redis__set", r#"{"key": "cart:7", "value": "in a test"}"#)
        .await
        .unwrap();
    let got = tools
        .call("redis__get", r#"{"key": "cart:7"}"#)
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&got).unwrap(),
        json!("in a test")
    );
    // Not the feature's key; the test keyspace's, until it is cleared.
    assert_eq!(raw_get(&store, "eol:shop:cart:7").await, None);
    let key = format!("{}cart:7", keyspace.scope().prefix());
    assert_eq!(raw_get(&store, &key).await.as_deref(), Some("in a test"));
    assert_eq!(
        toolbox
            .call("redis__get", r#"{"key": "cart:7"}"#)
            .await
            .unwrap(),
        "null",
        "the feature's own calls do not see it"
    );
    keyspace.clear(&store).await;
    assert_eq!(raw_get(&store, &key).await, None);
    toolbox.close().await;
}
