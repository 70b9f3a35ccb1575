"""Reloading at runtime (SPEC.md section 7.1): reload outcomes and their log
lines, and the triggers (file rewritten, file renamed into place, bad file,
SIGHUP), each with a bounded wait."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from stella_envelope import (
    ConfigHandle,
    ConfigurationError,
    Key,
    TrustMode,
    load_or_exit,
    start_reload_triggers,
)
from support import hs256_spec, wait_until

SECRET_A = b"reload-test-secret-a-0123456789abcdef"
SECRET_B = b"reload-test-secret-b-0123456789abcdef"
KEY_A, KEY_B = hs256_spec(SECRET_A), hs256_spec(SECRET_B)

GATEWAY_A = f"Router__AuthorizationTrustMode=GatewayEnforced\nRouter__IdentityEnvelopeAcceptedKeys=k-a={KEY_A}\n"
HYBRID_AB = f"Router__AuthorizationTrustMode=Hybrid\nRouter__IdentityEnvelopeAcceptedKeys=k-a={KEY_A};k-b={KEY_B}\n"
GATEWAY_NO_KEYS = "Router__AuthorizationTrustMode=GatewayEnforced\nRouter__IdentityEnvelopeAcceptedKeys=\n"


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    file = tmp_path / "conf" / "envelope.env"
    file.parent.mkdir()
    file.write_text(GATEWAY_A)
    return file


@pytest.fixture
def handle(env_file: Path) -> ConfigHandle:
    return ConfigHandle.load({"Router__IdentityEnvelopeAudience": "orders", "Router__ConfigFile": str(env_file)})


@pytest.fixture
def triggers(handle: ConfigHandle) -> Iterator[object]:
    with start_reload_triggers(handle, debounce=0.2, poll_interval=0.02) as running:
        yield running


def replace_by_rename(file: Path, text: str) -> None:
    """How editors, kubectl and careful operators write: beside, then rename."""
    temporary = file.with_name(file.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, file)


def secrets_in(text: str) -> bool:
    return any(s in text for s in (KEY_A.split(":")[1], KEY_B.split(":")[1], SECRET_A.decode(), SECRET_B.decode()))


# --- reload() ------------------------------------------------------------------


def test_reload_applies_a_new_configuration_and_logs_generation_mode_and_kids(
    handle: ConfigHandle, env_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = handle.current()
    assert handle.status().generation == 1 and before.mode is TrustMode.GATEWAY_ENFORCED
    env_file.write_text(HYBRID_AB)
    with caplog.at_level(logging.INFO, logger="stella_envelope"):
        outcome = handle.reload()
    assert (outcome.kind, outcome.generation) == ("applied", 2)
    assert handle.current().mode is TrustMode.HYBRID
    assert handle.current().accepted_kids == ("k-a", "k-b")
    assert before.mode is TrustMode.GATEWAY_ENFORCED  # the old snapshot is untouched
    assert "applied (generation=2 enabled=true mode=Hybrid accepted_kids=k-a,k-b)" in caplog.text
    assert not secrets_in(caplog.text)
    assert handle.status().last_applied is not None


def test_reload_with_the_same_settings_is_unchanged(handle: ConfigHandle, env_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    before = handle.current()
    # Same settings, other spelling and order: nothing to swap.
    env_file.write_text(f"router_identity_envelope_accepted_keys='k-a={KEY_A}'\nROUTER__AUTHORIZATIONTRUSTMODE=gatewayenforced\n")
    with caplog.at_level(logging.INFO, logger="stella_envelope"):
        outcome = handle.reload()
    assert (outcome.kind, outcome.generation) == ("unchanged", 1)
    assert handle.current() is before
    assert "reloaded: unchanged (generation=1 mode=GatewayEnforced)" in caplog.text


def test_a_changed_secret_under_the_same_kid_is_a_change(handle: ConfigHandle, env_file: Path) -> None:
    env_file.write_text(GATEWAY_A.replace(KEY_A, KEY_B))
    assert handle.reload().kind == "applied"


@pytest.mark.parametrize(
    ("text", "variable"),
    [
        (GATEWAY_NO_KEYS, "Router__IdentityEnvelopeSigningKey"),
        ("Router__AuthorizationTrustMode=Strict\n", "Router__AuthorizationTrustMode"),
        (f"Router__IdentityEnvelopeAcceptedKeys=k-a={hs256_spec(b'short')}\n", "Router__IdentityEnvelopeAcceptedKeys"),
        ("a line without equals\n", "Router__ConfigFile"),
    ],
)
def test_a_bad_reload_changes_nothing_and_logs_each_problem_by_variable(
    handle: ConfigHandle, env_file: Path, caplog: pytest.LogCaptureFixture, text: str, variable: str
) -> None:
    before = handle.current()
    env_file.write_text(text)
    with caplog.at_level(logging.INFO, logger="stella_envelope"):
        outcome = handle.reload()
    assert outcome.kind == "refused" and outcome.generation == 1
    assert [e.variable for e in outcome.errors] == [variable]
    assert handle.current() is before
    assert f"the configuration in use stays (generation=1 mode=GatewayEnforced): {variable}: " in caplog.text
    assert not secrets_in(caplog.text)
    status = handle.status()
    assert status.last_rejected is not None and status.last_errors == outcome.errors
    # A later good reload clears the errors.
    env_file.write_text(HYBRID_AB)
    assert handle.reload().kind == "applied"
    assert handle.status().last_errors is None


def test_a_missing_file_is_refused_and_the_configuration_stays(handle: ConfigHandle, env_file: Path) -> None:
    env_file.unlink()
    outcome = handle.reload()
    assert outcome.kind == "refused"
    assert outcome.errors[0].variable == "Router__ConfigFile" and "cannot read" in outcome.errors[0].problem
    assert handle.current().mode is TrustMode.GATEWAY_ENFORCED


def test_reload_reads_the_environment_again(env_file: Path) -> None:
    env = {"Router__IdentityEnvelopeAudience": "orders", "Router__ConfigFile": str(env_file)}
    handle = ConfigHandle.load(env)
    env["Router__IdentityEnvelopeAudience"] = "billing"
    assert handle.reload().kind == "applied"
    verifier = handle.current().verifier
    assert verifier is not None and verifier.settings.audience == "billing"


def test_a_bad_configuration_at_start_is_an_error_and_exits_2(env_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env_file.write_text(GATEWAY_NO_KEYS)
    env = {"Router__IdentityEnvelopeAudience": "orders", "Router__ConfigFile": str(env_file)}
    with pytest.raises(ConfigurationError):
        ConfigHandle.load(env)
    with pytest.raises(SystemExit) as exit:
        load_or_exit(env)
    assert exit.value.code == 2
    assert "Router__IdentityEnvelopeSigningKey: GatewayEnforced needs" in capsys.readouterr().err


# --- triggers ------------------------------------------------------------------------


def generation(handle: ConfigHandle) -> int:
    return handle.status().generation


def test_a_file_rewritten_in_place_is_reloaded(handle: ConfigHandle, env_file: Path, triggers: object) -> None:
    env_file.write_text(HYBRID_AB)
    assert wait_until(lambda: generation(handle) == 2)
    assert handle.current().mode is TrustMode.HYBRID


def test_a_file_replaced_by_rename_is_reloaded(handle: ConfigHandle, env_file: Path, triggers: object) -> None:
    replace_by_rename(env_file, HYBRID_AB)
    assert wait_until(lambda: generation(handle) == 2)
    assert handle.current().accepted_kids == ("k-a", "k-b")


def test_a_same_size_file_renamed_into_place_is_reloaded(
    handle: ConfigHandle, env_file: Path, triggers: object
) -> None:
    # A key rotated under the same kid: same length, same mode, so only the
    # new inode (and times) tell the files apart.
    rotated = GATEWAY_A.replace(KEY_A, KEY_B)
    assert len(rotated) == len(GATEWAY_A)
    replace_by_rename(env_file, rotated)
    assert wait_until(lambda: generation(handle) == 2)
    verifier = handle.current().verifier
    assert verifier is not None and verifier.keyring["k-a"].same_as(Key.parse("k-a", KEY_B))


def test_a_kubernetes_style_symlink_swap_is_reloaded(tmp_path: Path) -> None:
    # /etc/x/envelope.env -> ..data/envelope.env, ..data -> ..v1; the update
    # renames a new ..data link over the old one.
    (tmp_path / "..v1").mkdir()
    (tmp_path / "..v1" / "envelope.env").write_text(GATEWAY_A)
    (tmp_path / "..data").symlink_to("..v1")
    (tmp_path / "envelope.env").symlink_to("..data/envelope.env")
    handle = ConfigHandle.load(
        {"Router__IdentityEnvelopeAudience": "orders", "Router__ConfigFile": str(tmp_path / "envelope.env")}
    )
    with start_reload_triggers(handle, poll_interval=0.02):
        (tmp_path / "..v2").mkdir()
        (tmp_path / "..v2" / "envelope.env").write_text(HYBRID_AB)
        (tmp_path / "..data_tmp").symlink_to("..v2")
        os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
        assert wait_until(lambda: generation(handle) == 2)
    assert handle.current().mode is TrustMode.HYBRID


def test_a_bad_file_keeps_the_old_configuration(handle: ConfigHandle, env_file: Path, triggers: object) -> None:
    before = handle.current()
    replace_by_rename(env_file, GATEWAY_NO_KEYS)
    assert wait_until(lambda: handle.status().last_rejected is not None)
    assert handle.current() is before and generation(handle) == 1
    # ... and the next good file is applied.
    replace_by_rename(env_file, HYBRID_AB)
    assert wait_until(lambda: generation(handle) == 2)


def test_a_burst_of_changes_is_one_reload_of_the_last_file(handle: ConfigHandle, env_file: Path, triggers: object) -> None:
    for i in range(5):
        replace_by_rename(env_file, f"Router__IdentityEnvelopeClockSkewSeconds={i}\n" + GATEWAY_A)
    replace_by_rename(env_file, HYBRID_AB)
    assert wait_until(lambda: generation(handle) >= 2)
    # Long enough for a second debounced reload to have happened if the burst
    # had been split: three debounce intervals of quiet.
    quiet = threading.Event()
    quiet.wait(0.6)
    assert generation(handle) == 2
    assert handle.current().mode is TrustMode.HYBRID


def test_sighup_reloads_when_asked_for(handle: ConfigHandle, env_file: Path) -> None:
    previous = signal.getsignal(signal.SIGHUP)
    with start_reload_triggers(handle, sighup=True, watch_file=False) as running:
        assert running.watched_file is None
        env_file.write_text(HYBRID_AB)
        os.kill(os.getpid(), signal.SIGHUP)
        assert wait_until(lambda: generation(handle) == 2)
        assert handle.current().mode is TrustMode.HYBRID
    # Stopping puts the handler that was there before back.
    assert signal.getsignal(signal.SIGHUP) == previous


def test_sighup_is_not_taken_unless_asked_for(handle: ConfigHandle) -> None:
    previous = signal.getsignal(signal.SIGHUP)
    with start_reload_triggers(handle, poll_interval=0.02) as running:
        assert signal.getsignal(signal.SIGHUP) == previous
        assert running.watched_file == handle.config_file


def test_sighup_cannot_be_installed_off_the_main_thread(handle: ConfigHandle) -> None:
    failure: list[BaseException] = []

    def install() -> None:
        try:
            start_reload_triggers(handle, sighup=True, watch_file=False).stop()
        except RuntimeError as e:
            failure.append(e)

    worker = threading.Thread(target=install)
    worker.start()
    worker.join(5)
    assert len(failure) == 1 and "main thread" in str(failure[0])
