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
and a CPU-time limit per call; it runs the calls and answers the host.

The program is assembled by worker_script() in sandbox/mod.rs, one module
namespace from four files in this order: the static check
(core/src/sandbox_check.py), redis-py's command methods (redis_commands.py),
the `redis` module calls get (redis_proxy.py), then this file, whose main()
runs last.
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
