"""EOL sandbox worker: the `redis` module sandboxed code gets (the Redis proxy).

redis-py's client, module and pipelines, and its exception classes, on top of
the host's command table, which checks every command and keeps its keys under
the feature's prefix: the command methods (redis_commands.py) send through the
client, which asks the host over the worker's pipe, or through a pipeline,
which sends its queue in one request.

The pipe I/O stays in worker globals, which user code cannot reach (no
__globals__, no frames); the proxy's classes are read-only, and every call
gets fresh namespaces, so nothing user code changes outlives its call.

The worker is one program: worker_script() in sandbox/mod.rs puts the static
check (core/src/sandbox_check.py), redis_commands.py, this file and worker.py
one after another, in one module namespace. On load this file builds the
client's methods from redis_commands.py (loaded before it); when called, it
uses worker.py's pipe I/O and call state (`_send`, `_stdin`, `_encode`,
`_decode`, `_call`, `_cpu_exceeded`), which exist by the time main() runs.
"""

import math
import os
import types


class _Frozen(type):
    """Metaclass of the proxy's classes: user code cannot change them for later calls."""

    def __setattr__(cls, name, value):
        raise AttributeError("the sandboxed Redis classes are read-only")

    def __delattr__(cls, name):
        raise AttributeError("the sandboxed Redis classes are read-only")


class RedisError(Exception, metaclass=_Frozen):
    """A Redis command sent through the host failed (redis-py's base class)."""


def _exception_class(name, base, doc):
    return _Frozen(name, (base,), {"__doc__": doc, "__module__": "redis.exceptions"})


_ResponseError = _exception_class("ResponseError", RedisError, "Redis answered with an error.")
_NoPermissionError = _exception_class(
    "NoPermissionError", _ResponseError, "The sandbox refused the command (not allowed, or a key outside the feature's)."
)
_ConnectionError = _exception_class("ConnectionError", RedisError, "Redis could not be reached.")
_TimeoutError = _exception_class("TimeoutError", RedisError, "Redis did not answer in time.")
_DataError = _exception_class("DataError", RedisError, "An argument cannot be sent to Redis.")
_WatchError = _exception_class("WatchError", RedisError, "A watched key changed (WATCH is not available here).")

_EXCEPTIONS = {
    "RedisError": RedisError,
    "ResponseError": _ResponseError,
    "NoPermissionError": _NoPermissionError,
    "ConnectionError": _ConnectionError,
    "TimeoutError": _TimeoutError,
    "DataError": _DataError,
    "WatchError": _WatchError,
}
_ERROR_KINDS = {
    "refused": _NoPermissionError,
    "server": _ResponseError,
    "connection": _ConnectionError,
    "timeout": _TimeoutError,
}


def _error(item):
    """The exception for a failed reply ({"error", "kind"})."""
    return _ERROR_KINDS.get(item.get("kind"), RedisError)(item.get("error") or "Redis command failed")


def _arg(value):
    # Exact types only: a subclass could fake its value when converted.
    kind = type(value)
    if kind is str or kind is int:
        return value
    if kind is float:
        if not math.isfinite(value):
            raise _DataError("Redis arguments must be finite numbers")
        return value
    if kind is bytes:
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise _DataError("bytes sent to Redis must be UTF-8 text") from None
    raise _DataError(
        f"Invalid input of type: '{kind.__name__}'. Convert to a bytes, string, int or float first."
    )


def _exchange(request):
    """Sends one request to the host and waits for its redis_reply."""
    _call.in_io = True
    try:
        _send(request)
        line = _stdin.readline()
    finally:
        _call.in_io = False
        if _call.pending:
            _call.pending = False
            _cpu_exceeded()
    if not line:
        os._exit(0)  # the host closed stdin mid-call
    reply = _decode(line)
    if reply.get("type") != "redis_reply":
        raise RedisError(f"unexpected message from the host while waiting for Redis: {reply.get('type')!r}")
    if not reply.get("ok"):
        raise _error(reply)
    return reply.get("value")


def _redis(*command):
    """Sends one command to the host and waits for its reply."""
    return _exchange(_encode({"type": "redis", "command": [_arg(a) for a in command]}))


def _now(command, callback):
    """The client's executor: runs the command at once."""
    reply = _redis(*command)
    return reply if callback is None else callback(reply)



# Methods that only make sense on the client (iterators), not in pipelines.
_CLIENT_ONLY = frozenset("scan_iter hscan_iter sscan_iter zscan_iter".split())


class Pipeline(metaclass=_Frozen):
    """redis-py's Pipeline: the client's methods queue their commands, which
    execute() sends to Redis in one round trip (as MULTI/EXEC when transactional)."""

    def __len__(self):
        return len(self._queue)

    def __bool__(self):
        return True

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self._queue.clear()

    def __repr__(self):
        return f"<Pipeline (sandboxed) transaction={self._transaction[0]} commands={len(self._queue)}>"


def _pipeline(transaction=True, shard_hint=None):
    pipe = Pipeline()
    queue = []
    mode = [bool(transaction)]

    def queue_command(command, callback):
        queue.append(([_arg(a) for a in command], callback))
        return pipe

    def execute(raise_on_error=True):
        if not queue:
            return []
        commands = [command for command, _ in queue]
        callbacks = [callback for _, callback in queue]
        queue.clear()
        request = {"type": "redis_pipeline", "commands": commands, "transaction": mode[0]}
        mode[0] = bool(transaction)
        items = _exchange(_encode(request))
        results = []
        first = None
        for i, (command, callback, item) in enumerate(zip(commands, callbacks, items)):
            if item.get("ok"):
                value = item.get("value")
                results.append(value if callback is None else callback(value))
            else:
                error = _error(item)
                if first is None:
                    first = (i, command, error)
                results.append(error)
        if first is not None and raise_on_error:
            i, command, error = first
            text = " ".join(str(a) for a in command)
            raise type(error)(f"Command # {i + 1} ({text}) of pipeline caused error: {error}")
        return results

    def reset():
        queue.clear()
        mode[0] = bool(transaction)

    def multi():
        if queue:
            raise RedisError("Commands without an initial WATCH have already been issued")
        mode[0] = True

    def watch(*names):
        raise _WatchError(
            "WATCH is not available in sandboxed code (the connection is shared); "
            "use pipeline(transaction=True), whose commands run together"
        )

    def unwatch():
        return True

    methods = {name: fn for name, fn in _commands(queue_command).items() if name not in _CLIENT_ONLY}
    pipe.__dict__.update(methods)
    pipe.__dict__.update(execute=execute, reset=reset, multi=multi, watch=watch, unwatch=unwatch)
    pipe._queue = queue
    pipe._transaction = mode
    return pipe


def _json_get(key, path="$"):
    """Earlier name of json().get(key, "$")."""
    return _now(["JSON.GET", key, path], None)


def _json_set(key, path, value):
    """Earlier name of json().set(key, path, value); True when set."""
    return _now(["JSON.SET", key, path, _json_text(value)], None) is True


def _client(*args, **kwargs):
    """redis.Redis(...) / redis.from_url(...): the feature's own Redis (arguments are ignored)."""
    return _redis_proxy()


_REDIS_METHODS = _commands(_now)
_REDIS_METHODS.update(_EXCEPTIONS)
_REDIS_METHODS.update(
    pipeline=_pipeline,
    Pipeline=Pipeline,
    json_get=_json_get,
    json_set=_json_set,
    Redis=_client,
    StrictRedis=_client,
    from_url=_client,
)


def _redis_proxy():
    proxy = types.ModuleType("redis (sandboxed)")  # fresh per call, like module views
    proxy.__dict__.update(_REDIS_METHODS)
    proxy.exceptions = types.SimpleNamespace(**_EXCEPTIONS)
    return proxy
