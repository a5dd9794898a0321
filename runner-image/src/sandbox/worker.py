"""EOL sandbox worker: runs user-written Python functions for the Rust host.

The host starts it as `python3 -I -S -u worker.py <config-json>` after confining
the process (network namespace, rlimits, unprivileged user, private cwd) and
talks to it in JSON lines over stdin/stdout:

    host -> worker   {"type":"ping"} | {"type":"check",...} | {"type":"call",...}
                     {"type":"redis_reply",...}   (only while a call waits on Redis)
    worker -> host   {"type":"ready",...} once, then "pong", "checked", "result",
                     and {"type":"redis",...} or {"type":"redis_pipeline",...}
                     while a call runs.

This file adds the Python-level sandbox on top of the kernel limits: a static
AST check, restricted builtins, sanitised per-call views of allowed modules,
and a CPU-time limit per call.
"""

import ast
import builtins
import functools
import importlib
import json
import math
import operator
import os
import resource
import signal
import string
import sys
import time
import types
import typing

# The protocol is encoded with this copy of json. User code gets a fresh import
# (see below), so patching e.g. `json.JSONEncoder.encode` from user code cannot
# reach the worker's own messages.
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
_decode = json.loads
for _name in [n for n in sys.modules if n == "json" or n.startswith("json.")]:
    del sys.modules[_name]

MODULE_NAME = "eol_operation"
STDOUT_LIMIT = 64 * 1024  # characters of print() output kept per call
STDOUT_TRUNCATED = "\n[stdout truncated]"
TRACEBACK_FRAMES = 10
CACHE_LIMIT = 256  # prepared code objects kept (cleared wholesale when full)
RECURSION_LIMIT = 2000

SAFE_BUILTIN_NAMES = (
    "abs all any ascii bin bool bytearray bytes callable chr complex dict divmod enumerate "
    "filter float format frozenset hash hex int isinstance issubclass iter len list map max "
    "min next oct ord pow range repr reversed round set slice sorted str sum tuple zip type "
    "object super property staticmethod classmethod dir id NotImplemented Ellipsis True "
    "False None BaseException Exception ArithmeticError AssertionError AttributeError "
    "IndexError KeyError LookupError NameError NotImplementedError OverflowError "
    "RuntimeError StopIteration TypeError ValueError ZeroDivisionError UnicodeError "
    "UnicodeDecodeError UnicodeEncodeError"
).split()


class CpuLimitExceeded(BaseException):
    """Raised inside user code when the call's CPU budget is spent.

    A BaseException so that `except Exception` in user code does not swallow it.
    """


# ---------------------------------------------------------------------------
# Protocol I/O

_stdin = sys.stdin.buffer
_proto = None  # set in main(): a private duplicate of the original stdout


def _send(text):
    try:
        _proto.write(text.encode("ascii"))  # _encode escapes all non-ASCII
        _proto.write(b"\n")
        _proto.flush()
    except OSError:
        os._exit(1)  # the host is gone; nobody is left to report to


# ---------------------------------------------------------------------------
# State of the call in progress (a worker runs one call at a time)


class _Call:
    def __init__(self):
        self.start(None, 0.0)

    def start(self, call_id, cpu_seconds):
        self.id = call_id
        self.cpu_seconds = cpu_seconds
        self.armed = False  # the CPU limit applies: SIGXCPU raises in user code
        self.in_io = False  # a Redis exchange is on the wire: defer SIGXCPU
        self.pending = False  # SIGXCPU arrived during that exchange
        self.hits = 0  # SIGXCPUs seen during this call
        self.stdout = []
        self.stdout_room = STDOUT_LIMIT  # -1 once truncated
        self.modules = {}  # this call's module views, by name


_call = _Call()
_default_cpu_seconds = 2.0


# ---------------------------------------------------------------------------
# Per-call CPU limit

_CPU_HARD = resource.getrlimit(resource.RLIMIT_CPU)[1]


def _limit_cpu(seconds):
    # RLIMIT_CPU has whole-second resolution, so the budget is rounded up.
    soft = math.ceil(time.process_time() + seconds)
    if _CPU_HARD != resource.RLIM_INFINITY:
        soft = min(soft, _CPU_HARD)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, _CPU_HARD))


def _unlimit_cpu():
    resource.setrlimit(resource.RLIMIT_CPU, (_CPU_HARD, _CPU_HARD))


def _on_sigxcpu(signum, frame):
    if not _call.armed:
        return  # a late signal after the call ended
    if _call.in_io:
        _call.pending = True  # raising mid-exchange would desynchronise the pipe
        return
    _cpu_exceeded()


def _cpu_exceeded():
    _call.hits += 1
    if _call.hits > 1:
        # The kernel repeats SIGXCPU every CPU second: user code swallowed the
        # first CpuLimitExceeded (bare `except:`). Report and stop for good.
        _send(_error_result(_cpu_error()))
        os._exit(1)
    raise CpuLimitExceeded


def _cpu_error():
    return {
        "kind": "cpu_limit",
        "message": f"CPU time limit of {_call.cpu_seconds:g}s exceeded",
    }


# Calls reuse checked and compiled code: key (code, function) -> (code object,
# spec) or the first error as a result-error dict.
_prepared = {}


def _prepare(code, function):
    key = (code, function)
    entry = _prepared.get(key)
    if entry is None:
        code_obj, errors, spec = _check(code, function, None)
        if errors:
            line, column, message, kind = errors[0]
            entry = {"kind": kind, "message": message, "line": line, "column": column}
        else:
            entry = (code_obj, spec)
        if len(_prepared) >= CACHE_LIMIT:
            _prepared.clear()
        _prepared[key] = entry
    return entry


# ---------------------------------------------------------------------------
# Restricted builtins


def _attr_name(name):
    # Only exact str: a str subclass could fake startswith() or __eq__/__hash__.
    if type(name) is not str:
        raise TypeError("attribute name must be a str")
    return name


def _check_attr(name):
    if name.startswith("_") or name in INTERNAL_ATTRS:
        raise AttributeError(f"attribute {name!r} is not allowed in sandboxed code")


def _safe_getattr(obj, name, *default):
    _check_attr(_attr_name(name))
    return getattr(obj, name, *default)


def _safe_hasattr(obj, name):
    name = _attr_name(name)
    if name.startswith("_") or name in INTERNAL_ATTRS:
        return False
    return hasattr(obj, name)


def _safe_attrgetter(attr, *attrs):
    for name in (attr, *attrs):
        for part in _attr_name(name).split("."):
            _check_attr(part)
    return operator.attrgetter(attr, *attrs)


def _safe_methodcaller(name, /, *args, **kwargs):
    _check_attr(_attr_name(name))
    return operator.methodcaller(name, *args, **kwargs)


def _print(*values, sep=" ", end="\n", file=None, flush=False):
    """print() into the call's captured stdout (`file` and `flush` are ignored)."""
    if sep is None:
        sep = " "
    if end is None:
        end = "\n"
    if not isinstance(sep, str) or not isinstance(end, str):
        raise TypeError("sep and end must be None or a string")
    room = _call.stdout_room
    if room < 0:
        return
    # str.join and "".join always build an exact str, whatever str subclasses
    # user code passes in, so worker code never handles user-defined methods.
    text = "".join([str.join(sep, [str(v) for v in values]), end])
    if len(text) > room:
        text = text[:room] + STDOUT_TRUNCATED
        _call.stdout_room = -1
    else:
        _call.stdout_room = room - len(text)
    _call.stdout.append(text)


# ---------------------------------------------------------------------------
# Sanitised modules

_DROP = object()

# Public objects that would undo the sandbox, by identity, wherever a module
# exposes them: replaced by safe versions or dropped.
_REPLACEMENTS = {
    id(builtins.getattr): _safe_getattr,
    id(builtins.hasattr): _safe_hasattr,
    id(operator.attrgetter): _safe_attrgetter,
    id(operator.methodcaller): _safe_methodcaller,
    # Formatter.get_field resolves arbitrary attribute paths ("0.__class__").
    id(string.Formatter): _DROP,
    # get_type_hints evaluates string annotations: arbitrary, unchecked code.
    id(typing.get_type_hints): _DROP,
    # register() calls get_type_hints on the annotations of the registered function.
    id(functools.singledispatch): _DROP,
    id(functools.singledispatchmethod): _DROP,
}
_REPLACEMENTS.update(
    (id(getattr(builtins, name)), _DROP) for name in FORBIDDEN_BUILTINS if hasattr(builtins, name)
)
_DROPPED_NAMES = {
    # Writes enum members into sys.modules[cls.__module__], and the functional
    # Enum API lets code choose that module (e.g. the worker's own __main__).
    "enum": {"global_enum"},
}

_public_attrs_cache = {}


def _public_attrs(name):
    """A module's public, non-module attributes (made safe), imported on first use."""
    attrs = _public_attrs_cache.get(name)
    if attrs is None:
        module = importlib.import_module(name)
        dropped = _DROPPED_NAMES.get(name, ())
        attrs = {}
        for key, value in vars(module).items():
            if key.startswith("_") or key in dropped or isinstance(value, types.ModuleType):
                continue
            value = _REPLACEMENTS.get(id(value), value)
            if value is not _DROP:
                attrs[key] = value
        _public_attrs_cache[name] = attrs
    return attrs


def _module_view(name, populate):
    """This call's view of module `name`: a plain namespace, fresh every call so
    that assigning to it cannot affect later calls."""
    view = _call.modules.get(name)
    if view is None:
        attrs = _public_attrs(name) if populate else {}
        # A name that is not a real module, so that `from m import x` can never
        # fall back to sys.modules["m.x"] (the real, unsanitised submodule).
        view = types.ModuleType(f"{name} (sandboxed)")
        view.__dict__.update(attrs)
        _call.modules[name] = view
    return view


def _restricted_import(name, globals=None, locals=None, fromlist=(), level=0):
    if level:
        raise ImportError("relative imports are not allowed")
    if not (_module_allowed(name) or fromlist and _import_from_allowed(name, fromlist)):
        # User import statements were checked statically, so this is C code
        # called from user code (e.g. datetime.strptime importing _strptime):
        # PyImport_Import calls the caller's __import__ only for its side effect
        # and then takes the real module from sys.modules itself. Import it,
        # but hand back nothing.
        importlib.import_module(name)
        return types.ModuleType(f"{name} (sandboxed)")
    if fromlist:
        view = _module_view(name, _module_allowed(name))
        for item in fromlist:
            sub = f"{name}.{item}"
            if item != "*" and not item.startswith("_") and item not in view.__dict__ and _module_allowed(sub):
                try:
                    setattr(view, item, _module_view(sub, True))
                except ImportError:
                    pass  # not a submodule: the import statement reports the missing name
        return view
    # `import a.b.c` binds `a`; chain views a -> b -> c (a parent that is not
    # itself allowed, like `urllib` for `urllib.parse`, stays empty).
    parts = name.split(".")
    top = parent = _module_view(parts[0], _module_allowed(parts[0]))
    for i in range(1, len(parts)):
        sub = ".".join(parts[: i + 1])
        child = _module_view(sub, _module_allowed(sub))
        setattr(parent, parts[i], child)
        parent = child
    return top


SAFE_BUILTINS = {name: getattr(builtins, name) for name in SAFE_BUILTIN_NAMES}
SAFE_BUILTINS.update(
    print=_print,
    getattr=_safe_getattr,
    hasattr=_safe_hasattr,
    __build_class__=builtins.__build_class__,
    __import__=_restricted_import,
    __name__=MODULE_NAME,
)


# ---------------------------------------------------------------------------
# Redis proxy: redis-py's methods, arguments and reply shapes (those of
# redis.Redis(decode_responses=True)) on top of the host's command table, which
# checks every command and keeps its keys under the feature's prefix. The pipe
# I/O stays in worker globals, which user code cannot reach (no __globals__,
# no frames); the proxy's classes are read-only, and every call gets fresh
# namespaces, so nothing user code changes outlives its call.


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


def _float(value):
    return None if value is None else float(value)


def _to_set(reply):
    return set(reply or ())


def _pairs(cast):
    def convert(reply):
        return [(member, cast(score)) for member, score in reply or ()]

    return convert


def _rank(reply):
    if type(reply) is list:
        return [reply[0], _float(reply[1])]
    return reply


def _entries(reply):
    return [(entry_id, fields) for entry_id, fields in reply or ()]


def _xread(reply):
    return [[stream, _entries(entries)] for stream, entries in reply or ()]


def _scan_reply(convert=None):
    def scan_reply(reply):
        cursor, items = reply
        return cursor, (items if convert is None else convert(items))

    return scan_reply


def _scan_args(command, match, count):
    if match is not None:
        command += ["MATCH", match]
    if count is not None:
        command += ["COUNT", count]
    return command


def _pages(fetch, items=None):
    """Iterates over every page of a SCAN-like cursor: fetch(cursor) -> (cursor, page)."""
    cursor = 0
    while True:
        cursor, page = fetch(cursor)
        yield from (page if items is None else items(page))
        if cursor == 0:
            return


def _list_or_args(keys, args):
    if isinstance(keys, (str, bytes)):
        return [keys, *args]
    return [*keys, *args]


def _flags(**flags):
    return [word for word, on in flags.items() if on]


def _json_text(value):
    try:
        return _encode(value)
    except (TypeError, ValueError) as exc:
        raise _DataError(f"cannot store as JSON: {exc}") from None


def _search_result(reply):
    docs = []
    for result in reply.get("results") or ():
        fields = dict(result.get("fields") or {})
        fields.update(id=result.get("key"), payload=None)
        docs.append(types.SimpleNamespace(**fields))
    return types.SimpleNamespace(total=reply.get("total"), docs=docs)


def _zaggregate(command, dest, keys, aggregate=None, withscores=False):
    pieces = [command]
    if dest is not None:
        pieces.append(dest)
    weights = None
    if isinstance(keys, dict):
        keys, weights = list(keys.keys()), list(keys.values())
    keys = list(keys)
    pieces += [len(keys), *keys]
    if weights:
        pieces += ["WEIGHTS", *weights]
    if aggregate:
        if str(aggregate).upper() not in ("SUM", "MIN", "MAX"):
            raise _DataError("aggregate can be sum, min or max.")
        pieces += ["AGGREGATE", str(aggregate).upper()]
    if withscores:
        pieces.append("WITHSCORES")
    return pieces


# Methods that only make sense on the client (iterators), not in pipelines.
_CLIENT_ONLY = frozenset("scan_iter hscan_iter sscan_iter zscan_iter".split())


def _commands(x):
    """redis-py's command methods, each sending its command through
    `x(command, callback)`: at once for the client, queued for a pipeline.
    (Names like `set` and `type` shadow builtins in here only.)"""

    # Keys
    def delete(*names):
        return x(["DEL", *names], None)

    def unlink(*names):
        return x(["UNLINK", *names], None)

    def exists(*names):
        return x(["EXISTS", *names], None)

    def touch(*args):
        return x(["TOUCH", *args], None)

    def expire(name, time, nx=False, xx=False, gt=False, lt=False):
        return x(["EXPIRE", name, time, *_flags(NX=nx, XX=xx, GT=gt, LT=lt)], None)

    def pexpire(name, time, nx=False, xx=False, gt=False, lt=False):
        return x(["PEXPIRE", name, time, *_flags(NX=nx, XX=xx, GT=gt, LT=lt)], None)

    def expireat(name, when, nx=False, xx=False, gt=False, lt=False):
        return x(["EXPIREAT", name, when, *_flags(NX=nx, XX=xx, GT=gt, LT=lt)], None)

    def pexpireat(name, when, nx=False, xx=False, gt=False, lt=False):
        return x(["PEXPIREAT", name, when, *_flags(NX=nx, XX=xx, GT=gt, LT=lt)], None)

    def persist(name):
        return x(["PERSIST", name], None)

    def ttl(name):
        return x(["TTL", name], None)

    def pttl(name):
        return x(["PTTL", name], None)

    def expiretime(key):
        return x(["EXPIRETIME", key], None)

    def pexpiretime(key):
        return x(["PEXPIRETIME", key], None)

    def type(name):
        return x(["TYPE", name], None)

    def rename(src, dst):
        return x(["RENAME", src, dst], None)

    def renamenx(src, dst):
        return x(["RENAMENX", src, dst], None)

    def copy(source, destination, destination_db=None, replace=False):
        command = ["COPY", source, destination]
        if destination_db is not None:
            command += ["DB", destination_db]  # refused by the host: another database
        if replace:
            command.append("REPLACE")
        return x(command, None)

    def scan(cursor=0, match=None, count=None, _type=None, **kwargs):
        command = _scan_args(["SCAN", cursor], match, count)
        if _type is not None:
            command += ["TYPE", _type]
        return x(command, tuple)

    def scan_iter(match=None, count=None, _type=None, **kwargs):
        return _pages(lambda cursor: scan(cursor, match, count, _type))

    def _sort(command, name, start, num, by, get, desc, alpha, store):
        pieces = [command, name]
        if by is not None:
            pieces += ["BY", by]  # refused by the host: patterns reach other keys
        if (start is None) != (num is None):
            raise _DataError("``start`` and ``num`` must both be specified")
        if start is not None:
            pieces += ["LIMIT", start, num]
        if get is not None:
            for pattern in [get] if isinstance(get, (str, bytes)) else get:
                pieces += ["GET", pattern]
        if desc:
            pieces.append("DESC")
        if alpha:
            pieces.append("ALPHA")
        if store is not None:
            pieces += ["STORE", store]
        return x(pieces, None)

    def sort(name, start=None, num=None, by=None, get=None, desc=False, alpha=False, store=None, groups=False):
        return _sort("SORT", name, start, num, by, get, desc, alpha, store)

    def sort_ro(key, start=None, num=None, by=None, get=None, desc=False, alpha=False):
        return _sort("SORT_RO", key, start, num, by, get, desc, alpha, None)

    def ping(**kwargs):
        return x(["PING"], None)

    def keys(pattern="*", **kwargs):
        return x(["KEYS", pattern], None)  # refused by the host, saying to use scan_iter

    def flushdb(asynchronous=False, **kwargs):
        return x(["FLUSHDB"], None)  # refused by the host

    def flushall(asynchronous=False, **kwargs):
        return x(["FLUSHALL"], None)  # refused by the host

    def execute_command(*args, **options):
        return x(list(args), None)

    # Strings
    def get(name):
        return x(["GET", name], None)

    def set(name, value, ex=None, px=None, nx=False, xx=False, keepttl=False, get=False, exat=None, pxat=None):
        command = ["SET", name, value]
        for word, amount in (("EX", ex), ("PX", px), ("EXAT", exat), ("PXAT", pxat)):
            if amount is not None:
                command += [word, amount]
        command += _flags(KEEPTTL=keepttl, NX=nx, XX=xx, GET=get)
        return x(command, None)

    def setnx(name, value):
        return x(["SETNX", name, value], None)

    def setex(name, time, value):
        return x(["SETEX", name, time, value], None)

    def psetex(name, time_ms, value):
        return x(["PSETEX", name, time_ms, value], None)

    def getset(name, value):
        return x(["GETSET", name, value], None)

    def getdel(name):
        return x(["GETDEL", name], None)

    def getex(name, ex=None, px=None, exat=None, pxat=None, persist=False):
        command = ["GETEX", name]
        for word, amount in (("EX", ex), ("PX", px), ("EXAT", exat), ("PXAT", pxat)):
            if amount is not None:
                command += [word, amount]
        return x(command + _flags(PERSIST=persist), None)

    def mget(keys, *args):
        return x(["MGET", *_list_or_args(keys, args)], None)

    def mset(mapping):
        return x(["MSET", *[part for pair in mapping.items() for part in pair]], None)

    def msetnx(mapping):
        return x(["MSETNX", *[part for pair in mapping.items() for part in pair]], None)

    def incr(name, amount=1):
        return x(["INCRBY", name, amount], None)

    def decr(name, amount=1):
        return x(["DECRBY", name, amount], None)

    def incrbyfloat(name, amount=1.0):
        return x(["INCRBYFLOAT", name, amount], _float)

    def append(key, value):
        return x(["APPEND", key, value], None)

    def strlen(name):
        return x(["STRLEN", name], None)

    def getrange(key, start, end):
        return x(["GETRANGE", key, start, end], None)

    def setrange(name, offset, value):
        return x(["SETRANGE", name, offset, value], None)

    # Hashes
    def hget(name, key):
        return x(["HGET", name, key], None)

    def hset(name, key=None, value=None, mapping=None, items=None):
        pieces = [] if key is None else [key, value]
        if items:
            pieces += items
        if mapping:
            for pair in mapping.items():
                pieces += pair
        if not pieces:
            raise _DataError("'hset' with no key value pairs")
        return x(["HSET", name, *pieces], None)

    def hsetnx(name, key, value):
        return x(["HSETNX", name, key, value], None)

    def hmset(name, mapping):
        if not mapping:
            raise _DataError("'hmset' with 'mapping' of length 0")
        return x(["HMSET", name, *[part for pair in mapping.items() for part in pair]], None)

    def hmget(name, keys, *args):
        return x(["HMGET", name, *_list_or_args(keys, args)], None)

    def hgetall(name):
        return x(["HGETALL", name], None)

    def hdel(name, *keys):
        return x(["HDEL", name, *keys], None)

    def hexists(name, key):
        return x(["HEXISTS", name, key], None)

    def hincrby(name, key, amount=1):
        return x(["HINCRBY", name, key, amount], None)

    def hincrbyfloat(name, key, amount=1.0):
        return x(["HINCRBYFLOAT", name, key, amount], _float)

    def hkeys(name):
        return x(["HKEYS", name], None)

    def hvals(name):
        return x(["HVALS", name], None)

    def hlen(name):
        return x(["HLEN", name], None)

    def hstrlen(name, key):
        return x(["HSTRLEN", name, key], None)

    def hscan(name, cursor=0, match=None, count=None, no_values=None):
        return x(_scan_args(["HSCAN", name, cursor], match, count), tuple)

    def hscan_iter(name, match=None, count=None, no_values=None):
        return _pages(lambda cursor: hscan(name, cursor, match, count), dict.items)

    # Lists
    def lpush(name, *values):
        return x(["LPUSH", name, *values], None)

    def rpush(name, *values):
        return x(["RPUSH", name, *values], None)

    def lpushx(name, *values):
        return x(["LPUSHX", name, *values], None)

    def rpushx(name, *values):
        return x(["RPUSHX", name, *values], None)

    def lpop(name, count=None):
        return x(["LPOP", name] + ([] if count is None else [count]), None)

    def rpop(name, count=None):
        return x(["RPOP", name] + ([] if count is None else [count]), None)

    def lrange(name, start, end):
        return x(["LRANGE", name, start, end], None)

    def llen(name):
        return x(["LLEN", name], None)

    def lindex(name, index):
        return x(["LINDEX", name, index], None)

    def lset(name, index, value):
        return x(["LSET", name, index, value], None)

    def lrem(name, count, value):
        return x(["LREM", name, count, value], None)

    def ltrim(name, start, end):
        return x(["LTRIM", name, start, end], None)

    def linsert(name, where, refvalue, value):
        return x(["LINSERT", name, where, refvalue, value], None)

    def lpos(name, value, rank=None, count=None, maxlen=None):
        command = ["LPOS", name, value]
        for word, option in (("RANK", rank), ("COUNT", count), ("MAXLEN", maxlen)):
            if option is not None:
                command += [word, option]
        return x(command, None)

    def lmove(first_list, second_list, src="LEFT", dest="RIGHT"):
        return x(["LMOVE", first_list, second_list, src, dest], None)

    def rpoplpush(src, dst):
        return x(["RPOPLPUSH", src, dst], None)

    # Sets
    def sadd(name, *values):
        return x(["SADD", name, *values], None)

    def srem(name, *values):
        return x(["SREM", name, *values], None)

    def smembers(name):
        return x(["SMEMBERS", name], _to_set)

    def sismember(name, value):
        return x(["SISMEMBER", name, value], None)

    def smismember(name, values, *args):
        return x(["SMISMEMBER", name, *_list_or_args(values, args)], None)

    def scard(name):
        return x(["SCARD", name], None)

    def spop(name, count=None):
        return x(["SPOP", name] + ([] if count is None else [count]), None)

    def srandmember(name, number=None):
        return x(["SRANDMEMBER", name] + ([] if number is None else [number]), None)

    def sinter(keys, *args):
        return x(["SINTER", *_list_or_args(keys, args)], _to_set)

    def sunion(keys, *args):
        return x(["SUNION", *_list_or_args(keys, args)], _to_set)

    def sdiff(keys, *args):
        return x(["SDIFF", *_list_or_args(keys, args)], _to_set)

    def sinterstore(dest, keys, *args):
        return x(["SINTERSTORE", dest, *_list_or_args(keys, args)], None)

    def sunionstore(dest, keys, *args):
        return x(["SUNIONSTORE", dest, *_list_or_args(keys, args)], None)

    def sdiffstore(dest, keys, *args):
        return x(["SDIFFSTORE", dest, *_list_or_args(keys, args)], None)

    def smove(src, dst, value):
        return x(["SMOVE", src, dst, value], None)

    def sscan(name, cursor=0, match=None, count=None):
        return x(_scan_args(["SSCAN", name, cursor], match, count), tuple)

    def sscan_iter(name, match=None, count=None):
        return _pages(lambda cursor: sscan(name, cursor, match, count))

    # Sorted sets
    def zadd(name, mapping, nx=False, xx=False, ch=False, incr=False, gt=False, lt=False):
        if not mapping:
            raise _DataError("ZADD requires at least one element/score pair")
        if nx and xx:
            raise _DataError("ZADD allows either 'nx' or 'xx', not both")
        if incr and len(mapping) != 1:
            raise _DataError("ZADD option 'incr' only works when passing a single element/score pair")
        command = ["ZADD", name, *_flags(NX=nx, XX=xx, GT=gt, LT=lt, CH=ch, INCR=incr)]
        for member, score in mapping.items():
            command += [score, member]
        return x(command, _float if incr else None)

    def zincrby(name, amount, value):
        return x(["ZINCRBY", name, amount, value], _float)

    def zscore(name, value):
        return x(["ZSCORE", name, value], _float)

    def zmscore(key, members):
        if not members:
            raise _DataError("ZMSCORE members must be a non-empty list")
        return x(["ZMSCORE", key, *members], lambda reply: [_float(s) for s in reply])

    def _limit(offset, num):
        if (offset is None) != (num is None):
            raise _DataError("``offset`` and ``num`` must both be specified")
        return [] if offset is None else ["LIMIT", offset, num]

    def zrange(name, start, end, desc=False, withscores=False, score_cast_func=float,
               byscore=False, bylex=False, offset=None, num=None):
        if bylex and withscores:
            raise _DataError("``withscores`` not supported in combination with ``bylex``")
        command = ["ZRANGE", name, start, end, *_flags(BYSCORE=byscore, BYLEX=bylex, REV=desc)]
        command += _limit(offset, num) + _flags(WITHSCORES=withscores)
        return x(command, _pairs(score_cast_func) if withscores else None)

    def zrevrange(name, start, end, withscores=False, score_cast_func=float):
        command = ["ZREVRANGE", name, start, end, *_flags(WITHSCORES=withscores)]
        return x(command, _pairs(score_cast_func) if withscores else None)

    def zrangebyscore(name, min, max, start=None, num=None, withscores=False, score_cast_func=float):
        command = ["ZRANGEBYSCORE", name, min, max, *_limit(start, num), *_flags(WITHSCORES=withscores)]
        return x(command, _pairs(score_cast_func) if withscores else None)

    def zrevrangebyscore(name, max, min, start=None, num=None, withscores=False, score_cast_func=float):
        command = ["ZREVRANGEBYSCORE", name, max, min, *_limit(start, num), *_flags(WITHSCORES=withscores)]
        return x(command, _pairs(score_cast_func) if withscores else None)

    def zrangebylex(name, min, max, start=None, num=None):
        return x(["ZRANGEBYLEX", name, min, max, *_limit(start, num)], None)

    def zrevrangebylex(name, max, min, start=None, num=None):
        return x(["ZREVRANGEBYLEX", name, max, min, *_limit(start, num)], None)

    def zrank(name, value, withscore=False):
        return x(["ZRANK", name, value, *_flags(WITHSCORE=withscore)], _rank)

    def zrevrank(name, value, withscore=False):
        return x(["ZREVRANK", name, value, *_flags(WITHSCORE=withscore)], _rank)

    def zcard(name):
        return x(["ZCARD", name], None)

    def zcount(name, min, max):
        return x(["ZCOUNT", name, min, max], None)

    def zlexcount(name, min, max):
        return x(["ZLEXCOUNT", name, min, max], None)

    def zrem(name, *values):
        return x(["ZREM", name, *values], None)

    def zremrangebyrank(name, min, max):
        return x(["ZREMRANGEBYRANK", name, min, max], None)

    def zremrangebyscore(name, min, max):
        return x(["ZREMRANGEBYSCORE", name, min, max], None)

    def zremrangebylex(name, min, max):
        return x(["ZREMRANGEBYLEX", name, min, max], None)

    def zpopmin(name, count=None):
        return x(["ZPOPMIN", name] + ([] if count is None else [count]), _pairs(float))

    def zpopmax(name, count=None):
        return x(["ZPOPMAX", name] + ([] if count is None else [count]), _pairs(float))

    def zunionstore(dest, keys, aggregate=None):
        return x(_zaggregate("ZUNIONSTORE", dest, keys, aggregate), None)

    def zinterstore(dest, keys, aggregate=None):
        return x(_zaggregate("ZINTERSTORE", dest, keys, aggregate), None)

    def zdiffstore(dest, keys):
        return x(_zaggregate("ZDIFFSTORE", dest, keys), None)

    def zunion(keys, aggregate=None, withscores=False, score_cast_func=float):
        command = _zaggregate("ZUNION", None, keys, aggregate, withscores)
        return x(command, _pairs(score_cast_func) if withscores else None)

    def zinter(keys, aggregate=None, withscores=False):
        command = _zaggregate("ZINTER", None, keys, aggregate, withscores)
        return x(command, _pairs(float) if withscores else None)

    def zdiff(keys, withscores=False):
        command = _zaggregate("ZDIFF", None, keys, None, withscores)
        return x(command, _pairs(float) if withscores else None)

    def zrangestore(dest, name, start, end, byscore=False, bylex=False, desc=False, offset=None, num=None):
        command = ["ZRANGESTORE", dest, name, start, end, *_flags(BYSCORE=byscore, BYLEX=bylex, REV=desc)]
        return x(command + _limit(offset, num), None)

    def zscan(name, cursor=0, match=None, count=None, score_cast_func=float):
        return x(_scan_args(["ZSCAN", name, cursor], match, count), _scan_reply(_pairs(score_cast_func)))

    def zscan_iter(name, match=None, count=None, score_cast_func=float):
        return _pages(lambda cursor: zscan(name, cursor, match, count, score_cast_func))

    # Streams
    def xadd(name, fields, id="*", maxlen=None, approximate=True, nomkstream=False, minid=None, limit=None):
        if maxlen is not None and minid is not None:
            raise _DataError("Only one of ```maxlen``` or ```minid``` may be specified")
        if not isinstance(fields, dict) or not fields:
            raise _DataError("XADD fields must be a non-empty dict")
        command = ["XADD", name]
        for word, threshold in (("MAXLEN", maxlen), ("MINID", minid)):
            if threshold is not None:
                command += [word] + (["~"] if approximate else []) + [threshold]
        if limit is not None:
            command += ["LIMIT", limit]
        command += _flags(NOMKSTREAM=nomkstream) + [id]
        for pair in fields.items():
            command += pair
        return x(command, None)

    def xrange(name, min="-", max="+", count=None):
        command = ["XRANGE", name, min, max] + ([] if count is None else ["COUNT", count])
        return x(command, _entries)

    def xrevrange(name, max="+", min="-", count=None):
        command = ["XREVRANGE", name, max, min] + ([] if count is None else ["COUNT", count])
        return x(command, _entries)

    def xlen(name):
        return x(["XLEN", name], None)

    def xdel(name, *ids):
        return x(["XDEL", name, *ids], None)

    def xtrim(name, maxlen=None, approximate=True, minid=None, limit=None):
        if (maxlen is None) == (minid is None):
            raise _DataError("Only one of ``maxlen`` or ``minid`` may be specified")
        command = ["XTRIM", name, "MAXLEN" if maxlen is not None else "MINID"]
        command += (["~"] if approximate else []) + [maxlen if maxlen is not None else minid]
        if limit is not None:
            command += ["LIMIT", limit]
        return x(command, None)

    def xread(streams, count=None, block=None):
        if not isinstance(streams, dict) or not streams:
            raise _DataError("XREAD streams must be a non empty dict")
        command = ["XREAD"]
        if block is not None:
            command += ["BLOCK", block]  # refused by the host: it would hold the shared connection
        if count is not None:
            command += ["COUNT", count]
        command += ["STREAMS", *streams.keys(), *streams.values()]
        return x(command, _xread)

    def json():
        return types.SimpleNamespace(**_json_commands(x))

    def ft(index_name="idx"):
        def search(query, query_params=None):
            if not isinstance(query, str):
                raise _DataError("sandboxed search takes the query as a string")
            command = ["FT.SEARCH", index_name, query]
            if query_params:
                command += ["PARAMS", 2 * len(query_params)]
                for pair in query_params.items():
                    command += pair
                command += ["DIALECT", 2]
            return x(command, _search_result)

        return types.SimpleNamespace(search=search)

    methods = {name: fn for name, fn in locals().items() if callable(fn) and name != "x" and not name.startswith("_")}
    methods.update(incrby=incr, decrby=decr)
    return methods


def _json_commands(x):
    """redis-py's r.json() methods (RedisJSON), sending through `x`."""

    def set(name, path, obj, nx=False, xx=False, decode_keys=False):
        if nx and xx:
            raise Exception("nx and xx are mutually exclusive: use one, the other or neither - but not both")
        return x(["JSON.SET", name, path, _json_text(obj), *_flags(NX=nx, XX=xx)], None)

    def get(name, *args, no_escapes=False):
        return x(["JSON.GET", name, *(args or ["."])], None)

    def delete(key, path="."):
        return x(["JSON.DEL", key, path], None)

    def forget(key, path="."):
        return x(["JSON.FORGET", key, path], None)

    def mget(keys, path):
        return x(["JSON.MGET", *keys, path], None)

    def mset(triplets):
        command = ["JSON.MSET"]
        for key, path, obj in triplets:
            command += [key, path, _json_text(obj)]
        return x(command, None)

    def numincrby(name, path, number):
        return x(["JSON.NUMINCRBY", name, path, _json_text(number)], None)

    def nummultby(name, path, number):
        return x(["JSON.NUMMULTBY", name, path, _json_text(number)], None)

    def strappend(name, value, path="."):
        return x(["JSON.STRAPPEND", name, path, _json_text(value)], None)

    def strlen(name, path=None):
        return x(["JSON.STRLEN", name] + ([] if path is None else [path]), None)

    def arrappend(name, path=".", *args):
        return x(["JSON.ARRAPPEND", name, path, *[_json_text(a) for a in args]], None)

    def arrinsert(name, path, index, *args):
        return x(["JSON.ARRINSERT", name, path, index, *[_json_text(a) for a in args]], None)

    def arrlen(name, path=None):
        return x(["JSON.ARRLEN", name] + ([] if path is None else [path]), None)

    def arrpop(name, path=".", index=-1):
        return x(["JSON.ARRPOP", name, path, index], None)

    def arrindex(name, path, scalar, start=None, stop=None):
        command = ["JSON.ARRINDEX", name, path, _json_text(scalar)]
        if start is not None:
            command.append(start)
            if stop is not None:
                command.append(stop)
        return x(command, None)

    def arrtrim(name, path, start, stop):
        return x(["JSON.ARRTRIM", name, path, start, stop], None)

    def objkeys(name, path="."):
        return x(["JSON.OBJKEYS", name, path], None)

    def objlen(name, path="."):
        return x(["JSON.OBJLEN", name, path], None)

    def type(name, path=None):
        return x(["JSON.TYPE", name] + ([] if path is None else [path]), None)

    def toggle(name, path="."):
        return x(["JSON.TOGGLE", name, path], None)

    def clear(name, path="."):
        return x(["JSON.CLEAR", name, path], None)

    return {name: fn for name, fn in locals().items() if callable(fn) and name != "x"}


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


# ---------------------------------------------------------------------------
# Running a call


def _error_result(error, recycle=False):
    result = {"type": "result", "id": _call.id, "ok": False, "error": error, "stdout": "".join(_call.stdout)}
    if recycle:
        result["recycle"] = True  # the host replaces this worker
    return _encode(result)


def _handle_call(request):
    call_id = request.get("id")
    code = request.get("code")
    function = request.get("function")
    args = request.get("args", {})
    seconds = request.get("cpu_seconds") or _default_cpu_seconds
    _call.start(call_id, seconds)
    if not (isinstance(code, str) and isinstance(function, str) and isinstance(args, dict)):
        return _error_result({"kind": "exception", "message": "bad call request: needs code, function and args"})
    prepared = _prepare(code, function)
    if isinstance(prepared, dict):
        return _error_result(prepared)
    code_obj, spec = prepared
    kwargs = {}
    for name, has_default in spec:
        if name in args:
            kwargs[name] = args[name]
        elif not has_default:
            kwargs[name] = None

    namespace = {
        "__builtins__": SAFE_BUILTINS,
        "__name__": MODULE_NAME,
        "json": _module_view("json", True),
        "redis": _redis_proxy(),
    }
    # The signal handler raises only while `armed`; both assignments sit inside
    # the try, and each except clause disarms first (no check point in between),
    # so CpuLimitExceeded can never escape this function.
    value_json = error = None
    _limit_cpu(seconds)
    try:
        _call.armed = True
        value_json, error = _run(code_obj, namespace, function, kwargs, code)
        # Break the globals <-> functions cycles now, so user objects die here,
        # under the limit, rather than in a later garbage collection.
        namespace.clear()
        _call.armed = False
    except CpuLimitExceeded:
        _call.armed = False  # reported below, through _call.hits
    except MemoryError:
        _call.armed = False
        value_json, error = None, {"kind": "memory_limit", "message": "memory limit exceeded"}
    _unlimit_cpu()
    namespace.clear()  # only still full when a limit cut the call short
    if _call.hits:
        # Also when user code caught CpuLimitExceeded and returned anyway.
        value_json, error = None, _cpu_error()
    if error is not None:
        return _error_result(error, recycle=error["kind"] in ("cpu_limit", "memory_limit"))
    return (
        '{"type":"result","id":' + _encode(call_id) + ',"ok":true,"value":' + value_json
        + ',"stdout":' + _encode("".join(_call.stdout)) + "}"
    )


def _run(code_obj, namespace, function, kwargs, code):
    """Runs the module code and the function; returns (value JSON, None) or (None, error)."""
    try:
        exec(code_obj, namespace)
        fn = namespace.get(function)
        if not callable(fn):
            raise NameError(f"function {function!r} is not defined")
        value = fn(**kwargs)
    except (CpuLimitExceeded, MemoryError):
        raise
    except BaseException as exc:
        return None, _exception_error(exc, code)
    try:
        return _encode(value), None
    except (CpuLimitExceeded, MemoryError):
        raise
    except Exception as exc:
        return None, {"kind": "bad_output", "message": f"return value is not JSON: {exc}"}


def _exception_error(exc, code):
    """kind "exception": message, the innermost line in user code and its traceback."""
    try:
        detail = str(exc)
    except Exception:
        detail = "<unprintable exception>"
    headline = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frame_code = tb.tb_frame.f_code
        if frame_code.co_filename == SOURCE:
            frames.append((tb.tb_lineno, frame_code.co_name))
        tb = tb.tb_next
    error = {"kind": "exception", "message": headline}
    if frames:
        error["line"] = frames[-1][0]
        error["traceback"] = _format_traceback(frames, code, headline)
    return error


def _format_traceback(frames, code, headline):
    lines = _source_lines(code)
    out = ["Traceback (most recent call last):"]
    shown = frames[-TRACEBACK_FRAMES:]
    if len(frames) > len(shown):
        out.append(f"  [{len(frames) - len(shown)} earlier frames omitted]")
    previous, repeats = None, 0
    for frame in shown + [None]:  # the sentinel flushes a trailing run of repeats
        if frame == previous:
            repeats += 1
            continue
        if repeats:
            out.append(f"  [previous line repeated {repeats} more times]")
            repeats = 0
        if frame is None:
            break
        lineno, name = frame
        out.append(f"  line {lineno}, in {name}")
        if lineno and 0 < lineno <= len(lines):
            out.append("    " + lines[lineno - 1].strip())
        previous = frame
    out.append(headline)
    return "\n".join(out)


# ---------------------------------------------------------------------------
# Main loop


def _handle_check(request):
    params = request.get("params")
    _, errors, _ = _check(request.get("code", ""), request.get("function"), params)
    return _encode(
        {"type": "checked", "errors": [{"line": l, "column": c, "message": m} for l, c, m, _ in errors]}
    )


def _handle(line):
    request = None
    try:
        request = _decode(line)
        kind = request.get("type")
        if kind == "call":
            return _handle_call(request)
        if kind == "check":
            return _handle_check(request)
        if kind == "ping":
            return '{"type":"pong"}'
        raise ValueError(f"unknown request type {kind!r}")
    except Exception as exc:
        # Whatever went wrong, answer in the shape the host waits for.
        message = f"worker error: {type(exc).__name__}: {exc}"
        if isinstance(request, dict) and request.get("type") == "check":
            return _encode({"type": "checked", "errors": [{"line": 1, "column": 1, "message": message}]})
        if isinstance(request, dict) and request.get("type") == "call":
            _call.id = request.get("id")
        return _error_result({"kind": "exception", "message": message})


def main():
    global _proto, _default_cpu_seconds
    config = _decode(sys.argv[1]) if len(sys.argv) > 1 else {}
    _configure_allowed(config.get("allowed_modules") or [])
    _default_cpu_seconds = float(config.get("cpu_seconds") or _default_cpu_seconds)

    # Protocol output goes to a private copy of stdout; fds 1 and 2 become
    # /dev/null so that stray writes (C extensions, warnings) cannot corrupt it.
    _proto = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)

    sys.setrecursionlimit(RECURSION_LIMIT)
    signal.signal(signal.SIGXCPU, _on_sigxcpu)
    # Import allowed modules now, so calls never pay for it.
    for name in _allowed:
        try:
            _public_attrs(name)
        except ImportError:
            pass  # user code importing it gets the ImportError at run time
    _public_attrs("json")  # pre-bound in every call, allowed or not

    version = "%d.%d.%d" % sys.version_info[:3]
    _send(_encode({"type": "ready", "pid": os.getpid(), "python": version}))
    while True:
        line = _stdin.readline()
        if not line:
            break
        if line.strip():
            _send(_handle(line))


if __name__ == "__main__":
    main()
