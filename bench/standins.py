#!/usr/bin/env python3
"""Server stand-ins for bench/run, on 127.0.0.1, for behaviour no real server gives on
demand:

  standins.py greet-late PORT   an IMAP server whose greeting comes exactly 200 ms after
                                the connection is accepted (then CAPABILITY, LOGOUT)
  standins.py endless PORT...   sends lines without end, as fast as the client reads
  standins.py trickle PORT...   sends one byte a second, without end

Runs until killed. Standard library only.
"""

import asyncio
import sys

GREETING_DELAY = 0.2


async def greet_late(reader, writer):
    try:
        await asyncio.sleep(GREETING_DELAY)
        writer.write(b"* OK [CAPABILITY IMAP4rev1] stand-in ready\r\n")
        await writer.drain()
        while True:
            line = await reader.readline()
            if not line:
                break
            words = line.decode("ascii", "replace").split()
            if len(words) < 2:
                continue
            tag, command = words[0], words[1].upper()
            if command == "CAPABILITY":
                writer.write(b"* CAPABILITY IMAP4rev1\r\n%s OK done\r\n" % tag.encode())
            elif command == "LOGOUT":
                writer.write(b"* BYE bye\r\n%s OK done\r\n" % tag.encode())
                await writer.drain()
                break
            else:
                writer.write(b"%s BAD unknown\r\n" % tag.encode())
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def endless(_reader, writer):
    line = b"* OK " + b"x" * 70 + b"\r\n"
    try:
        while True:
            writer.write(line * 64)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def trickle(_reader, writer):
    try:
        while True:
            writer.write(b"*")
            await writer.drain()
            await asyncio.sleep(1)
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main():
    mode, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
    handler = {"greet-late": greet_late, "endless": endless, "trickle": trickle}[mode]
    servers = [
        await asyncio.start_server(handler, "127.0.0.1", port, backlog=1024)
        for port in ports
    ]
    await asyncio.gather(*(server.serve_forever() for server in servers))


if __name__ == "__main__":
    asyncio.run(main())
