"""deploy.serve.connections.OneWrite: what uvicorn writes in two calls leaves in one, in order, and
nothing is held back: a write nothing follows goes out at the end of the event loop's pass, a close
sends what is held first, an abort drops it. The real server's answers are the other tests' (their
bytes are all read through it)."""

from __future__ import annotations

import asyncio

import pytest
import uvicorn

from deploy.serve import connections
from deploy.serve.connections import JOINED_BYTES, OneWrite, bounded_protocol


class Recorder:
    """A transport that records each write (one system call each in uvloop) and its closing."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


async def one_pass() -> None:
    await asyncio.sleep(0)  # callbacks scheduled with call_soon before this have run


def test_a_head_and_its_body_leave_in_one_write():
    async def scenario():
        transport = Recorder()
        writer = OneWrite(transport, asyncio.get_running_loop())
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
        writer.write(b"hello")
        assert transport.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"]
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")  # the next answer, on the same connection
        assert len(transport.writes) == 1
        await one_pass()
        assert transport.writes[1:] == [b"HTTP/1.1 204 No Content\r\n\r\n"]  # held only until the pass ended
    asyncio.run(scenario())


def test_a_large_body_is_not_copied_into_one_write_and_order_is_kept():
    async def scenario():
        transport = Recorder()
        writer = OneWrite(transport, asyncio.get_running_loop())
        body = bytes(JOINED_BYTES)
        writer.write(b"head")
        writer.write(body)
        writer.write(b"tail")
        await one_pass()
        assert transport.writes == [b"head", body, b"tail"]
    asyncio.run(scenario())


@pytest.mark.parametrize("ending", ["close", "abort"])
def test_a_close_sends_what_is_held_first_and_an_abort_drops_it(ending):
    async def scenario():
        transport = Recorder()
        writer = OneWrite(transport, asyncio.get_running_loop())
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        getattr(writer, ending)()
        await one_pass()
        return transport
    transport = asyncio.run(scenario())
    if ending == "close":
        assert transport.writes == [b"HTTP/1.1 400 Bad Request\r\n\r\n"] and transport.closed
    else:
        assert transport.writes == [] and transport.aborted


def test_each_answer_of_a_real_uvicorn_server_on_the_servers_protocol_is_one_write(monkeypatch):
    """uvicorn itself (its cycle writes head, then body) on mlp-serve's protocol class, three
    keep-alive requests: three writes, each a whole answer."""
    writes: list[bytes] = []

    class Counting:  # between OneWrite and the socket's transport
        def __init__(self, transport) -> None:
            self.transport = transport

        def write(self, data: bytes) -> None:
            writes.append(bytes(data))
            self.transport.write(data)

        def __getattr__(self, name: str):
            return getattr(self.transport, name)

    monkeypatch.setattr(connections, "OneWrite", lambda transport, loop: OneWrite(Counting(transport), loop))

    async def app(scope, receive, send) -> None:
        if scope["type"] == "http":
            await receive()
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"{}"})

    async def scenario() -> list[bytes]:
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, loop="none", http=bounded_protocol(8),
                                               lifespan="off", access_log=False, log_level="warning"))
        serving = asyncio.ensure_future(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answers = []
        for _ in range(3):
            writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            answers.append(await reader.readuntil(b"\r\n\r\n") + await reader.readexactly(2))
        writer.close()
        server.should_exit = True
        await serving
        return answers

    answers = asyncio.run(scenario())
    assert len(answers) == 3 and all(answer.startswith(b"HTTP/1.1 200 OK\r\n") for answer in answers)
    assert writes == answers  # each answer in one write, nothing else written
