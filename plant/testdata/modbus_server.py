#!/usr/bin/python3
"""A Modbus/TCP device made with pymodbus: an implementation independent of
the project's, for tests that put the gate in front of a device.

usage: modbus_server.py HOST PORT [--units 1,2,3] [--journal FILE]
Unit 1 (by default the only unit served), zero-based addresses: 16 coils
(all off), 16 discrete inputs (input i is on when i is odd), 16 input
registers (register i holds 1000 + i), 100 holding registers (register i
holds i). With --units it serves each listed unit id with data of its own,
as a TCP-to-serial gateway serves the devices behind it: unit u's input
register i holds 1000*u + i and its holding register i holds 100*(u-1) + i
(unit 1's data is as above). Requests to other units are not served. With
--journal it appends a line "unit U function F address A count N" to FILE
for every request that reaches a unit's data, before serving it, so a test
can tell what the device saw. Once listening it prints "listening on PORT"
(the port it bound, so PORT may be 0) and serves until it is killed.
"""
import argparse
import asyncio

from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext
from pymodbus.server.async_io import ModbusTcpServer


class JournaledUnit(ModbusSlaveContext):
    """A unit that writes every request it validates (pymodbus validates
    each request before reading or writing the data) to a journal."""

    def __init__(self, unit, journal, **kwargs):
        super().__init__(**kwargs)
        self.unit, self.journal = unit, journal

    def validate(self, fc_as_hex, address, count=1):
        if self.journal:
            with open(self.journal, "a") as f:
                f.write("unit %d function %d address %d count %d\n" % (self.unit, fc_as_hex, address, count))
        return super().validate(fc_as_hex, address, count)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--units", default="1")
    ap.add_argument("--journal", default="")
    args = ap.parse_args()
    units = {}
    for u in (int(x) for x in args.units.split(",")):
        units[u] = JournaledUnit(
            u, args.journal,
            co=ModbusSequentialDataBlock(0, [False] * 16),
            di=ModbusSequentialDataBlock(0, [bool(i % 2) for i in range(16)]),
            ir=ModbusSequentialDataBlock(0, [1000 * u + i for i in range(16)]),
            hr=ModbusSequentialDataBlock(0, [100 * (u - 1) + i for i in range(100)]),
            zero_mode=True,
        )
    context = ModbusServerContext(slaves=units, single=False)
    server = ModbusTcpServer(context, address=(args.host, args.port))
    task = asyncio.ensure_future(server.serve_forever())
    await server.serving
    print("listening on %d" % server.server.sockets[0].getsockname()[1], flush=True)
    await task


asyncio.run(main())
