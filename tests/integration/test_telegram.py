"""TelegramNotifier against the local Bot API stand-in: delivery, retries, failures, secrecy."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import pytest

from persona.adapters.telegram import REDACTED, AlertOutcome, TelegramNotifier
from persona.monitoring.alerts import Alert, drift_alert
from persona.services.processes import free_port
from persona_tools.telegram_stub import TelegramStub

TOKEN = "123456789:AAH-secret_Token-value"
CHAT = "-1001234567890"


@pytest.fixture
def stub() -> Iterator[TelegramStub]:
    with TelegramStub(token=TOKEN) as server:
        yield server


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Everything, including the chatty third-party loggers that see URLs."""
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "telegram", "persona"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def _notifier(base_url: str, **overrides) -> TelegramNotifier:
    options = {"base_url": base_url, "timeout": 2.0, "retries": 2, "backoff": 0.01}
    return TelegramNotifier(TOKEN, CHAT, **{**options, **overrides})


def _alert() -> Alert:
    return drift_alert(
        model_name="persona-segmentation",
        window="2026-03",
        drift_share=0.5,
        threshold=0.3,
        drifted_columns=[("age", "wasserstein", 0.18), ("<monthly & spend>", "psi", 0.4)],
        new_version="2",
        promoted=True,
        report_link="https://reports.example.com/2026-03.html",
    )


def _assert_token_absent(logs: pytest.LogCaptureFixture, outcome: AlertOutcome) -> None:
    assert TOKEN not in logs.text
    for record in logs.records:
        assert TOKEN not in record.getMessage()
        assert TOKEN not in (record.exc_text or "")
    assert TOKEN not in (outcome.error or "")
    assert TOKEN not in repr(outcome)


def test_alert_arrives_with_chat_id_parse_mode_and_columns(stub, logs):
    outcome = _notifier(stub.base_url).send(_alert())

    assert outcome == AlertOutcome("sent", 1, None, stub.messages[0].message_id)
    [message] = stub.messages
    assert message.chat_id == CHAT
    assert message.parse_mode == "HTML"
    assert message.token == TOKEN  # the real token reached the server, only there
    assert "<code>age</code>" in message.text
    assert "<code>&lt;monthly &amp; spend&gt;</code>" in message.text
    assert message["chat_id"] == CHAT  # messages read as JSON-like dicts too
    assert stub.calls("getMe") == 0  # no getMe round trip per alert
    _assert_token_absent(logs, outcome)


def test_token_is_masked_in_httpx_request_log(stub, logs):
    """httpx logs every request URL at INFO; without the mask it would contain the token."""
    _notifier(stub.base_url).send(_alert())
    requests = [r.getMessage() for r in logs.records if r.name == "httpx"]
    assert any(f"/bot{REDACTED}/sendMessage" in message for message in requests)
    assert not any(TOKEN in message for message in requests)


def test_two_server_errors_then_success_is_sent_after_three_attempts(stub, logs):
    stub.fail_next(2, status=500)
    outcome = _notifier(stub.base_url, retries=3).send(_alert())

    assert outcome.status == "sent"
    assert outcome.attempts == 3
    assert stub.calls() == 3
    assert len(stub.messages) == 1
    assert sum("retrying" in r.getMessage() for r in logs.records) == 2
    _assert_token_absent(logs, outcome)


def test_server_down_fails_after_bounded_attempts_without_raising(logs):
    closed = f"http://127.0.0.1:{free_port()}/bot"
    outcome = _notifier(closed, retries=2).send(_alert())

    assert outcome.status == "failed"
    assert outcome.attempts == 3  # retries + 1
    assert outcome.message_id is None
    assert "ConnectError" in (outcome.error or "")
    _assert_token_absent(logs, outcome)


def test_slow_server_times_out_and_fails(stub, logs):
    stub.delay = 5.0
    outcome = _notifier(stub.base_url, timeout=0.2, retries=1).send(_alert())

    assert outcome.status == "failed"
    assert outcome.attempts == 2
    assert "TimedOut" in (outcome.error or "")
    _assert_token_absent(logs, outcome)


def test_unauthorized_fails_at_once(stub, logs):
    stub.unauthorized = True
    outcome = _notifier(stub.base_url, retries=3).send(_alert())

    assert outcome.status == "failed"
    assert outcome.attempts == 1
    assert stub.calls() == 1
    assert "InvalidToken" in (outcome.error or "")
    _assert_token_absent(logs, outcome)


def test_wrong_token_is_rejected_and_not_leaked(logs):
    with TelegramStub(token="999:other") as other:
        outcome = _notifier(other.base_url).send(_alert())
    assert (outcome.status, outcome.attempts) == ("failed", 1)
    _assert_token_absent(logs, outcome)


def test_chat_not_found_fails_at_once(stub):
    stub.fail_next(1, status=400, description="Bad Request: chat not found")
    outcome = _notifier(stub.base_url).send(_alert())
    assert (outcome.status, outcome.attempts) == ("failed", 1)
    assert "chat not found" in (outcome.error or "").lower()


def test_invalid_html_is_a_bad_request_not_retried(stub):
    outcome = _notifier(stub.base_url).send(Alert("<b>unclosed & broken"))
    assert (outcome.status, outcome.attempts) == ("failed", 1)
    assert "parse entities" in (outcome.error or "")
    assert stub.messages == []


def test_plain_string_is_sent_without_parse_mode(stub):
    outcome = _notifier(stub.base_url).send("drift <3 & more")
    assert outcome.sent
    assert stub.messages[0].parse_mode is None
    assert stub.messages[0].text == "drift <3 & more"


def test_flood_control_wait_is_honoured(stub):
    stub.fail_next(1, status=429, retry_after=0.3)
    started = time.monotonic()
    outcome = _notifier(stub.base_url).send(_alert())
    assert (outcome.status, outcome.attempts) == ("sent", 2)
    assert time.monotonic() - started >= 0.3


def test_flood_control_wait_beyond_the_cap_gives_up(stub):
    stub.fail_next(1, status=429, retry_after=120)
    outcome = _notifier(stub.base_url, max_retry_after=5).send(_alert())
    assert (outcome.status, outcome.attempts) == ("failed", 1)
    assert "120" in (outcome.error or "")


def test_token_echoed_by_the_server_is_masked_in_error_and_logs(stub, logs):
    """A proxy or gateway may echo the request path, token included, in its error text."""
    stub.fail_next(3, status=502, description=f"Bad Gateway: upstream /bot{TOKEN}/sendMessage")
    outcome = _notifier(stub.base_url, retries=2).send(_alert())

    assert (outcome.status, outcome.attempts) == ("failed", 3)
    assert REDACTED in (outcome.error or "")
    _assert_token_absent(logs, outcome)


@pytest.mark.parametrize(
    ("token", "chat_id"), [(None, CHAT), ("", CHAT), (TOKEN, None), (TOKEN, "")]
)
def test_missing_token_or_chat_disables_and_logs_the_text(stub, logs, token, chat_id):
    notifier = TelegramNotifier(token, chat_id, base_url=stub.base_url)
    outcome = notifier.send(_alert())

    assert outcome == AlertOutcome("disabled", 0, None, None)
    assert not notifier.enabled
    assert stub.requests == []
    assert any(
        r.levelno == logging.INFO and "Data drift detected" in r.getMessage() for r in logs.records
    )


def test_send_works_inside_a_running_event_loop(stub):
    notifier = _notifier(stub.base_url)

    async def pipeline_step() -> AlertOutcome:
        asyncio.get_running_loop()  # as in Mage's notebook: a loop runs in this thread
        return notifier.send(_alert())

    outcome = asyncio.run(pipeline_step())
    assert (outcome.status, outcome.attempts) == ("sent", 1)
    assert len(stub.messages) == 1


def test_send_async_from_a_coroutine(stub):
    outcome = asyncio.run(_notifier(stub.base_url).send_async(_alert()))
    assert outcome.sent and len(stub.messages) == 1


def test_send_leaves_the_thread_event_loop_alone(stub):
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        assert _notifier(stub.base_url).send(_alert()).sent
        assert asyncio.get_event_loop() is loop
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def test_repr_hides_the_token():
    notifier = TelegramNotifier(TOKEN, CHAT)
    assert TOKEN not in repr(notifier) and REDACTED in repr(notifier)
