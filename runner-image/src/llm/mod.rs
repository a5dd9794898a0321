//! The LLM provider: any OpenAI-compatible chat API (OpenAI, Azure OpenAI, Ollama,
//! vLLM, llama.cpp), through async-openai.

mod client;
mod config;
mod retry;
mod router;

pub use client::{ChatClient, ChatReply, LlmError, ResponseFormatMode, ToolCall, Usage};
pub use config::{ConfigError, FallbackModel, LlmSettings};
pub use retry::BackoffPolicy;
pub use router::{ModelRoutes, Route, RoutedReply, falls_back};
