//! The OpenAI-compatible embedder against the real local llama.cpp server
//! (`eval "$(scripts/llm.sh start)"` exports `EOL_LLM_BASE_URL`; the server runs with embeddings on).

use eol_vector::embed::cosine;
use eol_vector::embed::openai::{OpenAiConfig, OpenAiEmbedder};
use eol_vector::{EmbedError, Embedder};

fn base_url() -> String {
    std::env::var("EOL_LLM_BASE_URL").unwrap_or_else(|_| {
        panic!("these tests need the local LLM server: run `eval \"$(scripts/llm.sh start)\"` (scripts/llm.sh install builds it) so EOL_LLM_BASE_URL is set")
    })
}

fn local_embedder() -> OpenAiEmbedder {
    let mut config = OpenAiConfig::new(base_url(), "smollm2");
    // llama-cpp-python mixes up the per-token embeddings of a multi-text request
    // (only the first text's are right): one text per request.
    config.max_inputs_per_request = 1;
    OpenAiEmbedder::new(config).expect("client")
}

fn strings(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|t| t.to_string()).collect()
}

#[tokio::test]
async fn the_local_server_gives_consistent_unit_vectors_where_paraphrases_are_closer() {
    let e = local_embedder();
    assert_eq!(e.dimension(), 0, "not known before the first answer");
    let v = e
        .embed(&strings(&[
            "How do I reset my password?",
            "I forgot my password, how can I change it?",
            "The weather is nice today.",
            "",
        ]))
        .await
        .expect("embed");
    let dimension = e.dimension();
    assert!(dimension > 0);
    for x in &v {
        assert_eq!(x.len(), dimension);
        let norm = x.iter().map(|f| f * f).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
    let same = cosine(&v[0], &v[1]);
    let other = cosine(&v[0], &v[2]);
    assert!(same > other, "paraphrase {same:.3} vs unrelated {other:.3}");
    // Answers come back in input order: the first text embedded alone gives the first vector.
    let alone = e
        .embed(&strings(&["How do I reset my password?"]))
        .await
        .expect("embed");
    assert!(cosine(&alone[0], &v[0]) > 0.9999);
}

#[tokio::test]
async fn a_configured_dimension_the_server_does_not_give_is_an_error() {
    let mut config = OpenAiConfig::new(base_url(), "smollm2");
    config.dimension = Some(3);
    let e = OpenAiEmbedder::new(config).expect("client");
    let err = e.embed(&strings(&["hello"])).await.expect_err("mismatch");
    assert!(matches!(err, EmbedError::Failed { .. }), "{err:?}");
    assert!(err.to_string().contains("where 3 are expected"), "{err}");
}

#[tokio::test]
async fn an_error_status_names_the_url_and_the_status() {
    let e = OpenAiEmbedder::new(OpenAiConfig::new(
        format!("{}/no-such-api", base_url()),
        "smollm2",
    ))
    .expect("client");
    let err = e.embed(&strings(&["hello"])).await.expect_err("404");
    let message = err.to_string();
    assert!(message.contains(e.url()), "{message}");
    assert!(message.contains("404"), "{message}");
}

#[tokio::test]
async fn an_unreachable_server_is_an_error_naming_the_url() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let e = OpenAiEmbedder::new(OpenAiConfig::new(
        format!("http://127.0.0.1:{port}/v1"),
        "m",
    ))
    .expect("client");
    let err = e.embed(&strings(&["hello"])).await.expect_err("refused");
    assert!(
        err.to_string()
            .contains(&format!("127.0.0.1:{port}/v1/embeddings")),
        "{err}"
    );
}
