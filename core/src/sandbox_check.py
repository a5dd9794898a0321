"""EOL's static check of sandboxed Python: what user code may contain.

One copy serves everywhere code is checked: the sandbox worker (this file is
prepended to it, before every call and for `eol check`) and the operator (run
as `python3 -I -S -c`, with `_check_main()`, before a Feature is accepted). It
parses and compiles, never runs, the code.
"""

import ast
import json
import sys

SOURCE = "<operation>"  # filename user code is compiled under, to find its frames

FORBIDDEN_BUILTINS = frozenset(
    "eval exec open compile __import__ globals locals vars breakpoint input memoryview "
    "exit quit help delattr setattr".split()
)

# Attributes without a leading underscore that still lead to frames, code
# objects or globals, and from there out of the sandbox.
INTERNAL_ATTRS = frozenset(
    "gi_frame gi_code gi_yieldfrom cr_frame cr_code cr_await ag_frame ag_code ag_await "
    "f_globals f_locals f_builtins f_back f_code tb_frame tb_next co_code func_globals mro".split()
)

# The modules user code may import (set from the host's configuration).
_allowed = frozenset()
_allowed_text = ""  # for error messages


def _configure_allowed(modules):
    global _allowed, _allowed_text
    _allowed = frozenset(modules)
    _allowed_text = ", ".join(modules)


def _module_allowed(name):
    """Allowed: listed exactly, or inside a listed top-level package."""
    return name in _allowed or name.partition(".")[0] in _allowed


def _import_from_allowed(module, names):
    """`from module import names` is fine if `module` is, or every name is an allowed submodule."""
    return _module_allowed(module) or all(f"{module}.{n}" in _allowed for n in names)


def _source_lines(code):
    # Python's own line breaks only (str.splitlines also splits on \f, \x1c, ...).
    return code.replace("\r\n", "\n").replace("\r", "\n").split("\n")


class _Errors:
    """Collects (line, column, message, kind) with 1-based character columns."""

    def __init__(self, code):
        self.code = code
        self.items = []
        self._lines = None

    def add(self, line, byte_col, message, kind="forbidden"):
        # ast columns are UTF-8 byte offsets; report characters.
        if self._lines is None:
            self._lines = _source_lines(self.code)
        text = self._lines[line - 1] if 0 < line <= len(self._lines) else ""
        column = len(text.encode()[:byte_col].decode(errors="ignore")) + 1
        self.items.append((line, column, message, kind))

    def at(self, node, message):
        self.add(node.lineno, node.col_offset, message)

    def syntax(self, exc):
        if isinstance(exc, SyntaxError):
            line, column, msg = exc.lineno or 1, exc.offset or 1, exc.msg
        else:  # ValueError (null bytes) or RecursionError (absurd nesting)
            line, column, msg = 1, 1, str(exc)
        self.items.append((line, max(column, 1), f"syntax error: {msg}", "syntax"))

    def sorted(self):
        return sorted(set(self.items))


def _check(code, function, params):
    """Checks user code statically.

    Returns (code object or None, errors, parameter spec). The spec lists the
    function's parameters as (name, has_default) pairs.
    """
    errors = _Errors(code)
    try:
        tree = ast.parse(code, SOURCE)
    except (SyntaxError, ValueError, RecursionError) as exc:
        errors.syntax(exc)
        return None, errors.sorted(), ()

    def reserved(name, node):
        if name and name.startswith("__"):
            errors.at(node, f"name '{name}' is not allowed: names starting with '__' are private")

    def attribute(name, line, byte_col):
        if name.startswith("_"):
            errors.add(line, byte_col, f"attribute '{name}' is not allowed: names starting with '_' are private")
        elif name in INTERNAL_ATTRS:
            errors.add(line, byte_col, f"attribute '{name}' is not allowed: it exposes interpreter internals")

    # A forbidden builtin's name is fine once the code binds it itself (e.g. a
    # parameter called `input`): the sandbox's builtins never contain them.
    bound = set()
    builtin_uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            reserved(node.id, node)
            if not isinstance(node.ctx, ast.Load):
                bound.add(node.id)
            elif node.id in FORBIDDEN_BUILTINS:
                builtin_uses.append(node)
        elif isinstance(node, ast.Attribute):
            # Point at the attribute itself, not at the start of `a.b.c`.
            attribute(node.attr, node.end_lineno, node.end_col_offset - len(node.attr.encode()))
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            reserved(node.name, node)
            bound.add(node.name)
        elif isinstance(node, (ast.AsyncFunctionDef, ast.Await, ast.AsyncFor, ast.AsyncWith)):
            errors.at(node, "async code is not allowed in sandboxed code")
        elif isinstance(node, ast.arg):
            reserved(node.arg, node)
            bound.add(node.arg)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if not _module_allowed(alias.name):
                    errors.at(alias, f"import of '{alias.name}' is not allowed (allowed: {_allowed_text})")
                reserved(alias.asname, alias)
                bound.add(alias.asname or alias.name.partition(".")[0])
        elif isinstance(node, ast.ImportFrom):
            names = [alias.name for alias in node.names]
            if node.level:
                errors.at(node, "relative imports are not allowed")
            elif not _import_from_allowed(node.module, names):
                errors.at(node, f"import of '{node.module}' is not allowed (allowed: {_allowed_text})")
            for alias in node.names:
                attribute(alias.name, alias.lineno, alias.col_offset)
                reserved(alias.asname, alias)
                bound.add(alias.asname or alias.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            for name in node.names:
                reserved(name, node)
        elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)):
            reserved(node.name, node)
            bound.add(node.name)
        elif isinstance(node, ast.MatchMapping):
            reserved(node.rest, node)
            bound.add(node.rest)
        elif isinstance(node, ast.MatchClass):
            # `case C(attr=x)` reads C().attr: the same rules as `obj.attr`.
            for name in node.kwd_attrs:
                attribute(name, node.lineno, node.col_offset)
    for node in builtin_uses:
        if node.id not in bound:
            errors.at(node, f"use of '{node.id}' is not allowed in sandboxed code")

    spec = ()
    if function is not None:
        spec = _check_function(tree, function, params, errors)

    code_obj = None
    try:
        # Some errors (e.g. `return` outside a function) only surface here.
        code_obj = compile(tree, SOURCE, "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError) as exc:
        errors.syntax(exc)
    found = errors.sorted()
    return (None if found else code_obj), found, spec


def _check_function(tree, function, params, errors):
    target = None
    for stmt in tree.body:  # the last top-level definition wins, as at run time
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name == function:
            target = stmt
    if target is None:
        errors.add(1, 0, f"function '{function}' is not defined at the top level")
        return ()
    if isinstance(target, ast.AsyncFunctionDef):
        return ()  # already reported as async code
    args = target.args
    if args.posonlyargs:
        errors.at(target, f"function '{function}' must not have positional-only parameters")
    if args.vararg:
        errors.at(args.vararg, f"function '{function}' must not take *{args.vararg.arg}")
    if args.kwarg:
        errors.at(args.kwarg, f"function '{function}' must not take **{args.kwarg.arg}")
    # Defaults belong to the last positional parameters.
    positional = args.posonlyargs + args.args
    first_default = len(positional) - len(args.defaults)
    spec = [(a.arg, i >= first_default) for i, a in enumerate(positional)]
    spec += [(a.arg, d is not None) for a, d in zip(args.kwonlyargs, args.kw_defaults)]
    if params is not None:
        declared = {name for name, _ in spec}
        missing = sorted(set(params) - declared)
        extra = sorted(declared - set(params))
        if missing or extra:
            parts = []
            if missing:
                parts.append("missing " + ", ".join(f"'{n}'" for n in missing))
            if extra:
                parts.append("unexpected " + ", ".join(f"'{n}'" for n in extra))
            errors.at(target, f"parameters of function '{function}' do not match the operation: " + "; ".join(parts))
    return tuple(spec)


def _check_main():
    """Checks a batch for the operator: stdin holds {"allowed_modules": [...],
    "items": [{"code", "function", "params"}, ...]}; stdout gets {"results": [[{"line",
    "column", "message"}, ...], ...]}, one list of errors per item."""
    request = json.loads(sys.stdin.read())
    _configure_allowed(request.get("allowed_modules") or [])
    results = []
    for item in request.get("items") or []:
        try:
            _, errors, _ = _check(item.get("code", ""), item.get("function"), item.get("params"))
            found = [{"line": l, "column": c, "message": m} for l, c, m, _ in errors]
        except Exception as exc:  # one item's failure must not hide the others'
            found = [{"line": 1, "column": 1, "message": f"check error: {type(exc).__name__}: {exc}"}]
        results.append(found)
    sys.stdout.write(json.dumps({"results": results}))
