//! The toolbox beyond Redis: external MCP servers over stdio and streamable
//! HTTP that crash, hang or do not start, and the prototyping engine's tool
//! loop on the real toolbox.

use crate::{SHOP, common, raw_get};
use eol_core::parse_feature;
use eol_runner::mcp::{Toolbox, ToolboxError};
use eol_runner::prototype::Tools;
use eol_runner::store::RedisStore;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
