"""AceCoder's data pipeline behind `acecoder-reward data` (service/data_cli.py wires it): `rules` (pairs, the
hard subset: pure), `judging` (filter-tests, pass-rates: programs run through the reward path), `synthesis`
(synthesize-tests: an OpenAI-compatible LLM), `callers` (where judging's requests go), `ledger` (resumable
output and the row loop)."""
