"""Verify Stella Gateway identity envelopes in Python services.

The gateway tells a service who is calling with six signed
``X-StellaOps-Identity-Envelope*`` headers (``envelope/SPEC.md``). This
package verifies them (:class:`Verifier`), applies the service's trust mode
(:func:`decide`), reads the ``Router__*`` configuration with runtime reload
(:class:`ConfigHandle`, which also fetches keys from a JWKS URL:
:class:`JwksKeys`), and wires it all into ASGI and WSGI applications
(:class:`stella_envelope.asgi.EnvelopeMiddleware`,
:class:`stella_envelope.wsgi.EnvelopeWSGIMiddleware`).

The core does no I/O and reads no clock: every check takes ``now`` in unix
seconds, so it is tested with an injected time. The middleware is the shell
that supplies the clock and the request.
"""

from .config import ServiceConfig, fold_env_name, parse_config_file
from .errors import ConfigError, ConfigurationError, EnvelopeError, ErrorCode
from .format import AuthMethod, Confirmation, EnvelopeHeaders, extract_headers
from .jwks import JwksKeys, JwksProblem, JwksSettings, parse_jwks
from .keys import Alg, Key, KeyProblem, Keyring
from .middleware import EnvelopeOutcome, NeedsServiceAuth, Trusted, evaluate, evaluate_async
from .reload import (
    ConfigHandle,
    ReloadOutcome,
    ReloadStatus,
    ReloadTriggers,
    load_or_exit,
    start_reload_triggers,
)
from .trust import Action, Reject, Rejection, ServiceAuth, TrustMode, UseEnvelope, decide
from .verify import (
    Absent,
    EnvelopeCheck,
    Identity,
    Invalid,
    Valid,
    VerifiedEnvelope,
    Verifier,
    VerifierSettings,
    check_request,
)

__version__ = "0.1.0"

__all__ = [
    "Absent",
    "Action",
    "Alg",
    "AuthMethod",
    "ConfigError",
    "ConfigHandle",
    "ConfigurationError",
    "Confirmation",
    "EnvelopeCheck",
    "EnvelopeError",
    "EnvelopeHeaders",
    "EnvelopeOutcome",
    "ErrorCode",
    "Identity",
    "Invalid",
    "JwksKeys",
    "JwksProblem",
    "JwksSettings",
    "Key",
    "KeyProblem",
    "Keyring",
    "NeedsServiceAuth",
    "Reject",
    "Rejection",
    "ReloadOutcome",
    "ReloadStatus",
    "ReloadTriggers",
    "ServiceAuth",
    "ServiceConfig",
    "Trusted",
    "TrustMode",
    "UseEnvelope",
    "Valid",
    "VerifiedEnvelope",
    "Verifier",
    "VerifierSettings",
    "check_request",
    "decide",
    "evaluate",
    "evaluate_async",
    "extract_headers",
    "fold_env_name",
    "load_or_exit",
    "parse_config_file",
    "parse_jwks",
    "start_reload_triggers",
]
