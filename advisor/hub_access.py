"""Hub access helpers every tool shares: errors users can act on, and back-off for long scans.

The converter's adapter download and the Hub scanner both go through :func:`hub_errors`.

huggingface_hub reads HF_ENDPOINT, HF_TOKEN, HF_HOME / HF_HUB_CACHE and HF_HUB_OFFLINE itself;
this module adds what a scan of thousands of repos needs on top: a retry with exponential back-off
(honouring ``Retry-After``) for 429 and 5xx answers and dropped connections, and one-line errors.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from advisor.errors import UserError

T = TypeVar("T")
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class NotOnHub(Exception):
    """The file or repo does not exist (404): an answer, not a failure."""


class NoAccess(Exception):
    """Gated or private (401/403): retrying will not help; the repo is left out and reported."""


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    value = getattr(response, "headers", {}).get("Retry-After") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def is_transient(exc: BaseException) -> bool:
    """A 429, a 5xx, a timeout or a dropped connection: worth another try."""
    status = _status(exc)
    if status is not None:
        return status in RETRY_STATUS
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    if isinstance(exc, (OfflineModeIsEnabled, LocalEntryNotFoundError)):
        return False  # offline by choice, or not cached: waiting changes nothing
    name = type(exc).__name__
    return any(k in name for k in ("Timeout", "Connect", "RemoteProtocol", "ReadError")) or isinstance(
        exc, (ConnectionError, TimeoutError)
    )


def with_backoff(call: Callable[[], T], *, attempts: int = 6, base_s: float = 0.5, cap_s: float = 30.0) -> T:
    """Run ``call``; on a transient failure wait (Retry-After, else exponential with jitter) and retry."""
    from huggingface_hub.errors import EntryNotFoundError, GatedRepoError

    for attempt in range(1, attempts + 1):
        try:
            return call()
        except GatedRepoError as exc:
            raise NoAccess(str(exc).splitlines()[0]) from None
        except EntryNotFoundError as exc:
            raise NotOnHub(str(exc)) from None
        except Exception as exc:
            if _status(exc) == 404:
                raise NotOnHub(str(exc)) from None
            if _status(exc) in (401, 403):
                raise NoAccess(str(exc).splitlines()[0] if str(exc) else "no access") from None
            if attempt == attempts or not is_transient(exc):
                raise
            wait = _retry_after(exc)
            if wait is None:
                wait = min(cap_s, base_s * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
            time.sleep(min(wait, cap_s))
    raise AssertionError("unreachable")


def require_hub(what: str, *, timeout_s: float = 10.0) -> None:
    """Fail in a second, not minutes, when the Hub cannot be reached at all.

    huggingface_hub retries a refused connection five times per request and a scan would add its own
    back-off on top (2.5 minutes of "Retrying in 8s" before one error). A single plain request to the
    endpoint tells an offline machine, a wrong HF_ENDPOINT or a dead network apart from the transient
    failures (429, 5xx, a dropped connection mid-scan) that the back-off is for.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    if constants.HF_HUB_OFFLINE:
        raise UserError(f"{what} needs the Hub, and HF_HUB_OFFLINE is set; unset it to scan the Hub")
    try:
        get_session().get(f"{constants.ENDPOINT}/api/models", params={"limit": 1}, timeout=timeout_s)
    except Exception as exc:
        if _status(exc) is not None:
            return  # the Hub answered (even with an error status): it is reachable
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"{what}: cannot reach the Hub at {constants.ENDPOINT} ({first}); check the network or HF_ENDPOINT"
        ) from None


@contextlib.contextmanager
def hub_errors(what: str, *, writing: bool = False) -> Iterator[None]:
    """Turn huggingface_hub's exceptions for ``what`` into a one-line :class:`UserError`.

    ``writing``: an upload, where 401/403 mean a token without write access rather than a private repo.
    """
    try:
        yield
    except UserError:
        raise
    except ImportError as exc:
        raise UserError(f"Hub access needs huggingface_hub: pip install 'peft-advisor[scan]' ({exc})") from None
    except Exception as exc:
        from huggingface_hub.errors import (
            GatedRepoError,
            LocalEntryNotFoundError,
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        if isinstance(exc, (OfflineModeIsEnabled, LocalEntryNotFoundError)):
            raise UserError(
                f"cannot download {what}: it is not in the local cache and the Hub cannot be reached "
                "(offline? unset HF_HUB_OFFLINE, or pass a local path)"
            ) from None
        if writing and _status(exc) in (401, 403):
            raise UserError(f"{what} failed: not allowed (is HF_TOKEN set, with write access?)") from None
        if isinstance(exc, GatedRepoError):
            raise UserError(f"{what} is gated: accept its terms on the Hub and set HF_TOKEN") from None
        if isinstance(exc, RevisionNotFoundError):
            raise UserError(f"{what}: revision not found; check the @revision") from None
        if isinstance(exc, RepositoryNotFoundError) or _status(exc) in (401, 404):
            raise UserError(f"{what} not found on the Hub (or private: set HF_TOKEN)") from None
        if isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
            if writing:
                raise UserError(f"{what} failed: {exc}; check the network or HF_ENDPOINT") from None
            raise UserError(
                f"cannot download {what}: {exc}; check the network or HF_ENDPOINT, or pass a local path"
            ) from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{what}: the Hub request failed ({first}); check the network or HF_ENDPOINT") from None
