"""Configuration from the Router__* variables and Router__ConfigFile
(SPEC.md section 7 and 7.1). Every problem names the variable, never the
value."""

from __future__ import annotations

from pathlib import Path

import pytest

from stella_envelope import ConfigurationError, ServiceConfig, TrustMode, fold_env_name, parse_config_file
from stella_envelope.errors import ConfigError
from support import b64url, ed25519_public_spec, hs256_spec

KEY_A = hs256_spec(b"config-test-secret-a-0123456789abcdef")
KEY_B = hs256_spec(b"config-test-secret-b-0123456789abcdef")
TEXT_SECRET = "plain-text-shared-secret-of-40-characters"


def errors_of(env: dict[str, str], file_text: str | None = None) -> list[ConfigError]:
    with pytest.raises(ConfigurationError) as e:
        ServiceConfig.from_env_and_file(env, file_text)
    return list(e.value.errors)


def base(**more: str) -> dict[str, str]:
    env = {"Router__IdentityEnvelopeAudience": "orders"}
    env.update(more)
    return env


# --- variables ----------------------------------------------------------------


def test_an_empty_environment_is_service_enforced_without_keys() -> None:
    config = ServiceConfig.from_env_and_file({}, None)
    assert (config.enabled, config.mode, config.verifier) == (True, TrustMode.SERVICE_ENFORCED, None)


def test_every_variable_is_read() -> None:
    env = base(
        Router__Enabled="yes",
        Router__AuthorizationTrustMode="gateway_enforced",
        Router__IdentityEnvelopeSigningKey=TEXT_SECRET,
        Router__IdentityEnvelopeSigningKeyId="legacy",
        Router__IdentityEnvelopeAcceptedKeys=f"k-2025={KEY_A};k-2026={ed25519_public_spec(bytes(32))}",
        Router__IdentityEnvelopeClockSkewSeconds="0",
        Router__IdentityEnvelopeMaxLifetimeSeconds="3600",
        Router__IdentityEnvelopeIssuer=" stella-gw ",
    )
    config = ServiceConfig.from_env_and_file(env, None)
    assert config.mode is TrustMode.GATEWAY_ENFORCED
    assert config.accepted_kids == ("k-2025", "k-2026", "legacy")
    assert config.verifier is not None
    settings = config.verifier.settings
    assert (settings.audience, settings.issuer, settings.clock_skew_secs, settings.max_lifetime_secs) == (
        "orders",
        "stella-gw",
        0,
        3600,
    )


def test_names_match_case_insensitively_with_underscores_ignored() -> None:
    assert fold_env_name("ROUTER__ENABLED") == fold_env_name("router_enabled") == "routerenabled"
    env = {
        "ROUTER__AUTHORIZATIONTRUSTMODE": "Hybrid",
        "router_identity_envelope_signing_key": TEXT_SECRET,
        "Router_IdentityEnvelope_Audience": "orders",
    }
    config = ServiceConfig.from_env_and_file(env, None)
    assert config.mode is TrustMode.HYBRID
    assert config.accepted_kids == ("default",)


@pytest.mark.parametrize(
    ("env", "variable", "secret"),
    [
        (base(Router__Enabled="maybe-SECRETVALUE"), "Router__Enabled", "SECRETVALUE"),
        (base(Router__AuthorizationTrustMode="SECRETVALUE"), "Router__AuthorizationTrustMode", "SECRETVALUE"),
        (base(Router__IdentityEnvelopeSigningKey="SECRETVALUE"), "Router__IdentityEnvelopeSigningKey", "SECRETVALUE"),
        (
            base(Router__IdentityEnvelopeSigningKey="hs256:SECRETVALUE!"),
            "Router__IdentityEnvelopeSigningKey",
            "SECRETVALUE",
        ),
        (
            base(Router__IdentityEnvelopeSigningKey=TEXT_SECRET, Router__IdentityEnvelopeSigningKeyId="SECRET VALUE"),
            "Router__IdentityEnvelopeSigningKeyId",
            "SECRET VALUE",
        ),
        (
            base(Router__IdentityEnvelopeAcceptedKeys="k=hs256:" + b64url(b"SECRETVALUE")),
            "Router__IdentityEnvelopeAcceptedKeys",
            b64url(b"SECRETVALUE"),
        ),
        (
            base(Router__IdentityEnvelopeAcceptedKeys="SECRETVALUE"),
            "Router__IdentityEnvelopeAcceptedKeys",
            "SECRETVALUE",
        ),
        (base(Router__IdentityEnvelopeClockSkewSeconds="301"), "Router__IdentityEnvelopeClockSkewSeconds", "301"),
        (base(Router__IdentityEnvelopeClockSkewSeconds="-1"), "Router__IdentityEnvelopeClockSkewSeconds", "-1"),
        (base(Router__IdentityEnvelopeMaxLifetimeSeconds="0"), "Router__IdentityEnvelopeMaxLifetimeSeconds", None),
        (base(Router__IdentityEnvelopeMaxLifetimeSeconds="1_0"), "Router__IdentityEnvelopeMaxLifetimeSeconds", "1_0"),
        ({"Router__IdentityEnvelopeSigningKey": TEXT_SECRET}, "Router__IdentityEnvelopeAudience", TEXT_SECRET),
        (base(Router__AuthorizationTrustMode="Hybrid"), "Router__IdentityEnvelopeSigningKey", None),
        (base(Router__AuthorizationTrustMode="GatewayEnforced"), "Router__IdentityEnvelopeSigningKey", None),
    ],
)
def test_a_bad_value_names_its_variable_and_never_contains_the_value(
    env: dict[str, str], variable: str, secret: str | None
) -> None:
    errors = errors_of(env)
    assert [e.variable for e in errors] == [variable]
    assert str(errors[0]).startswith(f"{variable}: ")
    if secret is not None:
        assert secret not in str(errors[0])


def test_all_problems_are_reported_at_once() -> None:
    errors = errors_of(
        {
            "Router__Enabled": "perhaps",
            "Router__AuthorizationTrustMode": "Strict",
            "Router__IdentityEnvelopeClockSkewSeconds": "x",
            "Router__IdentityEnvelopeSigningKey": TEXT_SECRET,
        }
    )
    assert [e.variable for e in errors] == [
        "Router__Enabled",
        "Router__AuthorizationTrustMode",
        "Router__IdentityEnvelopeClockSkewSeconds",
        "Router__IdentityEnvelopeAudience",
    ]


def test_a_plain_text_signing_key_is_an_hs256_secret_of_at_least_32_bytes() -> None:
    config = ServiceConfig.from_env_and_file(base(Router__IdentityEnvelopeSigningKey=TEXT_SECRET), None)
    assert config.accepted_kids == ("default",)
    (error,) = errors_of(base(Router__IdentityEnvelopeSigningKey="short-secret"))
    assert error.problem == "hs256 secret is 12 bytes; at least 32 are required"


def test_a_signing_key_kid_also_in_the_accepted_keys_is_refused() -> None:
    (error,) = errors_of(
        base(
            Router__IdentityEnvelopeSigningKey=TEXT_SECRET,
            Router__IdentityEnvelopeSigningKeyId="k1",
            Router__IdentityEnvelopeAcceptedKeys=f"k1={KEY_A}",
        )
    )
    assert error.variable == "Router__IdentityEnvelopeSigningKeyId"
    assert "also in Router__IdentityEnvelopeAcceptedKeys" in error.problem


def test_a_disabled_service_needs_no_keys_in_any_mode() -> None:
    config = ServiceConfig.from_env_and_file(
        {"Router__Enabled": "false", "Router__AuthorizationTrustMode": "GatewayEnforced"}, None
    )
    assert not config.enabled and config.verifier is None


def test_seconds_take_rusts_integer_syntax() -> None:
    config = ServiceConfig.from_env_and_file(
        base(Router__IdentityEnvelopeSigningKey=TEXT_SECRET, Router__IdentityEnvelopeClockSkewSeconds=" +45 "), None
    )
    assert config.verifier is not None and config.verifier.settings.clock_skew_secs == 45


def test_from_env_refuses_a_config_file_it_would_not_read() -> None:
    with pytest.raises(ConfigurationError) as e:
        ServiceConfig.from_env({"Router__ConfigFile": "/etc/stella/envelope.env"})
    assert [x.variable for x in e.value.errors] == ["Router__ConfigFile"]
    assert ServiceConfig.from_env({"Router__ConfigFile": "  "}).mode is TrustMode.SERVICE_ENFORCED


# --- the file ---------------------------------------------------------------------


def test_the_env_file_format() -> None:
    text = (
        "\ufeff# orders service\r\n"
        "\n"
        "   # indented comment\n"
        "export Router__AuthorizationTrustMode=GatewayEnforced # not a comment\n"
        f'ROUTER__IDENTITYENVELOPEACCEPTEDKEYS="k1={KEY_A};k2={KEY_B}"\r\n'
        "export\trouter_identity_envelope_audience = 'orders' \n"
        "Router__IdentityEnvelopeIssuer=\n"
    )
    entries = parse_config_file(text)
    assert [(e.name, e.line) for e in entries] == [
        ("Router__AuthorizationTrustMode", 4),
        ("Router__IdentityEnvelopeAcceptedKeys", 5),
        ("Router__IdentityEnvelopeAudience", 6),
        ("Router__IdentityEnvelopeIssuer", 7),
    ]
    assert entries[0].value == "GatewayEnforced # not a comment"
    assert entries[1].value == f"k1={KEY_A};k2={KEY_B}"
    assert entries[2].value == "orders"
    assert entries[3].value == ""
    assert KEY_A not in repr(entries)


def test_quotes_are_removed_once_and_nothing_inside_is_unescaped() -> None:
    (entry,) = parse_config_file("Router__IdentityEnvelopeIssuer=\"'gw\\n'\"\n")
    assert entry.value == "'gw\\n'"


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("just some words", "line 2: expected Name=value"),
        ("Router__Unknown=1", "line 2: Router__Unknown is not a service envelope variable (SPEC.md section 7)"),
        ("hs256:SECRETVALUE=x", "line 2: the name is not a service envelope variable (SPEC.md section 7)"),
        ("SECRET VALUE=x", "line 2: the name is not a service envelope variable (SPEC.md section 7)"),
        ("Router__ConfigFile=/other", "line 2: Router__ConfigFile cannot be set in the file it names"),
        ('Router__IdentityEnvelopeIssuer="SECRETVALUE', "line 2: the value of Router__IdentityEnvelopeIssuer has an unmatched quote"),
        ("Router__IdentityEnvelopeIssuer=SECRETVALUE'", "line 2: the value of Router__IdentityEnvelopeIssuer has an unmatched quote"),
        ('Router__IdentityEnvelopeIssuer="', "line 2: the value of Router__IdentityEnvelopeIssuer has an unmatched quote"),
        ("router__enabled=false", "line 2: Router__Enabled is already set on line 1"),
    ],
)
def test_a_bad_line_names_the_file_variable_and_the_line_never_the_value(line: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as e:
        parse_config_file(f"Router__Enabled=true\n{line}\n")
    (error,) = e.value.errors
    assert (error.variable, error.problem) == ("Router__ConfigFile", problem)
    assert "SECRET" not in str(error)


def test_the_file_overlays_the_environment() -> None:
    env = {
        "ROUTER__AUTHORIZATIONTRUSTMODE": "ServiceEnforced",  # replaced, whatever the spelling
        "Router__IdentityEnvelopeSigningKey": TEXT_SECRET,  # removed by an empty value
        "Router__IdentityEnvelopeAudience": "orders",  # kept: the file does not mention it
        "Router__ConfigFile": "/not/read/here",
    }
    text = f"Router__AuthorizationTrustMode=Hybrid\nRouter__IdentityEnvelopeSigningKey=\nRouter__IdentityEnvelopeAcceptedKeys=k2={KEY_B}\n"
    config = ServiceConfig.from_env_and_file(env, text)
    assert config.mode is TrustMode.HYBRID
    assert config.accepted_kids == ("k2",)
    assert config.verifier is not None and config.verifier.settings.audience == "orders"


def test_a_bad_setting_from_the_file_names_its_line_and_bad_lines_do_not_hide_it() -> None:
    text = "Router__AuthorizationTrustMode=Strict\nnonsense\n"
    errors = errors_of(base(), text)
    assert [str(e) for e in errors] == [
        "Router__ConfigFile: line 2: expected Name=value",
        "Router__AuthorizationTrustMode: trust mode must be ServiceEnforced, Hybrid or GatewayEnforced "
        "(set in Router__ConfigFile line 1)",
    ]


def test_removing_the_only_key_in_gateway_enforced_is_refused() -> None:
    env = base(Router__AuthorizationTrustMode="GatewayEnforced", Router__IdentityEnvelopeSigningKey=TEXT_SECRET)
    (error,) = errors_of(env, "Router__IdentityEnvelopeSigningKey=\n")
    assert error.variable == "Router__IdentityEnvelopeSigningKey"
    assert "line 1" in error.problem


def test_load_reads_the_file_the_environment_names(tmp_path: Path) -> None:
    file = tmp_path / "envelope.env"
    file.write_text(f"Router__AuthorizationTrustMode=GatewayEnforced\nRouter__IdentityEnvelopeAcceptedKeys=k1={KEY_A}\n")
    config = ServiceConfig.load(base(Router__ConfigFile=f" {file} "))
    assert config.mode is TrustMode.GATEWAY_ENFORCED and config.accepted_kids == ("k1",)


def test_an_unreadable_file_is_an_error_naming_the_variable_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing.env"
    with pytest.raises(ConfigurationError) as e:
        ServiceConfig.load(base(Router__ConfigFile=str(missing)))
    (error,) = e.value.errors
    assert error.variable == "Router__ConfigFile"
    assert str(missing) in error.problem and "no such file" in error.problem
    binary = tmp_path / "binary.env"
    binary.write_bytes(b"Router__Enabled=\xff\n")
    with pytest.raises(ConfigurationError, match="not valid utf-8"):
        ServiceConfig.load(base(Router__ConfigFile=str(binary)))
