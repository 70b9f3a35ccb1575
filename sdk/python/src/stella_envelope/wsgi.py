"""WSGI middleware (Flask, Django, any PEP 3333 application).

    app.wsgi_app = EnvelopeWSGIMiddleware(app.wsgi_app, config=handle)     # Flask
    application = EnvelopeWSGIMiddleware(get_wsgi_application(), handle)   # Django

For every request it takes one configuration snapshot, checks the envelope,
applies the trust mode, and either answers the rejection itself or calls the
application with, in the WSGI environ (``request.environ`` in Flask,
``request.META`` in Django):

- ``stella.identity``: the :class:`~stella_envelope.verify.VerifiedEnvelope`
  when the envelope is valid *and* the trust mode lets the service use it,
  else ``None``;
- ``stella.outcome``: the :data:`~stella_envelope.middleware.EnvelopeOutcome`;
- ``stella.config``: the :class:`~stella_envelope.config.ServiceConfig` the
  request was decided with.

WSGI hands the application one value per header name: a server joins a
repeated header with commas. A joined envelope header can never verify (no
signed value contains a comma), so a duplicate is still refused, though with
the code of the check the joined value fails rather than
``duplicate_header``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, urlsplit

from .middleware import Middleware, evaluate
from .trust import Rejection, problem_body, problem_headers

__all__ = ["EnvelopeWSGIMiddleware", "ENVIRON_IDENTITY", "ENVIRON_OUTCOME", "ENVIRON_CONFIG"]

ENVIRON_IDENTITY = "stella.identity"
ENVIRON_OUTCOME = "stella.outcome"
ENVIRON_CONFIG = "stella.config"

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_PREFIX = "HTTP_X_STELLAOPS_IDENTITY_ENVELOPE"
_PATH_SAFE = "/!$&'()*+,;=:@-._~"


def _envelope_fields(environ: Environ) -> list[tuple[str, str]]:
    # CGI names: "X-StellaOps-Identity-Envelope-Kid" is HTTP_X_..._KID.
    return [
        (key[5:].replace("_", "-"), value)
        for key, value in environ.items()
        if key.startswith(_PREFIX) and isinstance(value, str)
    ]


def _request_path(environ: Environ) -> str:
    """The path as the server received it, percent encoding kept.

    ``PATH_INFO`` is already decoded, so the request line is preferred
    (``REQUEST_URI``/``RAW_URI``: gunicorn, uWSGI, mod_wsgi, Werkzeug).
    Without it the path is re-encoded as PEP 3333's URL reconstruction does.
    """
    for key in ("RAW_URI", "REQUEST_URI"):
        uri = environ.get(key)
        if isinstance(uri, str) and uri:
            if uri.startswith("/"):
                return uri.split("?", 1)[0]
            if "://" in uri:  # absolute-form request target
                return urlsplit(uri).path or "/"
    script = environ.get("SCRIPT_NAME", "")
    info = environ.get("PATH_INFO", "")
    # PEP 3333: environ strings are bytes decoded as latin-1.
    return quote((script + info).encode("latin-1", "replace"), safe=_PATH_SAFE)


class EnvelopeWSGIMiddleware(Middleware[WSGIApp]):
    """Applies the configured trust mode to every request (see
    :class:`~stella_envelope.middleware.Middleware` for the arguments).
    """

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        # The one read of the configuration for this request.
        config, jwks = self._live()
        result = evaluate(
            config,
            _envelope_fields(environ),
            environ.get("REQUEST_METHOD", "GET"),
            _request_path(environ),
            self._clock(),
            jwks=jwks,
        )
        if isinstance(result, Rejection):
            body = problem_body(result)
            start_response(f"{result.status} {result.reason}", problem_headers(body))
            return [body]
        environ[ENVIRON_IDENTITY] = result.identity
        environ[ENVIRON_OUTCOME] = result
        environ[ENVIRON_CONFIG] = config
        return self.app(environ, start_response)
