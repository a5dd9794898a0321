//! MCP, end to end with rmcp clients: the built-in Redis tools on a real Redis,
//! external stdio servers that crash or hang, and a feature served as an MCP server.
//!
//! One module a subject: `redis_tools` (the typed Redis tools), `redis_command`
//! (the generic command and pipeline tools), `toolbox` (external servers and the
//! prototyping tool loop) and `feature_server` (a feature as an MCP server).
#![allow(clippy::unwrap_used)] // Tests fail loudly on any unexpected error.

#[path = "../common/mod.rs"]
mod common;

mod feature_server;
mod redis_command;
mod redis_tools;
mod toolbox;

use eol_runner::store::RedisStore;
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation, ProtocolVersion};
use serde_json::Value;

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
