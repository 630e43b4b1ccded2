"""docs/events.md stays true: every JSON example in it satisfies the contract, and every type has one."""
import json
import pathlib
import re

import pytest

from events.contract import EVENT_LOG_SCHEMA, EVENT_TYPES, TUTOR_KEYED_TYPES, parse_event_json

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "events.md"
EXAMPLES = re.findall(r"```json\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.mark.parametrize("text", EXAMPLES, ids=lambda t: json.loads(t)["event_type"])
def test_every_example_parses_with_the_contract(text):
    event = parse_event_json(text)
    assert event.to_record() == json.loads(text)  # nothing in the example is ignored or reshaped
    assert event.partition_key == (event.tutor_id if event.event_type in TUTOR_KEYED_TYPES else event.customer_id)


def test_every_event_type_has_an_example_and_a_section():
    documented = {json.loads(t)["event_type"] for t in EXAMPLES}
    assert documented == set(EVENT_TYPES)
    headings = " ".join(re.findall(r"^### (.+)$", DOC.read_text(), flags=re.M))
    assert all(t in headings for t in EVENT_TYPES)


def test_the_documented_log_columns_exist():
    text = DOC.read_text()
    assert "EVENT_LOG_SCHEMA" in text and "date=YYYY-MM-DD/part-0.parquet" in text
    assert EVENT_LOG_SCHEMA.field("timestamp").type.tz == "UTC"
