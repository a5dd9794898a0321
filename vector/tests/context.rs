//! The context manager: chunking, token counting, per-feature indexing that
//! re-embeds only what changed, and selection within a token budget, against
//! a real Redis with the search module (`EOL_TEST_REDIS_URL`, set by
//! scripts/test.sh, or `REDIS_URL` from `eval "$(scripts/redis.sh start)"`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use eol_vector::context::{
    Chunker, Compression, ContextDoc, ContextIndex, EstimateCounter, SummarizeError, Summarizer,
    TokenCounter, TokenizerCounter, chunk_hash,
};
use eol_vector::embed::local::{MiniLm, default_model_dir};
use eol_vector::{EmbedError, Embedder};
use futures::future::BoxFuture;

mod common;
use common::{DIMS, conn, unique};

// ---------------------------------------------------------------- helpers

/// A deterministic embedder (bag of hashed lower-case words) that counts the texts it embeds.
struct CountingBag {
    id: &'static str,
    texts: AtomicUsize,
}

impl Default for CountingBag {
    fn default() -> Self {
        Self::named("test-counting-bag-64")
    }
}

impl CountingBag {
    fn named(id: &'static str) -> Self {
        Self {
            id,
            texts: AtomicUsize::new(0),
        }
    }

    fn embedded(&self) -> usize {
        self.texts.load(Ordering::SeqCst)
    }
}

/// [`common::bag_of_words`], on the first axis for a text without words.
fn bag_of_words(text: &str) -> Vec<f32> {
    let mut v = common::bag_of_words(text);
    if v.iter().all(|x| *x == 0.0) {
        v[0] = 1.0;
    }
    v
}

impl Embedder for CountingBag {
    fn model_id(&self) -> &str {
        self.id
    }
    fn dimension(&self) -> usize {
        DIMS
    }
    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        self.texts.fetch_add(texts.len(), Ordering::SeqCst);
        Box::pin(async move { Ok(texts.iter().map(|t| bag_of_words(t)).collect()) })
    }
}

async fn open(name: &str, embedder: Arc<dyn Embedder>, chunker: Chunker) -> ContextIndex {
    ContextIndex::with_index_name(conn().await, embedder, chunker, &unique(name))
        .await
        .expect("open the context index")
}

/// Drops the index with its chunks, and the features' hash sets.
async fn cleanup(ctx: &ContextIndex, features: &[&str]) {
    for f in features {
        ctx.remove_feature(f).await.expect("remove the feature");
        let mut c = ctx.index().connection();
        let _: () = redis::cmd("DEL")
            .arg(ctx.hashes_key(f))
            .query_async(&mut c)
            .await
            .expect("DEL");
    }
    ctx.index().drop_index(true).await.expect("drop the index");
}

fn words_of(text: &str) -> Vec<&str> {
    text.split_whitespace().collect()
}

const POLICY: &str = "# Shop policies

Intro paragraph: these policies apply to every order placed in the shop.

## Refunds

A customer can get a refund within 30 days of the order. The refund goes back to the original payment method.

## Shipping

Parcels ship within two working days. Tracking numbers are sent by email.

## Accounts

Passwords must have at least twelve characters. Accounts are locked after five failed logins.

## Gift cards

Gift cards never expire and cannot be exchanged for cash.
";

// ---------------------------------------------------------------- counting

#[test]
fn the_estimate_counts_words_cjk_and_punctuation() {
    let c = EstimateCounter;
    assert_eq!(c.count(""), 0);
    assert_eq!(c.count("   \n\t "), 0);
    assert_eq!(c.count("a cat"), 2);
    // "information" (11 letters) = 3, "," = 1, "ok" = 1
    assert_eq!(c.count("information, ok"), 5);
    assert_eq!(c.count("1234567"), 3);
    // Each CJK character is a token; the full stop too.
    assert_eq!(c.count("退款政策。"), 5);
    assert_eq!(c.count("返金は30日以内"), 6 + 1);
    // Additive over whitespace.
    let (a, b) = ("Refunds take 30 days.", "Shipping is free!");
    assert_eq!(c.count(&format!("{a}\n\n{b}")), c.count(a) + c.count(b));
    // Close to a real tokenizer on English prose: within a factor 1.6.
    let words = "The customer may request a refund within thirty days of delivery.";
    let n = c.count(words);
    assert!((11..=18).contains(&n), "{n}");
}

fn minilm_tokenizer() -> TokenizerCounter {
    let path = default_model_dir().join("tokenizer.json");
    TokenizerCounter::from_file(&path).unwrap_or_else(|e| {
        panic!(
            "{e}: this test needs the local embedding model; run scripts/embedding-model.sh install"
        )
    })
}

#[test]
fn the_model_tokenizer_counts_word_pieces_without_padding() {
    let t = minilm_tokenizer();
    assert_eq!(t.count(""), 0);
    assert_eq!(t.count("hello"), 1);
    assert_eq!(t.count("Hello, world!"), 4);
    let long = "money ".repeat(600);
    assert_eq!(t.count(&long), 600, "no truncation");
    // The estimate is of the same order as the model's count on prose.
    let prose = POLICY;
    let (exact, estimate) = (t.count(prose), EstimateCounter.count(prose));
    assert!(
        estimate as f64 >= exact as f64 * 0.8 && estimate as f64 <= exact as f64 * 1.6,
        "estimate {estimate} vs tokenizer {exact}"
    );
}

// ---------------------------------------------------------------- chunking

#[test]
fn headings_start_chunks_and_record_their_path() {
    let chunks = Chunker::default().chunk("policy.md", POLICY);
    let paths: Vec<Vec<String>> = chunks.iter().map(|c| c.heading_path.clone()).collect();
    assert_eq!(
        paths,
        vec![
            vec!["Shop policies".to_owned()],
            vec!["Shop policies".into(), "Refunds".into()],
            vec!["Shop policies".into(), "Shipping".into()],
            vec!["Shop policies".into(), "Accounts".into()],
            vec!["Shop policies".into(), "Gift cards".into()],
        ]
    );
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c.ordinal, i);
        assert_eq!(c.doc, "policy.md");
        assert_eq!(c.hash, chunk_hash(&c.doc, &c.heading_path, &c.text));
        assert_eq!(c.tokens, EstimateCounter.count(&c.text));
    }
    assert!(chunks[1].text.starts_with("## Refunds\n\nA customer"));
    assert!(chunks[1].text.ends_with("payment method."));
    // A sibling heading replaces the previous one in the path; a deeper one nests.
    let nested = Chunker::default().chunk("d", "# A\nx\n## B\ny\n### C\nz\n## D\nw\n# E\nv\n");
    let paths: Vec<String> = nested.iter().map(|c| c.heading_path.join("/")).collect();
    assert_eq!(paths, ["A", "A/B", "A/B/C", "A/D", "E"]);
}

#[test]
fn paragraphs_are_packed_whole_and_long_ones_split_at_sentences() {
    let chunker = Chunker::default().with_max_tokens(30);
    let short = "One short paragraph here.\n\nAnother short one.\n\nA third.";
    let chunks = chunker.chunk("d", short);
    assert_eq!(chunks.len(), 1, "{chunks:#?}");
    assert_eq!(chunks[0].text, short);

    let sentence = "The refund is paid back to the card that was charged.";
    let long = [sentence; 10].join(" ");
    let chunks = chunker.chunk("d", &long);
    assert!(chunks.len() > 1);
    for c in &chunks {
        assert!(c.tokens <= 30, "{c:?}");
        assert!(c.text.starts_with("The refund"), "{:?}", c.text);
        assert!(c.text.ends_with("charged."), "{:?}", c.text);
    }
    // Nothing lost, nothing cut inside a word.
    let joined: Vec<&str> = chunks.iter().flat_map(|c| words_of(&c.text)).collect();
    assert_eq!(joined, words_of(&long));
}

#[test]
fn a_sentence_longer_than_a_chunk_splits_between_words() {
    let chunker = Chunker::default().with_max_tokens(10);
    let long = "word ".repeat(100) + "end";
    let chunks = chunker.chunk("d", &long);
    assert!(chunks.len() >= 10);
    assert!(chunks.iter().all(|c| c.tokens <= 10));
    let joined: Vec<&str> = chunks.iter().flat_map(|c| words_of(&c.text)).collect();
    assert_eq!(joined, words_of(&long));
    // CJK sentences end at 。 without a space.
    let cjk = "退款在三十天内办理。".repeat(20);
    let chunks = chunker.chunk("zh", &cjk);
    assert!(
        chunks
            .iter()
            .all(|c| c.tokens <= 10 && c.text.ends_with('。'))
    );
    assert_eq!(
        chunks.iter().map(|c| c.text.as_str()).collect::<String>(),
        cjk
    );
}

#[test]
fn fenced_code_is_one_block_and_its_hashes_are_not_headings() {
    let doc = "# Doc\n\nText.\n\n```python\n# not a heading\n\nx = 1\n```\n\nAfter.\n";
    let chunks = Chunker::default().chunk("d", doc);
    assert_eq!(chunks.len(), 1);
    assert!(chunks[0].text.contains("# not a heading\n\nx = 1\n```"));
    assert_eq!(chunks[0].heading_path, ["Doc"]);
}

#[test]
fn an_empty_document_has_no_chunks() {
    let chunker = Chunker::default();
    assert!(chunker.chunk("empty.md", "").is_empty());
    assert!(chunker.chunk("blank.md", " \n\n\t\r\n  \n").is_empty());
    let d = chunker.chunk_bytes("empty.bin", b"");
    assert!(d.chunks.is_empty());
    assert_eq!(d.replaced, 0);
}

#[test]
fn invalid_utf8_is_replaced_and_counted() {
    let bytes = b"# Title\n\nCaf\xc3\xa9 ok \xff\xfe then \xc3\x28 and \xe2\x82 end.\n";
    let d = Chunker::default().chunk_bytes("bad.md", bytes);
    // \xff, \xfe, the lone lead \xc3, the truncated \xe2\x82.
    assert_eq!(d.replaced, 4);
    assert_eq!(d.chunks.len(), 1);
    let text = &d.chunks[0].text;
    assert!(
        text.contains("Café ok \u{fffd}\u{fffd} then \u{fffd}( and \u{fffd} end."),
        "{text:?}"
    );
    let ok = Chunker::default().chunk_bytes("ok.md", "déjà vu".as_bytes());
    assert_eq!(ok.replaced, 0);
    assert_eq!(ok.chunks[0].text, "déjà vu");
}

#[test]
fn a_one_megabyte_document_chunks_quickly() {
    let mut doc = String::with_capacity(1 << 20);
    let mut section = 0;
    while doc.len() < 1 << 20 {
        section += 1;
        doc.push_str(&format!("## Section {section}\n\n"));
        for p in 0..5 {
            for s in 0..(3 + p * 4) {
                doc.push_str(&format!(
                    "Sentence {s} of paragraph {p} talks about refunds, parcels and accounts in some detail. "
                ));
            }
            doc.push_str("\n\n");
        }
    }
    let chunker = Chunker::default();
    let start = Instant::now();
    let chunks = chunker.chunk("big.md", &doc);
    let elapsed = start.elapsed();
    eprintln!(
        "chunked {} bytes into {} chunks in {elapsed:?}",
        doc.len(),
        chunks.len()
    );
    assert!(elapsed.as_secs_f64() < 10.0, "{elapsed:?}");
    assert!(chunks.iter().all(|c| c.tokens <= 200));
    assert!(chunks.len() > 1000);
    let total: usize = chunks.iter().map(|c| c.text.len()).sum();
    assert!(total as f64 > doc.len() as f64 * 0.95);

    // One megabyte without whitespace: cut into pieces, each within the maximum.
    let blob = "x".repeat(1 << 20);
    let start = Instant::now();
    let chunks = chunker.chunk("blob", &blob);
    let elapsed = start.elapsed();
    eprintln!(
        "chunked a 1 MB word into {} chunks in {elapsed:?}",
        chunks.len()
    );
    assert!(elapsed.as_secs_f64() < 10.0, "{elapsed:?}");
    let (last, full) = chunks.split_last().expect("chunks");
    assert!(
        full.iter().all(|c| c.tokens == 200),
        "the longest pieces that fit"
    );
    assert!(last.tokens <= 200);
    assert_eq!(
        chunks.iter().map(|c| c.text.len()).sum::<usize>(),
        blob.len()
    );
}

// ---------------------------------------------------------------- indexing

fn docs(policy: &str) -> Vec<ContextDoc> {
    vec![
        ContextDoc::new(
            "prose",
            "# Shop\n\nThe shop sells books.\n\n## Orders\n\nAn order has one or more books.",
        ),
        ContextDoc::new("docs/policy.md", policy),
    ]
}

#[tokio::test]
async fn sync_re_embeds_only_what_changed() {
    let bag = Arc::new(CountingBag::default());
    let ctx = open("ctx-sync", bag.clone(), Chunker::default()).await;
    let feature = "shop";

    let first = ctx.sync(feature, &docs(POLICY)).await.expect("sync");
    assert_eq!((first.added, first.kept, first.removed), (7, 0, 0));
    assert_eq!(bag.embedded(), 7);

    let again = ctx.sync(feature, &docs(POLICY)).await.expect("sync");
    assert_eq!((again.added, again.kept, again.removed), (0, 7, 0));
    assert_eq!(
        bag.embedded(),
        7,
        "nothing embedded for unchanged documents"
    );

    let edited = POLICY.replace(
        "Tracking numbers are sent by email.",
        "Tracking numbers are sent by text message.",
    );
    let r = ctx.sync(feature, &docs(&edited)).await.expect("sync");
    assert_eq!((r.added, r.kept, r.removed), (1, 6, 1));
    assert_eq!(bag.embedded(), 8, "only the edited chunk is embedded");
    let sel = ctx
        .select(feature, "tracking text message", 1000)
        .await
        .expect("select");
    assert!(sel.render().contains("text message"));
    assert!(!sel.render().contains("sent by email"));

    // A new paragraph shifts the ordinals after it, but embeds only itself.
    let inserted = edited.replace(
        "## Shipping",
        "## Returns\n\nReturns are free.\n\n## Shipping",
    );
    let before = bag.embedded(); // the query above was embedded too
    let r = ctx.sync(feature, &docs(&inserted)).await.expect("sync");
    assert_eq!((r.added, r.kept, r.removed), (1, 7, 0));
    assert_eq!(bag.embedded(), before + 1);
    let sel = ctx
        .select(feature, "anything", 10_000)
        .await
        .expect("select");
    let order: Vec<(String, usize)> = sel
        .chunks
        .iter()
        .map(|c| (c.doc.clone(), c.ordinal))
        .collect();
    let expected: Vec<(String, usize)> = [("prose", 0), ("prose", 1)]
        .into_iter()
        .chain((0..6).map(|i| ("docs/policy.md", i)))
        .map(|(d, i)| (d.to_owned(), i))
        .collect();
    assert_eq!(order, expected, "document order, positions updated");
    assert!(sel.note.is_none());

    // A chunk deleted behind our back is embedded again.
    let mut c = ctx.index().connection();
    let some: String = redis::cmd("SRANDMEMBER")
        .arg(ctx.hashes_key(feature))
        .query_async(&mut c)
        .await
        .expect("SRANDMEMBER");
    let key = ctx.chunk_key(feature, &some);
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut c)
        .await
        .expect("DEL");
    let r = ctx.sync(feature, &docs(&inserted)).await.expect("sync");
    assert_eq!((r.added, r.kept, r.removed), (1, 7, 0));

    // Another feature is independent; dropping a document removes its chunks.
    let other = ctx.sync("other", &docs(POLICY)[..1]).await.expect("sync");
    assert_eq!(other.added, 2);
    let r = ctx
        .sync(feature, &docs(&inserted)[1..])
        .await
        .expect("sync");
    assert_eq!((r.added, r.kept, r.removed), (0, 6, 2));
    let sel = ctx.select("other", "books", 10_000).await.expect("select");
    assert_eq!(sel.chunks.len(), 2);
    assert!(sel.chunks.iter().all(|c| c.doc == "prose"));
    assert_eq!(ctx.remove_feature(feature).await.expect("remove"), 6);
    let sel = ctx.select(feature, "refund", 1000).await.expect("select");
    assert!(sel.chunks.is_empty() && sel.remainder.is_none());
    cleanup(&ctx, &[feature, "other"]).await;
}

#[tokio::test]
async fn sync_timing_for_many_chunks() {
    let bag = Arc::new(CountingBag::default());
    let ctx = open("ctx-many", bag.clone(), Chunker::default()).await;
    let mut doc = String::new();
    for i in 0..1000 {
        doc.push_str(&format!(
            "## Topic {i}\n\nParagraph {i} explains rule number {i} of the shop.\n\n"
        ));
    }
    let d = [ContextDoc::new("big.md", doc)];
    let start = Instant::now();
    let r = ctx.sync("many", &d).await.expect("sync");
    let first = start.elapsed();
    let start = Instant::now();
    let again = ctx.sync("many", &d).await.expect("sync");
    let second = start.elapsed();
    eprintln!(
        "sync of {} chunks: {first:?} (all new), {second:?} (unchanged)",
        r.added
    );
    assert_eq!(r.added, 1000);
    assert_eq!(again.kept, 1000);
    assert_eq!(bag.embedded(), 1000);
    let start = Instant::now();
    let sel = ctx
        .select("many", "rule number 500", 300)
        .await
        .expect("select");
    eprintln!("select among 1000 chunks: {:?}", start.elapsed());
    assert!(sel.total_tokens <= 300);
    cleanup(&ctx, &["many"]).await;
}

#[tokio::test]
async fn repeated_chunks_are_all_kept_and_another_model_does_not_reuse_vectors() {
    let chunker = Chunker::default().with_max_tokens(10);
    let doc = "## Notes\n\nSee the refund policy for details.\n\nShipping takes two days.\n\nSee the refund policy for details.\n";
    let chunks = chunker.chunk("d", doc);
    assert_eq!(chunks.len(), 4, "{chunks:#?}");
    let hashes: std::collections::HashSet<&str> = chunks.iter().map(|c| c.hash.as_str()).collect();
    assert_eq!(hashes.len(), 4, "a repeated chunk has its own hash");
    assert_eq!(
        chunks[1].hash,
        chunk_hash("d", &chunks[1].heading_path, &chunks[1].text)
    );

    let base = unique("ctx-models");
    let a = Arc::new(CountingBag::named("bag-a"));
    let b = Arc::new(CountingBag::named("bag-b"));
    let ctx_a = ContextIndex::with_index_name(conn().await, a.clone(), chunker.clone(), &base)
        .await
        .expect("open");
    let ctx_b = ContextIndex::with_index_name(conn().await, b.clone(), chunker, &base)
        .await
        .expect("open");
    let d = [ContextDoc::new("d", doc)];
    assert_eq!(ctx_a.sync("f", &d).await.expect("sync").added, 4);
    let sel = ctx_b.select("f", "refund", 100).await.expect("select");
    assert!(sel.chunks.is_empty(), "no vectors of another model");
    assert_eq!(ctx_b.sync("f", &d).await.expect("sync").added, 4);
    assert_eq!(
        b.embedded(),
        4,
        "nothing stored: the query is not even embedded"
    );
    assert_eq!(
        ctx_b
            .select("f", "refund", 100)
            .await
            .expect("select")
            .chunks
            .len(),
        4
    );
    assert_eq!(
        ctx_a
            .select("f", "refund", 100)
            .await
            .expect("select")
            .chunks
            .len(),
        4
    );
    ctx_b.remove_feature("f").await.expect("remove");
    cleanup(&ctx_a, &["f"]).await;
}

// ---------------------------------------------------------------- selection

fn assert_within(sel: &eol_vector::context::Selection, counter: &dyn TokenCounter, budget: usize) {
    let sum: usize = sel.chunks.iter().map(|c| c.tokens).sum::<usize>()
        + sel.remainder.as_ref().map_or(0, |r| r.tokens);
    assert_eq!(sel.total_tokens, sum);
    assert!(
        sel.total_tokens <= budget,
        "{} > {budget}",
        sel.total_tokens
    );
    let rendered = counter.count(&sel.render());
    assert!(
        rendered <= budget,
        "rendered {rendered} > {budget}: {sel:#?}"
    );
}

#[tokio::test]
async fn selection_respects_the_budget_strictly() {
    let ctx = open(
        "ctx-budget",
        Arc::new(CountingBag::default()),
        Chunker::default(),
    )
    .await;
    ctx.sync("shop", &docs(POLICY)).await.expect("sync");
    let all = ctx.select("shop", "refund", 100_000).await.expect("select");
    let total: usize = all.chunks.iter().map(|c| c.tokens).sum();
    let smallest = all.chunks.iter().map(|c| c.tokens).min().expect("chunks");
    for budget in (0..=total + 5).chain([smallest - 1, 1, 2, 3]) {
        let sel = ctx
            .select("shop", "refund within 30 days", budget)
            .await
            .expect("select");
        assert_within(&sel, &EstimateCounter, budget);
        let mut order: Vec<(usize, usize)> = sel
            .chunks
            .iter()
            .map(|c| (c.doc_index, c.ordinal))
            .collect();
        let sorted = {
            let mut s = order.clone();
            s.sort();
            s
        };
        assert_eq!(order, sorted, "document order");
        order.dedup();
        assert_eq!(order.len(), sel.chunks.len());
        let accounted = sel.chunks.len()
            + sel.dropped.len()
            + sel.remainder.as_ref().map_or(0, |r| r.covers.len());
        assert_eq!(
            accounted, 7,
            "every chunk is included, compressed or dropped"
        );
        if sel.chunks.len() < 7 {
            assert!(
                sel.note
                    .as_deref()
                    .is_some_and(|n| n.contains("of 7 chunks")),
                "{:?}",
                sel.note
            );
        }
    }
    // Smaller than any chunk: nothing in full, first words of the most relevant chunk.
    let sel = ctx
        .select("shop", "refund within 30 days", smallest - 1)
        .await
        .expect("select");
    assert!(sel.chunks.is_empty());
    let r = sel.remainder.expect("a remainder");
    assert!(r.text.starts_with("A customer can get a"), "{}", r.text);
    assert!(r.text.ends_with('…'));
    // Zero budget: nothing at all, everything dropped and said so.
    let sel = ctx.select("shop", "refund", 0).await.expect("select");
    assert!(sel.chunks.is_empty() && sel.remainder.is_none());
    assert_eq!(sel.dropped.len(), 7);
    assert!(sel.note.expect("a note").contains("dropped 7"));
    cleanup(&ctx, &["shop"]).await;
}

#[tokio::test]
async fn the_most_relevant_chunk_goes_in_whole_the_rest_as_first_sentences() {
    let ctx = open(
        "ctx-relevance",
        Arc::new(CountingBag::default()),
        Chunker::default(),
    )
    .await;
    ctx.sync("shop", &docs(POLICY)).await.expect("sync");
    let sel = ctx
        .select("shop", "Can a customer get a refund of the order?", 60)
        .await
        .expect("select");
    assert_within(&sel, &EstimateCounter, 60);
    assert!(
        sel.chunks
            .iter()
            .any(|c| c.heading_path.last().is_some_and(|h| h == "Refunds")),
        "{sel:#?}"
    );
    let r = sel.remainder.as_ref().expect("a remainder");
    assert!(!r.summary);
    for line in r.text.lines() {
        assert!(line.ends_with(" …"), "{line:?}");
        assert!(!line.starts_with('#'), "headings are skipped: {line:?}");
    }
    let note = sel.note.as_deref().expect("a note");
    assert!(note.contains("as first sentences"), "{note}");
    cleanup(&ctx, &["shop"]).await;
}

struct FakeSummary {
    text: String,
    fail: bool,
    seen: Arc<AtomicUsize>,
}

impl Summarizer for FakeSummary {
    fn summarize<'a>(
        &'a self,
        texts: &'a [String],
        _max_tokens: usize,
    ) -> BoxFuture<'a, Result<String, SummarizeError>> {
        self.seen.store(texts.len(), Ordering::SeqCst);
        Box::pin(async move {
            if self.fail {
                Err(SummarizeError("the model is down".into()))
            } else {
                Ok(self.text.clone())
            }
        })
    }
}

#[tokio::test]
async fn the_remainder_can_be_a_model_summary_within_the_budget() {
    let seen = Arc::new(AtomicUsize::new(0));
    let summary = |text: &str, fail: bool| {
        Compression::Summarize(Box::new(FakeSummary {
            text: text.to_owned(),
            fail,
            seen: seen.clone(),
        }))
    };
    let bag: Arc<dyn Embedder> = Arc::new(CountingBag::default());
    let base = unique("ctx-summary");
    let ctx = ContextIndex::with_index_name(conn().await, bag.clone(), Chunker::default(), &base)
        .await
        .expect("open")
        .with_compression(summary(
            "Other policies: shipping, accounts, gift cards.",
            false,
        ));
    ctx.sync("shop", &docs(POLICY)).await.expect("sync");
    let sel = ctx.select("shop", "refund", 60).await.expect("select");
    assert_within(&sel, &EstimateCounter, 60);
    let r = sel.remainder.as_ref().expect("a summary");
    assert!(r.summary);
    assert_eq!(r.text, "Other policies: shipping, accounts, gift cards.");
    assert_eq!(r.covers.len(), seen.load(Ordering::SeqCst));
    assert!(sel.note.as_deref().expect("a note").contains("summarised"));

    // A summary longer than what is left is shortened to fit.
    let long = ContextIndex::with_index_name(conn().await, bag.clone(), Chunker::default(), &base)
        .await
        .expect("open")
        .with_compression(summary(&"blah ".repeat(500), false));
    for budget in [5, 20, 60] {
        let sel = long.select("shop", "refund", budget).await.expect("select");
        assert_within(&sel, &EstimateCounter, budget);
        if let Some(r) = &sel.remainder {
            assert!(r.text.ends_with('…'));
        }
    }
    // A summary that comes back empty leaves the reserve to whole chunks.
    let empty = ContextIndex::with_index_name(conn().await, bag.clone(), Chunker::default(), &base)
        .await
        .expect("open")
        .with_compression(summary("", false));
    let no_reserve =
        ContextIndex::with_index_name(conn().await, bag.clone(), Chunker::default(), &base)
            .await
            .expect("open")
            .with_remainder_percent(0);
    for budget in [20, 40, 60, 80] {
        let sel = empty
            .select("shop", "refund", budget)
            .await
            .expect("select");
        assert!(sel.remainder.is_none());
        let whole = no_reserve
            .select("shop", "refund", budget)
            .await
            .expect("select");
        assert_eq!(sel.chunks, whole.chunks, "budget {budget}");
        assert_within(&sel, &EstimateCounter, budget);
    }
    // A failing summarizer falls back to first sentences, and the note says so.
    let failing = ContextIndex::with_index_name(conn().await, bag, Chunker::default(), &base)
        .await
        .expect("open")
        .with_compression(summary("", true));
    let sel = failing.select("shop", "refund", 60).await.expect("select");
    assert_within(&sel, &EstimateCounter, 60);
    assert!(!sel.remainder.as_ref().expect("excerpts").summary);
    assert!(
        sel.note
            .as_deref()
            .expect("a note")
            .contains("the model is down")
    );
    cleanup(&ctx, &["shop"]).await;
}

// ---------------------------------------------------------------- the real model

#[tokio::test]
async fn with_the_real_model_a_refund_question_selects_the_refund_paragraph() {
    let model = MiniLm::from_env().unwrap_or_else(|e| {
        panic!("this test needs the local embedding model: {e}. Run scripts/embedding-model.sh install.")
    });
    let counter: Arc<dyn TokenCounter> = Arc::new(minilm_tokenizer());
    // Each paragraph is one chunk: two never fit together in 45 word pieces.
    let chunker = Chunker::new(counter.clone()).with_max_tokens(45);
    let doc = "Our support team answers emails on weekdays between nine in the morning and five in the afternoon. \
        Messages sent at the weekend are answered on Monday.\n\n\
        Parcels are shipped with a tracked courier and usually arrive within three working days. \
        The tracking link is sent as soon as the parcel leaves the warehouse.\n\n\
        If you are not satisfied with an item, you can send it back within 30 days. \
        We will then return your money to the card you paid with.\n\n\
        Passwords must be at least twelve characters long and are stored hashed. \
        After five failed attempts the account is locked for one hour.\n\n\
        The office is closed on public holidays and during the last week of December. \
        Orders placed then are handled in the first week of January.";
    let ctx = open("ctx-minilm", Arc::new(model), chunker).await;
    let r = ctx
        .sync("shop", &[ContextDoc::new("faq.md", doc)])
        .await
        .expect("sync");
    assert_eq!(r.added, 5, "one chunk per paragraph");
    let sel = ctx
        .select("shop", "How do I get a refund?", 50)
        .await
        .expect("select");
    assert_within(&sel, counter.as_ref(), 50);
    assert_eq!(sel.chunks.len(), 1, "{sel:#?}");
    assert!(sel.chunks[0].text.contains("return your money"), "{sel:#?}");
    cleanup(&ctx, &["shop"]).await;
}

#[tokio::test]
async fn versions_keep_their_own_chunks_and_idle_ones_are_collected() {
    let ctx = open(
        "ctx-versions",
        Arc::new(CountingBag::default()),
        Chunker::default(),
    )
    .await;
    let feature = unique("orders");
    let (old, new) = (
        docs("Refunds are possible within 30 days of delivery."),
        docs("Refunds are possible within 14 days of delivery, never for sale items."),
    );
    // Chunks written by a runner from before versions: collected by the first versioned sync.
    ctx.sync(&feature, &old).await.expect("unversioned sync");
    let hour = std::time::Duration::from_secs(3600);

    // Both sides of a rollout: each version syncs its own chunks.
    let v1 = ctx.sync_version(&feature, &old, hour).await.expect("v1");
    assert!(v1.collected > 0, "the unversioned chunks: {v1:?}");
    let v2 = ctx.sync_version(&feature, &new, hour).await.expect("v2");
    assert_ne!(v1.scope, v2.scope);
    assert_eq!(ctx.version_scope(&feature, &old), v1.scope, "stable");
    assert_eq!(v2.collected, 0, "v1 is not idle");
    let texts = |s: &eol_vector::context::Selection| s.render();
    let from_v1 = ctx
        .select(&v1.scope, "refund", 10_000)
        .await
        .expect("select");
    let from_v2 = ctx
        .select(&v2.scope, "refund", 10_000)
        .await
        .expect("select");
    assert!(from_v1.indexed > 0 && from_v2.indexed > 0);
    assert!(
        texts(&from_v1).contains("30 days") && !texts(&from_v1).contains("14 days"),
        "{}",
        texts(&from_v1)
    );
    assert!(
        texts(&from_v2).contains("14 days") && !texts(&from_v2).contains("30 days"),
        "{}",
        texts(&from_v2)
    );

    // v1's runners are gone: a sync of v2 that finds v1 idle deletes its chunks.
    let again = ctx
        .sync_version(&feature, &new, std::time::Duration::ZERO)
        .await
        .expect("v2 again");
    assert_eq!(again.scope, v2.scope);
    assert_eq!(again.collected, from_v1.indexed);
    assert_eq!(again.report.added, 0, "v2's own chunks are kept");
    let gone = ctx
        .select(&v1.scope, "refund", 10_000)
        .await
        .expect("select");
    assert_eq!((gone.indexed, gone.chunks.len()), (0, 0));
    assert!(
        ctx.select(&v2.scope, "refund", 10_000)
            .await
            .expect("select")
            .indexed
            > 0
    );

    // A runner of v1 still alive syncs again and has its chunks back.
    let back = ctx
        .sync_version(&feature, &old, hour)
        .await
        .expect("v1 back");
    assert_eq!(
        (back.scope.as_str(), back.collected),
        (v1.scope.as_str(), 0)
    );
    assert!(back.report.added > 0);
    cleanup(&ctx, &[&feature, &v1.scope, &v2.scope]).await;
    let mut c = ctx.index().connection();
    let _: () = redis::cmd("DEL")
        .arg(ctx.versions_key(&feature))
        .query_async(&mut c)
        .await
        .expect("DEL");
}
