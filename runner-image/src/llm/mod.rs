//! The LLM provider: any OpenAI-compatible chat API (OpenAI, Azure OpenAI, Ollama,
//! vLLM, llama.cpp), through async-openai.

mod client;
mod config;
mod retry;

pub use client::{ChatClient, ChatReply, LlmError, ResponseFormatMode, ToolCall, Usage};
pub use config::{ConfigError, LlmSettings};
pub use retry::BackoffPolicy;
