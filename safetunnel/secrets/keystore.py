"""The OS keyring, vetted and with a timeout.

Service ``safetunnel``; each username comes from a :class:`~safetunnel.secrets.names.SecretName`.
A backend that cannot keep a secret safely (fail, null, priority < 1, plaintext) counts as
"no keyring". Every keyring call runs in a worker thread with a
timeout, because a locked Secret Service can block forever waiting for an unlock dialog.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from safetunnel.errors import CredentialError
from safetunnel.secrets.names import SecretName

SERVICE = "safetunnel"
DEFAULT_TIMEOUT = 5.0
TIMEOUT_ENV = "SAFETUNNEL_KEYRING_TIMEOUT"
INSTALL_HINT = (
    "install a keyring backend such as Secret Service (gnome-keyring) or KWallet, "
    "or keyrings.cryptfile"
)
# Markers of backends that store secrets readable by anyone who can read the file. We vet by an
# explicit "plaintext"/"unencrypted" marker and not by "file": a file-backed backend can be
# encrypted (keyrings.cryptfile), and safetunnel's own test backend is file-backed on purpose.
_PLAINTEXT_MARKERS = ("plaintext", "unencrypted", "insecure")
_NO_KEYRING_MODULES = ("keyring.backends.fail", "keyring.backends.null")
R = TypeVar("R")


@dataclass(frozen=True)
class BackendStatus:
    """Whether the keyring backend is good enough to hold secrets, and why not."""

    name: str
    usable: bool
    reason: str | None = None


def backend_name(backend: Any) -> str:
    """Short backend name as keyring users know it, e.g. ``fail.Keyring``."""
    cls = type(backend)
    module = cls.__module__.removeprefix("keyring.backends.")
    return f"{module}.{cls.__name__}"


def vet_backend(backend: Any) -> BackendStatus:
    """Decide whether ``backend`` counts as a real keyring: one that keeps secrets encrypted and
    that keyring itself considers viable here (priority at least 1)."""
    name = backend_name(backend)
    problem = _problem(backend)
    if problem is None:
        return BackendStatus(name, True)
    reason = (
        f"No OS keyring is available (backend: {name}; {problem}). Secrets will be asked "
        f"for each time; to store them, {INSTALL_HINT}."
    )
    return BackendStatus(name, False, reason)


def _problem(backend: Any) -> str | None:
    cls = type(backend)
    if cls.__module__ in _NO_KEYRING_MODULES:
        return "it stores nothing"
    label = f"{cls.__module__}.{cls.__name__}".lower()
    if any(marker in label for marker in _PLAINTEXT_MARKERS):
        return "it stores secrets unencrypted"
    from keyring.backends.chainer import ChainerBackend  # lazy: see _load_default_backend

    if isinstance(backend, ChainerBackend):
        # A chainer writes to its first (highest-priority) backend, so that one decides.
        chained = list(backend.backends)
        return _problem(chained[0]) if chained else "it chains no usable backends"
    try:
        priority = float(backend.priority)
    except Exception as err:  # keyring signals "not viable" by raising from priority
        return f"it is not usable here: {err}"
    return None if priority >= 1 else f"priority {priority:g} is below 1"


class KeyringStore:
    """Keyring access for safetunnel's service, vetted and bounded in time.

    ``backend`` is injected by tests; by default keyring's own choice is used (which honours
    ``PYTHON_KEYRING_BACKEND``). ``timeout`` defaults to ``$SAFETUNNEL_KEYRING_TIMEOUT`` or 5 s.
    """

    def __init__(
        self,
        backend: Any | None = None,
        *,
        timeout: float | None = None,
        loader: Callable[[], Any] | None = None,
    ) -> None:
        self._backend = backend
        self._loader = loader if loader is not None else _load_default_backend
        self.timeout = timeout if timeout is not None else _env_timeout()
        self._stuck: str | None = None

    def status(self) -> BackendStatus:
        """Vet the backend. A backend that cannot even be loaded counts as no keyring."""
        try:
            return vet_backend(self._get_backend())
        except CredentialError as err:
            return BackendStatus(
                "unknown",
                False,
                f"{err.message}. Secrets will be asked for "
                f"each time; to store them, {INSTALL_HINT}.",
            )

    def require_usable(self) -> BackendStatus:
        """The status, or CredentialError with the vetting reason (for ``creds set``)."""
        status = self.status()
        if not status.usable:
            raise CredentialError(
                status.reason or "no usable keyring",
                hint="Until then, safetunnel asks for secrets as needed.",
            )
        return status

    def get(self, name: SecretName) -> str | None:
        backend = self._get_backend()
        value = self._call("reading a secret", backend.get_password, SERVICE, name.username)
        return value if isinstance(value, str) else None

    def set(self, name: SecretName, secret: str) -> None:
        backend = self._get_backend()
        self._call("storing a secret", backend.set_password, SERVICE, name.username, secret)

    def delete(self, name: SecretName) -> bool:
        """Remove a secret; False when there was none."""
        backend = self._get_backend()
        username = name.username
        if self._call("checking a secret", backend.get_password, SERVICE, username) is None:
            return False
        self._call("deleting a secret", backend.delete_password, SERVICE, username)
        return True

    def _get_backend(self) -> Any:
        if self._backend is None:
            # Loading may itself talk to D-Bus (a backend's priority probes the service).
            self._backend = self._call("loading the keyring backend", self._loader)
        return self._backend

    def _call(self, what: str, func: Callable[..., R], *args: Any) -> R:
        if self._stuck is not None:
            # An earlier call never returned; a second one would block the same way.
            raise CredentialError(self._stuck)
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["value"] = func(*args)
            except BaseException as err:  # handed back to the caller's thread below
                box["error"] = err

        # Daemon on purpose, the one exception to "join every thread": a call stuck inside a
        # keyring backend cannot be cancelled, and a non-daemon thread would keep the process
        # alive at exit. We join with the timeout and abandon it only if it never answers.
        worker = threading.Thread(target=run, name="safetunnel-keyring", daemon=True)
        worker.start()
        worker.join(self.timeout)
        if worker.is_alive():
            self._stuck = (
                f"the keyring did not answer within {self.timeout:g} s while {what} (is it locked?)"
            )
            raise CredentialError(self._stuck, hint=_UNLOCK_HINT)
        if "error" in box:
            raise _translate(box["error"], what)
        value: R = box["value"]
        return value


_UNLOCK_HINT = (
    "Unlock your keyring (for example log in to the desktop session), or set "
    "PYTHON_KEYRING_BACKEND=keyring.backends.null.Keyring to be asked for secrets "
    f"instead; {TIMEOUT_ENV} changes the wait."
)


def _load_default_backend() -> Any:
    """keyring's own choice of backend. keyring (with importlib_metadata, jaraco, email...) is
    imported only here and when vetting: ~11 MB of RSS that a share whose key needs no secret
    never uses."""
    import keyring

    return keyring.get_keyring()


def _translate(err: BaseException, what: str) -> BaseException:
    import keyring.errors

    if isinstance(err, keyring.errors.KeyringError | OSError | RuntimeError | ImportError):
        # Only the exception type and message: they never contain the secret itself.
        return CredentialError(
            f"keyring error while {what}: {type(err).__name__}: {err}",
            hint=f"Check the keyring backend, or {INSTALL_HINT}.",
        )
    return err


def _env_timeout() -> float:
    raw = os.environ.get(TIMEOUT_ENV)
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise CredentialError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise CredentialError(f"{TIMEOUT_ENV} must be positive")
    return value
