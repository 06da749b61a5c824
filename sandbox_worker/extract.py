"""Taking the program out of a raw LLM response, the way the seed did.

Order: drop `<think>...</think>` blocks; if there are fenced python blocks, take the one that defines the
names the tests call (else the longest); else, if the whole text parses, it is already code; else the
longest run of consecutive lines that parses. Parsing untrusted text is bounded by the response size cap.
"""

from __future__ import annotations

# `_ast`, not `ast`: the same node classes and parser without ~300 KB of helpers (unparse, literal_eval) in
# the forker, which every run copies (see forker.py).
import _ast
import re
from collections.abc import Iterator

_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL | re.IGNORECASE)
# Possessive quantifiers: a fence whose line never ends must fail in one pass, not try every split of the line
# between tag and rest (quadratic: seconds for one hostile response of 64k characters). The body runs to the
# first ``` (or the end) as a lazy `.*?` would, but in runs of non-backticks rather than one character per step
# (~8x faster on a typical block).
_FENCE = re.compile(r"```[ \t]*+([A-Za-z0-9_+-]*+)[^\n]*+\n([^`]*+(?:`(?!``)[^`]*+)*+)(?:```|\Z)", re.DOTALL)
_PYTHON_TAGS = {"", "python", "python3", "py"}
MAX_SCAN_LINES = 1000
MAX_PARSE_CHARS = 2_000_000  # bounds the search on hostile prose (~0.1-1 s of parsing)
# Lines a program can start with: keywords that open statements, decorators, assignments and calls.
_CODE_START = re.compile(
    r"(def|class|import|from|async|if|for|while|with|try|return|print|assert|raise|@)\b|@"
    r"|[A-Za-z_][\w.]*(\[[^\]]*\])?\s*([-+*/%|&^]|//|\*\*|>>|<<)?=[^=]|[A-Za-z_][\w.]*\(|#")


def looks_like_plain_code(response: str) -> bool:
    """No fences and no reasoning block: the response is used as is if it compiles (one parse, not two)."""
    return "```" not in response and "<think>" not in response.lower()


def extract_code(response: str, test_names: set[str] | None = None) -> str | None:
    """Returns the program to run, or None when the response holds no code."""
    text = _THINK.sub("", response)
    blocks = [body for tag, body in _FENCE.findall(text) if tag.lower() in _PYTHON_TAGS]
    if blocks:
        return _pick_block(blocks, test_names or set())
    if not text.strip():
        return None
    if _parses(text):
        return text
    return _longest_parsing_run(text.splitlines())


def _pick_block(blocks: list[str], test_names: set[str]) -> str:
    if len(blocks) == 1:
        return blocks[0]
    if test_names:
        scored = [(len(_defined_names(b) & test_names), len(b), b) for b in blocks]
        best = max(scored, key=lambda t: (t[0], t[1]))
        if best[0]:
            return best[2]
    return max(blocks, key=len)


def _parse(code: str) -> _ast.Module:
    """ast.parse(code)."""
    return compile(code, "<unknown>", "exec", _ast.PyCF_ONLY_AST, dont_inherit=True)  # type: ignore[return-value]


def _defined_names(code: str) -> set[str]:
    try:
        tree = _parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()
    names = set()
    for node in tree.body:
        if isinstance(node, (_ast.FunctionDef, _ast.AsyncFunctionDef, _ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, _ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, _ast.Name)}
    return names


def _parses(code: str) -> bool:
    try:
        _parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def _longest_parsing_run(lines: list[str]) -> str | None:
    """The longest span of consecutive lines that parses and holds a statement worth running.

    Spans start only at lines that look like the start of code, and the search stops at a budget of
    characters parsed (re-parsing is what makes hostile prose expensive), returning the best span so far.
    """
    lines = lines[:MAX_SCAN_LINES]
    starts = [i for i, line in enumerate(lines) if _CODE_START.match(line)]
    ends = [0] * (len(lines) + 1)  # ends[k]: characters in lines[:k], to size spans without joining them
    for k, line in enumerate(lines):
        ends[k + 1] = ends[k] + len(line) + 1
    best: tuple[int, str] | None = None
    budget = MAX_PARSE_CHARS
    for start in starts:
        for end in range(len(lines), start, -1):
            if best is not None and end - start <= best[0]:
                break
            budget -= ends[end] - ends[start]
            if budget < 0:
                return best[1] if best else None
            chunk = "\n".join(lines[start:end])
            if _has_code(chunk):
                best = (end - start, chunk)
                break
    return best[1] if best else None


def _has_code(chunk: str) -> bool:
    """A run of prose words can parse as an expression; require a statement worth running."""
    try:
        tree = _parse(chunk)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return any(not isinstance(n, _ast.Expr) or isinstance(n.value, _ast.Call) for n in tree.body)


def called_names(tests: list[str]) -> set[str]:
    """Names the tests call, to choose among several fenced blocks."""
    names: set[str] = set()
    for test in tests:
        try:
            tree = _parse(test)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        names |= {n.func.id for n in _walk(tree) if isinstance(n, _ast.Call) and isinstance(n.func, _ast.Name)}
    return names


def _walk(tree: _ast.AST) -> Iterator[_ast.AST]:
    """Every node under `tree` (ast.walk, in another order)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for field in node._fields:
            value = getattr(node, field, None)
            if isinstance(value, _ast.AST):
                todo.append(value)
            elif isinstance(value, list):
                todo.extend(v for v in value if isinstance(v, _ast.AST))


def extraction_input(response: str) -> tuple[str, ...]:
    """What `extract_code` reads of a response, found without parsing anything: the Python fenced blocks
    (`("blocks", ...)`) or the whole text (`("text", text)`), `<think>` blocks dropped. Equal inputs give equal
    programs (with several blocks, given equal test names), so this keys the test-result cache on the program
    rather than the prose around it, at the cost of two regex scans."""
    text = _THINK.sub("", response)
    blocks = [body for tag, body in _FENCE.findall(text) if tag.lower() in _PYTHON_TAGS]
    return ("blocks", *blocks) if blocks else ("text", text)
