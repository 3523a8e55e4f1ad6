"""Every reason the operator writes is a `Reason`, and the troubleshooting page lists those a
RaidiamClient shows."""

from __future__ import annotations

import json
import re
from pathlib import Path

from raidiam_operator.core import errors
from raidiam_operator.core.errors import RaidiamOperatorError, TransientError
from raidiam_operator.core.reasons import Carrier, Outcome, Reason, reason_named

TROUBLESHOOTING = Path(__file__).parents[2] / "docs" / "troubleshooting.md"


def _error_classes(kind: type[RaidiamOperatorError]) -> list[type[RaidiamOperatorError]]:
    found = [kind]
    for subclass in kind.__subclasses__():
        found += _error_classes(subclass)
    return found


def test_every_error_reason_is_a_reason_of_the_outcome_its_branch_promises() -> None:
    assert len(_error_classes(RaidiamOperatorError)) > 20
    for kind in _error_classes(RaidiamOperatorError):
        assert isinstance(kind.reason, Reason), kind.__name__
        expected = Outcome.TRANSIENT if issubclass(kind, TransientError) else Outcome.FAILED
        assert kind.reason.outcome is expected, kind.__name__


def test_no_module_spells_a_reason_as_a_string() -> None:
    package = Path(errors.__file__).parents[1]
    spelled = re.compile(r'reason\s*=\s*"[A-Za-z]+"')
    for module in package.rglob("*.py"):
        assert not spelled.search(module.read_text()), module


def test_a_reason_serialises_as_its_plain_word() -> None:
    assert json.dumps({"reason": Reason.TOKEN_VALID}) == '{"reason": "TokenValid"}'
    assert f"{Reason.ISSUER_NOT_ALLOWED}: refused" == "IssuerNotAllowed: refused"
    assert str(Reason.AS_EXPECTED) == "AsExpected"


def test_every_reason_has_a_meaning_and_a_distinct_word() -> None:
    assert len({reason.value for reason in Reason}) == len(Reason)
    for reason in Reason:
        assert reason.meaning, reason.name
        assert re.fullmatch(r"[A-Z][A-Za-z]+", reason.value), reason.name


def test_an_oauth_error_code_is_not_one_of_ours() -> None:
    assert reason_named("invalid_client") is None
    assert reason_named("TokenValid") is Reason.TOKEN_VALID


def test_the_troubleshooting_table_lists_every_reason_a_raidiam_client_shows() -> None:
    text = TROUBLESHOOTING.read_text()
    table = text[text.index("## All reasons") :].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([A-Za-z]+)`", table, re.MULTILINE))
    shown = {reason.value for reason in Reason if Carrier.CLIENT in reason.carriers}

    assert shown - listed == set(), "add these to the All reasons table of troubleshooting.md"
    assert listed - {reason.value for reason in Reason} == set(), "the table names no reason"
