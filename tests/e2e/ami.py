"""A small Asterisk Manager Interface (AMI) client for the end-to-end tests.

One TCP connection to 127.0.0.1, a reader thread that keeps every event in arrival order,
and actions answered by ActionID. Only the standard library: the tests need nothing else.
"""
import itertools
import socket
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

Fields = Union[Dict[str, str], Sequence[Tuple[str, str]]]


class ManagerError(Exception):
    """AMI refused an action, or an answer did not come in time."""


class Message(dict):
    """One AMI message; a header given more than once (Output:) is joined with newlines."""

    def matches(self, **fields) -> bool:
        return all(self.get(name) == value for name, value in fields.items())


def parse(block: str) -> Message:
    message = Message()
    for line in block.split("\r\n"):
        name, _, value = line.partition(": ")
        if name in message:
            message[name] += "\n" + value
        else:
            message[name] = value
    return message


class Manager:
    def __init__(self, port: int, username: str, secret: str, timeout: float = 5.0):
        self.timeout = timeout
        self.events: List[Message] = []
        self._responses: Dict[str, Message] = {}
        self._ids = itertools.count(1)
        self._changed = threading.Condition()
        self._closed = False
        self._socket = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._socket.settimeout(None)
        self._file = self._socket.makefile("rb")
        self.banner = self._file.readline().decode("utf-8", "replace").strip()
        self._reader = threading.Thread(target=self._read, name="ami-reader", daemon=True)
        self._reader.start()
        self.action("Login", Username=username, Secret=secret)

    # -- wire ------------------------------------------------------------------------
    def _read(self) -> None:
        lines: List[str] = []
        try:
            for raw in self._file:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if line:
                    lines.append(line)
                    continue
                if lines:
                    self._store(parse("\r\n".join(lines)))
                lines = []
        except (OSError, ValueError):
            pass
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def _store(self, message: Message) -> None:
        with self._changed:
            if "Event" in message:
                self.events.append(message)
            elif "ActionID" in message:
                self._responses[message["ActionID"]] = message
            self._changed.notify_all()

    def send(self, action: str, fields: Fields = ()) -> str:
        """Send an action without waiting; returns its ActionID. fields may repeat a
        header (several Variable: lines) when given as (name, value) pairs."""
        action_id = "e2e-%d" % next(self._ids)
        pairs = list(fields.items()) if isinstance(fields, dict) else list(fields)
        lines = ["Action: %s" % action, "ActionID: %s" % action_id]
        for name, value in pairs:
            if "\r" in str(value) or "\n" in str(value):
                raise ValueError("AMI header %s may not contain a line break" % name)
            lines.append("%s: %s" % (name, value))
        self._socket.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
        return action_id

    def action(self, action: str, fields: Fields = (), timeout: Optional[float] = None, **named) -> Message:
        """Send an action and return its response; ManagerError unless it succeeded."""
        pairs = (list(fields.items()) if isinstance(fields, dict) else list(fields)) + list(named.items())
        action_id = self.send(action, pairs)
        response = self._wait(lambda: self._responses.pop(action_id, None), timeout,
                              "the answer to %s" % action)
        if response.get("Response") not in ("Success", "Follows", "Goodbye"):
            raise ManagerError("%s: %s" % (action, response.get("Message", response)))
        return response

    # -- events ----------------------------------------------------------------------
    def _wait(self, find: Callable[[], Optional[Message]], timeout: Optional[float], what: str) -> Message:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        with self._changed:
            while True:
                found = find()
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise ManagerError("no %s within %.1f s%s" % (what, self.timeout if timeout is None else timeout,
                                                                 " (connection closed)" if self._closed else ""))
                self._changed.wait(left)

    def find(self, event: str, since: int = 0, **fields) -> List[Message]:
        """Events named `event` with these header values, from index `since` on."""
        with self._changed:
            return [message for message in self.events[since:]
                    if message.get("Event") == event and message.matches(**fields)]

    def wait_for(self, event: str, timeout: Optional[float] = None, since: int = 0,
                 where: Optional[Callable[[Message], bool]] = None, **fields) -> Message:
        """The first event named `event` with these header values (and `where` true),
        from index `since` on; waits for it up to `timeout` seconds."""
        def first():
            for message in self.find(event, since, **fields):
                if where is None or where(message):
                    return message
            return None
        return self._wait(first, timeout, "%s event %s" % (event, fields or ""))

    def mark(self) -> int:
        """An index for `since=`: only events after this point."""
        with self._changed:
            return len(self.events)

    def close(self) -> None:
        try:
            self.send("Logoff")
        except OSError:
            pass
        try:
            self._socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._socket.close()
        self._reader.join(2)
