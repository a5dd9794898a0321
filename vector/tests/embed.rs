//! The local all-MiniLM-L6-v2 embedder on the real weights
//! (`scripts/embedding-model.sh install` puts them in the cache).

use eol_vector::embed::cosine;
use eol_vector::embed::local::{self, MiniLm};
use eol_vector::{EmbedError, Embedder};
use std::sync::OnceLock;

/// One loaded model for the whole binary: loading reads 90 MB.
fn model() -> &'static MiniLm {
    static MODEL: OnceLock<MiniLm> = OnceLock::new();
    MODEL.get_or_init(|| {
        MiniLm::from_env().unwrap_or_else(|e| {
            panic!("these tests need the local embedding model: {e}. Run scripts/embedding-model.sh install (the test suite's entry point does).")
        })
    })
}

fn strings(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|t| t.to_string()).collect()
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

#[tokio::test]
async fn vectors_have_384_dimensions_and_unit_length() {
    let m = model();
    assert_eq!(m.model_id(), "all-MiniLM-L6-v2");
    assert_eq!(m.dimension(), 384);
    assert_eq!(m.max_tokens(), 256);
    let v = m
        .embed(&strings(&[
            "A short sentence.",
            "Another, somewhat longer, sentence to embed.",
        ]))
        .await
        .expect("embed");
    assert_eq!(v.len(), 2);
    for x in &v {
        assert_eq!(x.len(), 384);
        assert!((norm(x) - 1.0).abs() < 1e-4, "norm {}", norm(x));
    }
    assert!(m.embed(&[]).await.expect("empty batch").is_empty());
}

#[tokio::test]
async fn paraphrases_are_closer_than_unrelated_sentences() {
    let pairs = [
        (
            "How do I reset my password?",
            "I forgot my password, how can I change it?",
            "The weather is nice today.",
        ),
        (
            "The invoice total is wrong.",
            "The amount on my bill is incorrect.",
            "Cats sleep for most of the day.",
        ),
        (
            "Where is the nearest train station?",
            "How do I get to the closest railway station?",
            "Add two eggs to the flour and stir.",
        ),
    ];
    for (a, paraphrase, unrelated) in pairs {
        let v = model()
            .embed(&strings(&[a, paraphrase, unrelated]))
            .await
            .expect("embed");
        let same = cosine(&v[0], &v[1]);
        let other = cosine(&v[0], &v[2]);
        assert!(
            same > other + 0.2,
            "{a:?}: paraphrase {same:.3} vs unrelated {other:.3}"
        );
    }
}

#[tokio::test]
async fn a_batch_gives_the_vectors_of_its_texts_one_by_one() {
    // Different lengths, so the batch pads most of them.
    let texts = strings(&[
        "short",
        "",
        "A sentence of medium length about embedding models and padding.",
        "Un texte en français, avec des accents : été, déjà, où.",
        "数字和中文字符也可以嵌入。",
        "word ".repeat(300).as_str(),
    ]);
    let batch = model().embed(&texts).await.expect("batch");
    for (text, b) in texts.iter().zip(&batch) {
        let single = model()
            .embed(std::slice::from_ref(text))
            .await
            .expect("single");
        let diff = single[0]
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-5, "{text:.30?}: max difference {diff}");
    }
}

#[tokio::test]
async fn empty_and_huge_texts_embed_and_long_texts_are_truncated() {
    let huge: String = "The quick brown fox jumps over the lazy dog. ".repeat(100 * 1024 / 45 + 1);
    assert!(huge.len() >= 100 * 1024);
    let prefix = huge[..20 * 1024].to_string();
    let v = model()
        .embed(&[String::new(), huge, prefix])
        .await
        .expect("embed");
    for x in &v {
        assert_eq!(x.len(), 384);
        assert!(x.iter().all(|f| f.is_finite()));
        assert!((norm(x) - 1.0).abs() < 1e-4);
    }
    // Only the first 256 word pieces count: 100 KB and its first 20 KB give one vector.
    assert!(cosine(&v[1], &v[2]) > 0.99999, "{}", cosine(&v[1], &v[2]));
}

#[tokio::test]
async fn a_missing_model_directory_says_which_script_installs_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = MiniLm::load(dir.path()).expect_err("no model there");
    assert!(matches!(err, EmbedError::Model { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
    assert!(
        message.contains("scripts/embedding-model.sh install"),
        "{message}"
    );
    assert!(message.contains("model.safetensors"), "{message}");
    assert!(message.contains(local::MODEL_DIR_ENV), "{message}");
}
