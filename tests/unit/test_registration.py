"""The pure registration decisions: the metadata's rules, the body sent, the digest of what was
registered, and what to do next (a table, `now` passed in)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from raidiam_operator.core.errors import ConfigurationError
from raidiam_operator.core.registration import (
    METADATA_FLAGS,
    ClientMetadata,
    RecordedRegistration,
    RegisteredDigest,
    Registration,
    RegistrationHandle,
    SoftwareStatement,
    assertion_url,
    check_metadata,
    next_step,
    parse_digest,
    registered_digest,
    registration_body,
    stale_software_statement_hint,
)

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
JWKS = "https://keystore.example/org/software/application.jwks"
DN = "UID=software,CN=tpp.example,C=BR"
METADATA = ClientMetadata(redirect_uris=("https://tpp.example/cb",), scope="accounts")


def statement(**claims: object) -> SoftwareStatement:
    base: dict[str, object] = {
        "software_id": "software",
        "org_id": "org",
        "software_jwks_uri": JWKS,
        "software_redirect_uris": ["https://tpp.example/cb"],
        "iat": 1_700_000_000,
        "jti": "first",
    }
    base.update(claims)
    return SoftwareStatement("header.payload.signature", base)


def digest(
    metadata: ClientMetadata = METADATA, dn: str = DN, ssa: SoftwareStatement | None = None
) -> RegisteredDigest:
    return registered_digest(metadata, subject_dn=dn, software_statement=ssa or statement())


# -- the body ------------------------------------------------------------------------------


def test_body_carries_the_ssa_its_jwks_uri_and_the_derived_subject_dn() -> None:
    body = registration_body(METADATA, software_statement=statement(), subject_dn=DN)

    assert body == {
        "token_endpoint_auth_method": "tls_client_auth",
        "grant_types": ["client_credentials"],
        "response_types": [],
        "redirect_uris": ["https://tpp.example/cb"],
        "scope": "accounts",
        "jwks_uri": JWKS,
        "tls_client_auth_subject_dn": DN,
        "tls_client_certificate_bound_access_tokens": True,
        "software_statement": "header.payload.signature",
    }


def test_body_for_an_update_names_the_client_and_a_given_jwks_uri_wins() -> None:
    metadata = replace(METADATA, jwks_uri="https://tpp.example/jwks", extra={"client_name": "TPP"})

    body = registration_body(metadata, software_statement=None, subject_dn=DN, client_id="c-1")

    assert body["client_id"] == "c-1"
    assert body["jwks_uri"] == "https://tpp.example/jwks"
    assert body["client_name"] == "TPP"
    assert "software_statement" not in body


def test_private_key_jwt_sends_no_subject_dn() -> None:
    metadata = replace(
        METADATA,
        token_endpoint_auth_method="private_key_jwt",
        token_endpoint_auth_signing_alg="PS256",
    )

    body = registration_body(metadata, software_statement=statement(), subject_dn=None)

    assert "tls_client_auth_subject_dn" not in body
    assert body["token_endpoint_auth_signing_alg"] == "PS256"
    assert body["tls_client_certificate_bound_access_tokens"] is True


def test_assertion_url_quotes_the_ids() -> None:
    assert (
        assertion_url("https://matls-api.example/", "org 1", "ss/2")
        == "https://matls-api.example/organisations/org%201/softwarestatements/ss%2F2/assertion"
    )


# -- the metadata's rules --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"redirect_uris": ("http://tpp.example/cb",)},
            "--redirect-uri 'http://tpp.example/cb' must be an https URL",
        ),
        (
            {"redirect_uris": ("https://a.example", "https://a.example")},
            "--redirect-uri https://a.example given more than once",
        ),
        ({"redirect_uris": ("https://a.example/" + "x" * 2100,)}, "longer than 2048"),
        (
            {"jwks_uri": "http://keys.example"},
            "--jwks-uri 'http://keys.example' must be an https URL",
        ),
        ({"grant_types": tuple(f"g{i}" for i in range(33))}, "--grant-type: 33 values"),
        (
            {"token_endpoint_auth_method": "client_secret_basic"},
            "--auth-method 'client_secret_basic' is not supported",
        ),
        (
            {"token_endpoint_auth_method": "private_key_jwt", "tls_client_auth_subject_dn": DN},
            "--subject-dn only applies to tls_client_auth",
        ),
        (
            {"token_endpoint_auth_signing_alg": "PS256"},
            "--signing-alg only applies to private_key_jwt",
        ),
        (
            {"extra": {"redirect_uris": []}},
            "--metadata may not set redirect_uris; use its own setting",
        ),
        ({"extra": {"software_statement": "x"}}, "--metadata may not set software_statement"),
        ({"extra": {"registration_access_token": "x"}}, "the server or the operator sets it"),
        ({"extra": {"bad key": 1}}, "is not a metadata field name"),
        ({"extra": {f"k{i}": 1 for i in range(33)}}, "33 fields, more than the 32"),
        ({"extra": {"big": "x" * 9000}}, "more than 8192 bytes of JSON"),
    ],
)
def test_metadata_that_cannot_be_registered_says_what_to_fix(
    change: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        check_metadata(replace(METADATA, **change), METADATA_FLAGS)  # type: ignore[arg-type]

    assert message in caught.value.message


def test_good_metadata_passes_unchanged() -> None:
    assert check_metadata(METADATA, METADATA_FLAGS) is METADATA


# -- the digest ------------------------------------------------------------------------------


def test_digest_ignores_what_changes_with_every_ssa() -> None:
    again = statement(iat=1_700_000_999, jti="second", exp=1_700_001_000)

    assert digest(ssa=again) == digest()
    assert parse_digest(digest().render()) == digest()


@pytest.mark.parametrize(
    ("claims", "changed"),
    [
        pytest.param(
            {"iat": 1_700_000_300, "jti": "other", "nbf": 1_700_000_300}, False, id="re-issue"
        ),
        pytest.param({"exp": 1_700_000_600}, False, id="expiry"),
        pytest.param({"software_jwks_uri": JWKS + "?rotated"}, True, id="jwks-uri"),
        pytest.param({"software_redirect_uris": []}, True, id="redirect-uris"),
        pytest.param({"software_roles": ["PAGTO"]}, True, id="roles"),
        pytest.param({"org_status": "Inactive"}, True, id="organisation-status"),
    ],
)
def test_the_ssa_part_changes_with_a_claim_about_the_software_only(
    claims: dict[str, object], changed: bool
) -> None:
    part = digest(ssa=statement(**claims)).software_statement

    assert (part != digest().software_statement) is changed


@pytest.mark.parametrize(
    ("changed", "part"),
    [
        (digest(metadata=replace(METADATA, scope="accounts payments")), "metadata"),
        (digest(dn="UID=software,CN=rotated.example,C=BR"), "subject_dn"),
        (
            digest(ssa=statement(software_redirect_uris=["https://other.example/cb"])),
            "software_statement",
        ),
    ],
)
def test_each_change_shows_in_its_own_part(changed: RegisteredDigest, part: str) -> None:
    differing = [
        name
        for name in ("metadata", "subject_dn", "software_statement")
        if getattr(changed, name) != getattr(digest(), name)
    ]

    assert differing == [part]


def test_an_unknown_ssa_part_and_a_foreign_digest_parse() -> None:
    unknown = registered_digest(
        METADATA, subject_dn=DN, software_statement=None, software_statement_known=False
    )

    assert parse_digest(unknown.render()) == unknown
    assert unknown.software_statement is None
    assert parse_digest("sha256:abc") is None
    assert parse_digest(None) is None


# -- what to do next -------------------------------------------------------------------------

RECORDED = RecordedRegistration(
    "client-1",
    "https://bank.example/reg/client-1",
    digest().render(),
    checked_at=NOW - timedelta(hours=1),
)
UNKNOWN_SSA = registered_digest(
    METADATA, subject_dn=DN, software_statement=None, software_statement_known=False
)


@pytest.mark.parametrize(
    ("recorded", "desired", "now", "refresh", "expected"),
    [
        pytest.param(
            None, digest(), NOW, False, ("register", "NotRegistered"), id="nothing-recorded"
        ),
        pytest.param(
            RECORDED,
            digest(metadata=replace(METADATA, redirect_uris=("https://tpp.example/cb2",))),
            NOW,
            False,
            ("update", "MetadataChanged"),
            id="redirect-uris-changed",
        ),
        pytest.param(
            RECORDED,
            digest(dn="UID=software,CN=rotated.example,C=BR"),
            NOW,
            False,
            ("update", "SubjectDNChanged"),
            id="certificate-rotated",
        ),
        pytest.param(
            RECORDED,
            digest(ssa=statement(software_roles=["DADOS", "PAGTO"])),
            NOW,
            False,
            ("update", "SoftwareStatementChanged"),
            id="ssa-claims-changed",
        ),
        pytest.param(
            replace(RECORDED, digest="from an older operator"),
            digest(),
            NOW,
            False,
            ("update", "MetadataChanged"),
            id="unreadable-digest",
        ),
        pytest.param(
            RECORDED, digest(), NOW, True, ("read", "RefreshRequested"), id="refresh-requested"
        ),
        pytest.param(
            RECORDED,
            digest(),
            NOW + timedelta(hours=23),
            False,
            ("read", "CheckDue"),
            id="daily-check-due",
        ),
        pytest.param(
            replace(RECORDED, checked_at=None),
            digest(),
            NOW,
            False,
            ("read", "CheckDue"),
            id="never-checked",
        ),
        pytest.param(RECORDED, digest(), NOW, False, ("none", "UpToDate"), id="up-to-date"),
        pytest.param(
            RECORDED,
            UNKNOWN_SSA,
            NOW,
            False,
            ("none", "UpToDate"),
            id="ssa-not-fetched-is-no-change",
        ),
    ],
)
def test_next_step(
    recorded: RecordedRegistration | None,
    desired: RegisteredDigest,
    now: datetime,
    refresh: bool,
    expected: tuple[str, str],
) -> None:
    step = next_step(recorded, desired=desired, now=now, refresh_requested=refresh)

    assert (step.action, step.reason) == expected


def test_up_to_date_is_due_again_at_the_next_check() -> None:
    step = next_step(RECORDED, desired=digest(), now=NOW, check_interval=timedelta(hours=6))

    assert step.due == NOW + timedelta(hours=5)


# -- the server's answer ----------------------------------------------------------------------


def test_an_update_without_a_new_token_keeps_the_one_held() -> None:
    held = RegistrationHandle("https://bank.example/reg/c", "held-token")
    answered = Registration("c", None, None, None, {"client_id": "c"})

    kept = answered.keeping_token_of(held)

    assert kept.registration_access_token == "held-token"
    assert kept.registration_client_uri == "https://bank.example/reg/c"
    assert "held-token" not in repr(kept)
    assert "held-token" not in repr(held)


@pytest.mark.parametrize(
    ("age", "hinted"),
    [(299, False), (300, False), (301, True)],
    ids=["fresh", "at-the-limit", "stale"],
)
def test_a_stale_ssa_is_named_only_beyond_five_minutes(age: int, hinted: bool) -> None:
    now = datetime.fromtimestamp(1_700_000_000 + age, UTC)

    hint = stale_software_statement_hint(statement(), now=now)

    assert (hint is not None) == hinted


def test_an_ssa_without_iat_gets_no_age_hint() -> None:
    assert stale_software_statement_hint(statement(iat="yesterday"), now=NOW) is None
