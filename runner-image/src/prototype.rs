//! The prototyping engine: an LLM executes an operation from its prose.
//!
//! The prompt holds the operation's spec and schemas (always) and the feature's
//! shared prose (as much as fits the context window, least relevant dropped
//! last-first and reported in the trace). The answer must validate against the
//! Output schema: asked for through the server's structured-output form where it
//! has one, and otherwise validated and retried with the errors fed back.

use crate::llm::{ChatClient, ChatReply, LlmError, ModelRoutes, Route};
use crate::spend::{Meter, Spend};
use crate::store::Scope;
use eol_core::{CompiledSchema, Feature, Operation};
use serde_json::{Value, json};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

/// Tools the model may call during an operation (MCP servers, in practice).
///
/// Definitions are OpenAI function tools:
/// `{"type": "function", "function": {"name", "description", "parameters"}}`.
pub trait Tools: Send + Sync {
    /// The tools on offer.
    fn definitions(&self) -> Vec<Value>;
    /// Calls tool `name` with `arguments` (the JSON text the model wrote).
    /// `Err` carries a message for the model (unknown tool, invalid arguments,
    /// a crashed server); the loop feeds it back rather than failing the call.
    fn call<'a>(
        &'a self,
        name: &'a str,
        arguments: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;

    /// [`Self::call`] with the built-in Redis tools confined to `scope` (a
    /// test run's keyspace). Tools that touch no feature keys ignore it.
    fn call_in<'a>(
        &'a self,
        scope: &'a Scope,
        name: &'a str,
        arguments: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>> {
        let _ = scope;
        self.call(name, arguments)
    }
}

/// `tools` whose calls go to the keys of `scope`.
pub struct InKeyspace<'a> {
    /// The tools.
    pub tools: &'a dyn Tools,
    /// Where their Redis keys are.
    pub scope: &'a Scope,
}

impl Tools for InKeyspace<'_> {
    fn definitions(&self) -> Vec<Value> {
        self.tools.definitions()
    }

    fn call<'a>(
        &'a self,
        name: &'a str,
        arguments: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>> {
        self.tools.call_in(self.scope, name, arguments)
    }
}

/// How many answers are asked for before an invalid one is an error.
pub const MAX_ANSWER_ATTEMPTS: u32 = 3;

/// How many rounds of tool calls a call may make before the model is told to answer.
pub const MAX_TOOL_ROUNDS: u32 = 6;

/// What one prototyped call cost and did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PrototypeTrace {
    /// The model that answered (`a, b` when a fallback answered some of the call's requests).
    pub model: String,
    /// Model requests sent to a fallback because the model before it failed or was cooling down.
    pub fallbacks: u32,
    /// Tokens, requests and cost, summed over attempts and tool rounds.
    #[serde(flatten)]
    pub spend: Spend,
    /// Answers asked for (1 when the first was valid).
    pub attempts: u32,
    /// Tool calls made, by name, in order.
    pub tool_calls: Vec<String>,
    /// HTTP retries the model requests needed (429, 5xx, connection errors, timeouts).
    pub http_retries: u32,
    /// Wall-clock time.
    #[serde(serialize_with = "millis")]
    pub latency: Duration,
    /// Context left out to fit the window, if any.
    pub context_note: Option<String>,
}

impl PrototypeTrace {
    /// Adds a reply's spend and HTTP retries, and names the model that gave it.
    fn count(&mut self, reply: &ChatReply, spend: Spend, model: &str) {
        if self.spend.requests == 0 {
            self.model = model.to_owned();
        } else if !self.model.split(", ").any(|m| m == model) {
            self.model = format!("{}, {model}", self.model);
        }
        self.spend.add(spend);
        self.http_retries += reply.retries;
    }
}

/// Why a prototyped call failed.
#[derive(Debug, thiserror::Error)]
pub enum PrototypeError {
    /// The model request failed.
    #[error(transparent)]
    Llm(#[from] LlmError),
    /// The spec and input alone do not fit the context window.
    #[error(
        "the prompt needs about {needed} tokens but the model's context window leaves {available} (EOL_LLM_CONTEXT_WINDOW minus max_tokens)"
    )]
    ContextOverflow {
        /// Estimated tokens of the parts that cannot be dropped.
        needed: usize,
        /// Tokens available for the prompt.
        available: usize,
    },
    /// No valid answer after the allowed attempts.
    #[error(
        "the model gave no answer matching the Output schema in {attempts} attempts; last problem: {detail}"
    )]
    InvalidAnswer {
        /// Attempts made.
        attempts: u32,
        /// The last validation problem.
        detail: String,
    },
}

impl PrototypeError {
    /// A stable label for metrics and error reporting.
    pub fn kind(&self) -> &'static str {
        match self {
            PrototypeError::Llm(e) => e.kind(),
            PrototypeError::ContextOverflow { .. } => "context_overflow",
            PrototypeError::InvalidAnswer { .. } => "invalid_answer",
        }
    }
}

/// A faithful-enough token estimate for budgeting: about 3 characters a token
/// (English prose runs near 4; JSON and code nearer 3, so this errs on the safe side).
pub fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(3) + 4
}

/// Runs prototyped operations on one model (and its fallbacks).
#[derive(Debug)]
pub struct Prototyper {
    /// The primary model, its fallbacks, and the meters counting what their replies spend.
    routes: ModelRoutes,
}

impl Prototyper {
    /// A prototyper on `client`, counting spend in the call traces only.
    pub fn new(client: ChatClient) -> Self {
        let settings = client.settings();
        let meter = Meter::new(&settings.model, settings.price);
        Self {
            routes: ModelRoutes::new(Route { client, meter }),
        }
    }

    /// The prototyper counting the primary model's spend with `meter` (Redis usage counters too).
    pub fn with_meter(mut self, meter: Meter) -> Self {
        self.routes.primary_mut().meter = meter;
        self
    }

    /// The prototyper asking `fallbacks` in order while the models before fail,
    /// a failing model cooling down for `cooldown`.
    pub fn with_fallbacks(mut self, fallbacks: Vec<Route>, cooldown: std::time::Duration) -> Self {
        self.routes.add_fallbacks(fallbacks, cooldown);
        self
    }

    /// What counts the spend of the primary model's replies.
    pub fn meter(&self) -> &Meter {
        &self.routes.primary().meter
    }

    /// The primary model and its fallbacks.
    pub fn routes(&self) -> &ModelRoutes {
        &self.routes
    }

    /// One chat request for `operation`, its spend counted in `trace`.
    async fn chat(
        &self,
        operation: &str,
        messages: &[Value],
        tools: &[Value],
        schema: Option<&Value>,
        trace: &mut PrototypeTrace,
    ) -> Result<ChatReply, LlmError> {
        let routed = self.routes.chat(operation, messages, tools, schema).await?;
        trace.fallbacks += routed.fallbacks;
        trace.count(&routed.reply, routed.spend, &routed.model);
        Ok(routed.reply)
    }

    /// The primary model's client.
    pub fn client(&self) -> &ChatClient {
        &self.routes.primary().client
    }

    fn budget(&self) -> usize {
        let s = self.client().settings();
        // A margin for the chat template's own tokens.
        s.context_window
            .saturating_sub(s.max_tokens as usize)
            .saturating_sub(32)
    }

    /// Builds the messages for `op` on `input` with the feature's prose as context.
    pub fn messages(
        &self,
        feature: &Feature,
        op: &Operation,
        input: &Value,
    ) -> Result<(Vec<Value>, Option<String>), PrototypeError> {
        self.messages_with(feature, op, input, &PromptContext::Ranked(&[]))
    }

    /// The spec, schemas and instructions (system) and the input (user) of a
    /// call, and the tokens left in the window for context.
    fn required(
        &self,
        feature: &Feature,
        op: &Operation,
        input: &Value,
    ) -> Result<(String, String, usize), PrototypeError> {
        let required = format!(
            "You execute the operation `{name}` of the feature `{feature}`. Follow its specification exactly.\n\
             Answer with a single JSON value that matches the output schema, and nothing else.\n\n\
             ## Specification of `{name}`\n{spec}\n\n## Input schema\n{input_schema}\n\n## Output schema\n{output_schema}\n",
            name = op.name,
            feature = feature.name(),
            spec = op.spec,
            input_schema = op.input.value,
            output_schema = op.output.value,
        );
        let user = format!("Input:\n{input}");
        let needed = estimate_tokens(&required) + estimate_tokens(&user);
        let available = self.budget();
        if needed > available {
            return Err(PrototypeError::ContextOverflow { needed, available });
        }
        Ok((required, user, available - needed))
    }

    /// Tokens left for context in a call of `op` on `input`, after the spec,
    /// schemas, input and the context's own heading.
    pub fn context_budget(
        &self,
        feature: &Feature,
        op: &Operation,
        input: &Value,
    ) -> Result<usize, PrototypeError> {
        let (_, _, left) = self.required(feature, op, input)?;
        Ok(left.saturating_sub(estimate_tokens(&context_header(feature))))
    }

    /// Builds the messages for `op` on `input`. The spec, schemas and input
    /// always go in; then `context`: already chosen to fit, or paragraphs while
    /// they fit the window, the feature's prose first, then referenced documents,
    /// most relevant first (words shared with the spec and input). What is left
    /// out is noted.
    pub fn messages_with(
        &self,
        feature: &Feature,
        op: &Operation,
        input: &Value,
        context: &PromptContext<'_>,
    ) -> Result<(Vec<Value>, Option<String>), PrototypeError> {
        let (required, user, left) = self.required(feature, op, input)?;
        let header = context_header(feature);
        let (context, note) = match context {
            PromptContext::Ranked(docs) => {
                let left = left.saturating_sub(estimate_tokens(&header));
                ranked_context(feature, op, input, docs, left)
            }
            PromptContext::Selected { text, note } => (text.clone(), note.clone()),
        };
        let system = if context.is_empty() {
            required
        } else {
            format!("{required}\n## Feature context\n{header}\n{context}")
        };
        Ok((
            vec![
                json!({"role": "system", "content": system}),
                json!({"role": "user", "content": user}),
            ],
            note,
        ))
    }

    /// Executes `op` on `input` with the feature's prose as context and no
    /// tools; the answer is validated against `output`.
    pub async fn execute(
        &self,
        feature: &Feature,
        op: &Operation,
        input: &Value,
        output: &CompiledSchema,
    ) -> Result<(Value, PrototypeTrace), PrototypeError> {
        self.execute_with(
            feature,
            op,
            input,
            output,
            None,
            &PromptContext::Ranked(&[]),
        )
        .await
    }

    /// Executes `op` on `input` with `context`, letting the model call `tools`
    /// first; the answer is validated against `output`.
    pub async fn execute_with(
        &self,
        feature: &Feature,
        op: &Operation,
        input: &Value,
        output: &CompiledSchema,
        tools: Option<&dyn Tools>,
        context: &PromptContext<'_>,
    ) -> Result<(Value, PrototypeTrace), PrototypeError> {
        let started = Instant::now();
        let (mut messages, context_note) = self.messages_with(feature, op, input, context)?;
        let mut trace = PrototypeTrace {
            context_note,
            model: self.client().settings().model.clone(),
            ..PrototypeTrace::default()
        };
        if let Some(tools) = tools {
            let definitions = tools.definitions();
            if !definitions.is_empty()
                && let Some(value) = self
                    .tool_loop(
                        &op.name,
                        &mut messages,
                        &definitions,
                        tools,
                        output,
                        &mut trace,
                    )
                    .await?
            {
                trace.latency = started.elapsed();
                return Ok((value, trace));
            }
        }
        let mut detail = String::new();
        while trace.attempts < MAX_ANSWER_ATTEMPTS {
            trace.attempts += 1;
            let reply = self
                .chat(&op.name, &messages, &[], Some(&op.output.value), &mut trace)
                .await?;
            let text = reply.content.unwrap_or_default();
            let problem = match validated(&text, output) {
                Ok(value) => {
                    trace.latency = started.elapsed();
                    return Ok((value, trace));
                }
                Err(problem) => problem,
            };
            tracing::info!(operation = %op.name, attempt = trace.attempts, %problem, "invalid model answer; asking again");
            ask_again(&mut messages, text, &problem);
            detail = problem;
        }
        Err(PrototypeError::InvalidAnswer {
            attempts: trace.attempts,
            detail,
        })
    }

    /// Lets the model call tools until it answers or the round limit is reached.
    /// Returns the answer if the model's last message was already a valid one.
    async fn tool_loop(
        &self,
        operation: &str,
        messages: &mut Vec<Value>,
        definitions: &[Value],
        tools: &dyn Tools,
        output: &CompiledSchema,
        trace: &mut PrototypeTrace,
    ) -> Result<Option<Value>, PrototypeError> {
        for _ in 0..MAX_TOOL_ROUNDS {
            let reply = self
                .chat(operation, messages, definitions, None, trace)
                .await?;
            if reply.tool_calls.is_empty() {
                let text = reply.content.unwrap_or_default();
                trace.attempts += 1;
                return match validated(&text, output) {
                    Ok(value) => Ok(Some(value)),
                    Err(problem) => {
                        ask_again(messages, text, &problem);
                        Ok(None)
                    }
                };
            }
            let calls: Vec<Value> = reply
                .tool_calls
                .iter()
                .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
                .collect();
            messages
                .push(json!({"role": "assistant", "content": reply.content, "tool_calls": calls}));
            for call in &reply.tool_calls {
                trace.tool_calls.push(call.name.clone());
                let content = match tools.call(&call.name, &call.arguments).await {
                    Ok(text) => text,
                    Err(message) => format!("error: {message}"),
                };
                messages.push(json!({"role": "tool", "tool_call_id": call.id, "content": content}));
            }
        }
        tracing::info!(
            rounds = MAX_TOOL_ROUNDS,
            "tool-call limit reached; asking for the answer"
        );
        messages.push(json!({"role": "user", "content": "The tool-call limit is reached. Give the final answer now: only a JSON value matching the output schema."}));
        Ok(None)
    }

    /// Asks the model whether `output` of `op` on `input` satisfies `sentence`.
    /// Returns the verdict and the model's reason.
    pub async fn judge(
        &self,
        op: &Operation,
        sentence: &str,
        input: &Value,
        output: &Value,
    ) -> Result<(bool, String), PrototypeError> {
        let (schema, compiled) = &*VERDICT;
        let messages = vec![
            json!({"role": "system", "content": "You check a test expectation against an operation's output. Answer with JSON: {\"verdict\": true|false, \"reason\": \"...\"}."}),
            json!({"role": "user", "content": format!("Operation: {}\nInput: {input}\nOutput: {output}\nExpectation: {sentence}\nDoes the output meet the expectation?", op.name)}),
        ];
        let mut detail = String::new();
        for _ in 0..MAX_ANSWER_ATTEMPTS {
            // A judge's tokens are the test's spend, under the operation judged.
            let reply = self
                .routes
                .chat(&op.name, &messages, &[], Some(schema))
                .await?
                .reply;
            let text = reply.content.unwrap_or_default();
            match extract_json(&text) {
                Some(v) if compiled.violations(&v).is_empty() => {
                    return Ok((
                        v["verdict"].as_bool().unwrap_or(false),
                        v["reason"].as_str().unwrap_or_default().to_owned(),
                    ));
                }
                _ => detail = format!("not a verdict: {:.200}", text.trim()),
            }
        }
        Err(PrototypeError::InvalidAnswer {
            attempts: MAX_ANSWER_ATTEMPTS,
            detail,
        })
    }
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
}

/// A document resolved from a reference (`@path`, `@feature:name`, or the
/// frontmatter's `context:` list), given to the model as context: the same
/// type the context index chunks.
pub use eol_vector::context::ContextDoc;

/// The context given to the model besides the operation's own spec.
#[derive(Debug, Clone)]
pub enum PromptContext<'a> {
    /// The feature's prose and these documents, paragraphs ranked by the words
    /// they share with the spec and input, as many as fit.
    Ranked(&'a [ContextDoc]),
    /// Context already chosen to fit (by the vector context manager).
    Selected {
        /// The text.
        text: String,
        /// What was left out or compressed, for the trace.
        note: Option<String>,
    },
}

/// The heading of the context section: the feature's title.
fn context_header(feature: &Feature) -> String {
    feature
        .title
        .as_deref()
        .map(|t| format!("# {t}"))
        .unwrap_or_default()
}

/// Paragraphs of the prose (first, in order) and of `docs` (most words shared
/// with the spec and input first) that fit in `left` tokens, in source order;
/// and a note of what was left out.
fn ranked_context(
    feature: &Feature,
    op: &Operation,
    input: &Value,
    docs: &[ContextDoc],
    mut left: usize,
) -> (String, Option<String>) {
    // Candidates: (priority, text).
    let query = words(&format!("{} {input}", op.spec));
    let mut candidates: Vec<((u8, usize), String)> = Vec::new();
    for (i, p) in paragraphs(&feature.prose).enumerate() {
        candidates.push(((1, usize::MAX - i), p.to_owned()));
    }
    for doc in docs {
        for (i, p) in paragraphs(&doc.text).enumerate() {
            let relevance = words(p).intersection(&query).count();
            let text = if i == 0 {
                format!("From {}:\n{p}", doc.name)
            } else {
                p.to_owned()
            };
            candidates.push(((0, relevance), text));
        }
    }
    let total = candidates.len();
    let mut order: Vec<usize> = (0..total).collect();
    order.sort_by(|&a, &b| candidates[b].0.cmp(&candidates[a].0));
    let mut kept = vec![false; total];
    for i in order {
        let cost = estimate_tokens(&candidates[i].1);
        if cost <= left {
            kept[i] = true;
            left -= cost;
        }
    }
    let dropped = kept.iter().filter(|k| !**k).count();
    let context: Vec<&str> = candidates
        .iter()
        .zip(&kept)
        .filter(|(_, k)| **k)
        .map(|(c, _)| c.1.as_str())
        .collect();
    let note = (dropped > 0).then(|| {
        format!("left out {dropped} of {total} context paragraphs to fit the context window")
    });
    (context.join("\n\n"), note)
}

fn paragraphs(text: &str) -> impl Iterator<Item = &str> {
    text.split("\n\n").map(str::trim).filter(|p| !p.is_empty())
}

fn words(text: &str) -> std::collections::HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 3)
        .map(str::to_lowercase)
        .collect()
}

/// The judge's answer schema, compiled once. Only the verdict is required:
/// small models often drop the reason.
static VERDICT: std::sync::LazyLock<(Value, CompiledSchema)> = std::sync::LazyLock::new(|| {
    let schema = json!({
        "type": "object",
        "properties": {"verdict": {"type": "boolean"}, "reason": {"type": "string"}},
        "required": ["verdict"]
    });
    let compiled = CompiledSchema::new(&schema).expect("the verdict schema is a valid JSON Schema");
    (schema, compiled)
});

/// Feeds an invalid `answer` back with its `problem`, asking for another.
fn ask_again(messages: &mut Vec<Value>, answer: String, problem: &str) {
    messages.push(json!({"role": "assistant", "content": answer}));
    messages.push(json!({"role": "user", "content": format!("{problem}\nAnswer again with only a JSON value matching the output schema.")}));
}

/// The answer as JSON that fits `output`, or what is wrong with it.
fn validated(text: &str, output: &CompiledSchema) -> Result<Value, String> {
    let value = extract_json(text)
        .ok_or_else(|| format!("the answer is not JSON: {:.200}", text.trim()))?;
    let violations = output.violations(&value);
    if violations.is_empty() {
        Ok(value)
    } else {
        Err(format!(
            "the answer does not match the output schema: {}",
            violations.join("; ")
        ))
    }
}

/// The JSON value in a model's answer: the whole text, or a fenced block, or
/// the outermost `{...}` / `[...]` span (small models wrap JSON in prose).
pub fn extract_json(text: &str) -> Option<Value> {
    let trimmed = text.trim();
    if let Ok(v) = serde_json::from_str(trimmed) {
        return Some(v);
    }
    if let Some(start) = trimmed.find("```") {
        let after = &trimmed[start + 3..];
        let body = after.split_once('\n').map_or(after, |(_, b)| b);
        if let Some(end) = body.find("```")
            && let Ok(v) = serde_json::from_str(body[..end].trim())
        {
            return Some(v);
        }
    }
    for (open, close) in [('{', '}'), ('[', ']')] {
        if let (Some(s), Some(e)) = (trimmed.find(open), trimmed.rfind(close))
            && s < e
            && let Ok(v) = serde_json::from_str(&trimmed[s..=e])
        {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_found_in_chatty_answers() {
        assert_eq!(extract_json("{\"a\": 1}"), Some(json!({"a": 1})));
        assert_eq!(
            extract_json("Sure!\n```json\n{\"a\": 2}\n```\nDone."),
            Some(json!({"a": 2}))
        );
        assert_eq!(
            extract_json("The answer is {\"a\": 3}."),
            Some(json!({"a": 3}))
        );
        assert_eq!(extract_json("no json here"), None);
    }
}
