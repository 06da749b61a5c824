"""Wire schemas of the public API, on one strict base model (unknown fields are an error), and the forms an item's
tests take, named for the published schema only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    RootModel,
    TypeAdapter,
    WithJsonSchema,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema


def _json_integer(value: Any) -> Any:
    """JSON Schema's integer: 3 and 3.0 are integers, true and "3" are not."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("Input should be a valid integer")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("Input should be a valid integer, got a number with a fractional part")
    return int(value)


PositiveJsonInt = Annotated[int, BeforeValidator(_json_integer), Field(gt=0),
                           WithJsonSchema({"type": "integer", "exclusiveMinimum": 0})]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # "memory_mb": true is an error, not 1


UntrustedPolicy = Literal["exclude", "count", "fail"]
UNTRUSTED_DOC = ("What tests judged inside the candidate's process (judged_in_sandbox; forgeable) do to the reward: "
                 "exclude (neither add nor remove; an item with only such tests gets 0), count (like any test) or "
                 "fail (count as failed). Default: the server's ACECODER_UNTRUSTED_TESTS (exclude).")
CACHE_DOC = ("false: every item runs, none is answered from the test-result cache or from an identical item in "
             "flight, and nothing is stored (benchmarks; programs whose outcome varies from run to run).")


# --- the forms of an item's tests, as published ------------------------------------------------------------------
# `tests` validates as a loose union here; the input/output forms are read when the item is (io_tests.from_spec),
# with 422s that name the field. The models below validate nothing: they only give each form a name and a precise
# JSON Schema in /openapi.json. Each takes at least what the server takes (test_fuzz sends what the schema refuses
# and expects a 4xx), so unknown keys are allowed (io_tests ignores what it does not read; dataset rows carry more)
# and a false fn_name too.


@dataclass(frozen=True)
class PublishedAs:
    """Publishes `shape`'s JSON Schema (its models as named components) for a field validated by its own, looser
    annotation."""

    shape: Any

    def __get_pydantic_json_schema__(self, own: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        published = TypeAdapter(self.shape).core_schema
        if "ref" in published:  # a lone model: by reference too, as a union's members are (else it is inlined)
            published = core_schema.definitions_schema(core_schema.definition_reference_schema(published["ref"]),
                                                       [published])
        return handler(published)


@dataclass(frozen=True)
class JsonTextOf:
    """Publishes a string as JSON text whose value is one of `shape` (JSON Schema's contentSchema)."""

    shape: Any

    def __get_pydantic_json_schema__(self, own: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {**handler(own), "contentMediaType": "application/json",
                "contentSchema": handler(TypeAdapter(self.shape).core_schema)}


class _SchemaOnly(BaseModel):
    model_config = ConfigDict(extra="allow")  # see above: io_tests ignores keys it does not read


FALSY_JSON: list[Any] = [None, False, 0, [], {}]  # with "", the JSON values Python reads as false (`fn_name or ...`)
StdText = Annotated[str | list[str], Field(description="Text, or a list of lines (joined with newlines, plus one "
                                                       "at the end).")]


class AssertTests(RootModel[list[str]]):
    """Assert-style tests: each a statement or block (`assert f(1) == 2`), run after the program; one counts as
    passed when it raises nothing."""


class IOTests(_SchemaOnly):
    """Input/output tests as APPS and TACO write `input_output` and verl its `ground_truth`: test k is inputs[k]
    and outputs[k]. With a function name (this object's fn_name, else the item's) each test calls that function
    (a class Solution's method of that name if present); without, each runs the program on a stdin."""

    inputs: list[str | list[Any]] = Field(description="Per test: the stdin (text or lines); with a function name, "
                                          "the list of its arguments.")
    outputs: list[Any] = Field(description="Per test, as many as inputs: the expected stdout (text or lines); with "
                               "a function name, the return value (or it in a one-element list, as APPS writes).")
    fn_name: Annotated[str | None, WithJsonSchema({"anyOf": [{"type": "string"}, {"enum": FALSY_JSON}]})] = Field(
        None, description="The function the tests call (a Python identifier); a false value (null, \"\", 0, false, "
                          "[], {}): the item's fn_name, else stdin/stdout tests.")


class CodeContestsTests(_SchemaOnly):
    """CodeContests' public_tests, private_tests or generated_tests: stdin/stdout tests, test k is input[k] and
    output[k]. An object that also has inputs or outputs is read as IOTests."""

    model_config = ConfigDict(json_schema_extra={"not": {"anyOf": [{"required": ["inputs"]},
                                                                   {"required": ["outputs"]}]}})
    input: list[StdText] = Field(description="Per test: the stdin.")
    output: list[StdText] = Field(description="Per test, as many as input: the expected stdout.")


class LiveCodeBenchStdinTest(_SchemaOnly):
    """One stdin/stdout test of LiveCodeBench's public_test_cases or private_test_cases."""

    input: str = Field(description="The stdin.")
    output: StdText = Field(description="The expected stdout.")
    testtype: Literal["stdin"] = Field("stdin", description="stdin (the default when absent).")


class LiveCodeBenchFunctionalTest(_SchemaOnly):
    """One functional test of LiveCodeBench: calls the item's fn_name (required; the row's metadata func_name),
    a class Solution's method of that name if present."""

    input: str = Field(description="The arguments, one JSON value per line.")
    output: Any = Field(description="The expected return value: JSON text, or the value itself.")
    testtype: Literal["functional"]


class LiveCodeBenchTests(RootModel[list[LiveCodeBenchStdinTest | LiveCodeBenchFunctionalTest]]):
    """LiveCodeBench's list of tests (public_test_cases, or the decoded private_test_cases)."""


class IOTestsJSON(RootModel[Annotated[str, JsonTextOf(IOTests | CodeContestsTests | LiveCodeBenchTests)]]):
    """IOTests, CodeContestsTests or LiveCodeBenchTests as JSON text (as APPS and TACO store input_output, and
    verl's ground_truth may be)."""


ItemTests = Annotated[list[str] | list[dict[str, Any]] | dict[str, Any] | str,
                      PublishedAs(AssertTests | IOTests | IOTestsJSON | CodeContestsTests | LiveCodeBenchTests)]


class RewardItem(StrictModel):
    question: str | None = Field(None, description="The problem statement (used by the model reward).")
    response: str = Field(description="The raw LLM response; the program is extracted from it.")
    tests: ItemTests = Field(
        [], description="One of: AssertTests; IOTests, {\"inputs\", \"outputs\", \"fn_name\"?} (APPS/TACO "
                        "input_output, verl's ground_truth); IOTestsJSON, the same as JSON text; CodeContestsTests, "
                        "{\"input\", \"output\"}; LiveCodeBenchTests, a list of {\"input\", \"output\", "
                        "\"testtype\"?}. Required (at least one) by the tests and combined rewards.")
    test_imports: list[str] = Field([], description="Import lines run before every assert test (MBPP's "
                                    "`test_imports`).")
    compare: Literal["tokens", "lines", "exact"] = Field(
        "tokens", description="stdin/stdout tests: tokens (whitespace-split, numbers within 1e-6), lines "
                              "(trailing whitespace and blank lines ignored) or exact.")
    fn_name: str | None = Field(None, description="The function LiveCodeBench functional tests call (its "
                                "metadata func_name); a class Solution's method of that name is called if present.")
    stop_on_first_failure: bool = Field(False, description="The tests after the first that fails are not_run, and "
                                        "the program is stopped there. Implied by tests_reward=binary.")


class LimitsIn(StrictModel):
    test_timeout_s: float | None = Field(None, gt=0, description="Per-test wall-clock limit; capped by the server.")
    program_timeout_s: float | None = Field(None, gt=0, description="Whole-program limit; capped by the server.")
    memory_mb: PositiveJsonInt | None = Field(None, strict=False,
                                      description="Memory limit of the run, in MB; capped by the server.")


class Weights(StrictModel):
    tests: float = Field(1.0, description="Weight of the tests reward (pass_rate or binary) in combined.")
    model: float = Field(1.0, description="Weight of the raw AceCodeRM score in combined.")


class RewardRequest(StrictModel):
    items: list[RewardItem] = Field(min_length=1)
    reward: Literal["tests", "model", "combined"] = Field(
        "tests", description="tests: run the tests; model: the AceCodeRM score; combined: "
                             "weights.tests * tests reward + weights.model * score, both computed concurrently.")
    tests_reward: Literal["pass_rate", "binary"] = "pass_rate"
    untrusted_tests: UntrustedPolicy | None = Field(None, description=UNTRUSTED_DOC)
    weights: Weights | None = Field(None, description="Only with reward=combined; default 1 and 1.")
    limits: LimitsIn | None = None
    cache: bool = Field(True, description=CACHE_DOC)


class TestsOut(BaseModel):
    status: str = Field(description="What happened to the program: ok, no_code, syntax_error, runtime_error, "
                        "timeout, memory_exceeded, output_exceeded, crashed, exited, infra_error; or "
                        "all_tests_untrusted (untrusted_tests=exclude and every test was judged in the sandbox).")
    passed: int = Field(description="Passed tests among those counted (see untrusted_tests).")
    total: int = Field(description="Tests counted in the reward: all of them, or with untrusted_tests=exclude "
                       "those judged outside the sandbox.")
    pass_rate: float = Field(description="passed / total (0 when no test is counted).")
    outcomes: list[Literal["pass", "fail", "error", "timeout", "not_run"]]
    details: list[str | None] = Field(description="Why each test did not pass (None when it passed).")
    judged_in_sandbox: list[int] = Field(description="Indices of tests that could not be split and were judged "
                                         "inside the sandbox (forgeable by a hostile program).")
    untrusted_tests: UntrustedPolicy = Field(description="How those tests counted in this reward.")
    run_time_s: float


class ModelOut(BaseModel):
    score: float = Field(description="The raw AceCodeRM score (unbounded; higher is better; no sigmoid).")


class ItemOut(BaseModel):
    reward: float
    code: str | None = Field(description="The program extracted from the response, as run (or, for a model-only "
                             "reward with training wrapping, as the model saw it; else null).")
    tests: TestsOut | None = Field(None, description="Set by the tests and combined rewards.")
    model: ModelOut | None = Field(None, description="Set by the model and combined rewards.")
    cached: bool = Field(False, description="The tests' outcomes came from the test-result cache (or from an "
                         "identical item run at the same time), not from a run of this item.")


class RewardResponse(BaseModel):
    rewards: list[float]
    items: list[ItemOut]


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class OpenRLHFRequest(StrictModel):
    """OpenRLHF's remote reward call, as its trainer sends it, plus optional overrides of the server's choice."""

    query: list[str] = Field(min_length=1, description="Prompt + response, as the policy produced them.")
    prompts: list[str] | None = Field(None, description="The prompts; each response is its query minus this "
                                      "prefix. Without them, the response follows the last Qwen assistant marker.")
    labels: list[str] | None = Field(None, description="Per sample: JSON text of AssertTests, IOTests, "
                                     "CodeContestsTests or LiveCodeBenchTests (the forms of an item's tests), or of "
                                     "{\"tests\": <any form of an item's tests>, \"question\"?, \"fn_name\"?, "
                                     "\"compare\"?, \"test_imports\"?}; or a key into the server's dataset.")
    reward: Literal["tests", "model", "combined"] | None = Field(None, description="Overrides "
                                                                  "ACECODER_OPENRLHF_REWARD for this call.")
    tests_reward: Literal["pass_rate", "binary"] | None = Field(None, description="Overrides "
                                                                 "ACECODER_OPENRLHF_TESTS_REWARD.")
    weights: Weights | None = Field(None, description="Overrides the combined reward's weights.")
    untrusted_tests: UntrustedPolicy | None = Field(None, description=UNTRUSTED_DOC)
    cache: bool = Field(True, description=CACHE_DOC)


class OpenRLHFResponse(BaseModel):
    rewards: list[float]
    scores: list[float] = Field(description="The same values (OpenRLHF reads them for dynamic filtering).")
    extra_logs: dict[str, list[float]] = Field(description="Per-sample figures the trainer logs: pass_rate, "
                                               "model_score, no_code, judged_in_sandbox_share (the share of a "
                                               "sample's tests judged inside its own process).")


class BestOfNRequest(StrictModel):
    question: str = Field(min_length=1, description="The problem the candidates answer.")
    candidates: list[str] = Field(min_length=1, description="N raw responses.")
    tests: Annotated[list[str], PublishedAs(AssertTests)] = Field(
        [], description="AssertTests for every candidate (input/output tests are not taken here); needed to rank "
                        "by tests.")
    rank_by: Literal["model", "tests", "tests_then_model"] | None = Field(
        None, description="model: AceCodeRM score; tests: pass rate (ties: lowest index); tests_then_model: pass "
                          "rate, ties broken by the score. Default: tests_then_model with tests and a reward "
                          "model, tests with tests only, model without tests.")
    untrusted_tests: UntrustedPolicy | None = Field(None, description=UNTRUSTED_DOC)
    limits: LimitsIn | None = None
    cache: bool = Field(True, description=CACHE_DOC)


class BestOfNResponse(BaseModel):
    rank_by: Literal["model", "tests", "tests_then_model"]
    chosen: int = Field(description="Index of the best candidate.")
    ranking: list[int] = Field(description="Candidate indices, best first.")
    scores: list[float] | None = Field(description="AceCodeRM score per candidate (when the model was used).")
    pass_rates: list[float] | None = Field(description="Test pass rate per candidate (when tests were run).")
    items: list[ItemOut]
