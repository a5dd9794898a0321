//! MCP, end to end with rmcp clients: the built-in Redis tools on a real Redis,
//! external stdio servers that crash or hang, and a feature served as an MCP server.
#![allow(clippy::unwrap_used)] // Tests fail loudly on any unexpected error.

mod common;

use eol_core::parse_feature;
use eol_runner::engine::Runtime;
use eol_runner::mcp::{FeatureMcpServer, RedisToolServer, Toolbox, ToolboxError};
use eol_runner::prototype::Tools;
use eol_runner::store::RedisStore;
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, ProtocolVersion,
    ReadResourceRequestParams, ResourceContents,
};
use rmcp::service::{RunningService, ServiceError};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SHOP: &str = r#"---
name: shop
phase: prototyping
---
# Shop

Carts live in Redis.

## Operations

### total
Adds up the cart.

Input:
```yaml
type: object
properties:
  cart: {type: string}
required: [cart]
```

Output:
```yaml
type: object
properties:
  total: {type: number}
required: [total]
```
"#;

fn client_config() -> ClientConfig {
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("eol-tests", "0"),
    )
    .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
}

fn object(v: Value) -> rmcp::model::JsonObject {
    v.as_object().cloned().unwrap()
}

fn text_of(result: &rmcp::model::CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn raw_get(store: &RedisStore, key: &str) -> Option<String> {
    let mut conn = store.connection().await.unwrap();
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------
// (a) The built-in Redis tools, through the toolbox (an rmcp client over a duplex).

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

/// Calls `redis__command` with `args` and parses the JSON reply.
async fn command(toolbox: &Toolbox, args: Value) -> Result<Value, String> {
    toolbox
        .call("redis__command", &args.to_string())
        .await
        .map(|text| serde_json::from_str(&text).unwrap())
}

#[tokio::test]
async fn the_command_tool_covers_every_family_of_the_table() {
    let redis = common::local_redis();
    let store = common::store(&redis);
    let feature = parse_feature("shop.eol", SHOP).unwrap();
    let toolbox = Toolbox::connect(&feature, store.clone()).await.unwrap();
    let names = toolbox.tool_names();
    assert!(
        names.contains(&"redis__command") && names.contains(&"redis__pipeline"),
        "{names:?}"
    );
    let defs = toolbox.definitions();
    let description = defs
        .iter()
        .find(|d| d["function"]["name"] == "redis__command")
        .and_then(|d| d["function"]["description"].as_str())
        .unwrap()
        .to_owned();
    for word in ["sorted sets", "ZINCRBY", "XADD", "JSON.SET", "SCAN"] {
        assert!(description.contains(word), "{description}");
    }

    let c = |args: Value| command(&toolbox, args);
    // One call per line: the command line and the reply it must give.
    let id = c(json!({"command": "XADD", "args": ["events", "*", "kind", "visit"]}))
        .await
        .unwrap();
    let calls = [
        // Strings with TTL, MGET/MSET.
        (
            json!({"command": "SET", "args": ["visits", 1, "EX", 60]}),
            json!(true),
        ),
        (
            json!({"command": "INCRBY", "args": ["visits", 4]}),
            json!(5),
        ),
        (
            json!({"command": "MSET", "args": ["a", "1", "b", "2"]}),
            json!(true),
        ),
        (
            json!({"command": "MGET", "args": ["a", "b", "none"]}),
            json!(["1", "2", null]),
        ),
        // A whole command line, as small models write it.
        (json!({"command": "GET visits"}), json!("5")),
        // Hashes.
        (
            json!({"command": "HSET", "args": ["user:1", "name", "ada", "visits", 1]}),
            json!(2),
        ),
        (
            json!({"command": "HINCRBY", "args": ["user:1", "visits", 2]}),
            json!(3),
        ),
        (
            json!({"command": "HGETALL", "args": ["user:1"]}),
            json!({"name": "ada", "visits": "3"}),
        ),
        // Lists.
        (
            json!({"command": "RPUSH", "args": ["queue", "a", "b", "c"]}),
            json!(3),
        ),
        (json!({"command": "LPOP", "args": ["queue"]}), json!("a")),
        (
            json!({"command": "LRANGE", "args": ["queue", 0, -1]}),
            json!(["b", "c"]),
        ),
        // Sets.
        (
            json!({"command": "SADD", "args": ["tags", "x", "y"]}),
            json!(2),
        ),
        (
            json!({"command": "SISMEMBER", "args": ["tags", "x"]}),
            json!(1),
        ),
        (json!({"command": "SCARD", "args": ["tags"]}), json!(2)),
        // Sorted sets: a leaderboard.
        (
            json!({"command": "ZADD", "args": ["board", 10, "alice", 7, "bob"]}),
            json!(2),
        ),
        (
            json!({"command": "ZINCRBY", "args": ["board", 5, "bob"]}),
            json!(12.0),
        ),
        (
            json!({"command": "ZREVRANGE", "args": ["board", 0, 1, "WITHSCORES"]}),
            json!([["bob", 12.0], ["alice", 10.0]]),
        ),
        (
            json!({"command": "ZRANGEBYSCORE", "args": ["board", 11, "+inf"]}),
            json!(["bob"]),
        ),
        (
            json!({"command": "ZSCORE", "args": ["board", "alice"]}),
            json!(10.0),
        ),
        // Streams.
        (json!({"command": "XLEN", "args": ["events"]}), json!(1)),
        (
            json!({"command": "XRANGE", "args": ["events", "-", "+"]}),
            json!([[id, {"kind": "visit"}]]),
        ),
        // JSON.
        (
            json!({"command": "JSON.SET", "args": ["doc", "$", "{\"n\": 1}"]}),
            json!(true),
        ),
        (
            json!({"command": "JSON.NUMINCRBY", "args": ["doc", "$.n", 2]}),
            json!([3]),
        ),
        (
            json!({"command": "JSON.GET", "args": ["doc"]}),
            json!({"n": 3}),
        ),
    ];
    for (args, want) in calls {
        assert_eq!(c(args.clone()).await.unwrap(), want, "{args}");
    }
    // SCAN stays inside the feature's keys and shows them without the prefix.
    let scan = c(json!({"command": "SCAN", "args": [0, "MATCH", "b*", "COUNT", 1000]}))
        .await
        .unwrap();
    assert_eq!(scan[0], json!(0));
    let mut found: Vec<String> = serde_json::from_value(scan[1].clone()).unwrap();
    found.sort();
    assert_eq!(found, ["b", "board"]);
    // Pipelines and transactions, in one round trip.
    let replies: Value = serde_json::from_str(
        &toolbox
            .call(
                "redis__pipeline",
                r#"{"commands": [["INCR", "hits"], "INCRBY hits 2", ["GET", "hits"], ["HSET", "visits", "x", 1]], "transaction": true}"#,
            )
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(replies[0], json!(1));
    assert_eq!(replies[1], json!(3));
    assert_eq!(replies[2], json!("3"));
    assert!(
        replies[3]["error"].as_str().unwrap().contains("WRONGTYPE"),
        "{replies}"
    );

    // Refusals: other features' keys, admin commands, unprefixed KEYS.
    let e = c(json!({"command": "GET", "args": ["eol:billing:invoice"]}))
        .await
        .unwrap_err();
    assert!(
        e.contains("redis tool 'command' refused")
            && e.contains("'eol:billing:invoice'")
            && e.contains("'eol:shop:'"),
        "{e}"
    );
    for (cmd, why) in [
        ("KEYS *", "SCAN"),
        ("FLUSHDB", "every feature"),
        ("CONFIG GET *", "administers"),
        ("SELECT 1", "other databases"),
    ] {
        let e = c(json!({"command": cmd})).await.unwrap_err();
        assert!(
            e.contains("is not allowed") && e.contains(why),
            "{cmd}: {e}"
        );
    }
    let e = toolbox
        .call(
            "redis__pipeline",
            r#"{"commands": [["SET", "p", 1], ["MIGRATE", "h", 1, "k", 0, 5]]}"#,
        )
        .await
        .unwrap_err();
    assert!(e.contains("command #2") && e.contains("'MIGRATE'"), "{e}");
    assert_eq!(
        c(json!({"command": "EXISTS", "args": ["p"]}))
            .await
            .unwrap(),
        json!(0),
        "nothing ran"
    );

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

/// The prototyping engine's tool loop on the real toolbox: the model's tool
/// calls reach Redis under the prefix, and errors go back to the model.
#[tokio::test]
async fn the_prototyping_tool_loop_uses_the_toolbox() {
    use common::scripted_llm::{Scripted, ScriptedServer};
    use eol_core::CompiledSchema;
    use eol_runner::llm::{ChatClient, LlmSettings};
    use eol_runner::prototype::{PromptContext, Prototyper};

    let redis = common::local_redis();
    let store = common::store(&redis);
    let feature = parse_feature("shop.eol", SHOP).unwrap();
    let toolbox = Toolbox::connect(&feature, store.clone()).await.unwrap();
    let llm = ScriptedServer::start(vec![
        Scripted::tool_call("redis__set", r#"{"key": "cart:7", "value": "12.5"}"#),
        Scripted::tool_call("redis__get", r#"{"key": "cart:7"}"#),
        Scripted::tool_call("redis__flushall", "{}"),
        Scripted::answer(r#"{"total": 12.5}"#),
    ])
    .await;
    let model = Prototyper::new(
        ChatClient::new(LlmSettings {
            api_key: Some("sk-test".into()),
            context_window: 8192,
            ..common::scripted_llm::scripted_settings(&llm.url)
        })
        .unwrap(),
    );
    let op = &feature.operations[0];
    let output = CompiledSchema::new(&op.output.value).unwrap();
    let (value, trace) = model
        .execute_with(
            &feature,
            op,
            &json!({"cart": "7"}),
            &output,
            Some(&toolbox),
            &PromptContext::Ranked(&[]),
        )
        .await
        .unwrap();
    assert_eq!(value, json!({"total": 12.5}));
    assert_eq!(
        trace.tool_calls,
        ["redis__set", "redis__get", "redis__flushall"]
    );
    assert_eq!(
        raw_get(&store, "eol:shop:cart:7").await.as_deref(),
        Some("12.5")
    );
    let offered: Vec<String> = llm.request(0)["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        offered.contains(&"redis__ft_search".to_owned()),
        "{offered:?}"
    );
    let fed_back: Vec<String> = llm.request(3)["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fed_back[0], "\"OK\"");
    assert_eq!(fed_back[1], "\"12.5\"");
    assert!(
        fed_back[2].starts_with("error: there is no tool 'redis__flushall'"),
        "{fed_back:?}"
    );
    toolbox.close().await;
}

// ---------------------------------------------------------------------------
// (b) External stdio servers that misbehave.

/// A minimal MCP stdio server (stdlib only). On `tools/call` it crashes
/// (mode `crash`) or never answers (mode `hang`).
const PY_SERVER: &str = r#"
import json, sys

mode = sys.argv[1]

def send(msg):
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()

for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    msg = json.loads(line)
    method = msg.get("method")
    mid = msg.get("id")
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": mid, "result": {
            "protocolVersion": msg["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "py-" + mode, "version": "0.1"},
        }})
    elif method == "notifications/initialized":
        pass
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": mid, "result": {"tools": [{
            "name": "boom",
            "description": "Does something risky.",
            "inputSchema": {"type": "object", "properties": {"x": {"type": "integer"}}},
        }]}})
    elif method == "tools/call":
        if mode == "crash":
            sys.stderr.write("boom: crashing on purpose\n")
            sys.stderr.flush()
            sys.exit(3)
        # hang: never answer, keep reading until stdin closes
    elif mid is not None:
        send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": "no " + str(method)}})
"#;

fn feature_with_server(dir: &Path, mode: &str) -> eol_core::Feature {
    let script = dir.join("server.py");
    std::fs::write(&script, PY_SERVER).unwrap();
    let src = SHOP.replacen(
        "phase: prototyping\n",
        &format!(
            "phase: prototyping\ntools:\n  - name: py\n    command: python3\n    args: [{script:?}, {mode}]\n    env: {{PYTHONUNBUFFERED: \"1\"}}\n",
            script = script.display().to_string()
        ),
        1,
    );
    parse_feature("shop.eol", &src).unwrap()
}

#[tokio::test]
async fn a_server_that_crashes_mid_call_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let feature = feature_with_server(dir.path(), "crash");
    // No Redis is needed unless a Redis tool is called.
    let store = Arc::new(RedisStore::new(Some("redis://127.0.0.1:9".into())));
    let toolbox = Toolbox::connect(&feature, store).await.unwrap();
    assert_eq!(toolbox.server_names(), ["redis", "py"]);
    let def = toolbox
        .definitions()
        .into_iter()
        .find(|d| d["function"]["name"] == "py__boom")
        .unwrap();
    assert_eq!(def["function"]["description"], "Does something risky.");
    assert_eq!(
        def["function"]["parameters"]["properties"]["x"]["type"],
        "integer"
    );

    let started = Instant::now();
    let e = toolbox.call("py__boom", r#"{"x": 1}"#).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(e.contains("MCP server 'py' crashed"), "{e}");
    assert!(e.contains("py__boom"), "{e}");
    assert!(e.contains("crashing on purpose"), "carries its stderr: {e}");

    // Later calls fail at once, and the other servers still work.
    let started = Instant::now();
    let e = toolbox.call("py__boom", "{}").await.unwrap_err();
    assert!(e.contains("'py' is no longer running"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2));
    let e = toolbox
        .call("redis__get", r#"{"key": 1}"#)
        .await
        .unwrap_err();
    assert!(e.contains("invalid arguments"), "{e}");
    tokio::time::timeout(Duration::from_secs(10), toolbox.close())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let feature = feature_with_server(dir.path(), "hang");
    let store = Arc::new(RedisStore::new(Some("redis://127.0.0.1:9".into())));
    let toolbox = Toolbox::connect(&feature, store)
        .await
        .unwrap()
        .with_call_timeout(Duration::from_millis(500));
    let started = Instant::now();
    let e = toolbox.call("py__boom", "{}").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(e.contains("did not answer within 0.5 s"), "{e}");
    tokio::time::timeout(Duration::from_secs(10), toolbox.close())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_server_that_does_not_start_names_itself() {
    let src = SHOP.replacen(
        "phase: prototyping\n",
        "phase: prototyping\ntools:\n  - name: ghost\n    command: /nonexistent/mcp-server\n",
        1,
    );
    let feature = parse_feature("shop.eol", &src).unwrap();
    let store = Arc::new(RedisStore::new(Some("redis://127.0.0.1:9".into())));
    let e = Toolbox::connect(&feature, store).await.unwrap_err();
    assert!(matches!(e, ToolboxError::Spawn { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("failed to start MCP server 'ghost'")
            && text.contains("/nonexistent/mcp-server")
            && text.contains("feature 'shop'"),
        "{text}"
    );

    let src = SHOP.replacen(
        "phase: prototyping\n",
        "phase: prototyping\ntools:\n  - name: redis\n    command: python3\n",
        1,
    );
    let feature = parse_feature("shop.eol", &src).unwrap();
    let store = Arc::new(RedisStore::new(Some("redis://127.0.0.1:9".into())));
    let e = Toolbox::connect(&feature, store).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("taken by the built-in Redis tool server"),
        "{e}"
    );
}

/// A minimal streamable-HTTP MCP server (stdlib only): prints its port, then
/// answers JSON-RPC POSTs with JSON. Tools: `echo` (returns its arguments) and
/// `fail` (a tool error).
const PY_HTTP_SERVER: &str = r#"
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body=None, headers=()):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.reply(405)

    def do_DELETE(self):
        self.reply(200)

    def do_POST(self):
        msg = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        method, mid = msg.get("method"), msg.get("id")
        if mid is None:
            return self.reply(202)
        if method == "initialize":
            result = {"protocolVersion": msg["params"]["protocolVersion"],
                      "capabilities": {"tools": {}},
                      "serverInfo": {"name": "py-http", "version": "0.1"}}
            return self.reply(200, {"jsonrpc": "2.0", "id": mid, "result": result},
                              [("Mcp-Session-Id", "s1")])
        if method == "tools/list":
            result = {"tools": [
                {"name": "echo", "description": "Echoes.", "inputSchema": {"type": "object"}},
                {"name": "fail", "description": "Fails.", "inputSchema": {"type": "object"}},
            ]}
        elif method == "tools/call":
            p = msg["params"]
            if p["name"] == "echo":
                result = {"content": [{"type": "text", "text": json.dumps(p.get("arguments", {}))}]}
            else:
                result = {"content": [{"type": "text", "text": "the disk is full"}], "isError": True}
        else:
            return self.reply(200, {"jsonrpc": "2.0", "id": mid,
                                    "error": {"code": -32601, "message": "no " + method}})
        self.reply(200, {"jsonrpc": "2.0", "id": mid, "result": result})

server = HTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

#[tokio::test]
async fn a_streamable_http_server_is_called_and_its_death_is_an_error() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("http_server.py");
    std::fs::write(&script, PY_HTTP_SERVER).unwrap();
    let mut child = tokio::process::Command::new("python3")
        .arg(&script)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let port = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let src = SHOP.replacen(
        "phase: prototyping\n",
        &format!(
            "phase: prototyping\ntools:\n  - name: web\n    url: http://127.0.0.1:{}/mcp\n",
            port.trim()
        ),
        1,
    );
    let feature = parse_feature("shop.eol", &src).unwrap();
    let store = Arc::new(RedisStore::new(Some("redis://127.0.0.1:9".into())));
    let toolbox = Toolbox::connect(&feature, store).await.unwrap();
    assert_eq!(toolbox.server_names(), ["redis", "web"]);

    let echoed = toolbox
        .call("web__echo", r#"{"word": "hi"}"#)
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&echoed).unwrap(),
        json!({"word": "hi"})
    );
    let e = toolbox.call("web__fail", "{}").await.unwrap_err();
    assert!(
        e.contains("tool 'web__fail' failed: the disk is full"),
        "{e}"
    );

    child.kill().await.unwrap();
    let started = Instant::now();
    let e = toolbox.call("web__echo", "{}").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        e.contains("MCP server 'web' could not be reached") && e.contains("web__echo"),
        "{e}"
    );
    tokio::time::timeout(Duration::from_secs(10), toolbox.close())
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------
// (c) A feature served as an MCP server.

async fn serve_feature(
    file: &Path,
    store: Arc<RedisStore>,
) -> (
    RunningService<RoleClient, ClientConfig>,
    tokio::task::JoinHandle<()>,
) {
    let src = std::fs::read_to_string(file).unwrap();
    let feature = parse_feature(&file.display().to_string(), &src).unwrap();
    let runtime = Runtime::load(
        &file.display().to_string(),
        feature,
        common::pool(1).await,
        store,
    )
    .await
    .unwrap();
    let server = FeatureMcpServer::new(Arc::new(runtime), file.parent().unwrap().to_path_buf());
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let task = tokio::spawn(async move { server.serve_transport(server_io).await.unwrap() });
    let client = client_config().serve(client_io).await.unwrap();
    (client, task)
}

#[tokio::test]
async fn a_feature_is_served_as_tools_and_resources() {
    let store = Arc::new(RedisStore::new(Some("redis://127.0.0.1:9".into())));
    let file = common::examples().join("blog-publisher.eol");
    let (client, task) = serve_feature(&file, store).await;

    let info = client.peer_info().unwrap();
    assert_eq!(
        info.server_info.as_ref().map(|s| s.name.as_str()),
        Some("blog-publisher")
    );

    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, ["slugify", "reading_time", "suggest_tags"]);
    let slugify = &tools[0];
    assert!(
        slugify
            .description
            .as_deref()
            .is_some_and(|d| d.contains("URL slug"))
    );
    assert_eq!(slugify.input_schema["required"], json!(["title"]));
    assert_eq!(
        slugify.output_schema.as_ref().unwrap()["required"],
        json!(["slug"])
    );

    let resources = client.list_all_resources().await.unwrap();
    let uris: Vec<&str> = resources.iter().map(|r| r.uri.as_str()).collect();
    assert!(uris.contains(&"eol://blog-publisher/prose"), "{uris:?}");
    assert!(
        uris.contains(&"eol://blog-publisher/operations/slugify"),
        "{uris:?}"
    );

    // An implemented operation runs in the sandbox.
    let result = client
        .call_tool(
            CallToolRequestParams::new("slugify")
                .with_arguments(object(json!({"title": "Hello World"}))),
        )
        .await
        .unwrap();
    assert_ne!(result.is_error, Some(true), "{result:?}");
    assert_eq!(
        result.structured_content,
        Some(json!({"slug": "hello-world"}))
    );
    assert_eq!(
        serde_json::from_str::<Value>(&text_of(&result)).unwrap(),
        json!({"slug": "hello-world"})
    );

    // A prototyped one, with no model configured, says how to configure one.
    let result = client
        .call_tool(
            CallToolRequestParams::new("suggest_tags")
                .with_arguments(object(json!({"title": "Hi", "text": "About Redis."}))),
        )
        .await
        .unwrap();
    assert_eq!(result.is_error, Some(true));
    assert!(text_of(&result).contains("EOL_LLM_BASE_URL"), "{result:?}");

    // Input that breaks the schema is a tool error naming the problem.
    let result = client
        .call_tool(CallToolRequestParams::new("slugify").with_arguments(object(json!({}))))
        .await
        .unwrap();
    assert_eq!(result.is_error, Some(true));
    assert!(text_of(&result).contains("Input schema"), "{result:?}");

    // An unknown operation is a protocol error listing the real ones.
    let e = client
        .call_tool(CallToolRequestParams::new("publish"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ServiceError::McpError(d) if d.message.contains("has no operation 'publish'") && d.message.contains("slugify")),
        "{e:?}"
    );

    // Resources
    let prose = client
        .read_resource(ReadResourceRequestParams::new("eol://blog-publisher/prose"))
        .await
        .unwrap();
    let ResourceContents::TextResourceContents {
        text, mime_type, ..
    } = &prose.contents[0]
    else {
        panic!("{prose:?}")
    };
    assert_eq!(mime_type.as_deref(), Some("text/markdown"));
    assert!(text.starts_with("# Blog publisher"), "{text}");
    assert!(text.contains("Slugs are lowercase ASCII words"), "{text}");

    let op = client
        .read_resource(ReadResourceRequestParams::new(
            "eol://blog-publisher/operations/slugify",
        ))
        .await
        .unwrap();
    let ResourceContents::TextResourceContents { text, .. } = &op.contents[0] else {
        panic!("{op:?}")
    };
    assert!(
        text.contains("Phase: implementation") && text.contains("\"slug\""),
        "{text}"
    );

    let e = client
        .read_resource(ReadResourceRequestParams::new(
            "eol://blog-publisher/secrets",
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ServiceError::McpError(d) if d.message.contains("has no resource")),
        "{e:?}"
    );

    client.cancel().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn references_are_read_on_demand_and_a_missing_one_is_a_resource_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("docs")).unwrap();
    std::fs::write(
        dir.path().join("docs/policy.md"),
        "Refunds within 30 days.\n",
    )
    .unwrap();
    let file = dir.path().join("shop.eol");
    std::fs::write(
        &file,
        SHOP.replace(
            "Carts live in Redis.",
            "Carts live in Redis. See @docs/policy.md and @docs/missing.md.",
        ),
    )
    .unwrap();
    let store = Arc::new(RedisStore::new(Some("redis://127.0.0.1:9".into())));
    let (client, task) = serve_feature(&file, store).await;

    let uris: Vec<String> = client
        .list_all_resources()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.uri)
        .collect();
    assert!(
        uris.contains(&"eol://shop/references/docs/policy.md".to_owned()),
        "{uris:?}"
    );
    assert!(
        uris.contains(&"eol://shop/references/docs/missing.md".to_owned()),
        "{uris:?}"
    );

    let policy = client
        .read_resource(ReadResourceRequestParams::new(
            "eol://shop/references/docs/policy.md",
        ))
        .await
        .unwrap();
    let ResourceContents::TextResourceContents { text, .. } = &policy.contents[0] else {
        panic!("{policy:?}")
    };
    assert_eq!(text, "Refunds within 30 days.\n");

    // Read on demand: a change on disk shows.
    std::fs::write(
        dir.path().join("docs/policy.md"),
        "Refunds within 14 days.\n",
    )
    .unwrap();
    let policy = client
        .read_resource(ReadResourceRequestParams::new(
            "eol://shop/references/docs/policy.md",
        ))
        .await
        .unwrap();
    let ResourceContents::TextResourceContents { text, .. } = &policy.contents[0] else {
        panic!("{policy:?}")
    };
    assert_eq!(text, "Refunds within 14 days.\n");

    let e = client
        .read_resource(ReadResourceRequestParams::new(
            "eol://shop/references/docs/missing.md",
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ServiceError::McpError(d) if d.message.contains("failed to read reference @docs/missing.md")),
        "{e:?}"
    );
    // Only listed references are served, so no other file can be read.
    let e = client
        .read_resource(ReadResourceRequestParams::new(
            "eol://shop/references/../shop.eol",
        ))
        .await
        .unwrap_err();
    assert!(matches!(e, ServiceError::McpError(_)), "{e:?}");
    // The server is still there.
    assert_eq!(client.list_all_tools().await.unwrap().len(), 1);

    client.cancel().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

/// `eol mcp` over stdio, driven by the rmcp client the toolbox uses: another
/// feature lists it as a tool server, as a user would.
#[tokio::test]
async fn eol_mcp_serves_a_feature_over_stdio() {
    let redis = common::local_redis();
    let blog = common::examples().join("blog-publisher.eol");
    let src = format!(
        "---\nname: caller\nphase: prototyping\ntools:\n  - name: blog\n    command: {}\n    args: [mcp, {}]\n---\n# Caller\n\n## Operations\n\n### noop\nNothing.\n\nInput:\n```yaml\ntype: object\n```\n\nOutput:\n```yaml\ntype: object\n```\n",
        env!("CARGO_BIN_EXE_eol"),
        blog.display()
    );
    let feature = parse_feature("caller.eol", &src).unwrap();
    let toolbox = Toolbox::connect(&feature, common::store(&redis))
        .await
        .unwrap();
    let names = toolbox.tool_names();
    for expected in [
        "blog__slugify",
        "blog__reading_time",
        "blog__suggest_tags",
        "redis__get",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let out = toolbox
        .call("blog__slugify", r#"{"title": "Hello World"}"#)
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!({"slug": "hello-world"})
    );
    let err = toolbox
        .call("blog__slugify", r#"{"title": 5}"#)
        .await
        .unwrap_err();
    assert!(err.contains("does not match the Input schema"), "{err}");
    toolbox.close().await;
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
