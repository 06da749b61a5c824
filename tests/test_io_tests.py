"""stdin/stdout and function-call tests through the HTTP API: the shapes datasets write, real programs of each
kind, and hostile ones. The expected output never enters the run: it is compared by the judge."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from acecoder_reward.sandbox_worker import io_tests

FAST = {"test_timeout_s": 1.0, "program_timeout_s": 6.0}


def judge(client: httpx.Client, response: str, tests: Any, **item: Any) -> dict:
    answer = client.post("/v1/rewards", json={"items": [{"response": response, "tests": tests, **item}],
                                              "limits": FAST})
    assert answer.status_code == 200, answer.text
    return answer.json()["items"][0]["tests"]


DOUBLE = {"inputs": ["3\n", "5\n", "-2\n"], "outputs": ["6\n", "10\n", "-4\n"]}

# name -> (program, tests, extra item fields, outcomes)
STDIO_CASES: dict[str, tuple[str, Any, dict[str, Any], list[str]]] = {
    "input() reader": ("n = int(input())\nprint(n * 2)\n", DOUBLE, {}, ["pass"] * 3),
    "sys.stdin.read() in a main() guard": (
        "import sys\ndef main():\n    print(int(sys.stdin.read()) * 2)\nif __name__ == '__main__':\n    main()\n",
        DOUBLE, {}, ["pass"] * 3),
    "open(0) and sys.stdout.buffer": (
        "import sys\nsys.stdout.buffer.write(str(int(open(0).read()) * 2).encode() + b'\\n')\n", DOUBLE, {},
        ["pass"] * 3),
    "wrong answer": ("n = int(input())\nprint(n * 3)\n", DOUBLE, {}, ["fail"] * 3),
    "partial output": ("n = int(input())\nprint(n * 2, end='')\n" "print(' extra')\n", DOUBLE, {}, ["fail"] * 3),
    "extra whitespace passes tokens": ("n = int(input())\nprint('  ', n * 2, '  \\n\\n')\n", DOUBLE, {},
                                       ["pass"] * 3),
    "extra whitespace fails exact": ("n = int(input())\nprint('', n * 2)\n", DOUBLE, {"compare": "exact"},
                                     ["fail"] * 3),
    "trailing spaces pass lines": ("n = int(input())\nprint(n * 2, '  ')\nprint()\n", DOUBLE, {"compare": "lines"},
                                   ["pass"] * 3),
    "float output within 1e-6": ("x = float(input())\nprint(x / 3)\n", {"inputs": ["1"], "outputs": ["0.333333"]},
                                 {}, ["pass"]),
    "float output off": ("x = float(input())\nprint(x / 3)\n", {"inputs": ["1"], "outputs": ["0.3333"]}, {},
                         ["fail"]),
    "runtime error": ("n = int(input())\nprint(n * 2 // (n != 3))\n", DOUBLE, {}, ["error", "pass", "pass"]),
    "timeout": ("n = int(input())\nwhile n == 3:\n    pass\nprint(n * 2)\n", DOUBLE, {}, ["timeout", "pass", "pass"]),
    "sys.exit(0) after the answer": ("print(int(input()) * 2)\nraise SystemExit\n", DOUBLE, {}, ["pass"] * 3),
    "lists of lines": ("a = input()\nb = input()\nprint(a)\nprint(b)\n",
                       {"inputs": [["x", "y"]], "outputs": [["x", "y"]]}, {}, ["pass"]),
    "as a JSON string (verl's ground_truth)": ("n = int(input())\nprint(n * 2)\n", json.dumps(DOUBLE), {},
                                               ["pass"] * 3),
    "CodeContests": ("n = int(input())\nprint(n * 2)\n", {"input": DOUBLE["inputs"], "output": DOUBLE["outputs"]},
                     {}, ["pass"] * 3),
    "LiveCodeBench stdin": ("n = int(input())\nprint(n * 2)\n",
                            [{"input": "4\n", "output": "8\n", "testtype": "stdin"}], {}, ["pass"]),
    # A test's stdin and stdout are its own, however the last test left them (they are reused from test to test).
    "reads one line of two": ("print(input())\n", {"inputs": ["a\nb\n", "c\nd\n", "e"], "outputs": ["a", "c", "e"]},
                              {}, ["pass"] * 3),
    "closes stdin and stdout": ("import sys\nn = int(sys.stdin.read())\nsys.stdin.close()\nprint(n * 2)\n"
                                "sys.stdout.close()\n", DOUBLE, {}, ["pass"] * 3),
    "seeks its stdout back": ("import os, sys\nprint('junk', flush=True)\nos.lseek(1, 0, os.SEEK_SET)\n"
                              "print(int(input()) * 2)\n", DOUBLE, {}, ["fail"] * 3),
    "rewraps its stdin and stdout": ("import io, sys\nsys.stdout = io.TextIOWrapper(sys.stdout.detach(), 'utf-8')\n"
                                     "sys.stdin = io.TextIOWrapper(sys.stdin.detach(), 'utf-8')\n"
                                     "print(int(sys.stdin.read()) * 2)\n", DOUBLE, {}, ["pass"] * 3),
    "closes fd 1 before its output is flushed": ("import os\nn = int(input())\nprint(n * 2)\nif n == 3:\n"
                                                 "    os.close(1)\n", DOUBLE, {}, ["fail", "pass", "pass"]),
    "outputs of 600 KB each": ("n = int(input())\nprint('7' * n)\n",
                               {"inputs": ["600000"] * 3, "outputs": ["7" * 600000] * 3}, {}, ["pass"] * 3),
}


@pytest.mark.parametrize("name", list(STDIO_CASES))
def test_stdin_stdout_programs(client: httpx.Client, name: str) -> None:
    program, tests, extra, outcomes = STDIO_CASES[name]
    result = judge(client, program, tests, **extra)
    assert result["outcomes"] == outcomes, result["details"]
    assert result["judged_in_sandbox"] == []


CALL_CASES: dict[str, tuple[str, Any, dict[str, Any], list[str]]] = {
    "function": ("def add(a, b):\n    return a + b\n",
                 {"fn_name": "add", "inputs": [[1, 2], [2.5, 0.5]], "outputs": [3, 3.0000001]}, {}, ["pass", "pass"]),
    "APPS wrapping in a one-element list": ("def add(a, b):\n    return a + b\n",
                                            {"fn_name": "add", "inputs": [[1, 2]], "outputs": [[3]]}, {}, ["pass"]),
    "tuples equal lists": ("def pair(a):\n    return (a, [a])\n", {"fn_name": "pair", "inputs": [[1]],
                                                                   "outputs": [[1, [1]]]}, {}, ["pass"]),
    "wrong value": ("def add(a, b):\n    return a - b\n", {"fn_name": "add", "inputs": [[1, 2]], "outputs": [3]}, {},
                    ["fail"]),
    "LeetCode class": ("class Solution:\n    def twoSum(self, nums, target):\n        seen = {}\n"
                       "        for i, x in enumerate(nums):\n            if target - x in seen:\n"
                       "                return [seen[target - x], i]\n            seen[x] = i\n",
                       [{"input": "[2, 7, 11]\n9", "output": "[0, 1]", "testtype": "functional"},
                        {"input": "[3, 3]\n6", "output": "[0, 1]", "testtype": "functional"}],
                       {"fn_name": "twoSum"}, ["pass", "pass"]),
    "missing function": ("def other():\n    pass\n", {"fn_name": "add", "inputs": [[1, 2]], "outputs": [3]}, {},
                         ["error"]),
    "raises": ("def add(a, b):\n    raise ValueError('no')\n", {"fn_name": "add", "inputs": [[1, 2]], "outputs": [3]},
               {}, ["error"]),
}


@pytest.mark.parametrize("name", list(CALL_CASES))
def test_function_call_programs(client: httpx.Client, name: str) -> None:
    program, tests, extra, outcomes = CALL_CASES[name]
    result = judge(client, program, tests, **extra)
    assert result["outcomes"] == outcomes, result["details"]


# --- hostile programs: none is credited, the service stays healthy -------------------------------------

HOSTILE: dict[str, tuple[str, Any, str]] = {
    "searches env, files and fds for the answer": (
        "import os, glob\nfound = ''\nfor k, v in os.environ.items():\n    found += v\n"
        "for path in glob.glob('/proc/*/fd/*') + glob.glob('/tmp/**', recursive=True):\n    try:\n"
        "        found += open(path, errors='ignore').read(1000)\n    except Exception:\n        pass\n"
        "print('SECRET-EXPECTED' if 'SECRET-EXPECTED' in found else 'nothing')\n",
        {"inputs": ["q"], "outputs": ["SECRET-EXPECTED"]}, "fail"),
    "prints the answer and exits non-zero": ("print(int(input()) * 2)\nimport sys\nsys.exit(1)\n",
                                             {"inputs": ["3"], "outputs": ["6"]}, "error"),
    "prints the answer and dies by os._exit(1)": ("import os\nprint(int(input()) * 2, flush=True)\nos._exit(1)\n",
                                                  {"inputs": ["3"], "outputs": ["6"]}, "error"),
    "floods stdout": ("import sys\nwhile True:\n    sys.stdout.write('6' * 65536)\n", {"inputs": ["3"], "outputs": ["6"]},
                      "not pass"),
    "__eq__ always true": ("class Yes:\n    def __eq__(self, other):\n        return True\n"
                           "def f(x):\n    return Yes()\n", {"fn_name": "f", "inputs": [[1]], "outputs": [7]}, "fail"),
    "int subclass": ("class I(int):\n    def __eq__(self, other):\n        return True\n"
                     "def f(x):\n    return I(3)\n", {"fn_name": "f", "inputs": [[1]], "outputs": [7]}, "fail"),
    "a child keeps writing after the script ends": (
        "import os, time\nif os.fork() == 0:\n    for _ in range(200):\n        os.write(1, b'6\\n')\n"
        "        time.sleep(0.005)\n    os._exit(0)\nprint('wrong')\n",
        {"inputs": ["3", "3"], "outputs": ["6", "6"]}, "not pass"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_io_programs_are_never_credited(client: httpx.Client, name: str) -> None:
    program, tests, verdict = HOSTILE[name]
    result = judge(client, program, tests)
    if verdict == "not pass":
        assert "pass" not in result["outcomes"], result
    else:
        assert set(result["outcomes"]) == {verdict}, result
    honest = judge(client, "print(int(input()) * 2)\n", {"inputs": ["3"], "outputs": ["6"]})
    assert honest["outcomes"] == ["pass"]
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize(("tests", "extra"), [
    ({"inputs": ["1"], "outputs": []}, {}),
    ({"inputs": [1], "outputs": ["1"]}, {}),
    ({"inputs": [[1]], "outputs": [1], "fn_name": "not an identifier"}, {}),
    ({"fn_name": "f", "inputs": ["not a list"], "outputs": [1]}, {}),
    ([{"input": "1", "output": "1", "testtype": "functional"}], {}),  # no fn_name
    ("{not json", {}),
    ({"something": "else"}, {}),
    ({"inputs": ["1"], "outputs": ["1"]}, {"test_imports": ["import math"]}),
    ({"inputs": ["1"], "outputs": ["1"]}, {"compare": "fuzzy"}),
    ({"inputs": [], "outputs": []}, {}),  # no test at all, as with `[]`
    ("[]", {}),
    ('{"inputs": [], "outputs": []}', {}),
])
def test_malformed_io_tests_are_a_422_naming_the_field(client: httpx.Client, tests: Any, extra: dict) -> None:
    answer = client.post("/v1/rewards", json={"items": [{"response": "print(1)", "tests": tests, **extra}]})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"].startswith("items.0")


def test_stdout_kept_between_tests_never_eats_the_file_size_limit() -> None:
    """The stdout memfd keeps earlier tests' output (it is emptied past STDOUT_KEEP_BYTES), and the run's file
    size limit holds memfds too: it is emptied sooner where what it keeps would leave a test less than its
    output cap. Run in a process of its own, under a 100 kB limit, 30 kB of output per test."""
    script = (
        "import resource, signal, sys\n"
        "from acecoder_reward.sandbox_worker import io_runner\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))\n"
        "io_runner.max_file_bytes = 100_000\n"
        "code = compile(\"print('7' * int(input()))\", 'solution.py', 'exec')\n"
        "out = [io_runner.run_stdio(code, '30000', 40_000) for _ in range(6)]\n"
        "sys.stderr.write(repr([len(o) for o in out]))\n")
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == repr([30001] * 6)


def test_comparison_rules() -> None:
    assert io_tests.compare_stdout("1 2\n3", "1  2 3\n", "tokens") is None
    assert io_tests.compare_stdout("1.0000001", "1", "tokens") is None
    assert io_tests.compare_stdout("1000002", "1000000", "tokens") is not None
    assert io_tests.compare_stdout("a  \nb\n\n", "a\nb", "lines") is None
    assert io_tests.compare_stdout("a b", "a  b", "lines") == "line 1 differs"
    assert io_tests.compare_stdout("x" * 100, "y" * 100, "exact") is not None
    assert "yyyy" not in (io_tests.compare_stdout("x", "yyyy", "tokens") or "")  # never echoes the expected side
    assert io_tests.compare_return([1, 2.0000001], [1, 2]) is None
    assert io_tests.compare_return((1, 2), [1, 2]) is None
    assert io_tests.compare_return(5, [5]) is None
    assert io_tests.compare_return(True, 1) is not None
    assert io_tests.compare_return({"a": [1]}, {"a": [1.0]}) is None


# --- stop_on_first_failure -------------------------------------------------------------------------------

def test_stop_on_first_failure_marks_the_rest_not_run(client: httpx.Client) -> None:
    wrong_second = "n = int(input())\nprint(n * 2 if n != 5 else 0)\n"
    result = judge(client, wrong_second, DOUBLE, stop_on_first_failure=True)
    assert result["outcomes"] == ["pass", "fail", "not_run"]
    assert "earlier test failed" in result["details"][2]
    assert judge(client, wrong_second, DOUBLE)["outcomes"] == ["pass", "fail", "pass"]


def test_stop_on_first_failure_stops_the_run_at_a_timeout(client: httpx.Client) -> None:
    hangs_first = "import time\nn = int(input())\nwhile n == 3:\n    pass\nprint(n * 2)\n"
    result = judge(client, hangs_first, DOUBLE, stop_on_first_failure=True)
    assert result["outcomes"] == ["timeout", "not_run", "not_run"]
    assert result["run_time_s"] < 3 * FAST["test_timeout_s"]


def test_binary_reward_implies_stop_on_first_failure_for_asserts(client: httpx.Client) -> None:
    program = "def f(x):\n    if x == 1:\n        raise ValueError('no')\n    return x\n"
    tests = ["assert f(0) == 0", "assert f(1) == 1", "assert f(2) == 2"]
    answer = client.post("/v1/rewards", json={"items": [{"response": program, "tests": tests}],
                                              "tests_reward": "binary"}).json()["items"][0]
    assert answer["tests"]["outcomes"] == ["pass", "error", "not_run"]
    assert answer["reward"] == 0.0
    raises = ["import unittest\nwith unittest.TestCase().assertRaises(ValueError):\n    f(1)", "assert f(2) == 2",
              "assert f(2) == 2 or f(1) == 1", "assert f(3) == 3"]
    answer = client.post("/v1/rewards", json={"items": [{"response": program, "tests": raises}],
                                              "tests_reward": "binary"}).json()["items"][0]
    assert answer["tests"]["outcomes"] == ["pass", "pass", "pass", "pass"]  # expected or short-circuited raises
