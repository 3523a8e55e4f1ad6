"""Which authorization server a RaidiamClient may reach: ClusterRaidiamIssuer selection and the
operator's --issuer-policy, as pure decisions."""

from __future__ import annotations

from typing import Any

import pytest

from raidiam_operator.core.errors import ConfigurationError
from raidiam_operator.core.issuers import (
    IssuerPolicy,
    effective_spec,
    issuer_policy,
    parse_issuer,
    url_under,
)
from raidiam_operator.core.spec import CABundleRef, parse_spec

OPERATOR_NAMESPACE = "raidiam-token-operator"
SANDBOX = "https://auth.sandbox.directory.openbankingbrasil.org.br"


def _issuer(**spec: Any) -> Any:
    body = {"metadata": {"name": "sandbox"}, "spec": {"issuer": SANDBOX, **spec}}
    return parse_issuer(body, cluster_resource_namespace=OPERATOR_NAMESPACE)


def _client(**spec: Any) -> Any:
    base: dict[str, Any] = {
        "clientId": "c1",
        "authMethod": "tls_client_auth",
        "transportCertificate": {"secretName": "transport"},
    }
    if "issuer" not in spec:
        base["issuerRef"] = {"name": "sandbox"}
    return parse_spec({**base, **spec}, name="directory")


def _refused(reason: str, **kwargs: Any) -> str:
    with pytest.raises(ConfigurationError) as raised:
        effective_spec(**kwargs)
    assert raised.value.reason == reason
    return raised.value.message


def _refused_by_allowlist(**spec: Any) -> str:
    """The IssuerNotAllowed message for an inline client under an allowlist of SANDBOX."""
    return _refused(
        "IssuerNotAllowed",
        spec=_client(**spec),
        namespace="p",
        policy=issuer_policy("allowlist", [SANDBOX]),
        issuer=None,
        labels={},
    )


# -- who may use an issuer ---------------------------------------------------------------------


def test_an_issuer_without_selection_serves_every_namespace() -> None:
    spec = effective_spec(
        _client(), namespace="anyone", policy=IssuerPolicy(), issuer=_issuer(), labels={}
    )

    assert spec.issuer == SANDBOX


def test_a_listed_namespace_may_use_the_issuer_and_needs_no_labels() -> None:
    issuer = _issuer(namespaces=["payments"], namespaceSelector={"matchLabels": {"tier": "gold"}})

    assert not issuer.selection.needs_labels("payments")
    assert issuer.selection.selects("payments", {})
    assert issuer.selection.needs_labels("cards")


@pytest.mark.parametrize(
    ("selector", "labels", "selected"),
    [
        ({"matchLabels": {"tier": "gold"}}, {"tier": "gold"}, True),
        ({"matchLabels": {"tier": "gold"}}, {"tier": "silver"}, False),
        ({}, {}, True),
        (
            {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]},
            {"tier": "b"},
            True,
        ),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]}, {}, True),
        (
            {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]},
            {"tier": "a"},
            False,
        ),
        ({"matchExpressions": [{"key": "tenant", "operator": "Exists"}]}, {"tenant": ""}, True),
        (
            {"matchExpressions": [{"key": "tenant", "operator": "DoesNotExist"}]},
            {"tenant": "x"},
            False,
        ),
        (
            {
                "matchLabels": {"tier": "gold"},
                "matchExpressions": [{"key": "pci", "operator": "Exists"}],
            },
            {"tier": "gold"},
            False,
        ),
    ],
)
def test_the_namespace_selector_has_kubernetes_label_selector_semantics(
    selector: dict[str, Any], labels: dict[str, str], selected: bool
) -> None:
    issuer = _issuer(namespaceSelector=selector)

    assert issuer.selection.selects("payments", labels) is selected


def test_a_namespace_outside_the_selection_is_refused_with_a_message_naming_who_may() -> None:
    issuer = _issuer(namespaces=["payments"], namespaceSelector={"matchLabels": {"tier": "gold"}})

    message = _refused(
        "IssuerNotAllowed",
        spec=_client(),
        namespace="cards",
        policy=IssuerPolicy(),
        issuer=issuer,
        labels={"tier": "silver"},
    )

    assert message == (
        "ClusterRaidiamIssuer sandbox may not be used from namespace cards: it serves namespaces "
        "payments and namespaces labelled tier=gold. Ask the platform team to add this namespace "
        "to its namespaces or namespaceSelector, or use another issuer"
    )


def test_an_auth_method_the_issuer_does_not_allow_is_refused() -> None:
    message = _refused(
        "IssuerNotAllowed",
        spec=_client(),
        namespace="payments",
        policy=IssuerPolicy(),
        issuer=_issuer(allowedAuthMethods=["private_key_jwt"]),
        labels={},
    )

    assert "allows only private_key_jwt, not tls_client_auth" in message


def test_a_missing_issuer_is_reported_by_name() -> None:
    message = _refused(
        "IssuerNotFound",
        spec=_client(),
        namespace="payments",
        policy=IssuerPolicy(),
        issuer=None,
        labels={},
    )

    assert message.startswith("ClusterRaidiamIssuer sandbox (from spec.issuerRef) does not exist")


# -- what a client of an issuer sends ------------------------------------------------------------


def _jwt_client(**spec: Any) -> Any:
    return _client(
        authMethod="private_key_jwt",
        transportCertificate=None,
        signingKey={"secretName": "s", "keyId": "k"},
        **spec,
    )


def test_the_issuer_supplies_token_endpoint_ca_bundle_and_default_audience() -> None:
    issuer = _issuer(
        tokenEndpoint=SANDBOX + "/token",
        caBundle={"configMapName": "directory-ca"},
        assertionAudience="tokenEndpoint",
    )

    spec = effective_spec(
        _jwt_client(), namespace="payments", policy=IssuerPolicy(), issuer=issuer, labels={}
    )

    assert spec.issuer == SANDBOX
    assert spec.token_endpoint == SANDBOX + "/token"
    assert spec.ca_bundle == CABundleRef("directory-ca", "ca.crt", namespace=OPERATOR_NAMESPACE)
    assert spec.assertion_audience == "tokenEndpoint"


def test_a_clients_own_assertion_audience_wins_over_the_issuers_default() -> None:
    issuer = _issuer(assertionAudience="tokenEndpoint")

    spec = effective_spec(
        _jwt_client(assertionAudience="issuer"),
        namespace="payments",
        policy=IssuerPolicy(),
        issuer=issuer,
        labels={},
    )

    assert spec.assertion_audience == "issuer"


def test_an_issuers_default_audience_does_not_touch_a_client_that_signs_nothing() -> None:
    """A tls_client_auth client sends no assertion: a new default audience asks for no token."""
    before = effective_spec(
        _client(), namespace="p", policy=IssuerPolicy(), issuer=_issuer(), labels={}
    )
    after = effective_spec(
        _client(),
        namespace="p",
        policy=IssuerPolicy(),
        issuer=_issuer(assertionAudience="tokenEndpoint"),
        labels={},
    )

    assert after.token_fingerprint() == before.token_fingerprint()


def test_an_issuer_audience_assertion_is_never_sent_outside_the_issuer_through_an_issuer() -> None:
    issuer = _issuer(tokenEndpoint="https://elsewhere.example/token")
    client = _jwt_client(assertionAudience="issuer")

    with pytest.raises(ConfigurationError, match=r"set spec\.assertionAudience to tokenEndpoint"):
        effective_spec(client, namespace="p", policy=IssuerPolicy(), issuer=issuer, labels={})


def test_the_same_request_through_an_issuer_or_inline_has_the_same_fingerprint() -> None:
    """A client moved from spec.issuer to an issuerRef with the same settings keeps its token."""
    inline = _client(issuer=SANDBOX)
    referenced = effective_spec(
        _client(), namespace="payments", policy=IssuerPolicy(), issuer=_issuer(), labels={}
    )

    assert referenced.token_fingerprint() == inline.token_fingerprint()


def test_who_may_use_an_issuer_is_not_part_of_what_a_client_sends() -> None:
    before = effective_spec(
        _client(), namespace="payments", policy=IssuerPolicy(), issuer=_issuer(), labels={}
    )
    after = effective_spec(
        _client(),
        namespace="payments",
        policy=IssuerPolicy(),
        issuer=_issuer(namespaces=["payments"], allowedAuthMethods=["tls_client_auth"]),
        labels={},
    )

    assert before.token_fingerprint() == after.token_fingerprint()


def test_fingerprints_of_specs_from_before_issuer_refs_are_unchanged() -> None:
    """The token Secrets written by earlier versions carry these: a change would make every
    token look stale after an upgrade and request them all again."""
    plain = parse_spec(
        {
            "issuer": "https://auth.example",
            "clientId": "c1",
            "authMethod": "tls_client_auth",
            "transportCertificate": {"secretName": "transport"},
        },
        name="x",
    )
    full = parse_spec(
        {
            "issuer": "https://auth.example",
            "clientId": "c1",
            "authMethod": "private_key_jwt",
            "signingKey": {"secretName": "s", "keyId": "k"},
            "assertionAudience": "issuer",
            "caBundle": {"configMapName": "ca"},
            "scope": "a b",
            "parameters": {"resource": "https://r"},
        },
        name="x",
    )

    assert plain.token_fingerprint() == "4f6872fe408bdc97eb2271d86ca20e4a"
    assert full.token_fingerprint() == "a1b6f9978d1bd1ca7bc025383d672c6b"


# -- the operator's policy for inline issuers ------------------------------------------------


def test_policy_any_lets_every_inline_issuer_through() -> None:
    spec = _client(issuer="https://anything.internal.svc")

    assert (
        effective_spec(spec, namespace="p", policy=IssuerPolicy(), issuer=None, labels={}) is spec
    )


def test_policy_references_only_refuses_an_inline_issuer_and_says_what_to_use() -> None:
    message = _refused(
        "IssuerNotAllowed",
        spec=_client(issuer=SANDBOX),
        namespace="p",
        policy=issuer_policy("references-only", []),
        issuer=None,
        labels={},
    )

    assert "--issuer-policy references-only" in message
    assert "Set spec.issuerRef to a ClusterRaidiamIssuer" in message


def test_policy_references_only_still_serves_references() -> None:
    spec = effective_spec(
        _client(),
        namespace="p",
        policy=issuer_policy("references-only", []),
        issuer=_issuer(),
        labels={},
    )

    assert spec.issuer == SANDBOX


def test_policy_allowlist_lets_an_issuer_under_a_prefix_through_holding_its_endpoints_to_it() -> (
    None
):
    policy = issuer_policy("allowlist", [SANDBOX])
    spec = _client(issuer=SANDBOX)

    effective = effective_spec(spec, namespace="p", policy=policy, issuer=None, labels={})

    assert effective.issuer == SANDBOX
    assert effective.endpoint_allowlist == (SANDBOX,)
    # Where the request may go is not what it sends: the token stays current.
    assert effective.token_fingerprint() == spec.token_fingerprint()


def test_only_the_allowlist_holds_discovered_endpoints() -> None:
    for mode in ("any", "references-only"):
        referenced = effective_spec(
            _client(),
            namespace="p",
            policy=issuer_policy(mode, []),
            issuer=_issuer(),
            labels={},
        )
        assert referenced.endpoint_allowlist is None
    # A ClusterRaidiamIssuer is the platform team's choice, allowlist or not.
    referenced = effective_spec(
        _client(),
        namespace="p",
        policy=issuer_policy("allowlist", ["https://auth.example"]),
        issuer=_issuer(),
        labels={},
    )
    assert referenced.endpoint_allowlist is None


def test_policy_allowlist_refuses_others_naming_the_field_but_not_the_allowlist() -> None:
    message = _refused_by_allowlist(issuer="https://kubernetes.default.svc")

    assert message == (
        "spec.issuer 'https://kubernetes.default.svc' is not an issuer the operator's policy "
        "allows (--issuer-policy allowlist). Ask the platform team which issuers the operator "
        "allows, or use a ClusterRaidiamIssuer in spec.issuerRef (kubectl get "
        "clusterraidiamissuers lists them)"
    )
    assert SANDBOX not in message


def test_policy_allowlist_checks_the_token_endpoint_too() -> None:
    """Otherwise an allowed issuer with a tokenEndpoint of one's choosing would pass."""
    message = _refused_by_allowlist(issuer=SANDBOX, tokenEndpoint="https://10.0.0.1/token")

    assert message.startswith("spec.tokenEndpoint 'https://10.0.0.1/token' is not an issuer")


def test_policy_allowlist_refuses_an_inline_ca_bundle_saying_where_a_private_ca_goes() -> None:
    """A CA of the tenant's choosing would let whoever it signs for pose as an allowed host."""
    message = _refused_by_allowlist(issuer=SANDBOX, caBundle={"configMapName": "my-ca"})

    assert message.startswith(
        "spec.caBundle is not allowed with --issuer-policy allowlist: the operator checks an "
        "allowed issuer's TLS certificate against its own trust store"
    )
    assert "Remove spec.caBundle" in message
    assert "a ClusterRaidiamIssuer with its CA bundle" in message


def test_an_inline_ca_bundle_is_the_clients_own_choice_under_policy_any() -> None:
    spec = _client(issuer=SANDBOX, caBundle={"configMapName": "my-ca"})

    assert (
        effective_spec(spec, namespace="p", policy=IssuerPolicy(), issuer=None, labels={}) is spec
    )


ALLOWED = "https://auth.example/tenants/a"

#: (url, prefix, under): the prefix test, and every way seen of making a path mean another one
PREFIX_CASES = [
    ("https://auth.example", "https://auth.example", True),
    ("https://auth.example/", "https://auth.example", True),
    ("https://auth.example/token", "https://auth.example", True),
    ("https://AUTH.example/token", "https://auth.example", True),
    ("https://auth.example:443/token", "https://auth.example", True),
    ("https://auth.example/tenants/a", "https://auth.example/tenants/", True),
    ("https://auth.example/tenants/a", "https://auth.example/tenants", True),
    ("https://auth.example/tenants", "https://auth.example/tenants/", True),
    (f"{ALLOWED}/token", ALLOWED, True),
    (f"{ALLOWED}/", ALLOWED, True),
    (f"{ALLOWED}/tok%65n", ALLOWED, True),  # an encoded letter is the letter
    (f"{ALLOWED}/token;v=1", ALLOWED, True),
    # other hosts and ports
    ("https://auth.example.evil.test", "https://auth.example", False),
    ("https://auth.example.", "https://auth.example", False),
    ("https://auth.example@evil.test", "https://auth.example", False),
    ("https://user@auth.example/token", "https://auth.example", False),
    ("https://auth%2eexample/token", "https://auth.example", False),
    ("https://auth.example:8443", "https://auth.example", False),
    ("https://auth.example:99999", "https://auth.example", False),
    ("http://auth.example", "https://auth.example", False),
    # whole segments only
    ("https://auth.example/tenantsX", "https://auth.example/tenants", False),
    ("https://auth.example/tenants/ab", ALLOWED, False),
    # dot segments, in any encoding
    ("https://auth.example/tenants/../admin", "https://auth.example/tenants", False),
    (f"{ALLOWED}/./token", ALLOWED, False),
    (f"{ALLOWED}/..", ALLOWED, False),
    (f"{ALLOWED}/%2e%2e/b/token", ALLOWED, False),
    (f"{ALLOWED}/%2E%2E/b/token", ALLOWED, False),
    (f"{ALLOWED}/.%2e/b/token", ALLOWED, False),
    (f"{ALLOWED}/%252e%252e/b/token", ALLOWED, False),
    (f"{ALLOWED}/%25252e%25252e/b/token", ALLOWED, False),
    (f"{ALLOWED}/%2525252e%2525252e/b/token", ALLOWED, False),  # past the decoding rounds
    (f"{ALLOWED}/..;/b/token", ALLOWED, False),  # matrix parameters: Tomcat's ..;
    (f"{ALLOWED}/..;jsessionid=x/b/token", ALLOWED, False),
    (f"{ALLOWED}/.;/token", ALLOWED, False),
    (f"{ALLOWED}/%c0%ae%c0%ae/b/token", ALLOWED, False),  # overlong UTF-8 dots
    (f"{ALLOWED}/%ef%bc%8e%ef%bc%8e/b/token", ALLOWED, False),  # fullwidth dots
    # separators in disguise, empty segments
    (f"{ALLOWED}/..%2fb/token", ALLOWED, False),
    (f"{ALLOWED}/%2f/b", ALLOWED, False),
    (f"{ALLOWED}/%252f/b", ALLOWED, False),
    (f"{ALLOWED}/..%5cb/token", ALLOWED, False),
    (f"{ALLOWED}\\..\\b", ALLOWED, False),
    ("https://auth.example\\@evil.test", "https://auth.example", False),
    (f"{ALLOWED}//token", ALLOWED, False),
    # queries, fragments, characters outside printable ASCII
    ("https://auth.example/?next=x", "https://auth.example", False),
    ("https://auth.example/#x", "https://auth.example", False),
    ("https://auth.example/#", "https://auth.example", False),
    (f"{ALLOWED}/to ken", ALLOWED, False),
    (f"{ALLOWED}/token\u0085", ALLOWED, False),  # NEL
    (f"{ALLOWED}/\u202etoken", ALLOWED, False),  # a bidi override
    (f"{ALLOWED}/%e2%80%aetoken", ALLOWED, False),  # the same, encoded
    (f"{ALLOWED}/%00", ALLOWED, False),
    (f"{ALLOWED}/t%zz", ALLOWED, False),
]


@pytest.mark.parametrize(("url", "prefix", "under"), PREFIX_CASES)
def test_an_allowed_prefix_covers_whole_hosts_and_path_segments_only(
    url: str, prefix: str, under: bool
) -> None:
    assert url_under(url, prefix) is under


@pytest.mark.parametrize(
    ("mode", "prefixes", "message"),
    [
        ("open", [], "--issuer-policy 'open' is not one of any, allowlist, references-only"),
        ("allowlist", [], "--issuer-policy allowlist needs at least one --allowed-issuer"),
        ("any", [SANDBOX], "--allowed-issuer applies only with --issuer-policy allowlist"),
        ("allowlist", ["auth.example"], "must be an https URL with a host"),
        ("allowlist", ["https://auth.example?x=1"], "must be an https URL with a host"),
        ("allowlist", ["https://auth.example/a/../b"], "or dot segments"),
        ("allowlist", ["https://auth.example/a/%252e%252e/b"], "or dot segments"),
    ],
)
def test_a_policy_flag_that_cannot_work_is_refused_at_start(
    mode: str, prefixes: list[str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("?", r"\?")):
        issuer_policy(mode, prefixes)


# -- the issuer object itself --------------------------------------------------------------------


def test_an_issuer_stored_before_a_schema_change_is_refused_with_the_field() -> None:
    with pytest.raises(ConfigurationError, match=r"spec\.issuer must be an https URL") as raised:
        _issuer(issuer="http://auth.example")

    assert raised.value.reason == "InvalidIssuer"


@pytest.mark.parametrize(
    ("field", "url", "problem"),
    [
        ("issuer", "https://auth.example/\u202e", "may hold only printable ASCII characters"),
        ("tokenEndpoint", "https://auth.example/t\u0085", "may hold only printable ASCII"),
        ("tokenEndpoint", "https://user@auth.example/token", "may not have a user part"),
    ],
)
def test_an_issuer_url_that_is_no_printable_https_url_is_refused_with_the_field(
    field: str, url: str, problem: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        _issuer(**{field: url})

    assert raised.value.reason == "InvalidIssuer"
    assert raised.value.message.startswith(f"ClusterRaidiamIssuer sandbox: spec.{field} {problem}")


def test_a_client_may_not_combine_an_issuer_ref_with_its_own_endpoint_or_ca() -> None:
    with pytest.raises(ConfigurationError, match=r"remove spec\.tokenEndpoint and spec\.caBundle"):
        _client(tokenEndpoint="https://elsewhere.example/token")
