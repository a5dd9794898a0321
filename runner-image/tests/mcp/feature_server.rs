//! A feature served as an MCP server: its operations as tools, its prose,
//! operations and references as resources, in process and as `eol mcp` over stdio.

use crate::{SHOP, client_config, common, object, text_of};
use eol_core::parse_feature;
use eol_runner::engine::Runtime;
use eol_runner::mcp::{FeatureMcpServer, Toolbox};
use eol_runner::prototype::Tools;
use eol_runner::store::RedisStore;
use rmcp::model::{
    CallToolRequestParams, ClientConfig, ReadResourceRequestParams, ResourceContents,
};
use rmcp::service::{RunningService, ServiceError};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

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
