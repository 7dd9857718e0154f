"""Telegram alerts via python-telegram-bot: bounded retries, never raises, never leaks the token.

An alert is a side effect of monitoring, so a Telegram outage, a bad token or a wrong chat id
must cost a warning in the log, not a failed pipeline: ``send`` always returns an outcome.

The bot token is a secret that the Bot API puts in every URL path. python-telegram-bot logs
that URL (DEBUG, at ``Bot()``), puts the token in an ``InvalidToken`` message, and httpx logs
every request URL at INFO. So the ``Bot`` only ever sees a placeholder token; the real one is
put into the URL by our request class just before httpx sends it, a filter on the ``httpx``
logger masks it there, and every error text we keep is masked again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import warnings
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, Protocol
from urllib.parse import quote

from telegram import Bot, LinkPreviewOptions
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.request import HTTPXRequest

from persona.errors import ConfigurationError

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.telegram.org/bot"
REDACTED = "[REDACTED]"
MAX_BACKOFF_SECONDS = 60.0
_LOGGERS_TO_MASK = ("httpx",)  # httpx logs "HTTP Request: POST <url with token> ..." at INFO

Status = Literal["sent", "failed", "disabled"]


class _Message(Protocol):
    text: str
    parse_mode: str | None


@dataclass(frozen=True)
class AlertOutcome:
    """What happened to one alert; ``error`` is a token-free text when it was not sent."""

    status: Status
    attempts: int
    error: str | None = None
    message_id: int | None = None

    @property
    def sent(self) -> bool:
        return self.status == "sent"


class _SecretMask(logging.Filter):
    """Masks registered secrets in records of the loggers it is attached to."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, secret: str) -> None:
        with self._lock:
            self._secrets.update(_variants(secret))

    def mask(self, text: str) -> str:
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is the logging module's business
            return True
        masked = self.mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


_MASK = _SecretMask()


def _variants(secret: str) -> set[str]:
    """The token as it may appear in text: raw, and percent-encoded as in a URL."""
    return {value for value in (secret, quote(secret, safe=""), quote(secret)) if value}


def _install_mask() -> None:
    for name in _LOGGERS_TO_MASK:
        target = logging.getLogger(name)
        if _MASK not in target.filters:
            target.addFilter(_MASK)


class _TokenRequest(HTTPXRequest):
    """Puts the real token into the URL at the last moment, where only httpx sees it."""

    __slots__ = ("_token",)

    def __init__(self, token: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._token = token

    async def do_request(self, url: str, method: str, *args: Any, **kwargs: Any) -> Any:
        return await super().do_request(url.replace(REDACTED, self._token), method, *args, **kwargs)


class TelegramNotifier:
    """Sends alerts to one chat. Without a token or chat id it is disabled and only logs."""

    def __init__(
        self,
        token: str | None,
        chat_id: str | int | None,
        *,
        base_url: str | None = None,
        timeout: float = 10,
        retries: int = 3,
        backoff: float = 1.0,
        max_retry_after: float = 30.0,
    ) -> None:
        if timeout <= 0:
            raise ConfigurationError(f"Telegram timeout must be positive, got {timeout}")
        if retries < 0:
            raise ConfigurationError(f"Telegram retries must be >= 0, got {retries}")
        if backoff < 0 or max_retry_after < 0:
            raise ConfigurationError("Telegram backoff and max_retry_after must be >= 0")
        self._token = (token or "").strip()
        self.chat_id = str(chat_id).strip() if chat_id is not None else ""
        self.base_url = base_url or DEFAULT_BASE_URL
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.max_retry_after = float(max_retry_after)
        if self._token:
            _MASK.add(self._token)
            _install_mask()

    @property
    def enabled(self) -> bool:
        return bool(self._token and self.chat_id)

    def __repr__(self) -> str:
        token = REDACTED if self._token else "None"
        return (
            f"TelegramNotifier(token={token}, chat_id={self.chat_id!r}, "
            f"base_url={self._mask(self.base_url)!r}, retries={self.retries})"
        )

    def send(self, alert: _Message | str) -> AlertOutcome:
        """Send from sync code, whether or not this thread already runs an event loop.

        Inside a running loop (a notebook, an async framework) the send runs on a worker
        thread with its own loop, and this call blocks until it is done; prefer
        ``await send_async(...)`` there.
        """
        try:
            if not self.enabled:
                return self._disabled(alert)
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return self._run(alert)
            with concurrent.futures.ThreadPoolExecutor(1, "telegram-alert") as pool:
                return pool.submit(self._run, alert).result()
        except Exception as exc:  # noqa: BLE001 - an alert must never fail the pipeline
            return self._give_up(0, f"unexpected error: {self._describe(exc)}")

    async def send_async(self, alert: _Message | str) -> AlertOutcome:
        """Send from async code; same guarantees as :meth:`send`."""
        try:
            if not self.enabled:
                return self._disabled(alert)
            return await self._send(alert)
        except Exception as exc:  # noqa: BLE001 - an alert must never fail the pipeline
            return self._give_up(0, f"unexpected error: {self._describe(exc)}")

    # -- internals -------------------------------------------------------------------------
    def _run(self, alert: _Message | str) -> AlertOutcome:
        try:
            # A private loop: asyncio.run() would also reset this thread's current event loop.
            with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
                return runner.run(self._send(alert))
        except Exception as exc:  # noqa: BLE001 - an alert must never fail the pipeline
            return self._give_up(0, f"unexpected error: {self._describe(exc)}")

    def _disabled(self, alert: _Message | str) -> AlertOutcome:
        missing = " and ".join(
            name for name, value in (("token", self._token), ("chat id", self.chat_id)) if not value
        )
        logger.info("Telegram alerts disabled (no %s); the alert was:\n%s", missing, _text(alert))
        return AlertOutcome("disabled", 0)

    async def _send(self, alert: _Message | str) -> AlertOutcome:
        text, parse_mode = _text(alert), _parse_mode(alert)
        request = _TokenRequest(
            self._token,
            connection_pool_size=1,
            connect_timeout=self.timeout,
            read_timeout=self.timeout,
            write_timeout=self.timeout,
            pool_timeout=self.timeout,
        )
        # The Bot never learns the token (see the module docstring). We skip Bot.initialize():
        # its getMe costs a round trip per alert and sendMessage reports a bad token just as well.
        bot = Bot(REDACTED, base_url=self.base_url, request=request, get_updates_request=request)
        await request.initialize()
        try:
            return await self._attempts(bot, text, parse_mode)
        finally:
            try:
                await request.shutdown()
            except Exception:  # noqa: BLE001 - closing a client must not hide the outcome
                logger.debug("closing the Telegram HTTP client failed", exc_info=False)

    async def _attempts(self, bot: Bot, text: str, parse_mode: str | None) -> AlertOutcome:
        total = self.retries + 1
        error = "not attempted"
        for attempt in range(1, total + 1):
            try:
                message = await bot.send_message(
                    chat_id=self.chat_id,
                    text=text,
                    parse_mode=parse_mode,
                    link_preview_options=LinkPreviewOptions(is_disabled=True),
                )
            except RetryAfter as exc:
                wait = _retry_after_seconds(exc)
                error = f"flood control: Telegram asks to wait {wait:g}s"
                if wait > self.max_retry_after:
                    return self._give_up(attempt, f"{error} (more than {self.max_retry_after:g}s)")
            except (BadRequest, Forbidden, InvalidToken, ChatMigrated, Conflict) as exc:
                # Wrong request, token or chat: retrying cannot help.
                return self._give_up(attempt, self._describe(exc))
            except NetworkError as exc:  # connection errors, timeouts (TimedOut), 5xx
                error = self._describe(exc)
                wait = min(self.backoff * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)
            except TelegramError as exc:  # e.g. an unparsable answer: not a transient fault
                return self._give_up(attempt, self._describe(exc))
            else:
                logger.info(
                    "Telegram alert sent to chat %s (message %s, attempt %d)",
                    self.chat_id,
                    message.message_id,
                    attempt,
                )
                return AlertOutcome("sent", attempt, None, message.message_id)
            if attempt < total:
                logger.warning(
                    "Telegram alert attempt %d/%d failed (%s); retrying in %.2fs",
                    attempt,
                    total,
                    error,
                    wait,
                )
                await asyncio.sleep(wait)
        return self._give_up(total, error)

    def _give_up(self, attempts: int, error: str) -> AlertOutcome:
        error = self._mask(error)
        logger.warning(
            "Telegram alert NOT sent to chat %s after %d attempt(s): %s",
            self.chat_id,
            attempts,
            error,
        )
        return AlertOutcome("failed", attempts, error)

    def _describe(self, exc: BaseException) -> str:
        text = str(exc) or type(exc).__name__
        return self._mask(f"{type(exc).__name__}: {text}")

    def _mask(self, text: str) -> str:
        for secret in sorted(_variants(self._token), key=len, reverse=True) if self._token else ():
            text = text.replace(secret, REDACTED)
        return _MASK.mask(text)


def _text(alert: _Message | str) -> str:
    return alert if isinstance(alert, str) else alert.text


def _parse_mode(alert: _Message | str) -> str | None:
    return None if isinstance(alert, str) else alert.parse_mode


def _retry_after_seconds(exc: RetryAfter) -> float:
    """The flood-control wait, read without PTB 22's int-vs-timedelta deprecation warning."""
    value = getattr(exc, "_retry_after", None)
    if not isinstance(value, timedelta):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)
