//! The built-in generic tools `redis__command` and `redis__pipeline`: every
//! family of the command table, SCAN inside the prefix, pipelines and
//! transactions, and the refusals (other features' keys, admin commands).

use crate::{SHOP, common};
use eol_core::parse_feature;
use eol_runner::mcp::Toolbox;
use eol_runner::prototype::Tools;
use serde_json::{Value, json};

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
