from __future__ import annotations

import tracemalloc

import pytest

from raidiam_operator.core.errors import ConfigurationError
from raidiam_operator.core.templating import FIELDS, check_templates, render_templates

VALUES = {name: f"<{name}>" for name in FIELDS} | {
    "access_token": "eyJ.a-b_c.d",
    "scope": "directory:software openid",
    "expires_in": "300",
}
ROOM = 1024 * 1024


def test_fields_are_put_in_and_a_double_dollar_is_a_dollar() -> None:
    rendered = render_templates(
        {
            "authorization": "Authorization: ${token_type} ${access_token}",
            "price": "$$5 for ${client_namespace}/${client_name}",
        },
        VALUES,
        room=ROOM,
    )

    assert rendered == {
        "authorization": "Authorization: <token_type> eyJ.a-b_c.d",
        "price": "$5 for <client_namespace>/<client_name>",
    }


def test_a_json_document_with_the_expiry_renders_as_json() -> None:
    import json

    rendered = render_templates(
        {"token.json": '{"access_token": "${access_token}", "expires_in": ${expires_in}}'},
        VALUES,
        room=ROOM,
    )

    assert json.loads(rendered["token.json"]) == {"access_token": "eyJ.a-b_c.d", "expires_in": 300}


@pytest.mark.parametrize(
    ("template", "says"),
    [
        ("${password}", "unknown field ${password}; the fields are access_token"),
        ("${ACCESS_TOKEN}", "unknown field ${ACCESS_TOKEN}"),
        ("Bearer $access_token", "a '$' that starts no field: write ${field}"),
        ("costs 5$", "a '$' that starts no field"),
        ("${access_token", "a '$' that starts no field"),
        ("${}", "a '$' that starts no field"),
        ("${access_token.__class__}", "a '$' that starts no field"),
    ],
)
def test_a_template_that_names_no_known_field_is_refused_naming_the_key(
    template: str, says: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        check_templates({"header": template})

    assert caught.value.reason == "InvalidTokenSecret"
    assert "spec.tokenSecret.template.data[header]" in caught.value.message
    assert says in caught.value.message


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("access_token", "is written by the operator"),
        ("tls.key", "is written by the operator"),
        ("with/slash", "is not a valid Secret key"),
        ("..hidden", "is not a valid Secret key"),
        ("", "is not a valid Secret key"),
        ("x" * 254, "is not a valid Secret key"),
    ],
)
def test_a_key_the_api_server_or_the_operator_would_refuse_is_refused(key: str, says: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        check_templates({key: "${access_token}"})

    assert says in caught.value.message


def test_dollars_escaped_and_every_field_used_is_a_valid_template() -> None:
    check_templates({"all": " ".join(f"${{{name}}}" for name in FIELDS) + " $$ $${not_a_field}"})


@pytest.mark.parametrize("bad", ['a"b', "a\nb", "a\\b", "a$b", "a`b", "a'b", "é"])
def test_a_value_that_would_change_the_documents_meaning_is_not_rendered(bad: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        render_templates({"env": 'SCOPE="${scope}"'}, VALUES | {"scope": bad}, room=ROOM)

    assert caught.value.reason == "TemplateRenderFailed"
    assert "the token's scope contains" in caught.value.message
    assert bad not in caught.value.message


def test_an_unsafe_value_in_a_field_no_template_uses_is_no_problem() -> None:
    rendered = render_templates({"header": "${access_token}"}, VALUES | {"scope": 'a"b'}, room=ROOM)

    assert rendered == {"header": "eyJ.a-b_c.d"}


def test_the_rendered_size_is_exact_room_for_it_renders_one_byte_less_is_refused() -> None:
    templates = {"price": "$$5 for ${client_name}: ${access_token} é", "plain": "no fields"}
    size = sum(
        len(text.encode()) for text in render_templates(templates, VALUES, room=ROOM).values()
    )

    assert render_templates(templates, VALUES, room=size)
    with pytest.raises(ConfigurationError, match="would render to"):
        render_templates(templates, VALUES, room=size - 1)


def test_a_template_that_multiplies_a_long_token_is_refused_before_it_is_built() -> None:
    templates = {f"k{i}": "${access_token}" * 273 for i in range(32)}
    token = "t" * 16 * 1024  # the longest token accepted: 137 MiB rendered

    tracemalloc.start()
    try:
        with pytest.raises(ConfigurationError) as caught:
            render_templates(templates, VALUES | {"access_token": token}, room=ROOM - len(token))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert caught.value.reason == "TemplateRenderFailed"
    assert caught.value.message.startswith(
        "spec.tokenSecret.template.data would render to 136.5 MiB, more than the 1008 KiB left "
        "in the token Secret (a Secret holds at most 1 MiB); data[k0] alone would be 4.3 MiB."
    )
    assert token not in caught.value.message
    assert peak < 1024 * 1024, f"{peak} bytes allocated to refuse it"


def _crd_template_rule() -> str:
    import re
    from pathlib import Path

    crd = (Path(__file__).parents[2] / "crds" / "raidiam.io_raidiamclients.yaml").read_text()
    match = re.search(r"rule: \"self\.matches\('(\^\(\[\^\$\].*?)'\)\"", crd)
    assert match is not None, "the CRD's template rule was not found"
    return match.group(1)


@pytest.mark.parametrize(
    "template",
    [
        "Bearer ${access_token}",
        "$$ and $${access_token}",
        "$$$",
        "${acc$$ess_token}",
        "${ACCESS_TOKEN}",
        "$access_token",
        "${password}",
        "line one\nline ${scope} two",
        "${expires_in}$",
        "",
    ],
)
def test_admission_and_the_operator_agree_on_what_a_valid_template_is(template: str) -> None:
    import re

    admitted = re.fullmatch(_crd_template_rule(), template) is not None
    try:
        check_templates({"key": template})
        accepted = True
    except ConfigurationError:
        accepted = False

    assert admitted == accepted
