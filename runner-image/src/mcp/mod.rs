//! MCP (Model Context Protocol), on the `rmcp` crate.
//!
//! - [`redis_tools`]: the built-in Redis tool server the LLM may call, confined
//!   to the feature's key prefix;
//! - [`toolbox`]: the client side: the built-in server and every server a
//!   feature lists, exposed to the prototyping engine as [`crate::prototype::Tools`];
//! - [`feature_server`]: the server side: a loaded feature's operations as
//!   tools and its context as resources (`eol mcp`).

pub mod feature_server;
pub mod redis_tools;
pub mod toolbox;

pub use feature_server::{FeatureMcpServer, ServeError};
pub use redis_tools::RedisToolServer;
pub use toolbox::{Toolbox, ToolboxError};
