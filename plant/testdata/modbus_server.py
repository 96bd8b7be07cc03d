#!/usr/bin/python3
"""A Modbus/TCP device made with pymodbus: an implementation independent of
the project's, for tests that put the gate in front of a device.

usage: modbus_server.py HOST PORT
Unit 1, zero-based addresses: 16 coils (all off), 16 discrete inputs
(input i is on when i is odd), 16 input registers (register i holds
1000 + i), 100 holding registers (register i holds i). No other unit is
served. Once listening it prints "listening on PORT" (the port it bound,
so PORT may be 0) and serves until it is killed.
"""
import asyncio
import sys

from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext
from pymodbus.server.async_io import ModbusTcpServer


async def main():
    host, port = sys.argv[1], int(sys.argv[2])
    unit = ModbusSlaveContext(
        co=ModbusSequentialDataBlock(0, [False] * 16),
        di=ModbusSequentialDataBlock(0, [bool(i % 2) for i in range(16)]),
        ir=ModbusSequentialDataBlock(0, [1000 + i for i in range(16)]),
        hr=ModbusSequentialDataBlock(0, list(range(100))),
        zero_mode=True,
    )
    context = ModbusServerContext(slaves={1: unit}, single=False)
    server = ModbusTcpServer(context, address=(host, port))
    task = asyncio.ensure_future(server.serve_forever())
    await server.serving
    print("listening on %d" % server.server.sockets[0].getsockname()[1], flush=True)
    await task


asyncio.run(main())
