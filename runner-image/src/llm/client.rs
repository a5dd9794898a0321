//! Chat completions with tools and structured output.

use super::config::LlmSettings;
use super::retry::BackoffPolicy;
use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::ReqwestService;
use eol_core::process::otel::{OtelSpan, Parent};
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanBuilder, SpanKind};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU8, Ordering};

/// How the server is asked for JSON that fits a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ResponseFormatMode {
    /// OpenAI's `{"type": "json_schema", "json_schema": {...}}`.
    JsonSchema = 0,
    /// `{"type": "json_object", "schema": ...}`: llama.cpp's grammar-constrained form.
    JsonObjectWithSchema = 1,
    /// Only the prompt asks for JSON; the answer is validated and retried.
    PromptOnly = 2,
}

impl std::str::FromStr for ResponseFormatMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json_schema" => Ok(Self::JsonSchema),
            "json_object" => Ok(Self::JsonObjectWithSchema),
            "prompt" => Ok(Self::PromptOnly),
            _ => Err("expected json_schema, json_object or prompt".to_owned()),
        }
    }
}

impl ResponseFormatMode {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::JsonSchema,
            1 => Self::JsonObjectWithSchema,
            _ => Self::PromptOnly,
        }
    }

    fn next(self) -> Option<Self> {
        match self {
            Self::JsonSchema => Some(Self::JsonObjectWithSchema),
            Self::JsonObjectWithSchema => Some(Self::PromptOnly),
            Self::PromptOnly => None,
        }
    }
}

/// Why a model request failed (after retries).
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The API answered with an error status.
    #[error("the model API at {url} answered {status}: {message}")]
    Api {
        /// The base URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The API's message.
        message: String,
    },
    /// No answer in time, after retries.
    #[error(
        "the model API at {url} did not answer within {seconds:.0} s (after {retries} retries)"
    )]
    Timeout {
        /// The base URL.
        url: String,
        /// The per-request limit.
        seconds: f64,
        /// Retries made.
        retries: u32,
    },
    /// The API could not be reached.
    #[error("the model API at {url} is unreachable: {message}")]
    Unreachable {
        /// The base URL.
        url: String,
        /// Why.
        message: String,
    },
    /// The API answered something that is not a chat completion.
    #[error("the model API at {url} sent a malformed answer: {message}")]
    Malformed {
        /// The base URL.
        url: String,
        /// What was wrong.
        message: String,
    },
}

impl LlmError {
    /// A stable label for metrics and error reporting.
    pub fn kind(&self) -> &'static str {
        match self {
            LlmError::Api { status: 429, .. } => "llm_rate_limited",
            LlmError::Api { .. } => "llm_api_error",
            LlmError::Timeout { .. } => "llm_timeout",
            LlmError::Unreachable { .. } => "llm_unreachable",
            LlmError::Malformed { .. } => "llm_malformed",
        }
    }
}

/// Tokens a request used, as the server counted them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
}

impl Usage {
    /// Prompt plus completion tokens.
    pub fn total(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// A tool call the model asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The call's id, echoed in the tool's answer.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// Its arguments, as the JSON text the model wrote.
    pub arguments: String,
}

/// One chat completion.
#[derive(Debug, Clone)]
pub struct ChatReply {
    /// The text answer, if any.
    pub content: Option<String>,
    /// Tool calls, if any.
    pub tool_calls: Vec<ToolCall>,
    /// Token usage.
    pub usage: Usage,
    /// HTTP retries it took (429, 5xx, connection errors, timeouts).
    pub retries: u32,
    /// The model that answered, as the server named it (`model` of the response).
    pub model: Option<String>,
    /// Why the model stopped, per choice (`stop`, `length`, `tool_calls`, ...).
    pub finish_reasons: Vec<String>,
}

/// A client for one OpenAI-compatible API.
pub struct ChatClient {
    client: Client<OpenAIConfig>,
    settings: LlmSettings,
    /// The structured-output form this server accepts, learned on first refusal.
    mode: AtomicU8,
    /// The API's host and port, for the chat spans (`server.address`, `server.port`).
    server: (String, u16),
}

impl std::fmt::Debug for ChatClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatClient")
            .field("settings", &self.settings)
            .finish()
    }
}

impl ChatClient {
    /// A client for `settings`.
    pub fn new(settings: LlmSettings) -> Result<Self, LlmError> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()
            .map_err(|e| LlmError::Unreachable {
                url: settings.base_url.clone(),
                message: e.to_string(),
            })?;
        let service = tower::ServiceBuilder::new()
            .retry(BackoffPolicy::new(settings.max_retries))
            .service(ReqwestService::new(http.clone()));
        // Servers without authentication ignore the key; async-openai requires one.
        let config = OpenAIConfig::new()
            .with_api_base(settings.base_url.clone())
            .with_api_key(
                settings
                    .api_key
                    .clone()
                    .unwrap_or_else(|| "unused".to_owned()),
            );
        let client = Client::build(http, config).with_http_service(service);
        let mode = AtomicU8::new(settings.response_format as u8);
        let server = reqwest::Url::parse(&settings.base_url)
            .ok()
            .map(|u| {
                (
                    u.host_str().unwrap_or_default().to_owned(),
                    u.port_or_known_default().unwrap_or(0),
                )
            })
            .unwrap_or_default();
        Ok(Self {
            client,
            settings,
            mode,
            server,
        })
    }

    /// The settings in use.
    pub fn settings(&self) -> &LlmSettings {
        &self.settings
    }

    /// The structured-output form currently used.
    pub fn response_format_mode(&self) -> ResponseFormatMode {
        ResponseFormatMode::from_u8(self.mode.load(Ordering::Relaxed))
    }

    /// Sends `messages` (and `tools`, in OpenAI's function-tool form); when
    /// `schema` is given, asks for JSON fitting it in the strongest form the
    /// server accepts, falling back (and remembering) when it refuses a form.
    pub async fn chat(
        &self,
        messages: &[Value],
        tools: &[Value],
        schema: Option<&Value>,
    ) -> Result<ChatReply, LlmError> {
        loop {
            let mode = self.response_format_mode();
            let request = self.request(messages, tools, schema, mode);
            match self.send(request).await {
                Err(LlmError::Api {
                    status: 400 | 422 | 500, // llama-cpp-python answers a refused response_format with 500
                    message,
                    ..
                }) if schema.is_some()
                    && tools.is_empty()
                    && mode != ResponseFormatMode::PromptOnly
                    && mentions_format(&message) =>
                {
                    let next = mode.next().unwrap_or(ResponseFormatMode::PromptOnly);
                    tracing::info!(?mode, ?next, %message, "the model API refused this response format; falling back");
                    self.mode.store(next as u8, Ordering::Relaxed);
                }
                other => return other,
            }
        }
    }

    fn request(
        &self,
        messages: &[Value],
        tools: &[Value],
        schema: Option<&Value>,
        mode: ResponseFormatMode,
    ) -> Value {
        let s = &self.settings;
        let mut request = json!({
            "model": s.model,
            "messages": messages,
            "temperature": s.temperature,
            "max_tokens": s.max_tokens,
            "stream": false,
        });
        if let Some(seed) = s.seed {
            request["seed"] = json!(seed);
        }
        if !tools.is_empty() {
            request["tools"] = json!(tools);
        } else if let Some(schema) = schema {
            match mode {
                ResponseFormatMode::JsonSchema => {
                    request["response_format"] = json!({
                        "type": "json_schema",
                        "json_schema": { "name": "output", "schema": schema }
                    });
                }
                ResponseFormatMode::JsonObjectWithSchema => {
                    request["response_format"] = json!({ "type": "json_object", "schema": schema });
                }
                ResponseFormatMode::PromptOnly => {}
            }
        }
        request
    }

    /// One model request, in a GenAI `chat {model}` client span (OpenTelemetry
    /// semantic conventions for generative AI).
    async fn send(&self, request: Value) -> Result<ChatReply, LlmError> {
        let s = &self.settings;
        // A request outside any operation (a test's judge, code generation)
        // joins the trace of whoever started the process, if they said.
        let span = OtelSpan::start(Parent::Current, || {
            SpanBuilder::from_name(format!("chat {}", s.model))
                .with_kind(SpanKind::Client)
                .with_attributes([
                    KeyValue::new("gen_ai.operation.name", "chat"),
                    KeyValue::new("gen_ai.provider.name", "openai"),
                    KeyValue::new("gen_ai.request.model", s.model.clone()),
                    KeyValue::new("gen_ai.request.temperature", s.temperature),
                    KeyValue::new("gen_ai.request.max_tokens", i64::from(s.max_tokens)),
                    KeyValue::new("server.address", self.server.0.clone()),
                    KeyValue::new("server.port", i64::from(self.server.1)),
                ])
        });
        let result = span.instrument(self.send_request(request)).await;
        match &result {
            Ok(reply) => {
                if let Some(model) = &reply.model {
                    span.set("gen_ai.response.model", model.clone());
                }
                let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                span.set(
                    "gen_ai.usage.input_tokens",
                    count(reply.usage.prompt_tokens),
                );
                span.set(
                    "gen_ai.usage.output_tokens",
                    count(reply.usage.completion_tokens),
                );
                span.set("eol.llm.retries", i64::from(reply.retries));
                span.set_strings("gen_ai.response.finish_reasons", &reply.finish_reasons);
            }
            Err(e) => span.record_error(e.kind(), &e.to_string()),
        }
        result
    }

    async fn send_request(&self, request: Value) -> Result<ChatReply, LlmError> {
        let url = self.settings.base_url.clone();
        // Count the retry policy's retries for this request (see retry::RETRIES).
        let counted = super::retry::RETRIES.scope(std::cell::Cell::new(0), async {
            let result = self
                .client
                .chat()
                .create_byot::<Value, Value>(request)
                .await;
            (result, super::retry::RETRIES.with(std::cell::Cell::get))
        });
        let (result, retries) = counted.await;
        let response: Value = result.map_err(|e| match e {
            OpenAIError::ApiError(api) => LlmError::Api {
                url: url.clone(),
                status: api.status_code.as_u16(),
                message: api.api_error.message,
            },
            OpenAIError::Reqwest(e) if e.is_timeout() => LlmError::Timeout {
                url: url.clone(),
                seconds: self.settings.timeout.as_secs_f64(),
                retries: self.settings.max_retries,
            },
            OpenAIError::Reqwest(e) => LlmError::Unreachable {
                url: url.clone(),
                message: e.to_string(),
            },
            OpenAIError::JSONDeserialize(e, content) => LlmError::Malformed {
                url: url.clone(),
                message: format!("{e}: {content:.200}"),
            },
            other => LlmError::Unreachable {
                url: url.clone(),
                message: other.to_string(),
            },
        })?;
        let mut reply = parse_reply(&url, &response)?;
        reply.retries = retries;
        Ok(reply)
    }
}

fn mentions_format(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("response_format") || m.contains("json_schema") || m.contains("schema")
}

fn parse_reply(url: &str, response: &Value) -> Result<ChatReply, LlmError> {
    let malformed = |message: &str| LlmError::Malformed {
        url: url.to_owned(),
        message: message.to_owned(),
    };
    let message = response
        .pointer("/choices/0/message")
        .ok_or_else(|| malformed("no choices[0].message"))?;
    let content = message
        .get("content")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut tool_calls = Vec::new();
    if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
        for (i, call) in calls.iter().enumerate() {
            let name = call
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| malformed("a tool call without a function name"))?;
            let arguments = match call.pointer("/function/arguments") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => "{}".to_owned(),
            };
            let id = call
                .get("id")
                .and_then(Value::as_str)
                .map_or_else(|| format!("call_{i}"), str::to_owned);
            tool_calls.push(ToolCall {
                id,
                name: name.to_owned(),
                arguments,
            });
        }
    }
    let usage = Usage {
        prompt_tokens: response
            .pointer("/usage/prompt_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        completion_tokens: response
            .pointer("/usage/completion_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    };
    let finish_reasons = response
        .get("choices")
        .and_then(Value::as_array)
        .map(|choices| {
            choices
                .iter()
                .filter_map(|c| c.get("finish_reason").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(ChatReply {
        content,
        tool_calls,
        usage,
        retries: 0,
        model: response
            .get("model")
            .and_then(Value::as_str)
            .map(str::to_owned),
        finish_reasons,
    })
}
