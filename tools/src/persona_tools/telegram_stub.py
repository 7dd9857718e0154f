"""A local stand-in for the Telegram Bot API, for tests and demos (Telegram is unreachable here).

It speaks just enough of the Bot API at ``/bot<token>/<method>`` (``getMe``, ``sendMessage``,
JSON or form bodies) for python-telegram-bot to talk to it via ``Bot(token, base_url=...)``,
records what arrived, checks HTML texts the way Telegram does (supported tags, entities,
length), and can simulate failures: HTTP errors, flood control, a revoked token, slow answers.
Standard library only, so the end-to-end test and ``make demo`` can use it anywhere::

    with TelegramStub() as stub:
        notifier = TelegramNotifier("123:abc", "42", base_url=stub.base_url)
        ...
        assert stub.messages[0].chat_id == "42"

Run ``python -m persona_tools.telegram_stub --port 8081`` to keep one up for a demo.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from html.parser import HTMLParser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

logger = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 4096
BOT_USER = {
    "id": 4242424242,
    "is_bot": True,
    "first_name": "Persona alerts (stub)",
    "username": "persona_stub_bot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}
_PATH = re.compile(r"^/bot(?P<token>[^/]+)/(?P<method>[A-Za-z]+)/?$")
# Tags Telegram accepts in parse_mode=HTML (https://core.telegram.org/bots/api#html-style).
_TAGS = {
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a",
    "code", "pre", "blockquote", "tg-emoji",
}  # fmt: skip
_NAMED_ENTITIES = {"lt", "gt", "amp", "quot"}


@dataclass(frozen=True)
class ReceivedMessage:
    """One accepted sendMessage call, as the stub understood it."""

    token: str
    chat_id: str
    text: str
    parse_mode: str | None
    message_id: int

    def __getitem__(self, key: str) -> Any:
        """``message["text"]`` works too, for tests that think of messages as JSON."""
        return getattr(self, key)


@dataclass(frozen=True)
class ReceivedRequest:
    """Any call that reached the stub, answered or not (for counting attempts)."""

    token: str
    method: str
    status: int


class _TelegramHTML(HTMLParser):
    """Telegram's HTML rules, strictly enough that a message it would reject fails here too."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.stack: list[str] = []
        self.visible: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _TAGS:  # e.g. <br> or <p>: Telegram wants real newlines
            raise ValueError(f'Unsupported start tag "{tag}"')
        if tag == "a" and not dict(attrs).get("href"):
            raise ValueError('Tag "a" must have an href')
        self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        raise ValueError(f'Unsupported self-closing tag "{tag}"')

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            raise ValueError(f'Unexpected end tag "{tag}"')
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        if "<" in data or ">" in data:
            raise ValueError("Unescaped angle bracket in text")
        self.visible.append(data)

    def handle_entityref(self, name: str) -> None:
        if name not in _NAMED_ENTITIES:
            raise ValueError(f'Unsupported entity "&{name};"')
        self.visible.append(unescape(f"&{name};"))

    def handle_charref(self, name: str) -> None:
        self.visible.append(unescape(f"&#{name};"))


def telegram_html_text(text: str) -> str:
    """The visible text of a parse_mode=HTML message; ``ValueError`` where Telegram says 400.

    Also useful on its own: a unit test can check that built alerts are valid Telegram HTML.
    """
    if re.search(r"&(?![A-Za-z]+;|#[0-9]+;|#x[0-9A-Fa-f]+;)", text):
        raise ValueError("Unescaped '&' (write &amp;)")
    parser = _TelegramHTML()
    parser.feed(text)
    parser.close()
    if parser.rawdata:  # an unterminated tag such as "<b" stays buffered
        raise ValueError("Unterminated tag")
    if parser.stack:
        raise ValueError(f'Unclosed tag "{parser.stack[-1]}"')
    return "".join(parser.visible)


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class TelegramStub:
    """A threaded Bot API server on 127.0.0.1; a context manager that starts and stops it.

    Switches, all safe to flip while it runs:
    ``token`` - only this token is accepted (others get 401); ``None`` accepts any.
    ``unauthorized`` - answer 401 to every method (a revoked token).
    ``delay`` - seconds to wait before answering (provokes client timeouts).
    ``fail_next(n, status, ...)`` - the next ``n`` calls fail with ``status``.
    """

    def __init__(self, port: int = 0, token: str | None = None) -> None:
        self.token = token
        self.unauthorized = False
        self.delay = 0.0
        self.messages: list[ReceivedMessage] = []
        self.requests: list[ReceivedRequest] = []
        self._failures: list[tuple[int, str | None, float | None]] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._next_message_id = 1
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._server.daemon_threads = True
        self._server.handle_error = self._handle_error  # type: ignore[method-assign]
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What to pass as ``base_url`` to python-telegram-bot (the token gets appended)."""
        return f"{self.url}/bot"

    def start(self) -> TelegramStub:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"telegram-stub-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()  # wakes handlers sleeping on ``delay``
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> TelegramStub:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- switches and inspection -----------------------------------------------------------
    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        *,
        description: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Fail the next ``n`` calls with ``status``; 429 with ``retry_after`` = flood control."""
        with self._lock:
            self._failures.extend([(status, description, retry_after)] * n)

    def texts(self) -> list[str]:
        with self._lock:
            return [message.text for message in self.messages]

    def calls(self, method: str = "sendMessage") -> int:
        """How many ``method`` calls arrived, failed ones included (= client attempts)."""
        with self._lock:
            return sum(1 for request in self.requests if request.method == method)

    def reset(self) -> None:
        with self._lock:
            self.messages.clear()
            self.requests.clear()
            self._failures.clear()
        self.unauthorized = False
        self.delay = 0.0

    # -- the API ---------------------------------------------------------------------------
    def _answer(
        self, token: str, method: str, params: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        status, body = self._dispatch(token, method, params)
        with self._lock:
            self.requests.append(ReceivedRequest(token, method, status))
        return status, body

    def _dispatch(
        self, token: str, method: str, params: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        if self.delay and self._closing.wait(self.delay):
            return _error(503, "Service Unavailable: stub is closing")
        if self.unauthorized or (self.token is not None and token != self.token):
            return _error(401, "Unauthorized")
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            status, description, retry_after = failure
            parameters = {"retry_after": retry_after} if retry_after is not None else None
            if description is None:
                description = (
                    f"Too Many Requests: retry after {retry_after}"
                    if status == 429
                    else HTTPStatus(status).phrase
                )
            return _error(status, description, parameters)
        if method.lower() == "getme":
            return 200, {"ok": True, "result": BOT_USER}
        if method.lower() == "sendmessage":
            return self._send_message(token, params)
        return _error(404, "Not Found")

    def _send_message(self, token: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        chat_id = str(params.get("chat_id", "")).strip()
        text = params.get("text")
        parse_mode = params.get("parse_mode")
        if not chat_id:
            return _error(400, "Bad Request: chat_id is empty")
        if not isinstance(text, str) or not text.strip():
            return _error(400, "Bad Request: message text is empty")
        visible = text
        if isinstance(parse_mode, str) and parse_mode.upper() == "HTML":
            try:
                visible = telegram_html_text(text)
            except ValueError as exc:
                return _error(400, f"Bad Request: can't parse entities: {exc}")
        if _utf16_len(visible) > MAX_MESSAGE_CHARS:
            return _error(400, "Bad Request: message is too long")
        with self._lock:
            message_id = self._next_message_id
            self._next_message_id += 1
            self.messages.append(ReceivedMessage(token, chat_id, text, parse_mode, message_id))
        if chat_id.lstrip("-").isdigit() and int(chat_id) > 0:
            chat: dict[str, Any] = {"id": int(chat_id), "type": "private", "first_name": "Stub"}
        elif chat_id.lstrip("-").isdigit():
            chat = {"id": int(chat_id), "type": "supergroup", "title": "Stub group"}
        else:  # "@channel": Chat.id must still be an integer
            chat = {
                "id": -(zlib.crc32(chat_id.encode()) + 1_000_000_000_000),
                "type": "channel",
                "title": chat_id,
                "username": chat_id.lstrip("@"),
            }
        result = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": chat,
            "from": BOT_USER,
            "text": visible,
        }
        return 200, {"ok": True, "result": result}

    def _handle_error(self, request: object, client_address: object) -> None:
        # Clients that timed out close their socket before we answer: expected, not news.
        logger.debug("telegram stub: a connection ended abnormally", exc_info=True)


def _error(
    status: int, description: str, parameters: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return status, body


def _parse_body(content_type: str, raw: bytes) -> dict[str, Any]:
    if not raw:
        return {}
    if content_type.startswith("application/json"):
        data = json.loads(raw.decode("utf-8"))
        return data if isinstance(data, dict) else {}
    if content_type.startswith("application/x-www-form-urlencoded") or not content_type:
        return {key: values[-1] for key, values in parse_qs(raw.decode("utf-8")).items()}
    raise ValueError(f"unsupported content type {content_type!r}")


def _handler_for(stub: TelegramStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            pass  # the request line holds the bot token: never log it

        def do_GET(self) -> None:  # noqa: N802 - stdlib naming
            self._serve(b"")

        def do_POST(self) -> None:  # noqa: N802 - stdlib naming
            length = int(self.headers.get("Content-Length") or 0)
            self._serve(self.rfile.read(length) if length else b"")

        def _serve(self, body: bytes) -> None:
            parts = urlsplit(self.path)
            match = _PATH.match(parts.path)
            if match is None:
                status, payload = _error(404, "Not Found")
            else:
                try:
                    params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                    content_type = (self.headers.get("Content-Type") or "").lower()
                    params.update(_parse_body(content_type, body))
                except (ValueError, UnicodeDecodeError) as exc:
                    status, payload = _error(400, f"Bad Request: {exc}")
                else:
                    status, payload = stub._answer(match["token"], match["method"], params)
                    logger.debug("telegram stub: %s -> %s", match["method"], status)
            data = json.dumps(payload).encode("utf-8")
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up (timeout) and closed the connection
                self.close_connection = True

    return Handler


def _serve_forever(stub: TelegramStub) -> Iterator[ReceivedMessage]:
    seen = 0
    while True:
        time.sleep(0.2)
        with stub._lock:
            new = stub.messages[seen:]
        seen += len(new)
        yield from new


def main(argv: list[str] | None = None) -> None:
    """Run the stub in the foreground and log each message that arrives (for demos)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token", default=None, help="accept only this token (default: any)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with TelegramStub(port=args.port, token=args.token) as stub:
        logger.info("Telegram stub listening; use base_url %s", stub.base_url)
        try:
            for message in _serve_forever(stub):
                logger.info("message to chat %s:\n%s", message.chat_id, message.text)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
