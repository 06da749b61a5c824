"""Dataset rows as they come: AceCode, APPS, TACO, CodeContests, LiveCodeBench, HumanEval and MBPP rows, read
from JSONL (.gz too) or Parquet, become problems: a question, tests in a shape `POST /v1/rewards` takes, and the
item fields that go with them (fn_name, compare, test_imports). The `score` command adds a response to each;
`/get_reward` looks problems up by id.

What each format reads (`auto` recognises a row by the first of these fields it holds, not null):

  format          tests from                                              question from
  acecode         test_cases: asserts                                     question
  apps, taco      input_output: JSON {inputs, outputs, fn_name?}          question
  livecodebench   public_test_cases + private_test_cases, metadata        question_content
  codecontests    public_tests + private_tests + generated_tests          description
  mbpp            test_list, test_imports, test_setup_code                text, or prompt
  humaneval       test (def check(candidate)), entry_point                prompt
  items           tests (the service's own item rows), fn_name, ...       question

Nothing in a row is executed here, and LiveCodeBench's pickled private tests are read by an unpickler that
refuses every global (so no pickle can call anything) and accepts only a string.
"""

from __future__ import annotations

import ast
import base64
import binascii
import gzip
import io
import json
import pickle
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from acecoder_reward.sandbox_worker import io_tests

FORMATS = ("auto", "items", "acecode", "apps", "taco", "codecontests", "livecodebench", "humaneval", "mbpp")
ID_FIELDS = ("id", "task_id", "problem_id", "question_id", "name")
MAX_DECOMPRESSED_BYTES = 1 << 30  # LiveCodeBench's largest private test sets are tens of MB
CODECONTESTS_PYTHON3 = 3  # `solutions.language` of a Python 3 program
PARQUET_MAGIC = b"PAR1"


class DatasetError(ValueError):
    """A row this module cannot read; the message names the field."""


@dataclass(frozen=True)
class Problem:
    question: str | None
    tests: Any = field(default_factory=list)  # asserts, or an input/output spec sandbox_worker.io_tests reads
    fn_name: str | None = None
    compare: str | None = None
    test_imports: list[str] = field(default_factory=list)

    def item(self, response: str, compare: str | None = None) -> dict[str, Any]:
        """A `RewardItem` as JSON; `compare` (input/output tests only) overrides the row's."""
        out: dict[str, Any] = {"response": response, "tests": self.tests}
        if self.question is not None:
            out["question"] = self.question
        if self.fn_name:
            out["fn_name"] = self.fn_name
        if self.test_imports:
            out["test_imports"] = self.test_imports
        if (compare or self.compare) and not _asserts(self.tests):
            out["compare"] = compare or self.compare
        return out


# --- files ---------------------------------------------------------------------------------------------------------


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSONL file (gzip-compressed or not) or of a Parquet file (told by its magic bytes)."""
    with path.open("rb") as f:
        magic = f.read(4)
    if magic == PARQUET_MAGIC:
        return _parquet_rows(path)
    opener = gzip.open if magic[:2] == b"\x1f\x8b" else open
    with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
        return [_object(json.loads(line), n) for n, line in enumerate(f, 1) if line.strip()]


def _parquet_rows(path: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise DatasetError(f"{path}: reading Parquet needs pyarrow: pip install 'acecoder-reward[datasets]'") from exc
    rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
    return rows


def _object(value: Any, line: int) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DatasetError(f"line {line}: a row is a JSON object")
    return value


def row_id(row: dict[str, Any], default: Any) -> Any:
    """The row's own id (id, task_id, problem_id, question_id or name), else `default`."""
    return next((row[k] for k in ID_FIELDS if row.get(k) is not None), default)


# --- rows to problems ----------------------------------------------------------------------------------------------


def detect(row: dict[str, Any]) -> str:
    for fmt, marks in _MARKS:
        if any(row.get(m) is not None for m in marks):
            return fmt
    raise DatasetError(f"no known dataset fields among {sorted(row)[:12]}; name the format with --format")


def problem_of(row: dict[str, Any], fmt: str = "auto") -> Problem:
    """The row's problem; its tests are checked here, so a malformed row is named before anything is sent."""
    return checked(_READERS[detect(row) if fmt == "auto" else fmt](row))


def checked(problem: Problem) -> Problem:
    """The problem if `POST /v1/rewards` would take its tests and fields (an input/output spec with no tests
    becomes `[]`), else DatasetError naming the field."""
    if problem.question is not None and not isinstance(problem.question, str):
        raise DatasetError("question: expected text")
    if problem.fn_name is not None and not (isinstance(problem.fn_name, str) and problem.fn_name.isidentifier()):
        raise DatasetError("fn_name: expected a Python identifier")
    if problem.compare is not None and problem.compare not in io_tests.COMPARE_MODES:
        raise DatasetError(f"compare: one of {', '.join(io_tests.COMPARE_MODES)}")
    if not isinstance(problem.test_imports, list) or not all(isinstance(t, str) for t in problem.test_imports):
        raise DatasetError("test_imports: expected a list of import lines")
    if isinstance(problem.tests, str):  # a JSON text of any of the shapes
        problem = replace(problem, tests=_json(problem.tests, "tests"))
    if _asserts(problem.tests):
        return problem
    if problem.test_imports:
        raise DatasetError("test_imports: only for assert tests")
    try:
        wire = io_tests.from_spec(problem.tests, problem.fn_name, problem.compare or "tokens")
    except io_tests.IOTestsError as exc:
        raise DatasetError(f"tests: {exc}") from exc
    return problem if wire else replace(problem, tests=[])  # {"inputs": [], ...}: no tests


def _asserts(tests: Any) -> bool:
    return isinstance(tests, list) and all(isinstance(t, str) for t in tests)


def _text(row: dict[str, Any], *names: str) -> str | None:
    value = next((row[n] for n in names if row.get(n) is not None), None)
    if value is not None and not isinstance(value, str):
        raise DatasetError(f"{names[0]}: expected text")
    return value


def _json(value: Any, name: str) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError as exc:
        raise DatasetError(f"{name}: not JSON: {exc}") from exc


def _string_list(value: Any, name: str) -> list[str]:
    value = _json(value, name) if isinstance(value, str) and value.lstrip().startswith("[") else value
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise DatasetError(f"{name}: expected a list of strings")
    return value


def _items(row: dict[str, Any]) -> Problem:
    tests = row.get("tests") or []
    return Problem(_text(row, "question"), tests, row.get("fn_name"), row.get("compare"),
                   _string_list(row.get("test_imports"), "test_imports"))


def _acecode(row: dict[str, Any]) -> Problem:
    return Problem(_text(row, "question"), _string_list(row.get("test_cases"), "test_cases"))


def _apps(row: dict[str, Any]) -> Problem:
    spec = _json(row.get("input_output") or None, "input_output")
    if spec is not None and not isinstance(spec, dict):
        raise DatasetError("input_output: expected a JSON object {inputs, outputs, fn_name?}")
    return Problem(_text(row, "question"), spec or [])


def _codecontests(row: dict[str, Any]) -> Problem:
    inputs: list[Any] = []
    outputs: list[Any] = []
    for name in ("public_tests", "private_tests", "generated_tests"):
        part = _json(row.get(name), name) or {"input": [], "output": []}
        if not isinstance(part, dict) or not isinstance(part.get("input"), list) \
                or not isinstance(part.get("output"), list):
            raise DatasetError(f"{name}: expected {{input: [...], output: [...]}}")
        inputs += part["input"]
        outputs += part["output"]
    return Problem(_text(row, "description"), {"input": inputs, "output": outputs} if inputs else [])


def _livecodebench(row: dict[str, Any]) -> Problem:
    tests = lcb_tests(row.get("public_test_cases"), "public_test_cases")
    tests += lcb_tests(row.get("private_test_cases"), "private_test_cases")
    metadata = _json(row.get("metadata") or "{}", "metadata")
    fn_name = metadata.get("func_name") if isinstance(metadata, dict) else None
    return Problem(_text(row, "question_content"), tests, fn_name if isinstance(fn_name, str) else None)


def _mbpp(row: dict[str, Any]) -> Problem:
    tests = _string_list(row.get("test_list"), "test_list")
    setup = _text(row, "test_setup_code")
    if setup and setup.strip():
        tests = [f"{setup.rstrip()}\n{t}" for t in tests]
    return Problem(_text(row, "text", "prompt"), tests, test_imports=_string_list(row.get("test_imports"),
                                                                                  "test_imports"))


def _humaneval(row: dict[str, Any]) -> Problem:
    source, entry_point = _text(row, "test"), _text(row, "entry_point")
    if not source or not entry_point:
        raise DatasetError("test and entry_point: a HumanEval row needs both")
    return Problem(_text(row, "prompt"), split_check(source, entry_point))


def split_check(test_source: str, entry_point: str) -> list[str]:
    """HumanEval's `check(candidate)` as tests: each assert of a check made only of asserts becomes one test,
    `candidate` renamed to the entry point and the test file's imports in front (`assert True` lines dropped).
    A check that holds anything else (loops, assignments) stays whole: one test that defines and calls it,
    judged in the sandbox. Nothing of the row is run here."""
    try:
        module = ast.parse(test_source)
    except SyntaxError as exc:
        raise DatasetError(f"test: not Python: {exc}") from exc
    check = next((n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == "check"), None)
    if check is None or len(check.args.args) != 1:
        raise DatasetError("test: no `def check(candidate)`")
    body = [s for s in check.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    if not all(isinstance(s, ast.Assert) for s in body):
        return [f"{test_source.rstrip()}\n\ncheck({entry_point})\n"]
    imports = [ast.unparse(s) for s in module.body if isinstance(s, (ast.Import, ast.ImportFrom))]
    rename = _Rename(check.args.args[0].arg, entry_point)
    return ["\n".join([*imports, ast.unparse(rename.visit(s))]) for s in body
            if not (isinstance(s, ast.Assert) and isinstance(s.test, ast.Constant) and s.test.value is True)]


class _Rename(ast.NodeTransformer):
    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def visit_Name(self, node: ast.Name) -> ast.Name:
        return ast.copy_location(ast.Name(self.new, node.ctx), node) if node.id == self.old else node


# --- LiveCodeBench's test lists ------------------------------------------------------------------------------------


def lcb_tests(value: Any, name: str = "private_test_cases") -> list[Any]:
    """A LiveCodeBench test list: a list, its JSON text, or (the "lite" release's private tests) base64 of zlib
    of a pickle of that JSON text."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    if not isinstance(value, str):
        raise DatasetError(f"{name}: expected a list or its JSON text")
    text = value.strip()
    tests = _json(text if text.startswith("[") else _unpickled_text(text, name), name)
    if not isinstance(tests, list):
        raise DatasetError(f"{name}: expected a list of tests")
    return tests


def _unpickled_text(text: str, name: str) -> str:
    try:
        packed = base64.b64decode(text, validate=True)
        inflater = zlib.decompressobj()
        raw = inflater.decompress(packed, MAX_DECOMPRESSED_BYTES)
    except (binascii.Error, zlib.error) as exc:
        raise DatasetError(f"{name}: neither JSON nor base64 of zlib-compressed data: {exc}") from exc
    if inflater.unconsumed_tail:
        raise DatasetError(f"{name}: more than {MAX_DECOMPRESSED_BYTES} bytes once decompressed")
    try:
        value = _TextOnly(io.BytesIO(raw)).load()
    except DatasetError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise DatasetError(f"{name}: not a pickled string: {exc}") from exc
    if type(value) is not str:
        raise DatasetError(f"{name}: the pickle holds a {type(value).__name__}, not a string")
    return value


class _TextOnly(pickle.Unpickler):
    """Reads plain values only: every global (a class, a function) is refused, so unpickling calls nothing."""

    def find_class(self, module: str, name: str) -> Any:
        raise DatasetError(f"refused a pickle naming {module}.{name}: only a pickled string is read")


# --- responses -----------------------------------------------------------------------------------------------------


def responses_of(row: dict[str, Any], fmt: str, column: str) -> tuple[list[str], bool]:
    """(responses, whether the column held a list) from the row's `column`: a string, or a list of them (a
    dataset's reference solutions: APPS/TACO's `solutions` JSON list, CodeContests' `solutions` (its Python 3
    ones), AceCode's `inferences` (their `completion`)). HumanEval's `canonical_solution` and `completion`
    continue the prompt, so the prompt goes in front."""
    if row.get(column) is None:
        raise DatasetError(f"{column}: no such column in this row (name the response column with "
                           "--response-field)")
    value = row[column]
    if (detect(row) if fmt == "auto" else fmt) == "humaneval" and column in ("canonical_solution", "completion"):
        value = (_text(row, "prompt") or "") + value
    if isinstance(value, str) and column == "solutions" and value.lstrip().startswith("["):
        value = _json(value, column)
    if isinstance(value, str):
        return [value], False
    if isinstance(value, dict) and isinstance(value.get("solution"), list):
        languages = value.get("language") or [CODECONTESTS_PYTHON3] * len(value["solution"])
        value = [s for s, lang in zip(value["solution"], languages, strict=True) if lang == CODECONTESTS_PYTHON3]
    if isinstance(value, list):
        value = [v.get("completion") if isinstance(v, dict) else v for v in value]
        if all(isinstance(v, str) for v in value):
            return value, True
    raise DatasetError(f"{column}: expected a response, or a list of them")


_MARKS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("acecode", ("test_cases",)), ("apps", ("input_output",)),
    ("livecodebench", ("public_test_cases", "private_test_cases")),
    ("codecontests", ("public_tests", "private_tests", "generated_tests")), ("mbpp", ("test_list",)),
    ("humaneval", ("entry_point",)), ("items", ("tests", "response")))
_READERS: dict[str, Callable[[dict[str, Any]], Problem]] = {
    "items": _items, "acecode": _acecode, "apps": _apps, "taco": _apps, "codecontests": _codecontests,
    "livecodebench": _livecodebench, "humaneval": _humaneval, "mbpp": _mbpp}
