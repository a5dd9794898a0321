//! The implementation engine against hostile and broken code, on real Python and Redis.
//!
//! One module a subject: `hostile_code` (static checks, limits, kernel
//! confinement, exceptions and schemas) and `redis_bridge` (Redis reached from
//! the sandbox: the prefix, the allow-list, Redis going away, and code written
//! against redis-py for every family).
#![allow(clippy::unwrap_used)] // Tests fail loudly on any unexpected error.

#[path = "../common/mod.rs"]
mod common;

mod hostile_code;
mod redis_bridge;

const FEATURE: &str = r#"---
name: counter
phase: implementation
---
# Counter
## Operations
### bump
Adds `by` to the counter `name` and returns the new value.

Input:
```yaml
type: object
properties:
  name: {type: string, minLength: 1}
  by: {type: integer}
required: [name, by]
```

Output:
```yaml
type: object
properties:
  value: {type: integer}
required: [value]
```

```python
def bump(name, by):
    return {"value": redis.incr("counter:" + name, by)}
```

### broken
Returns a string where the schema wants an integer.

Input:
```yaml
type: object
```

Output:
```yaml
type: object
properties:
  value: {type: integer}
required: [value]
```

```python
def broken():
    return {"value": "seven"}
```

### keys_seen
Lists which of the given keys exist.

Input:
```yaml
type: object
properties:
  name: {type: string}
```

Output:
```yaml
type: object
```

```python
def keys_seen(name):
    return {"exists": redis.exists("counter:" + name), "raw": redis.get("counter:" + name)}
```
"#;
